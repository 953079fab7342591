"""Process set-up for a run: thread pools, op determinism and seeds.

Thread pools must be sized before TensorFlow runs its first op, so they come first; the
strategy (which may split the CPU into logical devices) next; determinism and seeds after.
"""

import keras
import tensorflow as tf
from absl import logging

_POOLS = {
    "intra_op": (tf.config.threading.get_intra_op_parallelism_threads,
                 tf.config.threading.set_intra_op_parallelism_threads),
    "inter_op": (tf.config.threading.get_inter_op_parallelism_threads,
                 tf.config.threading.set_inter_op_parallelism_threads),
}


def set_thread_pools(threads: dict[str, int | None]) -> None:
    """threads: {'intra_op': n or None, 'inter_op': n or None}; None keeps TensorFlow's
    sizing. Ignored with a warning once TensorFlow has run an op in this process."""
    for pool, count in threads.items():
        get, set_ = _POOLS[pool]
        if count is None or get() == count:
            continue
        try:
            set_(count)
        except RuntimeError:
            logging.warning("Experiment.%s_threads = %d ignored: TensorFlow already runs "
                            "(it must be set before any op, e.g. first in the process).",
                            pool, count)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy, TensorFlow and Keras; with `deterministic`, TensorFlow's ops
    give the same result bit for bit on every run (slower)."""
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
