"""Lightning's CSVLogger with two hazards removed, for `<run>/csv/metrics.csv`.

Lightning's writer deletes an existing metrics.csv when a logger starts, so resuming a run in
its own folder would lose every row logged before the interruption; and it appends (or
rewrites the whole file when a new column appears) in place, so a kill mid-write tears the
file. This writer keeps the rows of earlier steps on resume and replaces the file atomically.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import IO, Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from sinklab.atomic import atomic_write


class SafeCSVWriter(ExperimentWriter):
    """Rows up to `resume_step` survive a resume; every save is temp file + rename."""

    def __init__(self, log_dir: str, resume_step: int = 0) -> None:
        self.resume_step = resume_step
        self._rows: list[dict[str, Any]] = []  # rows already on disk (and kept)
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Instead of deleting an old metrics.csv, keep its rows up to the resume step.

        A row's step is the number of optimizer steps completed, so the rows at the resume
        step itself (its train and validation rows) belong to the checkpoint's side and the
        resumed run starts at the step after. Rows past it came from the interrupted run after
        its checkpoint; the resumed run logs those steps again, identically, so keeping them
        would duplicate.
        """
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        last = self.resume_step if self.resume_step > 0 else -1  # a fresh run keeps nothing
        kept = [r for r in rows if _step(r) is not None and _step(r) <= last]  # type: ignore[operator]
        self._rows = [{k: v for k, v in r.items() if v not in ("", None)} for r in kept]
        for row in self._rows:
            for key in row:
                if key not in self.metrics_keys:
                    self.metrics_keys.append(key)
        self.metrics_keys.sort()
        if len(kept) != len(rows):
            self._write()  # drop the superseded rows now, so the file never holds them twice

    def save(self) -> None:
        if not self.metrics:
            return
        self._record_new_keys()
        self._rows.extend(self.metrics)
        self.metrics = []
        self._write()

    def _write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(self._rows)
        data = text.getvalue().encode()

        def write(fh: IO[bytes]) -> None:
            fh.write(data)

        os.makedirs(self.log_dir, exist_ok=True)
        atomic_write(Path(self.metrics_file_path), write)


def _step(row: dict[str, Any]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class SafeCSVLogger(CSVLogger):
    """`CSVLogger(save_dir=run_dir, name="csv", version="")` writing through `SafeCSVWriter`."""

    def __init__(self, save_dir: str, resume_step: int = 0, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, name="csv", version="", **kwargs)
        self.resume_step = resume_step

    @property
    def experiment(self) -> SafeCSVWriter:  # type: ignore[override]
        if self._experiment is not None:
            return self._experiment  # type: ignore[return-value]
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = SafeCSVWriter(log_dir=self.log_dir, resume_step=self.resume_step)
        return self._experiment  # type: ignore[return-value]
