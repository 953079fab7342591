"""Built-in tf.distribute strategies: default, one device, mirrored, multi-worker."""

import tensorflow as tf

from framework.distribute import split_cpu
from framework.registry import register


@register.strategy
def default():
    """No distribution: TensorFlow's default strategy on its default device."""
    return tf.distribute.get_strategy()


@register.strategy
def one_device(device="/cpu:0"):
    """Everything on one named device, e.g. '/gpu:0'."""
    return tf.distribute.OneDeviceStrategy(device)


@register.strategy
def mirrored(devices=None, logical_cpus=None):
    """Synchronous data parallelism over local devices (all GPUs, else the CPU).

    logical_cpus: split the CPU into this many logical devices and mirror over them, so the
    multi-replica path runs on a CPU-only machine (a correctness path, not a speed-up).
    """
    cross_device_ops = None  # TensorFlow's choice for the devices found
    if logical_cpus:
        devices = split_cpu(logical_cpus)
        # Collective all-reduce keys clash when a process builds a second MirroredStrategy
        # over the same logical CPUs ("Shape mismatch in the collective instance"); a plain
        # reduction through one device has no such state and costs nothing here.
        cross_device_ops = tf.distribute.ReductionToOneDevice()
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)


@register.strategy
def multi_worker(communication="auto", timeout_seconds=None):
    """Synchronous data parallelism over several machines, described by $TF_CONFIG.

    communication: 'auto', 'ring' or 'nccl' collective implementation.
    timeout_seconds: a collective (one step's all-reduce) that takes longer fails the run
      with a message that the cluster lost a worker. None: wait for ever, which is what a
      machine that vanishes without closing its connections leaves the others doing; a
      worker that dies on a live machine is noticed at once either way.
    """
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=getattr(tf.distribute.experimental.CommunicationImplementation,
                               communication.upper()),
        timeout_seconds=timeout_seconds,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
