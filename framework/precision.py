"""The arithmetic a model computes in: the precision policies and what 'auto' becomes.

A run builds its model under one Keras dtype policy and keeps it: 'auto' is resolved once,
when the run starts (framework.auto_precision times the model in each policy), and the
result is kept in model_dir (framework.run_dir), so a run resumed on another machine does
not change its arithmetic halfway.
"""

import contextlib

import keras
import tensorflow as tf
from absl import logging

from framework.errors import UserError

COMPUTE_POLICIES = ("float32", "mixed_bfloat16")  # Keras dtype policies a model is built in
PRECISION_POLICIES = (*COMPUTE_POLICIES, "auto")


def check_policy(name: str) -> None:
    """Raises UserError unless `name` is a policy Experiment.precision_policy accepts."""
    if name in PRECISION_POLICIES:
        return
    raise UserError(
        f"Experiment.precision_policy must be one of {', '.join(PRECISION_POLICIES)}, got "
        f"{name!r}."
        + (" mixed_float16 needs loss scaling, which this loop does not do; "
           "'mixed_bfloat16' needs none and is as fast on GPUs that have it."
           if name == "mixed_float16" else ""))


def check_compute_policy(name: str, source: str) -> str:
    """`name` if it is a compute policy; else a UserError naming `source` (where it was read)."""
    if name not in COMPUTE_POLICIES:
        raise UserError(f"{source} holds {name!r}, not 'float32' or 'mixed_bfloat16': write "
                        "the one this run started with, or set Experiment.precision_policy "
                        "to it.")
    return name


def resolve(requested: str, saved: str | None, choose_auto) -> tuple[str, str]:
    """(the compute policy to build the model in, why).

    requested: Experiment.precision_policy. saved: what 'auto' became when this run started
    (None for a new run). choose_auto: () -> framework.auto_precision.Choice, called only
    for 'auto' in a new run (it may time the model in each policy).
    """
    if requested != "auto":
        return requested, "set in the config"
    if saved is not None:
        reason = "as when this run started"
    else:
        choice = choose_auto()
        saved, reason = choice.policy, choice.reason
    logging.info("Experiment.precision_policy 'auto' is %s here (%s).", saved, reason)
    return saved, reason


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras layers built inside compute in policy `name`; the global policy is restored
    after, so later models in the process are not affected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_outputs(outputs):
    """The model's outputs in float32: under a mixed-precision policy they come in
    bfloat16, too coarse for losses, metrics and shown probabilities (a softmax of 0.9991
    reads 1 in bfloat16). A no-op in float32."""
    return tf.nest.map_structure(
        lambda t: t if t.dtype == tf.float32 else tf.cast(t, tf.float32), outputs)
