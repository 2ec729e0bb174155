"""A real run writes checkpoints and probe rows at exactly the scheduled steps, with
`log_spaced_until` and `every` chosen so that swapping them gives a different schedule."""

from __future__ import annotations

from pathlib import Path

from sinklab.analysis.records import read_rows
from sinklab.runs.checkpoints import list_checkpoints
from sinklab.runs.layout import RunLayout
from tests.reanalysis.helpers import train_tiny

# 0, 1, 2, 4 (powers of two up to 4), 7 and 14 (every 7), 20 (the last step); swapped
# (until 7, every 4) it would be 0, 1, 2, 4, 8, 12, 16, 20.
EXPECTED = [0, 1, 2, 4, 7, 14, 20]


def test_checkpoints_and_probes_follow_the_schedule(tmp_path: Path) -> None:
    run = train_tiny(
        tmp_path / "run",
        steps=20,
        extra=["callbacks.checkpoint.log_spaced_until=4", "callbacks.checkpoint.every=7"],
    )
    assert [c.step for c in list_checkpoints(run)] == EXPECTED
    probed = sorted(set(read_rows(RunLayout(run).probes_table)["step"].astype(int)))
    assert probed == EXPECTED
