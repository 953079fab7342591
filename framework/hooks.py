"""The hook interface: code that watches a run at loop boundaries, and what it sees.

Hooks are plugins (`@register.hook`), listed in gin:

    Experiment.hooks = [@hooks.early_stopping(), @hooks.nan_guard()]

The controller calls them between host calls of the compiled loop, never inside the traced
step, so a hook may read values, log, and ask the run to stop. Each call gets a
`RunContext`, not the run's parts.
"""

from typing import Callable

from framework.errors import UserError


class Hook:
    """Override the calls you need; each gets the run's `RunContext` first.

    `context.request_stop(reason)` ends the run after the current host loop: a checkpoint is
    written and the reason is logged.

    What a hook needs from the compiled step is declared here, as class or instance
    attributes, because the step is compiled before the first call:
      skips_nonfinite_steps: steps whose loss or gradients are NaN or Inf are not applied.
    """

    skips_nonfinite_steps: bool = False

    def begin(self, context: "RunContext") -> None:
        """Before the first training step of this process (after any restore)."""

    def after_train_loop(self, context: "RunContext", step: int, loop: dict) -> None:
        """After each host loop. `loop` has 'steps' (run in this call), 'nonfinite_steps'
        (steps whose loss or gradients were NaN or Inf, in this process),
        'first_nonfinite_step' (-1: none) and the training metrics since the last summary
        ('loss', 'accuracy', ...)."""

    def after_eval(self, context: "RunContext", step: int, results: dict) -> None:
        """After each evaluation, with its metrics ({'loss': ..., 'accuracy': ...})."""

    def end(self, context: "RunContext", step: int) -> None:
        """After training ends, whatever ended it."""


class StopRequest:
    """Why a run should stop after its current host loop, if it should.

    Hooks (through their RunContext) and signal handlers ask; the controller reads. The
    first request wins.
    """

    def __init__(self):
        self.reason: str | None = None
        self.save, self.exit_status = True, 0

    def __call__(self, reason: str, save: bool = True, exit_status: int = 0) -> None:
        """save: write a checkpoint of the current state (False when that state is bad).
        exit_status: what the command line exits with."""
        if self.reason is None:
            self.reason, self.save, self.exit_status = reason, save, exit_status

    @property
    def requested(self) -> bool:
        return self.reason is not None


class RunContext:
    """What a hook sees of a run: its steps, its latest checkpoint, and a way to stop it."""

    def __init__(self, stop: StopRequest, train_steps: int,
                 latest_checkpoint: Callable[[], str | None], model_dir: str, step: int = 0):
        self._stop, self._latest_checkpoint = stop, latest_checkpoint
        self.train_steps, self.model_dir = train_steps, model_dir
        self.step = step  # the global step; the controller keeps it current

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint saved (by this run or the one it resumed), if any."""
        return self._latest_checkpoint()

    @property
    def stop_requested(self) -> bool:
        return self._stop.requested

    def request_stop(self, reason: str, save: bool = True, exit_status: int = 0) -> None:
        """Ends training after the current host loop (see `StopRequest`)."""
        self._stop(reason, save=save, exit_status=exit_status)

    def __getattr__(self, name: str):
        # Only for names the context does not have: hooks written when they were handed
        # the whole Experiment (experiment.trainer, .checkpoints, .global_step) get the fix.
        if name.startswith("__"):
            raise AttributeError(name)
        raise UserError(
            f"A hook asked its run for '{name}', which hooks do not get: a hook's first "
            "argument is a RunContext with step, train_steps, model_dir, latest_checkpoint "
            "and request_stop(), and after_train_loop's `loop` holds the loop's figures "
            "(steps, nonfinite_steps, first_nonfinite_step, the training metrics). See "
            "README, Hooks.")
