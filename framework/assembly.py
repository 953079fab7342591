"""The builder: an Experiment's settings and a model_dir become the parts of a run.

`build` makes every part (strategy, datasets, model, optimizer groups, objective, hooks,
global step, checkpoints), checks them against each other and restores a checkpoint, inside the
strategy's scope, and writes nothing. Training (framework.modes), --mode=predict and the
benchmark all start here; nothing else needs to know how a run is put together.
"""

import dataclasses
import tempfile
from collections.abc import Callable

import gin
import keras
import numpy as np
import tensorflow as tf

from framework import auto_precision, distribute, pipeline, precision, run_length, runtime
from framework.checkpoints import Checkpoints, initialize_model, require_best
from framework.data import Dataset, DatasetInfo, combined_info
from framework.errors import UserError
from framework.feature_cache import feature_caches
from framework.hooks import Hook
from framework.objective import Objective, objective_for
from framework.optimization import optimizer_groups
from framework.plugin_checks import (build_plugin, check_kinds, check_model_fits_data,
                                     plugin_name)
from framework.run_dir import RunDir
from framework.trainer import Trainer


@dataclasses.dataclass
class Run:
    """The parts of one run, built and checked, its checkpoint (if any) restored.

    model is the whole model (what predictions and exports use); trained_model is what the
    steps train: the model, or its head alone when a frozen extractor's features are cached;
    data gives the examples each split feeds the trained model.
    """

    run_dir: RunDir
    strategy: tf.distribute.Strategy
    datasets: list[Dataset]
    info: DatasetInfo
    schedule: np.ndarray | None  # which dataset feeds each step (several datasets)
    compute_policy: str  # what precision_policy became ('auto' resolved)
    precision_reason: str  # why: set in the config, measured, cached, kept from the start
    model: keras.Model
    trained_model: keras.Model
    data: pipeline.RunData
    optimizer: keras.optimizers.Optimizer
    optimizer_groups: list  # [(optimizer, variable indices)], see framework.optimization
    global_step: tf.Variable
    loss_fn: object
    objective: Objective
    hooks: list[Hook]
    checkpoints: Checkpoints
    restored_from: str | None
    is_chief: bool  # the worker that writes into model_dir

    @property
    def step(self) -> int:
        return int(self.global_step.numpy())



def build(experiment, model_dir: str, checkpoint: str = "latest") -> Run:
    """The run `experiment` (an Experiment's settings) describes in `model_dir`, with its
    'latest' checkpoint restored when there is one, or its 'best' one (a UserError when
    there is none); writes nothing."""
    run_dir = RunDir(model_dir)
    if checkpoint == "best":
        require_best(run_dir, experiment.best_checkpoint_metric)
    plugins = experiment.plugins
    # Every setting holds a plugin of its kind: checked before anything slow is built.
    check_kinds(plugins, experiment.hook_plugins)
    runtime.set_thread_pools(experiment.threads)
    # The strategy first: splitting the CPU into logical devices must precede any op.
    strategy = (build_plugin("strategy", plugins["strategy"], tf.distribute.Strategy)
                if plugins["strategy"] is not None else tf.distribute.get_strategy())
    runtime.seed_everything(experiment.seed, experiment.deterministic)
    dataset_plugins = plugins["dataset"]
    datasets = [build_plugin("dataset", plugin, Dataset)
                for plugin in (dataset_plugins if isinstance(dataset_plugins, (list, tuple))
                               else [dataset_plugins])]
    info = combined_info([dataset.info for dataset in datasets])
    schedule = pipeline.dataset_schedule(len(datasets), experiment.dataset_schedule,
                                         experiment.dataset_weights, experiment.train_steps,
                                         experiment.seed)
    compute_policy, precision_reason = precision.resolve(
        experiment.precision_policy, _saved_compute_policy(experiment.precision_policy, run_dir),
        lambda: _choose_auto(strategy, plugins["model"], info, experiment.batch_size))
    # The model starts from the same weights whether or not 'auto' was measured just now.
    runtime.seed_everything(experiment.seed, experiment.deterministic)
    with strategy.scope():
        with precision.dtype_policy(compute_policy):
            model = build_plugin("model", plugins["model"], keras.Model, info, info=info)
        trained_model, caches = feature_caches(
            model, datasets, experiment.cache_features,
            experiment.feature_cache_dir or run_dir.feature_cache)
        with run_length.training_for(experiment.train_steps):
            optimizer = build_plugin("optimizer", plugins["optimizer"],
                                     keras.optimizers.Optimizer)
        # Keras 3 creates optimizer slots lazily; they must exist inside the scope before
        # the first traced step and before a restore, or restoring skips them.
        # (optimizer_groups builds them; copies serve learning-rate multipliers.)
        groups = optimizer_groups(trained_model, optimizer)
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    loss_fn = build_plugin("loss", plugins["loss"], Callable)
    objective = objective_for(model, info, loss_fn, experiment.metrics, datasets)
    for dataset in datasets:
        check_model_fits_data(model, plugin_name(plugins["model"]), objective, dataset)
    # Before the restore: a config diff shown on a failed restore must see their bindings.
    hooks = [build_plugin("hook", hook, Hook, setting="hooks")
             for hook in experiment.hook_plugins]
    is_chief = strategy.extended.should_checkpoint
    checkpoints = _checkpoints(run_dir, experiment.max_checkpoints_to_keep, is_chief, model,
                               optimizer, groups, global_step)
    restored_from = _restore(checkpoints, checkpoint, run_dir, model, experiment.init_checkpoint)
    return Run(run_dir, strategy, datasets, info, schedule, compute_policy, precision_reason,
               model, trained_model, pipeline.RunData(datasets, caches), optimizer, groups,
               global_step, loss_fn, objective, hooks, checkpoints, restored_from, is_chief)


def build_trainer(run: Run, experiment) -> Trainer:
    """The compiled training steps for `run`, as `experiment`'s settings and the run's
    hooks ask."""
    return Trainer(run.strategy, run.trained_model, run.objective, run.optimizer_groups,
                   experiment.batch_size, run.global_step, experiment.clip_gradient_norm,
                   skip_nonfinite_steps=any(hook.skips_nonfinite_steps for hook in run.hooks),
                   schedule=run.schedule, jit_compile=experiment.jit_compile,
                   optimizer=run.optimizer)


def _choose_auto(strategy, model_plugin, info: DatasetInfo,
                 global_batch_size: int) -> auto_precision.Choice:
    """What 'auto' becomes in a new run: timed (or cached) on a replica's device. In a
    cluster every worker must compute alike: a faster policy only when all chose it."""
    device = _replica_devices(strategy)[0]
    # Fresh layer names, so that the model's description (the cache key) and the run's
    # own model do not depend on what else this process has built.
    keras.backend.clear_session(free_memory=False)
    with tf.device(device):
        choice = auto_precision.choose(
            lambda: build_plugin("model", model_plugin, keras.Model, info, info=info),
            info.input_shape, global_batch_size // strategy.num_replicas_in_sync,
            auto_precision.device_kind(device))
    keras.backend.clear_session(free_memory=False)
    if distribute.is_cluster(strategy):  # every worker takes part in the all-reduce
        faster = choice.policy != "float32"
        votes = distribute.cluster_sum(strategy)(int(faster))
        if faster and votes < strategy.num_replicas_in_sync:
            return auto_precision.Choice(
                "float32", f"not every worker chose {choice.policy} (here: {choice.reason})")
    return choice


def _replica_devices(strategy) -> list[str]:
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: its default device
        return [tf.config.list_logical_devices("GPU")[0].name
                if tf.config.list_logical_devices("GPU") else "/cpu:0"]


def _saved_compute_policy(requested: str, run_dir: RunDir) -> str | None:
    """What 'auto' became when this run started (None: a new run, or a named policy)."""
    saved = run_dir.saved_compute_policy() if requested == "auto" else None
    return None if saved is None else precision.check_compute_policy(*saved)


def _checkpoints(run_dir, max_to_keep, is_chief, model, optimizer, groups,
                 global_step) -> Checkpoints:
    # Every worker of a multi-worker run restores from model_dir and takes part in saving,
    # but only the chief writes there; the others save into a scratch folder.
    return Checkpoints(
        run_dir, max_to_keep,
        save_dir=None if is_chief else tempfile.mkdtemp(prefix="worker-checkpoints-"),
        model=model, optimizer=optimizer, global_step=global_step,
        **({"scaled_optimizers": [group[0] for group in groups[1:]]} if len(groups) > 1
           else {}),
        # Keras keeps layers' random state (Dropout's seed generators) outside the model's
        # checkpointed variables; without it a resumed run draws other masks.
        rng=[generator.state for layer in model._flatten_layers()  # pylint: disable=protected-access
             for generator in getattr(layer, "_seed_generators", [])])


def _restore(checkpoints: Checkpoints, which: str, run_dir: RunDir, model,
             init_checkpoint: str | None) -> str | None:
    """Restores `which` checkpoint of this run; else, for a new run, the model weights of
    init_checkpoint (another run's checkpoint, by structure, or a Keras weights file, by
    layer name: framework.checkpoints.initialize_model). Returns what was restored from
    (None: nothing of this run's)."""
    try:
        restored = checkpoints.restore(which)
    except UserError as error:
        changes = run_dir.config_changes(gin.operative_config_str())
        if not changes:
            raise
        raise UserError(f"{error}\nThe config changed since that run:\n{changes}") from error
    if restored is None and init_checkpoint:
        initialize_model(model, init_checkpoint)
    return restored
