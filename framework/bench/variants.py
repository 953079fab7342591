"""One benchmark variant, run in its own worker process; each returns its figures as a dict.

Every variant starts from the run the config describes, made by framework.assembly.build,
so the loop and fit see the same model, optimizer, data pipeline and global batch.
"""

import os
import sys
import tempfile
import time

import gin
import keras

from framework import assembly, modes, tasks
from framework.bench import measure
from framework.data import evaluation_batches, training_batches
from framework.errors import UserError
from framework.experiment import Experiment
from framework.hooks import Hook
from framework.summaries import Summaries


class _Clock(Hook):
    """Times the loop: the end of the first host call and of the warm-up."""

    def __init__(self, warmup: int):
        self.warmup, self.first_call, self.warm = warmup, None, None

    def after_train_loop(self, context, step, loop):
        now = time.perf_counter()
        self.first_call = self.first_call or now
        if step >= self.warmup and self.warm is None:
            self.warm = (now, step)


def run_loop(experiment: Experiment, run: assembly.Run, warmup: int,
             input_wait_steps: int) -> dict:
    """The framework's loop as the main job runs it (summaries, checkpoints, monitoring),
    timed after `warmup` steps; then the input wait over `input_wait_steps` more steps."""
    clock = _Clock(warmup)
    summaries = Summaries(run.run_dir)
    controller = modes.build_controller(run, experiment, "train", summaries,
                                        extra_hooks=[clock])
    streams = []  # held: releasing an autotuned stream mid-way waits (see modes.run_mode)
    controller.train(modes.training_inputs(run, experiment, keep_alive=streams))
    summaries.close()
    end = time.perf_counter()
    peak_rss_mb = measure.peak_rss_mb()  # before the input-wait measurement's own stream
    warm_at, warm_step = clock.warm
    seconds, steps = end - warm_at, experiment.train_steps - warm_step
    if steps == 0:
        raise UserError(f"No step was timed: the loop ran {experiment.steps_per_loop} steps "
                        "per call. Pass --steps and --warmup_steps of at least "
                        "Experiment.steps_per_loop.")
    iterator = _warm_iterator(experiment, run, controller.trainer, input_wait_steps)
    return {"seconds": seconds, "steps": steps, "first_call_at": clock.first_call,
            "peak_rss_mb": peak_rss_mb,
            "input_wait_share": measure.input_wait_share(controller.trainer, iterator,
                                                         input_wait_steps)}


def _warm_iterator(experiment: Experiment, run: assembly.Run, trainer, steps: int):
    """An iterator over `steps` + 1 batches of the run's own training stream, the first
    already trained on (tracing and the stream's start stay out of any timing)."""
    batches = training_batches(run.data.examples("train"), experiment.batch_size, experiment.seed,
                               shuffle_buffer=experiment.shuffle_buffer, num_steps=steps + 1,
                               augment=run.data.augment())
    iterator = iter(run.strategy.experimental_distribute_dataset(batches))
    measure.seconds_for(trainer, iterator, 1)
    return iterator


def run_fit(experiment: Experiment, run: assembly.Run, warmup: int, steps: int,
            per_call: int, plain: bool = False) -> dict:
    """keras.Model.fit on the run's model, optimizer and loss, `per_call` steps per
    execution. plain: the classic pipeline (a shuffle buffer of the whole epoch, then
    batch)."""
    _single_output(run, "The fit variants")
    model = run.model
    with run.strategy.scope():
        model.compile(optimizer=run.optimizer, loss=run.loss_fn, steps_per_execution=per_call)
    batches = training_batches(run.data.examples("train"), experiment.batch_size, experiment.seed,
                               shuffle_buffer=run.info.train_size if plain else None)
    warmup = max(per_call, warmup - warmup % per_call)
    timed = steps - steps % per_call
    model.fit(batches, steps_per_epoch=per_call, epochs=1, verbose=0)
    first_call = time.perf_counter()
    if warmup > per_call:
        model.fit(batches, steps_per_epoch=warmup - per_call, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=timed, epochs=1, verbose=0)
    return {"seconds": time.perf_counter() - start, "steps": timed, "first_call_at": first_call}


def run_fit_job() -> dict:
    """model.fit over the config's training steps in epochs of eval_every steps, with
    validation after each and the two callbacks a Keras user adds for the same outputs."""
    with tempfile.TemporaryDirectory(prefix="bench-fit-job-") as model_dir:
        experiment = Experiment()
        run = assembly.build(experiment, model_dir)
        _single_output(run, "fit_job")
        if not experiment.eval_every:
            raise UserError("fit_job needs Experiment.eval_every set (fit's epoch length).")
        model = run.model
        with run.strategy.scope():
            model.compile(optimizer=run.optimizer, loss=run.loss_fn,
                          metrics=tasks.default_metrics(run.info.task))
        epochs = experiment.train_steps // experiment.eval_every
        history = model.fit(
            training_batches(run.data.examples("train"), experiment.batch_size, experiment.seed),
            epochs=epochs, steps_per_epoch=experiment.eval_every, verbose=0,
            validation_data=evaluation_batches(run.data.examples("eval"), experiment.batch_size),
            callbacks=[keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")),
                       keras.callbacks.ModelCheckpoint(
                           os.path.join(model_dir, "epoch{epoch}.keras"))])
    return {"variant": "fit_job", "trained_steps": epochs * experiment.eval_every,
            **{f"final_eval_{name[4:]}": values[-1]
               for name, values in history.history.items() if name.startswith("val_")}}


def run_feature_cache() -> dict:
    """One epoch of training steps recomputing the frozen extractor's features, then one
    on cached features (tracing and filling the cache excluded)."""
    seconds = {}
    for cache in (False, True):
        gin.bind_parameter("Experiment.cache_features", cache)
        with tempfile.TemporaryDirectory(prefix="bench-feature-cache-") as model_dir:
            experiment = Experiment()
            run = assembly.build(experiment, model_dir)
            if cache and not run.data.features_cached:
                raise UserError("The feature_cache variant needs a model with a frozen "
                                "feature extractor and a dataset that allows caching (see "
                                "Experiment.cache_features), as in gin/transfer_inception.gin.")
            trainer = assembly.build_trainer(run, experiment)
            steps = max(1, run.info.train_size // experiment.batch_size)
            iterator = _warm_iterator(experiment, run, trainer, steps)  # fills the cache first
            seconds[cache] = measure.seconds_for(trainer, iterator, steps)
    return {"variant": "feature_cache", "epoch_steps": steps,
            "epoch_seconds_recomputing": seconds[False], "epoch_seconds_cached": seconds[True],
            "cache_speedup": seconds[False] / seconds[True]}


def _single_output(run: assembly.Run, what: str) -> None:
    if run.info.heads or len(run.datasets) > 1:
        raise UserError(f"{what} compare single-output models on one dataset.")


def worker(variant: str, steps: int, warmup: int | None, launched_at: float | None,
           report) -> None:
    """Runs one variant on the parsed gin config and calls report(figures).

    steps, warmup: timed and untimed training steps (warmup None: steps_per_loop).
    launched_at: when the parent launched this process (time.time()), for start-up time.
    A loop variant then leaves the process at once, as framework.main does; the others
    return, so that their exit is timed as a Keras script's would be.
    """
    process_start = time.perf_counter() - (time.time() - (launched_at or time.time()))
    if variant in ("feature_cache", "fit_job"):
        report(run_feature_cache() if variant == "feature_cache" else run_fit_job())
        return
    steps_per_loop = Experiment().steps_per_loop  # reads gin, builds nothing
    warmup = warmup or steps_per_loop
    if variant.startswith("loop"):
        gin.bind_parameter("Experiment.train_steps", warmup + steps)
        gin.bind_parameter("Experiment.eval_every", None)
    if variant == "loop_scalars":
        for name in ("histogram_every", "images_at_eval", "graph", "model_summary", "hparams"):
            gin.bind_parameter(f"Monitoring.{name}", None if name == "histogram_every" else False)
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as model_dir:
        experiment = Experiment()
        run = assembly.build(experiment, model_dir)
        if variant.startswith("loop"):
            timing = run_loop(experiment, run, warmup, input_wait_steps=min(steps, 100))
        else:
            timing = run_fit(experiment, run, warmup, steps,
                             steps_per_loop if variant == "fit_spe" else 1,
                             plain=variant == "fit_plain")
        result = {
            "variant": variant,
            "examples_per_second": timing["steps"] * experiment.batch_size / timing["seconds"],
            "step_ms": 1000 * timing["seconds"] / timing["steps"],
            "timed_steps": timing["steps"],
            "seconds_to_first_call_end": timing["first_call_at"] - process_start,
            "peak_rss_mb": timing.get("peak_rss_mb") or measure.peak_rss_mb(),
            "precision": run.compute_policy, "precision_reason": run.precision_reason,
            **({"input_wait_share": timing["input_wait_share"]}
               if "input_wait_share" in timing else {}),
        }
        flops = measure.training_flops_per_example(run.model)
        if flops:
            result["gflops_per_second"] = result["examples_per_second"] * flops / 1e9
        report(result)
        if variant.startswith("loop"):
            sys.stderr.flush()
            os._exit(0)  # pylint: disable=protected-access
