"""Strategy helpers: splitting the CPU into logical devices, and chief-only writing.

The strategy plugins themselves live in plugins/strategies; they call these helpers.
"""

import tensorflow as tf

from framework.errors import UserError


def split_cpu(num_devices: int) -> list[str]:
    """Splits the first physical CPU into `num_devices` logical CPUs; returns their names.

    This is how the mirrored path runs, and is tested, on a machine without accelerators.
    TensorFlow allows it only before its runtime starts (before the first op), so the
    Experiment builds the strategy before anything else. Asking again for the split that is
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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes summaries, checkpoints and the config (true off-cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())
