"""Splitting the CPU into logical devices, so the multi-replica path runs without GPUs;
what the workers of a cluster agree on.

The strategy plugins themselves live in plugins/strategies; they call these helpers.
"""

import tensorflow as tf

from framework.errors import UserError


def split_cpu(num_devices: int) -> list[str]:
    """Splits the first physical CPU into `num_devices` logical CPUs; returns their names.

    This is how the mirrored path runs, and is tested, on a machine without accelerators.
    TensorFlow allows it only before its runtime starts (before the first op), so the
    builder (framework.assembly) makes the strategy before anything else. Asking again for the split that is
    already in place is fine.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is None or len(current) != num_devices:
        try:
            tf.config.set_logical_device_configuration(cpu, wanted)
        except RuntimeError as error:
            raise UserError(
                f"Cannot split the CPU into {num_devices} logical devices: TensorFlow has "
                f"already started ({error}). Choose the split before any TensorFlow op runs "
                "(in a fresh process), or use the split already in place."
            ) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def is_cluster(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans processes (which must then agree, see cluster_sum)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def cluster_sum(strategy: tf.distribute.Strategy):
    """int -> the sum over every replica of the cluster of what its worker passed (one
    all-reduce; every worker must call it, the same number of times)."""
    @tf.function
    def total(value):
        per_replica = strategy.run(lambda: tf.identity(value))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return lambda value: int(total(tf.constant(value, tf.int64)))
