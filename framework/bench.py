"""Benchmark: the framework's loop against keras.Model.fit on the same work.

    python -m framework.bench --gin_file=gin/cnn.gin [--steps=300] [--repeats=3] \\
        [--variants=fit,fit_spe,loop] [--output=bench.json]

Builds the experiment a gin file describes (same model, data pipeline, global batch and
optimizer) and trains it `--steps` timed steps after `--warmup_steps` untimed ones, once per
variant and round, each in a fresh process, variants interleaved within a round:

  fit             keras.Model.fit, steps_per_execution=1, no callbacks
  fit_plain       keras.Model.fit as a plain Keras script runs it: TensorFlow's own
                  defaults (float32; on Linux, oneDNN only on CPUs with AVX-512 VNNI/BF16,
                  AVX-VNNI or AMX, while the framework turns it on everywhere, see
                  framework/__init__.py) and the classic per-example shuffle + batch
  fit_spe         keras.Model.fit, steps_per_execution = the config's steps_per_loop
  loop            the framework's loop with the config's summaries and checkpoints
  loop_scalars    the same with TensorBoard limited to scalars (what `Monitoring` costs)
  main_job        the whole main job, `python -m framework.main` with the config as it is:
                  start to exit, evaluations, checkpoints and summaries included
  fit_job         what a plain Keras script does for the same job: model.fit for the same
                  epochs (eval_every steps each, validating after each) with a TensorBoard
                  and a ModelCheckpoint callback, start to exit
  feature_cache   for a model with a frozen feature extractor (the transfer configs): one
                  epoch of the loop's training steps recomputing the features, and one on
                  cached features (`python -m framework.bench_feature_cache` runs it on
                  generated images)

Reports medians over rounds, ratios to `fit` (and `fit_plain`, when it runs) within each
round (the machine is noisy),
peak memory, time from process start to the end of the first training call, time from the
last output line to process exit, the training GFLOP/s (TensorFlow's profiler counts the
forward pass; training is taken as 3x that) as a share of the FP32 peak (what a large
float32 matmul reaches on the same machine), and, for the loop, the share of step time
spent waiting for input (time inside `IteratorGetNext` in a profiler trace of more steps).
Prints a table and writes JSON.
"""

import json
import os
import pathlib
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import gin
import keras
import tensorflow as tf
from absl import app, flags, logging
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # the profiler's trace format

from framework import config, hardware, registry
from framework.data import evaluation_batches, training_batches
from framework.errors import UserError
from framework.experiment import Experiment
from framework.hooks import Hook
from framework.metrics import default_metrics

VARIANTS = ("fit", "fit_plain", "fit_spe", "loop", "loop_scalars", "main_job",
            "fit_job", "feature_cache")
RESULT_PREFIX = "BENCH_RESULT "

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files of the experiment.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
STEPS = flags.DEFINE_integer("steps", 300, "Timed training steps per variant (the *_job "
                             "variants run the config's whole job instead).")
WARMUP = flags.DEFINE_integer("warmup_steps", None,
                              "Untimed steps first (tracing); default: steps_per_loop.")
REPEATS = flags.DEFINE_integer("repeats", 3, "Rounds; variants alternate within a round.")
VARIANT_LIST = flags.DEFINE_list("variants", ["fit", "fit_spe", "loop"],
                                 f"Which of {', '.join(VARIANTS)}.")
OUTPUT = flags.DEFINE_string("output", "bench.json", "Where the JSON results go.")
WORKER = flags.DEFINE_enum("worker", None, VARIANTS, "Internal: run one variant and report.")
LAUNCHED_AT = flags.DEFINE_float("launched_at", None, "Internal: the parent's launch time.")


# -- one variant, in its own process ------------------------------------------------------

class _Clock(Hook):
    """Times the loop: the end of the first host call and of the warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.first_call, self.warm = warmup, None, None

    def after_train_loop(self, experiment, step, loop):
        now = time.perf_counter()
        self.first_call = self.first_call or now
        if step >= self.warmup and self.warm is None:
            self.warm = (now, step)


def _run_loop(experiment: Experiment, warmup: int) -> dict:
    clock = _Clock(warmup)
    experiment.hooks.append(clock)
    experiment.train(evaluate=False)
    experiment.summaries.close()
    end = time.perf_counter()
    peak_rss_mb = _peak_rss_mb()  # before the input-wait measurement builds its own stream
    warm_at, warm_step = clock.warm
    seconds, steps = end - warm_at, experiment.train_steps - warm_step
    if steps == 0:
        raise UserError(f"No step was timed: the loop ran {experiment.steps_per_loop} steps "
                        "per call. Pass --steps and --warmup_steps of at least "
                        "Experiment.steps_per_loop.")
    return {"seconds": seconds, "steps": steps, "first_call_at": clock.first_call,
            "peak_rss_mb": peak_rss_mb, "input_wait_share": _input_wait_share(experiment)}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _input_wait_share(experiment: Experiment) -> float:
    """The share of the loop's time spent inside `IteratorGetNext` (the step blocked on its
    input: waiting for the pipeline and taking the batch), from TensorFlow's profiler over
    up to 100 more steps of the same stream (the input-pipeline analysis of TensorBoard's
    profile tab, computed here from the trace)."""
    steps = min(STEPS.value, 100)
    iterator = _warm_iterator(experiment, steps)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        seconds = _seconds_for(experiment, iterator, steps)
        tf.profiler.experimental.stop()
        waited_ps = sum(duration for path in pathlib.Path(logdir).rglob("*.xplane.pb")
                        for duration in _event_durations_ps(path, "IteratorGetNextOp::DoCompute"))
    return waited_ps / 1e12 / seconds


def _warm_iterator(experiment: Experiment, steps: int):
    """An iterator over `steps` + 1 batches of the experiment's own training stream, the
    first already trained on (tracing and the stream's start stay out of any timing)."""
    batches = training_batches(experiment._examples("train"), experiment.batch_size,  # pylint: disable=protected-access
                               experiment.seed, shuffle_buffer=experiment.shuffle_buffer,
                               num_steps=steps + 1, augment=experiment.dataset.augment)
    iterator = iter(experiment.strategy.experimental_distribute_dataset(batches))
    _seconds_for(experiment, iterator, 1)
    return iterator


def _seconds_for(experiment: Experiment, iterator, steps: int) -> float:
    """Wall seconds of `steps` training steps, until their results are read back."""
    start = time.perf_counter()
    experiment.trainer.train(iterator, steps)
    experiment.trainer.train_results()  # waits for the steps
    return time.perf_counter() - start


def _event_durations_ps(path: pathlib.Path, name: str):
    """Durations (picoseconds) of the trace events called `name` in a profile file."""
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    for plane in space.planes:
        ids = {key for key, metadata in plane.event_metadata.items() if metadata.name == name}
        for line in plane.lines:
            yield from (event.duration_ps for event in line.events if event.metadata_id in ids)


def _training_flops_per_example(model: keras.Model) -> float | None:
    """Floating-point operations of one training example: 3 x its forward pass as
    TensorFlow's profiler counts it (convolutions, matrix products, bias adds), the
    backward pass costing about two forward passes when every layer trains. None for a
    model with a frozen feature extractor (the 3 would overstate it), or one whose forward
    pass cannot be traced with fully known shapes for one example."""
    if getattr(model, "frozen_features", None) is not None:
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


def _fp32_matmul_gflops(size: int = 2048, rounds: int = 5, per_round: int = 4) -> float:
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


def _run_feature_cache() -> dict:
    """One epoch of training steps recomputing the frozen extractor's features, then one
    on cached features (tracing and filling the cache excluded)."""
    seconds = {}
    for cache in (False, True):
        gin.bind_parameter("Experiment.cache_features", cache)
        with tempfile.TemporaryDirectory(prefix="bench-feature-cache-") as model_dir:
            experiment = Experiment()
            experiment.build(model_dir)
            if cache and experiment.feature_caches is None:
                raise UserError("The feature_cache variant needs a model with a frozen "
                                "feature extractor and a dataset that allows caching (see "
                                "Experiment.cache_features), as in gin/transfer_inception.gin.")
            steps = max(1, experiment.info.train_size // experiment.batch_size)
            iterator = _warm_iterator(experiment, steps)  # fills the feature cache first
            seconds[cache] = _seconds_for(experiment, iterator, steps)
    return {"variant": "feature_cache", "epoch_steps": steps,
            "epoch_seconds_recomputing": seconds[False], "epoch_seconds_cached": seconds[True],
            "cache_speedup": seconds[False] / seconds[True]}


def _run_fit(experiment: Experiment, warmup: int, per_call: int, plain: bool = False) -> dict:
    """plain: the classic pipeline (a shuffle buffer of the whole epoch, then batch)."""
    if experiment.info.heads or len(experiment.datasets) > 1:
        raise UserError("The fit variants compare single-output models on one dataset.")
    model = experiment.model
    with experiment.strategy.scope():
        model.compile(optimizer=experiment.optimizer, loss=experiment.loss_fn,
                      steps_per_execution=per_call)
    batches = training_batches(experiment._examples("train"), experiment.batch_size,  # pylint: disable=protected-access
                               experiment.seed,
                               shuffle_buffer=experiment.info.train_size if plain else None)
    warmup = max(per_call, warmup - warmup % per_call)
    timed = STEPS.value - STEPS.value % per_call
    model.fit(batches, steps_per_epoch=per_call, epochs=1, verbose=0)
    first_call = time.perf_counter()
    if warmup > per_call:
        model.fit(batches, steps_per_epoch=warmup - per_call, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=timed, epochs=1, verbose=0)
    return {"seconds": time.perf_counter() - start, "steps": timed, "first_call_at": first_call}


def _run_fit_job() -> dict:
    """model.fit over the config's training steps in epochs of eval_every steps, with
    validation after each and the two callbacks a Keras user adds for the same outputs."""
    with tempfile.TemporaryDirectory(prefix="bench-fit-job-") as model_dir:
        experiment = Experiment()
        experiment.build(model_dir)
        if experiment.info.heads or len(experiment.datasets) > 1 or not experiment.eval_every:
            raise UserError("fit_job compares single-output models on one dataset, with "
                            "Experiment.eval_every set (fit's epoch length).")
        model = experiment.model
        with experiment.strategy.scope():
            model.compile(optimizer=experiment.optimizer, loss=experiment.loss_fn,
                          metrics=default_metrics(experiment.info))
        epochs = experiment.train_steps // experiment.eval_every
        history = model.fit(
            training_batches(experiment._examples("train"), experiment.batch_size,  # pylint: disable=protected-access
                             experiment.seed),
            epochs=epochs, steps_per_epoch=experiment.eval_every, verbose=0,
            validation_data=evaluation_batches(experiment._examples("eval"),  # pylint: disable=protected-access
                                               experiment.batch_size),
            callbacks=[keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
                       keras.callbacks.ModelCheckpoint(
                           os.path.join(model_dir, "epoch{epoch}.keras"))])
    return {"variant": "fit_job", "trained_steps": epochs * experiment.eval_every,
            **{f"final_eval_{name[4:]}": values[-1]
               for name, values in history.history.items() if name.startswith("val_")}}


def worker(variant: str) -> None:
    """Runs one variant and prints its figures as one JSON line."""
    process_start = time.perf_counter() - (time.time() - (LAUNCHED_AT.value or time.time()))
    registry.discover()
    config.parse(GIN_FILES.value, BINDINGS.value)
    if variant in ("feature_cache", "fit_job"):
        run = _run_feature_cache if variant == "feature_cache" else _run_fit_job
        print(RESULT_PREFIX + json.dumps(run()), flush=True)
        return
    steps_per_loop = Experiment().steps_per_loop  # reads gin, builds nothing
    warmup = WARMUP.value or steps_per_loop
    if variant.startswith("loop"):
        gin.bind_parameter("Experiment.train_steps", warmup + STEPS.value)
        gin.bind_parameter("Experiment.eval_every", None)
    if variant == "loop_scalars":
        for name in ("histogram_every", "images_at_eval", "graph", "model_summary", "hparams"):
            gin.bind_parameter(f"Monitoring.{name}", None if name == "histogram_every" else False)
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as model_dir:
        experiment = Experiment()
        experiment.build(model_dir)
        if variant.startswith("loop"):
            run = _run_loop(experiment, warmup)
        else:
            run = _run_fit(experiment, warmup, steps_per_loop if variant == "fit_spe" else 1,
                           plain=variant == "fit_plain")
        result = {
            "variant": variant,
            "examples_per_second": run["steps"] * experiment.batch_size / run["seconds"],
            "step_ms": 1000 * run["seconds"] / run["steps"],
            "timed_steps": run["steps"],
            "seconds_to_first_call_end": run["first_call_at"] - process_start,
            "peak_rss_mb": run.get("peak_rss_mb") or _peak_rss_mb(),
            **({"input_wait_share": run["input_wait_share"]} if "input_wait_share" in run
               else {}),
        }
        flops = _training_flops_per_example(experiment.model)
        if flops:
            result["gflops_per_second"] = result["examples_per_second"] * flops / 1e9
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        if variant.startswith("loop"):
            # As framework.main does: leave without TensorFlow's slow teardown (the
            # experiment, still referenced here, is never destroyed).
            sys.stderr.flush()
            os._exit(0)  # pylint: disable=protected-access


# -- the parent: rounds of fresh processes ------------------------------------------------

def _launch(variant: str) -> dict:
    launched = time.time()
    gin_flags = [*[f"--gin_file={f}" for f in GIN_FILES.value],
                 *[f"--gin_bindings={b}" for b in BINDINGS.value]]
    # main_job's model_dir; the workers make their own.
    scratch = tempfile.TemporaryDirectory(prefix="bench-main-job-")
    if variant == "main_job":
        command = [sys.executable, "-m", "framework.main", *gin_flags,
                   f"--model_dir={scratch.name}"]
    else:
        command = [sys.executable, "-m", "framework.bench", f"--worker={variant}",
                   f"--launched_at={launched}", f"--steps={STEPS.value}", *gin_flags,
                   *([f"--warmup_steps={WARMUP.value}"] if WARMUP.value else [])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if variant == "fit_plain":  # what TensorFlow and Keras choose without the framework
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if hardware.tensorflow_enables_onednn() else "0"
        command.append("--gin_bindings=Experiment.precision_policy = 'float32'")
    with scratch:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        result, final = None, {}
        for line in process.stdout:
            last_line_at = time.time()
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX):])
            elif match := re.match(r"final eval (\S+): (\S+) \(step (\d+)\)", line):
                final[f"final_eval_{match[1]}"] = float(match[2])
                final["trained_steps"] = int(match[3])
        stderr = process.stderr.read()
        process.wait()
    if variant == "main_job" and final:
        result = {"variant": variant, **final}
    if result is None or process.returncode != 0:
        raise UserError(f"Benchmark variant {variant} failed (exit {process.returncode}):\n"
                        + "\n".join(stderr.strip().splitlines()[-15:]))
    exited = time.time()
    result["seconds_last_output_to_exit"] = exited - last_line_at
    if variant.endswith("_job"):
        result["job_seconds"] = exited - launched
    return result


def run_rounds(variants: list[str]) -> dict:
    peak = _fp32_matmul_gflops()
    rounds = []
    for number in range(REPEATS.value):
        round_results = {variant: _launch(variant) for variant in variants}
        baseline, fit_job = round_results.get("fit"), round_results.get("fit_job")
        plain = round_results.get("fit_plain")
        for result in round_results.values():
            if baseline and "examples_per_second" in result:
                result["ratio_to_fit"] = result["examples_per_second"] / baseline["examples_per_second"]
            if plain and "examples_per_second" in result:
                result["ratio_to_fit_plain"] = (result["examples_per_second"]
                                                / plain["examples_per_second"])
            if "gflops_per_second" in result:
                result["share_of_fp32_peak"] = result["gflops_per_second"] / peak
            if fit_job and "job_seconds" in result:
                result["time_to_fit_job"] = result["job_seconds"] / fit_job["job_seconds"]
        logging.info("round %d: %s", number + 1, {
            variant: round(result.get("examples_per_second", result.get("job_seconds", 0)), 1)
            for variant, result in round_results.items()})
        rounds.append(round_results)
    medians = {}
    for variant in variants:
        values = [r[variant] for r in rounds]
        medians[variant] = {key: statistics.median(v[key] for v in values)
                            for key in values[0] if isinstance(values[0][key], (int, float))
                            and not isinstance(values[0][key], bool)}
    return {"config": {"gin_files": GIN_FILES.value, "gin_bindings": BINDINGS.value,
                       "steps": STEPS.value, "repeats": REPEATS.value,
                       "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                       "fp32_matmul_gflops": peak},
            "medians": medians, "rounds": rounds}


COLUMNS = [("examples_per_second", "ex/s", "{:.0f}"), ("ratio_to_fit", "× fit", "{:.2f}"),
           ("ratio_to_fit_plain", "× fit_plain", "{:.2f}"),
           ("step_ms", "ms/step", "{:.1f}"), ("peak_rss_mb", "peak MB", "{:.0f}"),
           ("seconds_to_first_call_end", "start s", "{:.1f}"),
           ("seconds_last_output_to_exit", "exit s", "{:.2f}"),
           ("input_wait_share", "input wait", "{:.1%}"),
           ("gflops_per_second", "GFLOP/s", "{:.0f}"),
           ("share_of_fp32_peak", "of FP32 peak", "{:.0%}"),
           ("job_seconds", "job s", "{:.1f}"), ("time_to_fit_job", "× fit_job time", "{:.2f}"),
           ("trained_steps", "steps", "{:.0f}"),
           ("final_eval_accuracy", "eval accuracy", "{:.4f}"),
           ("epoch_seconds_recomputing", "epoch s recomputing", "{:.3f}"),
           ("epoch_seconds_cached", "epoch s cached", "{:.4f}"),
           ("cache_speedup", "cache ×", "{:.0f}")]


def table(report: dict) -> str:
    """The medians, one row per variant, with the columns some variant has."""
    columns = [column for column in COLUMNS
               if any(column[0] in values for values in report["medians"].values())]
    lines = [" | ".join(["variant", *[title for _, title, _ in columns]])]
    for variant, values in report["medians"].items():
        lines.append(" | ".join([variant, *[form.format(values[key]) if key in values else "-"
                                            for key, _, form in columns]]))
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = set(VARIANT_LIST.value) - set(VARIANTS)
    if unknown or not GIN_FILES.value:
        print(f"error: pass --gin_file and --variants from {', '.join(VARIANTS)}",
              file=sys.stderr)
        sys.exit(2)
    try:
        if WORKER.value:
            worker(WORKER.value)
            return
        report = run_rounds(VARIANT_LIST.value)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    with open(OUTPUT.value, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    print(table(report))
    peak = report["config"]["fp32_matmul_gflops"]
    print(f"(medians of {REPEATS.value} rounds; FP32 peak: a 2048x2048 float32 matmul, "
          f"{peak:.0f} GFLOP/s here; JSON in {OUTPUT.value})")


if __name__ == "__main__":
    app.run(main)
