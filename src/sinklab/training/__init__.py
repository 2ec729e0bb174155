"""Training: the LightningModule, its callbacks, and the run orchestration."""
