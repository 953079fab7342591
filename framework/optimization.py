"""Per-variable learning-rate multipliers, as one Keras optimizer per multiplier.

A model plugin may give multipliers with `capabilities.set_learning_rate_multipliers(model,
{variable.path: 0.1, ...})` (e.g. a fine-tuned backbone under a new head). Keras optimizers have one learning rate, so each
distinct multiplier gets a copy of the configured optimizer with its rate (or schedule)
scaled, and applies the gradients of its own variables.
"""

import keras
import tensorflow as tf

from framework import capabilities


class ScaledSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`factor` times another schedule."""

    def __init__(self, schedule, factor):
        self.schedule, self.factor = schedule, factor

    def __call__(self, step):
        return self.factor * tf.cast(self.schedule(step), tf.float32)

    def get_config(self):
        return {"schedule": self.schedule, "factor": self.factor}


def optimizer_groups(model: keras.Model, optimizer: keras.optimizers.Optimizer):
    """[(optimizer, variable indices)], the given optimizer first (multiplier 1).

    Indices refer to `model.trainable_variables`. Call inside the strategy's scope: the
    copies create variables. Every optimizer is built for its variables.
    """
    multipliers = capabilities.learning_rate_multipliers(model)
    by_factor: dict[float, list[int]] = {}
    for index, variable in enumerate(model.trainable_variables):
        by_factor.setdefault(float(multipliers.get(variable.path, 1.0)), []).append(index)
    groups = []
    for factor in sorted(by_factor, key=lambda f: f != 1.0):
        member = optimizer if factor == 1.0 else _scaled_copy(optimizer, factor)
        member.build([model.trainable_variables[i] for i in by_factor[factor]])
        groups.append((member, by_factor[factor]))
    if not groups:  # nothing trains; keep the optimizer so checkpoints look the same
        optimizer.build([])
        groups.append((optimizer, []))
    return groups


def _scaled_copy(optimizer, factor):
    config = optimizer.get_config()
    rate = optimizer._learning_rate  # pylint: disable=protected-access  (the schedule, if any)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        config["learning_rate"] = ScaledSchedule(rate, factor)
    else:
        config["learning_rate"] = float(tf.convert_to_tensor(rate)) * factor
    config["name"] = f"{config['name']}_x{factor:g}"
    return optimizer.__class__.from_config(config)


def take_over_aggregation(optimizer: keras.optimizers.Optimizer) -> None:
    """Makes `optimizer.apply_gradients` apply the gradients it is given as they are, for a
    loop that sums them over replicas itself (framework.trainer: one all-reduce, then the
    global norm and clipping on the sum). From Keras 3.3 an optimizer sums them again under
    a tf.distribute strategy: a second all-reduce per step, of values already equal on every
    replica. Keras has no public switch for this (keras-team/keras#19308), so the instance's
    summing step becomes the identity; Keras versions without one never summed.
    """
    if hasattr(optimizer, "_all_reduce_sum_gradients"):
        optimizer._all_reduce_sum_gradients = list  # pylint: disable=protected-access
