"""Run folders: where every file of a run lives (`layout`), and checkpoint names, listing and
safe loading (`checkpoints`). Lightning-free, so reanalysis and reports can read runs."""
