"""One progress line: a bar with the step, loss, steps/sec and the time left."""

import time

from framework.console import CONSOLE
from framework.hooks import Hook
from framework.registry import register

_BAR_WIDTH = 24


class Progress(Hook):
    """See `progress`."""

    def __init__(self, every_seconds, console=CONSOLE):
        self.every_seconds = every_seconds
        self._console = console

    def begin(self, context):
        self._start_time = time.perf_counter()
        self._last_time = None
        self._start_step = context.step

    def after_train_loop(self, context, step, loop):
        total = context.train_steps
        now = time.perf_counter()
        # A terminal redraws one line, so it may change often; plain lines pile up.
        interval = 0.25 if self._console.redraws else self.every_seconds
        if self._last_time is not None and now - self._last_time < interval and step < total:
            return
        self._last_time = now
        rate = (step - self._start_step) / max(now - self._start_time, 1e-9)
        remaining = (total - step) / rate if rate else float("inf")
        self._console.progress(progress_line(step, total, loop.get("loss"), rate, remaining))


def progress_line(step: int, total: int, loss, steps_per_second: float,
                  seconds_left: float) -> str:
    """'step 1200/9375 [###.....]  13% · loss 0.4123 · 612 steps/s · ETA 0:00:13'."""
    done = min(step / total, 1.0) if total else 1.0
    filled = int(done * _BAR_WIDTH)
    loss_text = f" · loss {loss:.4g}" if loss is not None else ""
    return (f"step {step}/{total} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] "
            f"{100 * done:3.0f}%{loss_text} · {steps_per_second:.1f} steps/s · "
            f"ETA {_duration(seconds_left)}")


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


@register.hook
def progress(every_seconds=30.0):
    """A progress bar with loss, steps/sec and ETA: redrawn in place on a terminal, else a
    line at most every `every_seconds` (and at the end)."""
    return Progress(every_seconds)
