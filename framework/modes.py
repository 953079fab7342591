"""A mode run on a built run: the trainer, evaluator, observers and hooks wired into a
Controller. The one place that knows which part needs which setting.
"""

import contextlib
import functools

import gin
import tensorflow as tf
from absl import logging

from framework import assembly, cli, distribute, pipeline
from framework.assembly import Run
from framework.cadence import Cadence
from framework.checkpoints import BestCheckpoint
from framework.console import CONSOLE, EvalLines
from framework.controller import MODES, Cadences, Controller
from framework.errors import ClusterError, UserError, first_line
from framework.eval_images import EvalImages
from framework.evaluator import Evaluator
from framework.export import check_exportable, export_after_training
from framework.histograms import WeightHistograms
from framework.hooks import StopRequest
from framework.monitoring import GraphTrace, Monitoring, Profiler, RunDescription
from framework.run_record import RunRecord, hyperparameters
from framework.summaries import ScalarSummaries, Summaries


def run_mode(experiment, model_dir: str, mode: str, checkpoint: str = "latest",
             stop: StopRequest | None = None, keep_alive: list | None = None,
             extra_hooks=()) -> dict:
    """Builds the run `experiment` describes in `model_dir`, then trains and/or evaluates.

    Returns what Controller.run returns. `checkpoint` ('latest' or 'best') is what
    --mode=eval evaluates; `stop` lets the caller (signal handlers) end training early.
    keep_alive: the run and its training streams are appended to it, for a caller that
    leaves the process without releasing them (framework.main: releasing a tf.data
    iterator that autotunes before its end waits on tf.data's autotuning thread, up to a
    minute, BUILD_NOTES.md "Prompt exit"). None: they are released when this returns.
    extra_hooks: hooks beside the experiment's own (a search trial's reporter).
    """
    if mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got '{mode}'.")
    run = assembly.build(experiment, model_dir, checkpoint if mode == "eval" else "latest")
    if stop is not None and distribute.is_cluster(run.strategy):
        # MultiWorkerMirroredStrategy puts TensorFlow's own SIGTERM handler in place of the
        # one the caller installed (BUILD_NOTES.md, "Pitfalls"): ours again, so that a
        # SIGTERM stops the whole cluster after one agreed step, with a checkpoint.
        cli.stop_on_signals(stop)
    if mode == "eval" and run.restored_from is None:
        raise UserError(f"--mode=eval needs a checkpoint, and {model_dir} has no {checkpoint} "
                        "one. Train first (--mode=train_and_eval).")
    if keep_alive is not None:
        keep_alive.append(run)
    trains = mode != "eval"
    exports = trains and run.is_chief and experiment.export_at_end
    if exports:  # before hours of training, not after them
        check_exportable(run, "Experiment.export_at_end")
    CONSOLE.line(run_header(run, experiment, mode))
    if run.restored_from:
        CONSOLE.line(f"{'resumed from' if trains else 'evaluating'} {run.restored_from} "
                     f"(step {run.step})")
    # A training run holds model_dir (through its chief, the only worker writing there);
    # evaluating a run that is still training is allowed. Held before anything below
    # computes (feature caches) or writes.
    with run.run_dir.lock() if trains and run.is_chief else contextlib.nullcontext():
        summaries = Summaries(run.run_dir)
        try:
            controller = build_controller(run, experiment, mode, summaries, stop, extra_hooks)
            with _lost_workers_named(run):
                results = controller.run(mode, training_inputs(run, experiment, keep_alive))
        finally:
            summaries.close()
            run.checkpoints.close()
        weights = small_model_weights(run.model)  # before an export restores the best
        # Training that ended (its steps done, or stopped by a hook such as early
        # stopping) is exported; one stopped by the NaN guard or a signal is not.
        if exports and results["exit_status"] == 0:
            export_after_training(run, experiment.best_checkpoint_metric)
    return {**results, "weights": weights}


@contextlib.contextmanager
def _lost_workers_named(run: Run):
    """In a multi-worker run, a collective that fails because a worker died (or timed
    out: strategies.multi_worker's timeout_seconds) becomes one ClusterError saying so."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as error:
        if not distribute.is_cluster(run.strategy):
            raise
        lines = [line.strip() for line in str(error).splitlines()]
        cause = next((line for line in lines if "aborted by" in line or "eadline" in line),
                     first_line(error))
        raise ClusterError(
            f"The cluster lost a worker ({cause}). This worker stops too. The "
            f"chief's latest checkpoint is {run.checkpoints.latest or 'none yet'}; launch "
            "every worker again to resume from it.") from error


def run_header(run: Run, experiment, mode: str) -> str:
    """The console's line about what runs where: devices, replicas, precision, steps."""
    try:
        devices = sorted({d.rsplit(":", 2)[-2] for d in run.strategy.extended.worker_devices})
    except RuntimeError:  # the default strategy: TensorFlow's first GPU, else the CPU
        devices = ["GPU" if tf.config.list_logical_devices("GPU") else "CPU"]
    replicas = run.strategy.num_replicas_in_sync
    what = (f"{experiment.train_steps} steps at batch {experiment.batch_size}"
            if mode != "eval" else "evaluation")
    why = "" if experiment.precision_policy != "auto" else f" (auto: {run.precision_reason})"
    return (f"{mode}: {what} · {'/'.join(devices)} × {replicas} "
            f"replica{'s' if replicas > 1 else ''} · precision {run.compute_policy}{why}")


# Models this small are lessons (y = 0.1·x + 0.3): their learned values are the result.
_SMALL_MODEL_PARAMETERS = 32


def small_model_weights(model) -> dict[str, list]:
    """{variable path: values} of a model with at most a few dozen parameters; {} otherwise."""
    if model.count_params() > _SMALL_MODEL_PARAMETERS:
        return {}
    return {variable.path: variable.numpy().tolist() for variable in model.weights}


def training_inputs(run: Run, experiment, keep_alive: list | None = None):
    """start step -> the run's training iterators positioned there (Controller.train's
    make_inputs); appended to `keep_alive` too, when given (see run_mode)."""
    def make_inputs(start: int) -> list:
        iterators = pipeline.training_iterators(
            run.strategy, run.data, run.schedule, experiment.batch_size, experiment.seed,
            experiment.shuffle_buffer, start, experiment.train_steps)
        if keep_alive is not None:
            keep_alive.append(iterators)
        return iterators
    return make_inputs


def build_controller(run: Run, experiment, mode: str, summaries: Summaries,
                     stop: StopRequest | None = None, extra_hooks=()) -> Controller:
    """The controller of `run` for `mode`, with the trainer, evaluator, observers and
    hooks `experiment`'s settings ask for (plus `extra_hooks`, e.g. the benchmark's clock).
    What it computes (feature caches) and writes, it does when it first needs them."""
    trains, evaluates = mode != "eval", mode != "train"
    monitoring: Monitoring = experiment.monitoring
    observers = [ScalarSummaries(summaries), EvalLines()] if run.is_chief else []
    if trains and run.is_chief:
        observers += _training_observers(run, experiment, monitoring, summaries)
    if evaluates and run.is_chief and monitoring.images_at_eval:
        observers.append(_eval_images(run, monitoring, summaries))
    if trains and experiment.best_checkpoint_metric:
        observers.append(BestCheckpoint(run.checkpoints, experiment.best_checkpoint_metric,
                                        experiment.best_checkpoint_mode))
    # Host loops end at eval_every in every mode, so hooks see the same steps in each.
    evaluation = Cadence(experiment.eval_every)
    return Controller(
        trainer=assembly.build_trainer(run, experiment) if trains else None,
        evaluator=_evaluator(run, experiment.batch_size, monitoring) if evaluates else None,
        checkpoints=run.checkpoints,
        cadences=Cadences(
            summaries=Cadence(experiment.summary_every),
            checkpoints=Cadence(experiment.checkpoint_every),
            evaluation=evaluation if evaluates else Cadence(),
            others=(monitoring.histogram_cadence, monitoring.profile_cadence,
                    *(() if evaluates else (evaluation,)))),
        train_steps=experiment.train_steps, steps_per_loop=experiment.steps_per_loop,
        examples_per_step=experiment.batch_size, step=run.step, model_dir=run.run_dir.path,
        stop=stop, observers=observers, hooks=[*run.hooks, *extra_hooks],
        any_worker_stops=(_any_worker(run.strategy) if distribute.is_cluster(run.strategy)
                          else None))


def _any_worker(strategy):
    """flag -> whether any worker of the cluster passed True."""
    total = distribute.cluster_sum(strategy)
    return lambda stops_here: total(int(stops_here)) > 0


def _evaluator(run: Run, batch_size: int, monitoring: Monitoring) -> Evaluator | None:
    if all(dataset.eval is None for dataset in run.datasets):
        logging.info("Dataset '%s' has no evaluation split; skipping evaluation.",
                     run.info.name)
        return None
    return Evaluator(run.strategy, run.trained_model, run.objective,
                     lambda: pipeline.evaluation_datasets(run.strategy, run.data, batch_size),
                     confusion_matrices=monitoring.images_at_eval)


def _training_observers(run: Run, experiment, monitoring: Monitoring,
                        summaries: Summaries) -> list:
    """What the chief writes while training: the run's record and what `monitoring` asks."""
    auto = experiment.precision_policy == "auto"
    observers = [RunRecord(run.run_dir, summaries, run.info,
                           run.compute_policy if auto else None)]
    hparams = None
    if monitoring.hparams:  # with the precision the run computes in ('auto' resolved)
        hparams = hyperparameters(gin.operative_config_str(), run.compute_policy)
    observers.append(RunDescription(summaries, run.model if monitoring.model_summary else None,
                                    hparams, run.run_dir.name))
    if monitoring.graph:
        observers.append(GraphTrace(summaries))
    if monitoring.histogram_every:
        train_batch = _first_examples(lambda: run.data.examples("train"))
        observers.append(WeightHistograms(
            monitoring.histogram_cadence, summaries, run.trained_model, run.objective,
            functools.partial(train_batch, experiment.batch_size)
            if monitoring.gradient_histograms else None))
    if monitoring.profile_steps:
        observers.append(Profiler(monitoring.profile_steps, run.run_dir.profile))
    return observers


def _eval_images(run: Run, monitoring: Monitoring, summaries: Summaries) -> EvalImages:
    shape = run.info.input_shape
    return EvalImages(
        summaries, run.model, run.info, _first_examples(lambda: run.data.examples("eval")),
        show_examples=len(shape) == 3 and shape[-1] in (1, 3) and not run.data.features_cached,
        grid_examples=monitoring.image_examples,
        activation_examples=monitoring.activation_examples,
        activation_filters=monitoring.activation_filters,
        activation_layers=monitoring.activation_layers)


def _first_examples(split):
    """size -> the first `size` examples of `split()` (a dataset or None), in the dataset's
    order: the same every time, so summaries from different steps compare; (None, None)
    without the split. Nothing is read before the first call."""
    batches = {}

    def first(size: int):
        if size not in batches:
            examples = split()
            batches[size] = (None, None) if examples is None else next(iter(examples.batch(size)))
        return batches[size]
    return first
