"""The training progress bar, labelled by what a run counts: steps, not epochs.

sinklab trains for `trainer.max_steps` on an endless stream, so Lightning sets max_epochs to -1
and its Rich bar would title the bar "Epoch 0/-2". The bar itself already counts steps
(`n/max_steps`); only the title changes.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE, RichProgressBar

TRAIN_TITLE = "Training"


class StepRichProgressBar(RichProgressBar):
    """Lightning's Rich bar, titled "Training" instead of "Epoch e/max_epochs - 1"."""

    def _get_train_description(self, current_epoch: int) -> str:
        # padded to the validation title, as Lightning does, so the two bars do not flicker
        return f"{TRAIN_TITLE:{len(self.validation_description)}}"


def progress_bar() -> ProgressBar:
    """The bar Lightning would pick by itself (Rich when installed, else tqdm), with our title;
    tqdm's own title ("Epoch 0") has no negative count to hide."""
    return StepRichProgressBar() if _RICH_AVAILABLE else TQDMProgressBar()
