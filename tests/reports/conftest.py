"""The reanalysis tests' tiny trained run, shared with the report tests."""

from tests.reanalysis.conftest import run_copy, trained_run  # noqa: F401
