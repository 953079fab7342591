"""A mode run on a built run: the trainer, evaluator, observers and hooks wired into a
Controller. The one place that knows which part needs which setting.
"""

import contextlib
import functools

import gin
import tensorflow as tf
from absl import logging

from framework import assembly, pipeline, registry
from framework.assembly import Run
from framework.cadence import Cadence
from framework.checkpoints import BestCheckpoint
from framework.controller import MODES, Cadences, Controller
from framework.errors import UserError
from framework.eval_images import EvalImages
from framework.evaluator import Evaluator
from framework.histograms import WeightHistograms
from framework.hooks import Hook, StopRequest
from framework.monitoring import GraphTrace, Monitoring, Profiler, RunDescription, hyperparameters
from framework.run_record import RunRecord
from framework.summaries import ScalarSummaries, Summaries


def run_mode(experiment, model_dir: str, mode: str, checkpoint: str = "latest",
             stop: StopRequest | None = None) -> dict:
    """Builds the run `experiment` describes in `model_dir`, then trains and/or evaluates.

    Returns what Controller.run returns. `checkpoint` ('latest' or 'best') is what
    --mode=eval evaluates; `stop` lets the caller (signal handlers) end training early.
    """
    if mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got '{mode}'.")
    run = assembly.build(experiment, model_dir, checkpoint if mode == "eval" else "latest")
    if mode == "eval" and run.restored_from is None:
        raise UserError(f"--mode=eval needs a checkpoint, and {model_dir} has no {checkpoint} "
                        "one. Train first (--mode=train_and_eval).")
    trains = mode != "eval"
    if trains and run.restored_from:
        logging.info("This run resumed from %s (step %d).", run.restored_from, run.step)
    # A training run holds model_dir (through its chief, the only worker writing there);
    # evaluating a run that is still training is allowed. Held before anything below
    # computes (feature caches) or writes.
    with run.run_dir.lock() if trains and run.is_chief else contextlib.nullcontext():
        summaries = Summaries(run.run_dir)
        try:
            controller = build_controller(run, experiment, mode, summaries, stop)
            return controller.run(mode, training_inputs(run, experiment))
        finally:
            summaries.close()


def training_inputs(run: Run, experiment):
    """start step -> the run's training iterators positioned there (Controller.train's
    make_inputs)."""
    def make_inputs(start: int) -> list:
        return pipeline.training_iterators(
            run.strategy, run.data, run.schedule, experiment.batch_size, experiment.seed,
            experiment.shuffle_buffer, start, experiment.train_steps)
    return make_inputs


def build_controller(run: Run, experiment, mode: str, summaries: Summaries,
                     stop: StopRequest | None = None, extra_hooks=()) -> Controller:
    """The controller of `run` for `mode`, with the trainer, evaluator, observers and
    hooks `experiment`'s settings ask for (plus `extra_hooks`, e.g. the benchmark's clock).
    Builds the data streams it needs, so call it inside the run's lock."""
    hooks = [registry.build(hook) for hook in experiment.hook_plugins] + list(extra_hooks)
    for hook in hooks:
        if not isinstance(hook, Hook):
            raise UserError(f"Experiment.hooks holds {hook!r}, which is not a hook: a hook "
                            "plugin must return a framework.hooks.Hook (see README, Hooks).")
    trains, evaluates = mode != "eval", mode != "train"
    monitoring: Monitoring = experiment.monitoring
    observers = _chief_observers(run, experiment, monitoring, summaries) if run.is_chief else []
    if trains and experiment.best_checkpoint_metric:
        observers.append(BestCheckpoint(run.checkpoints, experiment.best_checkpoint_metric,
                                        experiment.best_checkpoint_mode))
    return Controller(
        trainer=assembly.build_trainer(run, experiment, skip_nonfinite_steps=any(
            hook.skips_nonfinite_steps for hook in hooks)) if trains else None,
        evaluator=_evaluator(run, experiment.batch_size, monitoring) if evaluates else None,
        checkpoints=run.checkpoints,
        cadences=Cadences(
            summaries=Cadence(experiment.summary_every),
            checkpoints=Cadence(experiment.checkpoint_every),
            evaluation=Cadence(experiment.eval_every if evaluates else None),
            others=(monitoring.histogram_cadence, monitoring.profile_cadence)),
        train_steps=experiment.train_steps, steps_per_loop=experiment.steps_per_loop,
        examples_per_step=experiment.batch_size, step=run.step, model_dir=run.run_dir.path,
        stop=stop, observers=observers, hooks=hooks)


def _evaluator(run: Run, batch_size: int, monitoring: Monitoring) -> Evaluator | None:
    datasets = pipeline.evaluation_datasets(run.strategy, run.data, batch_size)
    if not datasets:
        logging.info("Dataset '%s' has no evaluation split; skipping evaluation.",
                     run.info.name)
        return None
    return Evaluator(run.strategy, run.trained_model, run.objective, datasets,
                     confusion_matrices=monitoring.images_at_eval)


def _chief_observers(run: Run, experiment, monitoring: Monitoring,
                     summaries: Summaries) -> list:
    """What the chief writes: the run's record, scalars, and what `monitoring` asks for."""
    auto = experiment.precision_policy == "auto"
    observers = [RunRecord(run.run_dir, summaries, run.info, run.compute_policy if auto else None),
                 ScalarSummaries(summaries)]
    hparams = None
    if monitoring.hparams:
        hparams = hyperparameters(gin.config_str())
        if auto:  # what it was on this machine
            hparams["Experiment.precision_policy"] = f"auto: {run.compute_policy}"
    observers.append(RunDescription(summaries, run.model if monitoring.model_summary else None,
                                    hparams, run.run_dir.name))
    if monitoring.graph:
        observers.append(GraphTrace(summaries.writer("train")))
    if monitoring.histogram_every:
        train_batch = functools.partial(_first_examples(run.examples("train")),
                                        experiment.batch_size)
        observers.append(WeightHistograms(
            monitoring.histogram_cadence, summaries.writer("train"), run.trained_model,
            run.objective, train_batch if monitoring.gradient_histograms else None))
    if monitoring.images_at_eval:
        shape = run.info.input_shape
        observers.append(EvalImages(
            summaries.writer("eval"), run.model, run.info,
            _first_examples(run.examples("eval")),
            show_examples=(len(shape) == 3 and shape[-1] in (1, 3)
                           and not run.data.features_cached),
            grid_examples=monitoring.image_examples,
            activation_examples=monitoring.activation_examples,
            activation_filters=monitoring.activation_filters,
            activation_layers=monitoring.activation_layers))
    if monitoring.profile_steps:
        observers.append(Profiler(monitoring.profile_steps, run.run_dir.profile))
    return observers


def _first_examples(examples: tf.data.Dataset | None):
    """size -> the first `size` examples of a split, in the dataset's order (the same every
    time, so summaries from different steps compare); (None, None) without the split."""
    batches = {}

    def first(size: int):
        if size not in batches:
            batches[size] = (None, None) if examples is None else next(iter(examples.batch(size)))
        return batches[size]
    return first
