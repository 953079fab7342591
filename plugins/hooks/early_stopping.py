"""Stop training when a metric crosses a threshold or stops improving."""

import math

from absl import logging

from framework.hooks import Hook
from framework.registry import register


class EarlyStopping(Hook):
    """See `early_stopping`."""

    def __init__(self, metric, mode, threshold, patience, min_delta, source):
        if mode not in ("min", "max"):
            raise ValueError(f"early_stopping.mode must be 'min' or 'max', got {mode!r}")
        if source not in ("train", "eval"):
            raise ValueError(f"early_stopping.source must be 'train' or 'eval', got {source!r}")
        self.metric, self.mode, self.threshold = metric, mode, threshold
        self.patience, self.min_delta, self.source = patience, min_delta, source
        self.best, self.checks_without_improvement = math.nan, 0

    def _better(self, value, reference, delta=0.0):
        return value < reference - delta if self.mode == "min" else value > reference + delta

    def _check(self, context, step, value):
        if value is None:
            return
        if self.threshold is not None and self._better(value, self.threshold):
            context.request_stop(f"{self.source} {self.metric} {value:.4g} crossed the "
                                    f"threshold {self.threshold} at step {step}")
            return
        if math.isnan(self.best) or self._better(value, self.best, self.min_delta):
            self.best, self.checks_without_improvement = value, 0
            return
        self.checks_without_improvement += 1
        if self.patience is not None and self.checks_without_improvement >= self.patience:
            context.request_stop(
                f"{self.source} {self.metric} has not improved on {self.best:.4g} for "
                f"{self.patience} checks (step {step})")

    def after_train_loop(self, context, step, loop):
        if self.source == "train":
            self._check(context, step, loop.get(self.metric))

    def after_eval(self, context, step, results):
        if self.source == "eval":
            if self.metric not in results:
                logging.warning("early_stopping: no eval metric '%s' (have %s)",
                                self.metric, ", ".join(results))
            self._check(context, step, results.get(self.metric))


@register.hook
def early_stopping(metric="loss", mode="min", threshold=None, patience=None, min_delta=0.0,
                   source="eval"):
    """Stop when `metric` crosses `threshold`, or has not improved for `patience` checks.

    source: 'eval' checks after each evaluation; 'train' after each host loop, on the
    mean training metric since the last summary (the classic "stop when loss < 0.4").
    mode: 'min' (lower is better; the threshold is crossed going down) or 'max'.
    """
    return EarlyStopping(metric, mode, threshold, patience, min_delta, source)
