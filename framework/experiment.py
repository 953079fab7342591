"""The gin-configurable Experiment: builds the plugins, owns model_dir, drives the loop.

It is the controller of the design card: it decides when to train, evaluate, summarize and
checkpoint; `loop.Trainer` runs the steps. Nothing is written into model_dir until every
plugin is built, checked against the others and any checkpoint there is restored, so a
start that fails leaves model_dir as it was.
"""

import contextlib
import dataclasses
import json
import os
import tempfile
import time

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from framework import hardware, registry
from framework.checkpoints import Checkpoints
from framework.data import Dataset, combined_info, evaluation_batches, training_batches
from framework.config import config_changes
from framework.errors import UserError, first_line
from framework.fit_check import check_model_fits_data
from framework.feature_cache import FeatureCache, cache_key
from framework.loop import Trainer
from framework.model_dir_lock import ModelDirLock
from framework.monitoring import Monitor, Monitoring
from framework.optimization import optimizer_groups
from framework.metrics import default_metrics
from framework.objective import Objective, ObjectiveHead
from framework.summaries import Summaries

MODES = ("train", "eval", "train_and_eval")
DATASET_SCHEDULES = ("round_robin", "weighted")
DATASET_INFO_FILE = "dataset_info.json"
COMPUTE_POLICY_FILE = "compute_policy.txt"  # what 'auto' became when the run started
COMPUTE_POLICIES = ("float32", "mixed_bfloat16")  # Keras dtype policies a model is built in
PRECISION_POLICIES = (*COMPUTE_POLICIES, "auto")


@gin.configurable
class Experiment:
    """One training run: a dataset, a model, a loss and an optimizer under a strategy.

    Plugins are bound as factories (`Experiment.model = @models.cnn`) or as gin calls
    (`@models.cnn()`); both are built inside the strategy's scope.

    Args:
      dataset, model, loss, optimizer: plugins of those kinds. `dataset` may be a list of
        multi-head datasets, each labelling some of the model's heads (alternating
        training: each step trains on one of them, picked by `dataset_schedule`). With a
        multi-head model, `loss` is the loss of every head that does not name its own.
      strategy: a strategy plugin; None is TensorFlow's default strategy.
      batch_size: the global batch size, summed over replicas.
      train_steps: optimizer steps of the whole run (a resumed run goes on to this step).
      steps_per_loop: steps per host call (an in-graph loop); cadences below cut it short.
      eval_every: steps between evaluations in train_and_eval mode; None: at the end only.
      checkpoint_every: steps between checkpoints; one is always written at the end.
      summary_every: steps between training summaries.
      max_checkpoints_to_keep: the newest N checkpoints are kept.
      seed: seeds Python, NumPy, TensorFlow and Keras, and the per-epoch shuffles.
      deterministic: turn on TensorFlow's op determinism (slower; reproducible bit for bit).
      intra_op_threads, inter_op_threads: TensorFlow's thread pools (threads inside one op,
        ops run at once); None: TensorFlow's default, which measured fastest here (see
        BUILD_NOTES.md). Applied first in build(); ignored with a warning if TensorFlow has
        already run an op in this process.
      clip_gradient_norm: clip the gradient by this global norm; None: no clipping.
      metrics: a callable returning a list of keras.metrics; None: by task (accuracy for
        classification, mean absolute error for regression).
      shuffle_buffer: examples in the shuffle buffer; None shuffles each whole epoch.
      hooks: hook plugins called at loop boundaries (early stopping, NaN guard, ...).
      best_checkpoint_metric: an eval metric (e.g. 'accuracy'); after each evaluation that
        improves it, a checkpoint is kept in checkpoints/best with the value beside it.
      best_checkpoint_mode: 'max' or 'min': which direction improves that metric.
      init_checkpoint: a checkpoint (or a checkpoints folder: its latest) of another run
        whose model weights start this run, when model_dir has no checkpoint of its own
        (fine-tuning from a frozen-backbone run). Only the model is taken, matched by the
        model's structure; the optimizer and step start afresh.
      cache_features: when the model has a frozen feature extractor
        (`model.frozen_features`) and the dataset a fingerprint and no augmentation, compute
        the features once, keep them on disk and train the head on them.
      feature_cache_dir: where; None is model_dir/feature_cache. A shared folder lets runs
        with the same data, backbone and weights reuse one cache.
      dataset_schedule: with several datasets, which one feeds each step: 'round_robin'
        (in turn) or 'weighted' (drawn at random, seeded, with `dataset_weights`).
      dataset_weights: one non-negative weight per dataset, for 'weighted'.
      jit_compile: compile each step's forward and backward pass with XLA. Off by
        default: 0.67x on an AMD EPYC, 0.26-0.45x on an Intel Xeon with AMX
        (BUILD_NOTES.md); try it on a GPU.
      precision_policy: 'float32'; 'mixed_bfloat16' (layers compute in bfloat16, keep
        float32 variables; losses and metrics stay float32); or 'auto': mixed_bfloat16
        where it was measured to win, on a CPU with AMX-BF16 units and oneDNN (the CNN
        1.5x faster, same accuracy), float32 everywhere else (bfloat16 was 8x slower on an
        AVX2 CPU; GPUs are not measured here). What 'auto' chose is kept in model_dir, so
        a resumed run keeps it; each worker of a cluster decides for its own machine, so
        name the policy on a cluster of mixed machines. float32 by default, so results do
        not depend on the machine; the classification configs ask for 'auto'.
    """

    def __init__(
        self,
        dataset=gin.REQUIRED,
        model=gin.REQUIRED,
        loss=gin.REQUIRED,
        optimizer=gin.REQUIRED,
        strategy=None,
        batch_size=128,
        train_steps=1000,
        steps_per_loop=100,
        eval_every=None,
        checkpoint_every=1000,
        summary_every=100,
        max_checkpoints_to_keep=3,
        seed=42,
        deterministic=False,
        intra_op_threads=None,
        inter_op_threads=None,
        clip_gradient_norm=None,
        metrics=None,
        shuffle_buffer=None,
        hooks=(),
        best_checkpoint_metric=None,
        best_checkpoint_mode="max",
        init_checkpoint=None,
        cache_features=True,
        feature_cache_dir=None,
        dataset_schedule="round_robin",
        dataset_weights=None,
        jit_compile=False,
        precision_policy="float32",
    ):
        for name, value in [("batch_size", batch_size), ("train_steps", train_steps),
                            ("steps_per_loop", steps_per_loop), ("summary_every", summary_every),
                            ("checkpoint_every", checkpoint_every), ("eval_every", eval_every),
                            ("max_checkpoints_to_keep", max_checkpoints_to_keep)]:
            if value is None and name == "eval_every":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"Experiment.{name} must be a positive integer, got {value!r}.")
        self.plugins = dict(dataset=dataset, model=model, loss=loss, optimizer=optimizer,
                            strategy=strategy)
        self.batch_size, self.train_steps = batch_size, train_steps
        self.steps_per_loop, self.eval_every = steps_per_loop, eval_every
        self.checkpoint_every, self.summary_every = checkpoint_every, summary_every
        self.max_checkpoints_to_keep, self.seed = max_checkpoints_to_keep, seed
        self.deterministic, self.clip_gradient_norm = deterministic, clip_gradient_norm
        self.threads = {"intra_op": intra_op_threads, "inter_op": inter_op_threads}
        for pool, threads in self.threads.items():
            if threads is not None and (not isinstance(threads, int) or threads < 1):
                raise UserError(f"Experiment.{pool}_threads must be a positive integer or "
                                f"None, got {threads!r}.")
        self.metrics, self.shuffle_buffer = metrics, shuffle_buffer
        if best_checkpoint_mode not in ("max", "min"):
            raise UserError("Experiment.best_checkpoint_mode must be 'max' or 'min', got "
                            f"{best_checkpoint_mode!r}.")
        self.hook_plugins = list(hooks or ())
        self.best_checkpoint_metric = best_checkpoint_metric
        self.best_checkpoint_mode = best_checkpoint_mode
        self.init_checkpoint = init_checkpoint
        self.cache_features, self.feature_cache_dir = cache_features, feature_cache_dir
        if dataset_schedule not in DATASET_SCHEDULES:
            raise UserError(f"Experiment.dataset_schedule must be one of "
                            f"{', '.join(DATASET_SCHEDULES)}, got {dataset_schedule!r}.")
        if (dataset_weights is not None) != (dataset_schedule == "weighted"):
            raise UserError("Experiment.dataset_weights go with dataset_schedule = "
                            "'weighted', and that schedule needs them.")
        self.dataset_schedule, self.dataset_weights = dataset_schedule, dataset_weights
        if precision_policy not in PRECISION_POLICIES:
            raise UserError(
                f"Experiment.precision_policy must be one of {', '.join(PRECISION_POLICIES)}, "
                f"got {precision_policy!r}."
                + (" mixed_float16 needs loss scaling, which this loop does not do; "
                   "'mixed_bfloat16' needs none and is as fast on GPUs that have it."
                   if precision_policy == "mixed_float16" else ""))
        self.jit_compile, self.precision_policy = bool(jit_compile), precision_policy
        self.monitoring = Monitoring()  # what TensorBoard gets beyond scalars (gin-bound)
        self.stop_reason, self.exit_status = None, 0

    # -- building -------------------------------------------------------------------

    def build(self, model_dir: str, checkpoint: str = "latest") -> None:
        """Builds and checks every piece and restores a checkpoint; writes nothing.

        checkpoint: which one to restore: 'latest' or 'best'.
        """
        self._set_thread_pools()
        # The strategy first: splitting the CPU into logical devices must precede any op.
        self.strategy = registry.build(self.plugins["strategy"]) or tf.distribute.get_strategy()
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(self.seed)
        dataset_plugins = self.plugins["dataset"]
        self.datasets = [
            self._built("dataset", Dataset, plugin=plugin)
            for plugin in (dataset_plugins if isinstance(dataset_plugins, (list, tuple))
                           else [dataset_plugins])]
        self.dataset = self.datasets[0]
        self.info = combined_info([dataset.info for dataset in self.datasets])
        self.schedule = self._dataset_schedule()
        self.model_dir = model_dir
        with self.strategy.scope():
            self.compute_policy = self._precision_policy_here()  # 'auto' resolved
            with _dtype_policy(self.compute_policy):
                self.model = self._built("model", keras.Model, self.info)
            self.trained_model, self.feature_caches = self._feature_caches()
            self.optimizer = self._built("optimizer", keras.optimizers.Optimizer)
            # Keras 3 creates optimizer slots lazily; they must exist inside the scope
            # before the first traced step and before a restore, or restoring skips them.
            # (optimizer_groups builds them; copies serve learning-rate multipliers.)
            self.optimizer_groups = optimizer_groups(self.trained_model, self.optimizer)
            self.global_step = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="global_step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.loss_fn = registry.build(self.plugins["loss"])
        self.objective = self._objective()
        for dataset in self.datasets:
            check_model_fits_data(self.model, self._plugin_name("model"), self.objective,
                                  dataset)
        self.hooks = [registry.build(hook) for hook in self.hook_plugins]
        self.trainer = Trainer(
            self.strategy, self.trained_model, self.objective, self.optimizer_groups,
            self.batch_size, self.global_step, self.clip_gradient_norm,
            skip_nonfinite_steps=any(getattr(h, "skips_nonfinite_steps", False)
                                     for h in self.hooks),
            schedule=self.schedule, confusion_matrices=self.monitoring.images_at_eval,
            jit_compile=self.jit_compile)
        self.is_chief = self.strategy.extended.should_checkpoint
        self.restored_from = self._restore(checkpoint)
        self.summaries = Summaries(model_dir, enabled=self.is_chief)
        self.monitor = Monitor(self.monitoring, self)

    def _precision_policy_here(self) -> str:
        """The policy to build the model in: 'auto' resolved for this machine, or, when
        model_dir holds a run that started elsewhere, kept as it was (a run does not
        change its arithmetic halfway)."""
        if self.precision_policy != "auto":
            return self.precision_policy
        saved = os.path.join(self.model_dir, COMPUTE_POLICY_FILE)
        if tf.io.gfile.exists(saved):
            with tf.io.gfile.GFile(saved) as f:
                policy = f.read().strip()
            if policy not in COMPUTE_POLICIES:
                raise UserError(f"{saved} holds {policy!r}, not 'float32' or "
                                "'mixed_bfloat16': write the one this run started with, or "
                                "set Experiment.precision_policy to it.")
            logging.info("Experiment.precision_policy 'auto' is %s, as when this run "
                         "started (%s).", policy, saved)
            return policy
        on_cpu = self._trains_on_cpu()
        policy = ("mixed_bfloat16" if on_cpu and hardware.cpu_has_bfloat16_matrix_units()
                  else "float32")
        logging.info("Experiment.precision_policy 'auto' is %s here (%s).", policy,
                     "the CPU has AMX-BF16 units and oneDNN is on" if policy != "float32"
                     else "no AMX-BF16 units, or oneDNN off" if on_cpu
                     else "not a CPU: bfloat16 is not measured there")
        return policy

    def _trains_on_cpu(self) -> bool:
        try:
            devices = self.strategy.extended.worker_devices
        except RuntimeError:  # the default strategy: a GPU if there is one
            return not tf.config.list_logical_devices("GPU")
        return all("CPU" in device.upper() for device in devices)

    def _set_thread_pools(self) -> None:
        setters = {"intra_op": tf.config.threading.set_intra_op_parallelism_threads,
                   "inter_op": tf.config.threading.set_inter_op_parallelism_threads}
        getters = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads,
                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads}
        for pool, threads in self.threads.items():
            if threads is None or getters[pool]() == threads:
                continue
            try:
                setters[pool](threads)
            except RuntimeError:
                logging.warning("Experiment.%s_threads = %d ignored: TensorFlow already runs "
                                "(it must be set before any op, e.g. first in the process).",
                                pool, threads)

    def _dataset_schedule(self) -> np.ndarray | None:
        """With several datasets, the index of the dataset that feeds each step (a pure
        function of the config and the seed, so a resumed run picks the same ones)."""
        count = len(self.datasets)
        if count == 1:
            return None
        if self.dataset_schedule == "round_robin":
            return np.arange(self.train_steps) % count
        weights = np.asarray(self.dataset_weights, dtype=np.float64)
        if weights.shape != (count,) or (weights < 0).any() or weights.sum() <= 0:
            raise UserError(f"Experiment.dataset_weights must be {count} non-negative numbers "
                            f"(one per dataset) that are not all zero, got "
                            f"{self.dataset_weights!r}.")
        return np.random.default_rng(self.seed).choice(
            count, size=self.train_steps, p=weights / weights.sum())

    def _objective(self) -> Objective:
        """The losses and metrics: per head for a multi-head model, else the task's."""
        heads = getattr(self.model, "heads", None)
        if self.info.heads and heads is None:
            raise UserError(self._multi_head_hint())
        if heads is None:
            return Objective(self.info, self.loss_fn,
                             self.metrics or (lambda: default_metrics(self.info)))
        names = {head.name for head, _ in heads}
        return Objective(
            self.info, self.loss_fn, None,
            [ObjectiveHead(head.name, info.task, head.outputs or info.num_outputs,
                           registry.build(head.loss) if head.loss else self.loss_fn,
                           head.loss_weight,
                           head.metrics or (lambda info=info: default_metrics(info)))
             for head, info in heads],
            joint_metric=any(names <= {h.name for h in d.info.heads} for d in self.datasets))

    def _feature_caches(self):
        """(the model to train, one FeatureCache per dataset or None): the head alone on
        cached features when the model's extractor is frozen and the data allows it; else
        the model."""
        frozen = getattr(self.model, "frozen_features", None)
        if not frozen or not self.cache_features:
            return self.model, None
        if any(dataset.augment is not None for dataset in self.datasets):
            logging.info("Feature cache off: the dataset augments its training images, so "
                         "the backbone must see every new variant.")
            return self.model, None
        if not all(dataset.fingerprint for dataset in self.datasets):
            logging.info("Feature cache off: dataset '%s' gives no fingerprint to key it by.",
                         self.info.name)
            return self.model, None
        extractor, head = frozen
        directory = self.feature_cache_dir or os.path.join(self.model_dir, "feature_cache")
        return head, [FeatureCache(directory, extractor, cache_key(dataset.fingerprint, extractor))
                      for dataset in self.datasets]

    def _examples(self, split: str, index: int = 0):
        """The split of dataset `index`: its own examples, or their cached features."""
        dataset = self.datasets[index]
        examples = dataset.train if split == "train" else dataset.eval
        if self.feature_caches is None or examples is None:
            return examples
        return self.feature_caches[index].features(split, examples)

    def _restore(self, checkpoint: str) -> str | None:
        """Sets up checkpointing and restores `checkpoint` ('latest' or 'best'), if any."""
        # Every worker of a multi-worker run restores from model_dir and takes part in
        # saving, but only the chief writes there; the others save into a scratch folder.
        self.checkpoints = Checkpoints(
            self.model_dir, self.max_checkpoints_to_keep,
            save_dir=None if self.is_chief else tempfile.mkdtemp(prefix="worker-checkpoints-"),
            model=self.model, optimizer=self.optimizer, global_step=self.global_step,
            **({"scaled_optimizers": [group[0] for group in self.optimizer_groups[1:]]}
               if len(self.optimizer_groups) > 1 else {}),
            # Keras keeps layers' random state (Dropout's seed generators) outside the
            # model's checkpointed variables; without it a resumed run draws other masks.
            rng=[generator.state for layer in self.model._flatten_layers()  # pylint: disable=protected-access
                 for generator in getattr(layer, "_seed_generators", [])])
        try:
            restored = self.checkpoints.restore(checkpoint)
        except UserError as error:
            changes = self._config_changes()
            if not changes:
                raise
            raise UserError(f"{error}\nThe config changed since that run:\n{changes}") from error
        if restored is None and self.init_checkpoint:
            self._initialize_model_from(self.init_checkpoint)
        return restored

    def _initialize_model_from(self, path: str) -> None:
        if tf.io.gfile.isdir(path):
            path = tf.train.latest_checkpoint(path) or path
        try:
            tf.train.Checkpoint(model=self.model).restore(path) \
                .assert_existing_objects_matched().expect_partial()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise UserError(
                f"Experiment.init_checkpoint = '{path}' cannot initialise this model "
                f"({first_line(error)}). It must be a checkpoint (or a folder of them) of a "
                "run with the same model structure."
            ) from error
        logging.info("Model weights initialised from %s", path)

    def _built(self, kind, expected_type, *context, plugin=None):
        """The plugin of `kind` (or `plugin`, one of a list) built with `context`."""
        try:
            value = registry.build(plugin or self.plugins[kind], *context)
        except (ValueError, TypeError) as error:
            if kind != "model":
                raise UserError(
                    f"Building the {kind} {self._plugin_name(kind, plugin)} failed: "
                    f"{first_line(error)} Fix its gin parameters (`python -m framework.main "
                    "--list_plugins` shows them with their defaults)."
                ) from error
            # Keras checks shapes while a model is assembled: a model that cannot take the
            # data's features usually fails here, before any data flows.
            raise UserError(
                f"Model {self._plugin_name('model')} cannot be built for dataset "
                f"'{self.info.name}' (features {self.info.input_shape}, "
                f"{self.info.outputs_description()}). Keras said: {first_line(error)} Fix: "
                "choose a model for this data, or change the model's input shape."
                + (" " + self._multi_head_hint() if self.info.heads else "")
            ) from error
        if not isinstance(value, expected_type):
            raise UserError(
                f"Experiment.{kind} = {self._plugin_name(kind, plugin)} gave a "
                f"{type(value).__name__}, but a {kind} plugin must return a "
                f"{expected_type.__name__}."
            )
        return value

    def _multi_head_hint(self) -> str:
        return (f"Dataset '{self.info.name}' labels the heads "
                f"{', '.join(h.name for h in self.info.heads)}, so it needs a multi-head "
                "model (Experiment.model = @models.multi_head, with a trunk).")

    def _plugin_name(self, kind, plugin=None) -> str:
        plugin = plugin or self.plugins[kind]
        return f"'{getattr(plugin, '__name__', None) or repr(plugin)}'"

    # -- running --------------------------------------------------------------------

    def run(self, model_dir: str, mode: str = "train_and_eval",
            checkpoint: str = "latest") -> dict:
        """Builds, then trains and/or evaluates.

        Returns {'step', 'train', 'eval', 'stopped'}: the final step, the last training
        and evaluation metrics, and why training stopped early (None if it did not).
        `checkpoint` ('latest' or 'best') picks what --mode=eval evaluates.
        """
        if mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got '{mode}'.")
        self.build(model_dir, checkpoint if mode == "eval" else "latest")
        results = {"step": int(self.global_step.numpy()), "train": {}, "eval": {}}
        if mode == "eval" and self.restored_from is None:
            raise UserError(f"--mode=eval needs a checkpoint, and {model_dir} has "
                            f"no {checkpoint} one. Train first (--mode=train_and_eval).")
        # A training run holds model_dir (through its chief, the only worker writing there);
        # evaluating a run that is still training is allowed.
        holds_model_dir = mode != "eval" and self.is_chief
        with ModelDirLock(model_dir) if holds_model_dir else contextlib.nullcontext():
            try:
                if mode == "eval":
                    results["eval"] = self.evaluate()
                else:
                    results["train"] = self.train(evaluate=(mode == "train_and_eval"))
                    results["step"] = int(self.global_step.numpy())
                    if mode == "train_and_eval" and self.exit_status == 0:
                        results["eval"] = self.evaluate()
                        self._keep_if_best(results["eval"])
            finally:
                self.summaries.close()
        results["stopped"] = self.stop_reason
        return results

    def request_stop(self, reason: str, save: bool = True, exit_status: int = 0) -> None:
        """Ends training after the current host loop (hooks and signal handlers call this).

        save: write a checkpoint of the current state (False when that state is bad).
        exit_status: what the command line exits with.
        """
        if self.stop_reason is None:
            self.stop_reason, self._save_on_stop, self.exit_status = reason, save, exit_status

    def train(self, evaluate: bool) -> dict:
        """Trains from the restored step to train_steps, or until a stop is requested.

        Returns the last training metrics written to the summaries.
        """
        start = int(self.global_step.numpy())
        if start >= self.train_steps:
            logging.info("Already trained to step %d of %d.", start, self.train_steps)
            return {}
        logging.info("Training from step %d to %d%s.", start, self.train_steps,
                     f" (resumed from {self.restored_from})" if self.restored_from else "")
        self._write_config()
        # Kept on the Experiment: destroying an autotuned iterator (augmented data) before
        # its end waits for tf.data's autotuning thread, which sleeps up to 60 s (see
        # training_batches); that would delay the final evaluation. main() exits without
        # destroying them.
        self._train_iterators = iterators = self._training_iterators(start)
        for hook in self.hooks:
            hook.begin(self)
        self.monitor.begin(start)
        step, last_saved, window_start, window_step = start, None, time.perf_counter(), start
        train_results = {}
        while step < self.train_steps and self.stop_reason is None:
            num_steps = self._steps_to_next_boundary(step)
            self.monitor.before_train_loop()
            self.trainer.train(iterators, num_steps)
            step += num_steps
            self.monitor.after_train_loop(step)
            if self.hooks:  # reading these values costs a few ops: only when watched
                loop = {"steps": num_steps,
                        "nonfinite_steps": int(self.trainer.nonfinite_steps.numpy()),
                        **self.trainer.train_results(reset=False)}
                for hook in self.hooks:
                    hook.after_train_loop(self, step, loop)
            if step % self.summary_every == 0 or step == self.train_steps:
                train_results = self.trainer.train_results()
                elapsed = time.perf_counter() - window_start
                self._write_train_summaries(train_results, step, (step - window_step) / elapsed)
                window_start, window_step = time.perf_counter(), step
            if step % self.checkpoint_every == 0 and self.stop_reason is None:
                last_saved = self.checkpoints.save(step)
            if evaluate and self.eval_every and step % self.eval_every == 0 \
                    and step < self.train_steps and self.stop_reason is None:
                self._keep_if_best(self.evaluate())
        if self.stop_reason is not None and not self._save_on_stop:
            logging.error("Stopped at step %d: %s. Nothing was saved after the last good "
                          "checkpoint, %s.", step, self.stop_reason, self.checkpoints.latest)
        elif last_saved is None or not last_saved.endswith(f"-{step}"):
            last_saved = self.checkpoints.save(step)
        if self.stop_reason is not None and self._save_on_stop:
            logging.warning("Stopped at step %d: %s. Checkpoint %s holds this state; re-run "
                            "the same command to go on.", step, self.stop_reason, last_saved)
        self.monitor.end()
        for hook in self.hooks:
            hook.end(self, step)
        return train_results

    def _training_iterators(self, start: int) -> list:
        """One distributed iterator per dataset, positioned at the batch step `start` needs.

        Dataset k's stream is seeded with seed + k and advanced by the steps the schedule
        gave it before `start`, so a resumed run reads exactly the batches it would have.
        """
        iterators = []
        for index, dataset in enumerate(self.datasets):
            if self.schedule is None:
                done, remaining = start, self.train_steps - start
            else:
                done = int(np.sum(self.schedule[:start] == index))
                remaining = int(np.sum(self.schedule[start:] == index))
            batches = training_batches(
                self._examples("train", index), self.batch_size, self.seed + index, done,
                self.shuffle_buffer, num_steps=remaining, augment=dataset.augment)
            iterators.append(iter(self.strategy.experimental_distribute_dataset(batches)))
        return iterators

    def _steps_to_next_boundary(self, step: int) -> int:
        """Steps until the next summary, evaluation, checkpoint or the end, at most steps_per_loop."""
        cadences = [c for c in (self.summary_every, self.checkpoint_every, self.eval_every) if c]
        monitor = self.monitor.next_boundary(step)
        boundary = min([c * (step // c + 1) for c in cadences] + [self.train_steps]
                       + ([monitor] if monitor else []))
        return min(self.steps_per_loop, boundary - step)

    def evaluate(self) -> dict:
        """One pass over the evaluation set; writes and returns its metrics."""
        step = int(self.global_step.numpy())
        with_eval = [i for i, dataset in enumerate(self.datasets) if dataset.eval is not None]
        if not with_eval:
            logging.info("Dataset '%s' has no evaluation split; skipping evaluation.",
                         self.info.name)
            return {}
        if not hasattr(self, "_eval_batches"):  # built once: their batches are cached
            self._eval_batches = [
                self.strategy.experimental_distribute_dataset(
                    evaluation_batches(self._examples("eval", i), self.batch_size))
                for i in with_eval]
        results = self.trainer.evaluate(self._eval_batches)
        self.summaries.scalars("eval", results, step)
        self.monitor.after_eval(step)
        logging.info("eval at step %d: %s", step, _format(results))
        for hook in self.hooks:
            hook.after_eval(self, step, results)
        return results

    def _keep_if_best(self, results: dict) -> None:
        """Saves the current state to checkpoints/best if `results` beat the best so far."""
        metric, mode = self.best_checkpoint_metric, self.best_checkpoint_mode
        if not metric or not results:
            return
        if metric not in results:
            raise UserError(f"Experiment.best_checkpoint_metric = '{metric}' is not an eval "
                            f"metric; the eval metrics are {', '.join(results)}.")
        value, best = results[metric], self.checkpoints.best_record()
        if best is None or (value > best["value"] if mode == "max" else value < best["value"]):
            self.checkpoints.save_best(int(self.global_step.numpy()), metric, mode, value)

    def _write_train_summaries(self, results: dict, step: int, steps_per_second: float):
        scalars = dict(results)
        # convert_to_tensor reads a (mirrored) variable in any context; float() cannot.
        scalars["learning_rate"] = float(tf.convert_to_tensor(self.optimizer.learning_rate))
        scalars["steps_per_second"] = steps_per_second
        scalars["examples_per_second"] = steps_per_second * self.batch_size
        if self.model.losses:
            scalars["regularization_loss"] = float(tf.add_n(self.model.losses))
        self.summaries.scalars("train", scalars, step)
        logging.info("step %d/%d: %s", step, self.train_steps, _format(scalars))

    def _config_changes(self) -> str:
        """How this run's operative config differs from the one saved in model_dir."""
        path = os.path.join(self.model_dir, "operative_config.gin")
        if not tf.io.gfile.exists(path):
            return ""
        with tf.io.gfile.GFile(path) as f:
            return config_changes(f.read(), gin.operative_config_str())

    def _write_config(self) -> None:
        """operative_config.gin beside the results, and as a text summary (chief only)."""
        if not self.is_chief:
            return
        config = gin.operative_config_str()
        path = os.path.join(self.model_dir, "operative_config.gin")
        changes = self._config_changes()
        if changes:
            logging.warning("This run's config differs from the one saved in %s:\n%s",
                            path, changes)
        tf.io.gfile.makedirs(self.model_dir)
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(config)
        # The class names the model was trained with, for --mode=predict.
        with tf.io.gfile.GFile(os.path.join(self.model_dir, DATASET_INFO_FILE), "w") as f:
            f.write(json.dumps(dataclasses.asdict(self.info), indent=2))
        if self.precision_policy == "auto":
            with tf.io.gfile.GFile(os.path.join(self.model_dir, COMPUTE_POLICY_FILE), "w") as f:
                f.write(self.compute_policy)
        # Indented, so TensorBoard's markdown shows it as a code block.
        as_markdown = "\n".join("    " + line for line in config.splitlines())
        self.summaries.text("train", "operative_config", as_markdown,
                            int(self.global_step.numpy()))


def _format(values: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


@contextlib.contextmanager
def _dtype_policy(name: str):
    """Keras layers built inside compute in policy `name`; the global policy is restored
    after, so later models in the process are not affected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
