"""What `Experiment.precision_policy = 'auto'` becomes: chosen by timing the run's own model.

A new run times a few training steps of its model, built afresh in each compute policy, on
the device a replica computes on, and takes a faster policy than float32 only when it wins
clearly (`CLEAR_WIN`): bfloat16 rounds activations, so a marginal gain is not worth it.
The decision is cached per machine and model (`cache_key`), so a later run on the same
machine pays nothing. framework.precision keeps the result in model_dir, so a run never
changes its arithmetic halfway.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import time

import keras
import tensorflow as tf

from framework import hardware
from framework.precision import COMPUTE_POLICIES, dtype_policy

CLEAR_WIN = 1.15  # the smallest speed-up over float32 that moves 'auto' off float32
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "tf_loop_lab",
                         "precision")
_TIMED_STEPS = 5  # per round, after a warm-up step; 3 rounds, the fastest kept


@dataclasses.dataclass(frozen=True)
class Choice:
    """policy: one of COMPUTE_POLICIES. reason: one line for the log and the benchmark.
    step_ms: the measured milliseconds per training step by policy."""

    policy: str
    reason: str
    step_ms: dict = dataclasses.field(default_factory=dict)


def choose(build_model, input_shape, batch_size: int, device: str) -> Choice:
    """The compute policy for a new run whose model build_model() builds (in the Keras
    dtype policy in force) and whose replicas take `batch_size` examples of `input_shape`
    on `device` (its kind: 'CPU', or the accelerator's name): cached for this machine and
    model in CACHE_DIR, else measured (a few seconds) and cached.

    Builds models: the caller clears Keras's session and seeds afresh before building the
    run's own, so its layer names and initial weights do not depend on what ran here.
    """
    with dtype_policy("float32"):
        key = cache_key(describe(build_model()), input_shape, batch_size, device)
    choice = cached(key, CACHE_DIR)
    if choice is None:
        choice = decide(measure(build_model, input_shape, batch_size))
        store(key, choice, CACHE_DIR)
    return choice


def describe(model: keras.Model) -> str:
    """The model's architecture as text: Keras's JSON, or, for a model that cannot give
    one (a subclassed model without get_config), its class and its variables' shapes."""
    try:
        return model.to_json()
    except (NotImplementedError, TypeError, ValueError):
        return json.dumps([type(model).__qualname__,
                           [(v.path, list(v.shape)) for v in model.weights]])


def decide(step_ms: dict[str, float]) -> Choice:
    """The policy to run in, given the measured milliseconds per step of each: float32
    unless another is at least CLEAR_WIN times as fast."""
    fastest = min(step_ms, key=step_ms.get)
    speedup = step_ms["float32"] / step_ms[fastest]
    times = ", ".join(f"{p} {ms:.1f} ms" for p, ms in step_ms.items())
    if fastest != "float32" and speedup >= CLEAR_WIN:
        return Choice(fastest, f"measured {times} a step: {speedup:.2f}x", step_ms)
    return Choice("float32", f"measured {times} a step: no policy {CLEAR_WIN:g}x faster "
                  "than float32", step_ms)


def step_ms(model: keras.Model, input_shape, batch_size: int, rounds: int = 3) -> float:
    """Milliseconds per training step of `model` on random inputs of `input_shape` at
    `batch_size`: forward, backward and an SGD update, as a compiled step; the fastest of
    `rounds` rounds (the machine's noise only ever slows a round down)."""
    inputs = tf.random.uniform([batch_size, *input_shape])
    variables = model.trainable_variables

    @tf.function
    def train_steps(steps):
        for _ in tf.range(steps):
            with tf.GradientTape() as tape:
                outputs = tf.nest.flatten(model(inputs, training=True))
                loss = tf.add_n([tf.reduce_mean(tf.square(tf.cast(o, tf.float32)))
                                 for o in outputs])
            for variable, gradient in zip(variables, tape.gradient(loss, variables)):
                if gradient is not None:
                    variable.assign_sub(1e-6 * gradient)
        return loss

    train_steps(tf.constant(1)).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        train_steps(tf.constant(_TIMED_STEPS)).numpy()
        best = min(best, (time.perf_counter() - start) * 1000 / _TIMED_STEPS)
    return best


def measure(build_model, input_shape, batch_size: int) -> dict:
    """{policy: milliseconds per step (step_ms)} for each compute policy; build_model()
    builds the run's model in the Keras dtype policy in force."""
    timings = {}
    for policy in COMPUTE_POLICIES:
        with dtype_policy(policy):
            model = build_model()
        timings[policy] = step_ms(model, input_shape, batch_size)
    return timings


def device_kind(device: str) -> str:
    """'CPU', or the name of the accelerator `device` (a TensorFlow device name) is."""
    kind = tf.DeviceSpec.from_string(device).device_type or "CPU"
    if kind == "CPU":
        return kind
    physical = tf.config.list_physical_devices(kind)
    details = tf.config.experimental.get_device_details(physical[0]) if physical else {}
    return f"{kind} {details.get('device_name', '')}".strip()


def cache_key(model_description: str, input_shape, batch_size: int, device: str) -> str:
    """Names a decision: the machine (CPU model and flags, TensorFlow and Keras versions,
    oneDNN on or off, the device), the model's architecture and the per-replica batch."""
    machine = [platform.machine(), _cpu_model(), sorted(hardware.cpu_flags()),
               tf.__version__, keras.__version__, hardware.onednn_enabled(), device]
    text = json.dumps([machine, model_description, list(input_shape), batch_size],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached(key: str, cache_dir: str) -> Choice | None:
    """The decision stored under `key`, or None (none, or unreadable: measured again)."""
    try:
        with open(_cache_file(key, cache_dir), encoding="utf-8") as f:
            stored = json.load(f)
        if stored["policy"] in COMPUTE_POLICIES:
            return Choice(stored["policy"], f"cached: {stored['reason']}",
                          stored.get("step_ms", {}))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def store(key: str, choice: Choice, cache_dir: str) -> None:
    """Keeps `choice` under `key`; a cache that cannot be written only costs a later run
    the measurement."""
    path = _cache_file(key, cache_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(choice)), encoding="utf-8")
        temporary.replace(path)  # atomic: a concurrent run reads the old file or this one
    except OSError:
        pass


def _cache_file(key: str, cache_dir: str) -> pathlib.Path:
    return pathlib.Path(cache_dir).expanduser() / f"{key}.json"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
