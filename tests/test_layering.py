"""Lightning stays inside `sinklab.training`: the metric path (also used for pretrained
models), the model, the data pipeline, run folders and reports import without it, so
reanalysis and analysis scripts start fast and run where Lightning is not installed."""

from __future__ import annotations

import subprocess
import sys

LIGHTNING_FREE = (
    "sinklab.analysis",
    "sinklab.analysis.pipeline",
    "sinklab.model",
    "sinklab.data",
    "sinklab.runs",
    "sinklab.runs.layout",
    "sinklab.runs.checkpoints",
    "sinklab.reanalysis.runner",
    "sinklab.reports.figures",
    "sinklab.reports.studies",
    "sinklab.reports.pretrained",
)


def test_lightning_free_modules_import_without_lightning_and_training_does() -> None:
    """One interpreter imports them in turn and names the first one that pulls Lightning in;
    then it imports the training run, which must pull Lightning in: the check can fail."""
    code = (
        "import importlib, sys\n"
        f"for m in {list(LIGHTNING_FREE)!r}:\n"
        "    importlib.import_module(m)\n"
        "    assert 'lightning' not in sys.modules, f'{m} imported lightning'\n"
        "import sinklab.training.run\n"
        "assert 'lightning' in sys.modules, 'sinklab.training.run did not import lightning'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
