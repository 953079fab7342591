"""Learning-rate schedules for any optimizer plugin's `learning_rate`.

    optimizers.adam.learning_rate = @schedules.linear_warmup()
    schedules.linear_warmup.after = @schedules.cosine_decay()
    schedules.linear_warmup.warmup_steps = 500
    schedules.cosine_decay.decay_steps = %TRAIN_STEPS
"""

import keras
import tensorflow as tf

from framework import registry
from framework.registry import register


@register.schedule
def constant(learning_rate=1e-3):
    """The same rate at every step."""
    return float(learning_rate)


@register.schedule
def exponential_decay(initial_learning_rate=1e-3, decay_steps=1000, decay_rate=0.96,
                      staircase=False):
    """initial * decay_rate ** (step / decay_steps)."""
    return keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate, decay_steps, decay_rate, staircase=staircase)


@register.schedule
def cosine_decay(initial_learning_rate=1e-3, decay_steps=1000, alpha=0.0):
    """Half a cosine from the initial rate down to alpha * initial over decay_steps."""
    return keras.optimizers.schedules.CosineDecay(initial_learning_rate, decay_steps, alpha)


@register.schedule
def piecewise_constant(boundaries=(1000,), values=(1e-3, 1e-4)):
    """values[i] until boundaries[i]; len(values) == len(boundaries) + 1."""
    return keras.optimizers.schedules.PiecewiseConstantDecay(list(boundaries), list(values))


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `after(0)` over `warmup_steps`, then follows `after`
    (shifted, so that `after` starts at its own step 0 when the warm-up ends)."""

    def __init__(self, after, warmup_steps):
        self.after, self.warmup_steps = after, warmup_steps

    def _after(self, step):
        return self.after(step) if callable(self.after) else tf.constant(self.after)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        target = tf.cast(self._after(0), tf.float32)
        decayed = tf.cast(self._after(tf.maximum(step - warmup, 0.0)), tf.float32)
        return tf.where(step < warmup, target * (step + 1.0) / warmup, decayed)

    def get_config(self):
        return {"after": self.after, "warmup_steps": self.warmup_steps}


@register.schedule
def linear_warmup(after=1e-3, warmup_steps=100):
    """A linear warm-up in front of another schedule (or a constant rate)."""
    return LinearWarmup(registry.build(after), warmup_steps)
