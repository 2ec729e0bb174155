"""A run's token budget against its corpus: stated at start, refused above data.max_epochs.

A run that silently reads its corpus 200 times measures something other than what it claims
(issue 30): the budget is `steps x tokens per step`, the epochs are the budget over the
training split's tokens, and the summary records the epochs actually seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from sinklab.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    steps: int
    tokens_per_step: int
    corpus_tokens: int | None  # None: generated on the fly (synthetic), never repeats

    @property
    def tokens(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def epochs(self) -> float | None:
        """How many times the run reads its training split (None: synthetic)."""
        return None if not self.corpus_tokens else self.tokens / self.corpus_tokens

    def line(self) -> str:
        """One line for the start of a run."""
        head = f"token budget {self.steps:,} steps x {self.tokens_per_step:,} = {_short(self.tokens)} tokens"
        if self.epochs is None:
            return f"{head}; generated data (never repeats)"
        return (
            f"{head}; training split {_short(self.corpus_tokens or 0)} tokens: "
            f"{self.epochs:.2f} epochs"
        )


def check_budget(
    steps: int, tokens_per_step: int, corpus_tokens: int | None, max_epochs: float | None
) -> Budget:
    """The budget; a ConfigError naming both numbers when it repeats the corpus more than
    `max_epochs` times."""
    budget = Budget(steps, tokens_per_step, corpus_tokens)
    epochs = budget.epochs
    if max_epochs is not None and epochs is not None and epochs > max_epochs:
        raise ConfigError(
            "data.max_epochs",
            f"the run reads {_short(budget.tokens)} tokens ({steps:,} steps x "
            f"{tokens_per_step:,}) from a {_short(corpus_tokens or 0)}-token training split: "
            f"{epochs:.2f} epochs, above max_epochs={max_epochs}; prepare a larger corpus or "
            "lower trainer.max_steps",
        )
    return budget


def epochs_seen(tokens_seen: int, corpus_tokens: int | None) -> float | None:
    return None if not corpus_tokens else round(tokens_seen / corpus_tokens, 4)


def _short(n: int) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
