"""The gin-configurable Experiment: the validated settings of one run.

It builds nothing itself: `run()` hands the settings to framework.modes, which builds the
run's parts (framework.assembly) and drives them (framework.controller).
"""

import gin

from framework import config, pipeline, precision
from framework.errors import UserError
from framework.hooks import StopRequest
from framework.modes import run_mode
from framework.monitoring import Monitoring


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
        ops run at once); None: TensorFlow's own sizing (BUILD_NOTES.md compares them).
        Applied first when the run is built; ignored with a warning if TensorFlow has
        already run an op in this process.
      clip_gradient_norm: clip the gradient by this global norm; None: no clipping.
      metrics: a callable returning a list of keras.metrics; None: by task (accuracy for
        classification, mean absolute error for regression).
      shuffle_buffer: examples in the shuffle buffer; None shuffles each whole epoch.
      hooks: hook plugins called at loop boundaries (early stopping, NaN guard, ...).
      best_checkpoint_metric: an eval metric (e.g. 'accuracy'); after each evaluation that
        improves it, a checkpoint is kept in checkpoints/best with the value beside it.
      best_checkpoint_mode: 'max' or 'min': which direction improves that metric.
      init_checkpoint: where the model's weights start when model_dir has no checkpoint of
        its own: another run's checkpoint (or its checkpoints folder: the latest), restored
        by the model's structure, which must be the same (fine-tuning from a frozen-backbone
        run); or a Keras file (.weights.h5, .keras) loaded by layer name into the layers
        whose names and shapes match, the rest keeping their initialisation
        (framework.weights_by_name; the console says what was loaded and skipped). Only the
        model is taken; the optimizer and step start afresh.
      cache_features: when the model has a frozen feature extractor
        (framework.capabilities) and the dataset a fingerprint and no augmentation, compute
        the features once, keep them on disk and train the head on them.
      feature_cache_dir: where; None is model_dir/feature_cache. A shared folder lets runs
        with the same data, backbone and weights reuse one cache.
      dataset_schedule: with several datasets, which one feeds each step: 'round_robin'
        (in turn) or 'weighted' (drawn at random, seeded, with `dataset_weights`).
      dataset_weights: one non-negative weight per dataset, for 'weighted'.
      jit_compile: compile each step's forward and backward pass with XLA. Off by
        default: slower on the CPUs measured (BUILD_NOTES.md); try it on a GPU.
      precision_policy: 'float32'; 'mixed_bfloat16' (layers compute in bfloat16, keep
        float32 variables; losses and metrics stay float32); or 'auto': mixed_bfloat16
        where it was measured to win (a CPU with AMX-BF16 units and oneDNN), float32
        everywhere else (framework.precision). What 'auto' chose is kept in model_dir, so
        a resumed run keeps it; each worker of a cluster decides for its own machine, so
        name the policy on a cluster of mixed machines. float32 by default, so results do
        not depend on the machine; the classification configs ask for 'auto'.
      export_at_end: when training ends (its steps done, or a hook such as early stopping
        ended it; not the NaN guard or a signal), export the best checkpoint if
        best_checkpoint_metric is set, else the latest, to model_dir/export/<step> as
        --mode=export does (framework.export). Checked at the start: data an export cannot
        describe is refused before training.
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
        export_at_end=False,
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
        if dataset_schedule not in pipeline.DATASET_SCHEDULES:
            raise UserError(f"Experiment.dataset_schedule must be one of "
                            f"{', '.join(pipeline.DATASET_SCHEDULES)}, got {dataset_schedule!r}.")
        if (dataset_weights is not None) != (dataset_schedule == "weighted"):
            raise UserError("Experiment.dataset_weights go with dataset_schedule = "
                            "'weighted', and that schedule needs them.")
        self.dataset_schedule, self.dataset_weights = dataset_schedule, dataset_weights
        precision.check_policy(precision_policy)
        self.jit_compile, self.precision_policy = bool(jit_compile), precision_policy
        if not isinstance(export_at_end, bool):
            raise UserError(f"Experiment.export_at_end must be True or False, got "
                            f"{export_at_end!r}.")
        self.export_at_end = export_at_end
        self.monitoring = Monitoring()  # what TensorBoard gets beyond scalars (gin-bound)

    def run(self, model_dir: str, mode: str = "train_and_eval", checkpoint: str = "latest",
            stop: StopRequest | None = None, keep_alive: list | None = None) -> dict:
        """Builds the run in `model_dir`, then trains and/or evaluates as `mode` says.

        Returns {'step', 'train', 'eval', 'stopped', 'exit_status', 'weights'}: the final
        step, the last training and evaluation metrics, why training stopped early (None if
        it did not), the exit status the command line should give and, for a model of a few
        dozen parameters at most, its learned values by variable ({} otherwise). `checkpoint` ('latest' or
        'best') picks what --mode=eval evaluates; `stop` lets signal handlers end training;
        `keep_alive` see framework.modes.run_mode. The parts of a run without training:
        framework.assembly.build(experiment, model_dir).
        """
        return run_mode(self, model_dir, mode, checkpoint, stop, keep_alive)


def from_config(gin_files: list[str], bindings: list[str]) -> Experiment:
    """The Experiment that gin files and bindings describe; any mistake in them (a file
    that cannot be found or parsed, an unknown name, a bad or missing value) is one
    UserError that names it."""
    config.parse(gin_files, bindings)
    try:
        return Experiment()
    except UserError:
        raise
    except Exception as error:  # pylint: disable=broad-except  (gin calls the config's values)
        raise UserError(config.explain(error)) from error
