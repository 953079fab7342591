"""The hook interface: code that watches a run at loop boundaries.

Hooks are plugins (`@register.hook`), listed in gin:

    Experiment.hooks = [@hooks.early_stopping(), @hooks.nan_guard()]

The Experiment calls them between host calls of the compiled loop, never inside the
traced step, so a hook may read values, log, and ask the run to stop.
"""


class Hook:
    """Override the calls you need; each gets the running Experiment.

    `experiment.request_stop(reason)` ends the run after the current host loop: a
    checkpoint is written and the reason is logged.
    """

    def begin(self, experiment) -> None:
        """Before the first training step of this process (after any restore)."""

    def after_train_loop(self, experiment, step: int, loop: dict) -> None:
        """After each host loop. `loop` has 'steps' (run in this call), 'nonfinite_steps'
        (steps whose loss was NaN or Inf) and 'loss' (mean loss since the last summary)."""

    def after_eval(self, experiment, step: int, results: dict) -> None:
        """After each evaluation, with its metrics ({'loss': ..., 'accuracy': ...})."""

    def end(self, experiment, step: int) -> None:
        """After training ends, whatever ended it."""
