"""A progress line on long runs: step, loss, steps/sec and the time left."""

import time

from absl import logging

from framework.hooks import Hook
from framework.registry import register


class Progress(Hook):
    """See `progress`."""

    def __init__(self, every_seconds):
        self.every_seconds = every_seconds

    def begin(self, context):
        self._start_time = self._last_time = time.perf_counter()
        self._start_step = context.step

    def after_train_loop(self, context, step, loop):
        total = context.train_steps
        now = time.perf_counter()
        if now - self._last_time < self.every_seconds and step < total:
            return
        self._last_time = now
        rate = (step - self._start_step) / max(now - self._start_time, 1e-9)
        remaining = (total - step) / rate if rate else float("inf")
        logging.info("progress: step %d/%d (%.0f%%), loss %.4g, %.1f steps/s, ETA %s",
                     step, total, 100.0 * step / total,
                     loop.get("loss", float("nan")), rate, _duration(remaining))


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


@register.hook
def progress(every_seconds=30.0):
    """Log step, loss, steps/sec and ETA at most every `every_seconds` (and at the end)."""
    return Progress(every_seconds)
