"""Figures and written reports: plots shared by the callback and the scripts, emergence and
sweep figures, study sections of docs/results.md, the pretrained-model report.

Kept import-light on purpose (no submodule is imported here): `reanalysis` and the probe
callback import `sinklab.reports.plots`, while `reports.pretrained` builds on `reanalysis`.
"""
