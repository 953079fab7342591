"""What the controller hands to the parts that watch it.

The trainer returns a `LoopOutput` for each host loop and the evaluator an `EvalOutput` for
each pass; observers (summaries, monitoring, the best checkpoint, the config record) get
them through the `Observer` calls, never the controller itself.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LoopOutput:
    """One host loop of training: the steps it ran, and the non-finite steps so far in this
    process (steps whose loss or gradients were NaN or Inf; the first, or -1)."""

    steps: int
    nonfinite_steps: int = 0
    first_nonfinite_step: int = -1


@dataclasses.dataclass(frozen=True)
class EvalOutput:
    """One evaluation pass: scalar metrics by tag, and confusion matrices by tag."""

    scalars: dict[str, float]
    matrices: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Observer:
    """A part that watches training; override the calls you need. Called by the controller
    in this order: begin, then per host loop before_train_loop, after_train_loop,
    after_train_summary (when summaries are due), after_eval (when an evaluation is due);
    end. train_and_eval's final evaluation and --mode=eval's come after `end` (or without
    any training call) and reach after_eval too."""

    def begin(self, step: int) -> None:
        """Before the first host loop (step: where training starts)."""

    def before_train_loop(self, step: int) -> None:
        """Just before a host loop starts at `step`."""

    def after_train_loop(self, step: int, output: LoopOutput) -> None:
        """After a host loop that ended at `step`."""

    def after_train_summary(self, step: int, scalars: dict[str, float]) -> None:
        """With the training scalars of the summary window ending at `step`."""

    def after_eval(self, step: int, output: EvalOutput) -> None:
        """After an evaluation of the model at `step`."""

    def end(self, step: int) -> None:
        """After training ends at `step`, whatever ended it."""
