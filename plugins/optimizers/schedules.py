"""Learning-rate schedules for any optimizer plugin's `learning_rate`.

    optimizers.adam.learning_rate = @schedules.linear_warmup()
    schedules.linear_warmup.after = @schedules.cosine_decay
    schedules.linear_warmup.warmup_steps = 500

A schedule whose length (`decay_steps`) is left unset spans the run's own train_steps, so
overriding `Experiment.train_steps` alone keeps it consistent; an explicit value still wins.
After a warm-up it spans the steps that remain when given as the plugin itself
(`@schedules.cosine_decay`, as above): with `()` gin builds it before the warm-up exists.
"""

import keras
import tensorflow as tf

from framework import registry, run_length
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
def cosine_decay(initial_learning_rate=1e-3, decay_steps=None, alpha=0.0):
    """Half a cosine from the initial rate down to alpha * initial over decay_steps (default:
    the run's train_steps)."""
    decay_steps = decay_steps or run_length.steps("schedules.cosine_decay.decay_steps")
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
    """A linear warm-up in front of another schedule (or a constant rate); the schedule
    after it spans the steps that remain."""
    total = run_length.current()
    if total is None:  # built outside a run: `after` must have its own length
        return LinearWarmup(registry.build(after), warmup_steps)
    with run_length.training_for(max(1, total - warmup_steps)):
        return LinearWarmup(registry.build(after), warmup_steps)
