"""What the benchmark measures besides wall time: the input wait from a profiler trace,
training FLOPs, the machine's FP32 matmul rate, and peak memory."""

import pathlib
import resource
import tempfile
import time

import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the profiler's trace format

from framework import capabilities


def peak_rss_mb() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seconds_for(trainer, iterator, steps: int) -> float:
    """Wall seconds of `steps` training steps, until their results are read back."""
    start = time.perf_counter()
    trainer.train(iterator, steps)
    trainer.results()  # waits for the steps
    return time.perf_counter() - start


def input_wait_share(trainer, iterator, steps: int) -> float:
    """The share of `steps` training steps' time spent inside `IteratorGetNext` (the step
    blocked on its input: waiting for the pipeline and taking the batch), from TensorFlow's
    profiler (the input-pipeline analysis of TensorBoard's profile tab, computed here from
    the trace). `iterator` should be warm: its first batch already trained on."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        seconds = seconds_for(trainer, iterator, steps)
        tf.profiler.experimental.stop()
        waited_ps = sum(duration for path in pathlib.Path(logdir).rglob("*.xplane.pb")
                        for duration in _event_durations_ps(path, "IteratorGetNextOp::DoCompute"))
    return waited_ps / 1e12 / seconds


def _event_durations_ps(path: pathlib.Path, name: str):
    """Durations (picoseconds) of the trace events called `name` in a profile file."""
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    for plane in space.planes:
        ids = {key for key, metadata in plane.event_metadata.items() if metadata.name == name}
        for line in plane.lines:
            yield from (event.duration_ps for event in line.events if event.metadata_id in ids)


def training_flops_per_example(model: keras.Model) -> float | None:
    """Floating-point operations of one training example: 3 x its forward pass as
    TensorFlow's profiler counts it (convolutions, matrix products, bias adds), the
    backward pass costing about two forward passes when every layer trains. None for a
    model with a frozen feature extractor (the 3 would overstate it), or one whose forward
    pass cannot be traced with fully known shapes for one example."""
    if capabilities.frozen_features(model) is not None:
        return None
    try:
        spec = [tf.TensorSpec([1, *x.shape[1:]], x.dtype) for x in model.inputs]
        if any(None in s.shape for s in spec):
            return None  # the profiler would skip the ops of unknown size and undercount
        graph = tf.function(lambda *x: model(x[0] if len(x) == 1 else list(x))
                            ).get_concrete_function(*spec).graph
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        forward = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    except Exception:  # pylint: disable=broad-except
        return None  # a figure the benchmark leaves out, not a reason to lose the timing
    return 3.0 * forward or None


def fp32_matmul_gflops(size: int = 2048, rounds: int = 5, per_round: int = 4) -> float:
    """The float32 rate a large matrix product reaches on this machine, best of `rounds`:
    the practical peak against which the variants' GFLOP/s are compared (the nominal one,
    cores x clock x FLOPs per cycle, needs a sustained clock that a virtual machine does
    not reliably show)."""
    a = tf.random.normal([size, size], seed=1)
    product = tf.function(lambda x: tf.linalg.matmul(x, x))
    product(a).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            result = product(a)
        result.numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * per_round / best / 1e9
