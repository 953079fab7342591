"""Stop (or skip the step) when the loss or the gradients become NaN or Inf."""

from absl import logging

from framework.hooks import Hook
from framework.registry import register

EXIT_STATUS_NONFINITE = 3


class NanGuard(Hook):
    """See `nan_guard`."""

    def __init__(self, action):
        if action not in ("stop", "skip"):
            raise ValueError(f"nan_guard.action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.skips_nonfinite_steps = action == "skip"  # done in-graph (see Hook)
        self._reported = 0

    def after_train_loop(self, context, step, loop):
        count = loop["nonfinite_steps"]
        if count == self._reported:
            return
        first = loop["first_nonfinite_step"]
        if self.action == "stop":
            context.request_stop(
                f"the loss or gradients were NaN or Inf at step {first}; the last good "
                f"checkpoint is {context.latest_checkpoint}",
                save=False, exit_status=EXIT_STATUS_NONFINITE)
        else:
            logging.warning("Skipped %d step(s) with NaN or Inf loss or gradients "
                            "(%d in all, the first at step %d).", count - self._reported,
                            count, first)
        self._reported = count


@register.hook
def nan_guard(action="stop"):
    """Watch for NaN/Inf losses or gradients.

    action: 'stop' ends the run at once, naming the step and the last good checkpoint, and
    saves nothing (exit status 3); 'skip' drops such steps' updates and counts them.
    """
    return NanGuard(action)
