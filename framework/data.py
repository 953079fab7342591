"""The dataset contract and the input pipelines the framework builds on top of it.

A dataset plugin returns a `Dataset`: *unbatched* `tf.data.Dataset`s of
`(features, labels)` for training and evaluation, in a fixed order, plus a `DatasetInfo`.
The framework owns shuffling, batching, caching and prefetching, so every dataset gets them
right, and so the training stream is a pure function of (seed, global step): epoch `e` is
shuffled with a seed derived from (seed, e) and nothing else, which lets a run restart its
input at any step without checkpointing an iterator (a distributed iterator cannot be).
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from framework.errors import UserError

TASKS = ("classification", "binary", "regression")
MULTI_HEAD = "multi_head"


@dataclasses.dataclass(frozen=True)
class HeadInfo:
    """One labelled output of a multi-head dataset (see DatasetInfo.heads).

    task, num_outputs and class_names mean what they mean in DatasetInfo, for this head.
    """

    name: str
    task: str
    num_outputs: int
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"head {self.name!r}: task must be one of {TASKS}, "
                             f"got {self.task!r}")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model plugin needs to know about the data.

    Attributes:
      name: shown in logs and errors.
      input_shape: shape of one example's features, without the batch dimension.
      task: 'classification' (integer labels, `num_outputs` logits), 'binary' (0/1
        labels, one logit) or 'regression' (real targets, `num_outputs` values).
      num_outputs: the width of the model's output layer.
      class_names: one name per class for classification, else None.
      train_size, eval_size: number of examples, when known.
      heads: for a multi-head dataset (task 'multi_head'), the heads its labels name: its
        examples are `(features, {head name: label})`, and `num_outputs` and `class_names`
        are unused. Build such an info with `DatasetInfo.multi_head`.
    """

    name: str
    input_shape: tuple[int, ...]
    task: str
    num_outputs: int
    class_names: tuple[str, ...] | None = None
    train_size: int | None = None
    eval_size: int | None = None
    heads: tuple[HeadInfo, ...] = ()

    def __post_init__(self):
        if self.task not in (*TASKS, MULTI_HEAD):
            raise ValueError(f"task must be one of {TASKS + (MULTI_HEAD,)}, got {self.task!r}")
        if (self.task == MULTI_HEAD) != bool(self.heads):
            raise ValueError("a dataset has heads exactly when its task is 'multi_head'")

    @classmethod
    def multi_head(cls, name, input_shape, heads, **sizes) -> "DatasetInfo":
        """The info of a dataset whose labels are `{head name: label}`."""
        return cls(name=name, input_shape=tuple(input_shape), task=MULTI_HEAD,
                   num_outputs=0, heads=tuple(heads), **sizes)

    def head(self, name: str) -> HeadInfo:
        """The head called `name` (KeyError if there is none)."""
        for head in self.heads:
            if head.name == name:
                return head
        raise KeyError(name)

    def outputs_description(self) -> str:
        """'10 outputs', or for heads 'heads fine (10 outputs), coarse (3 outputs)'."""
        if not self.heads:
            return f"{self.num_outputs} outputs"
        return "heads " + ", ".join(f"{h.name} ({h.num_outputs} outputs)" for h in self.heads)


def combined_info(infos: list[DatasetInfo]) -> DatasetInfo:
    """The info of datasets trained together (alternating training): the union of their
    heads. Raises UserError when they cannot share one model."""
    if len(infos) == 1:
        return infos[0]
    names = ", ".join(f"'{info.name}'" for info in infos)
    if not all(info.heads for info in infos):
        raise UserError(f"Training on several datasets ({names}) needs multi-head datasets: "
                        "each labels some heads of one multi-head model.")
    if len({info.input_shape for info in infos}) > 1:
        raise UserError(f"Datasets {names} must give features of one shape, got "
                        f"{', '.join(str(info.input_shape) for info in infos)}.")
    heads: dict[str, HeadInfo] = {}
    for info in infos:
        for head in info.heads:
            if heads.setdefault(head.name, head) != head:
                raise UserError(f"Datasets {names} disagree about head '{head.name}': "
                                f"{heads[head.name]} vs {head}.")
    sizes = [(info.train_size, info.eval_size) for info in infos]
    return DatasetInfo.multi_head(
        "+".join(info.name for info in infos), infos[0].input_shape, heads.values(),
        train_size=None if None in [t for t, _ in sizes] else sum(t for t, _ in sizes),
        eval_size=None if None in [e for _, e in sizes] else sum(e for _, e in sizes))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What a dataset plugin returns: unbatched, unshuffled examples and their info.

    augment: optional `augment(features, labels, seed) -> (features, labels)` for training
      examples, built from stateless random ops (`tf.image.stateless_*`) driven by `seed`, a
      shape-[2] int tensor. The framework applies it after caching, with a seed made from
      the run's seed, the epoch and the example's index, so every epoch sees new variants and
      a resumed run sees the same ones.
    load_file: optional `load_file(path) -> features` for one example read from a file,
      preprocessed as training examples are (what --mode=predict uses). Left unset, it is
      `decode(tf.io.read_file(path))` when the dataset has a `decode`.
    fingerprint: optional string that changes whenever the examples do (files, sizes,
      preprocessing); it lets the framework cache what a frozen backbone computes from them.
    decode: optional `decode(image_bytes) -> features` for image datasets: one encoded
      image (a tf.string scalar: JPEG, PNG, ...) as one example's float32 features of
      `info.input_shape`, decoded, resized and scaled exactly as training examples are.
      Built from TensorFlow ops only, since an export traces it into the SavedModel's
      image-bytes signature (framework.export), where it runs without this code.
    train_part: optional `train_part(part, parts) -> examples | None` for data in files:
      part `part` of `parts` disjoint parts of the training split that together hold all
      of it, each made of whole files and in a fixed order; None when the split has fewer
      files than `parts`. A run over several replicas then streams one part to each
      replica, so each worker reads only its own files (framework.pipeline).
    """

    train: tf.data.Dataset
    eval: tf.data.Dataset | None
    info: DatasetInfo
    augment: Callable | None = None
    load_file: Callable | None = None
    fingerprint: str | None = None
    decode: Callable | None = None
    train_part: Callable | None = None

    def __post_init__(self):
        if self.load_file is None and self.decode is not None:
            decode = self.decode
            # The dataclass is frozen; this fills a default once, before anyone reads it.
            object.__setattr__(self, "load_file", lambda path: decode(tf.io.read_file(path)))


def epoch_seed(seed: int, epoch: tf.Tensor) -> tf.Tensor:
    """The shuffle seed of one epoch: a function of the run's seed and the epoch only."""
    return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


def steps_per_epoch(examples: tf.data.Dataset, global_batch_size: int) -> int:
    """Full batches in one pass over `examples` (the last partial batch is dropped)."""
    size = int(examples.cardinality())
    if size == tf.data.INFINITE_CARDINALITY:
        raise UserError("The training dataset is infinite; dataset plugins must return "
                        "one epoch of examples (the framework repeats it).")
    if size == tf.data.UNKNOWN_CARDINALITY:
        # Counted once; sources with a known size (from_tensor_slices, TFRecords with
        # `assert_cardinality`) skip this pass.
        size = int(examples.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    if size < global_batch_size:
        raise UserError(
            f"The training set has {size} examples, fewer than one batch of "
            f"{global_batch_size}. Lower Experiment.batch_size."
        )
    return size // global_batch_size


def training_batches(
    examples: tf.data.Dataset,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    shuffle_buffer: int | None = None,
    num_steps: int | None = None,
    augment: Callable | None = None,
) -> tf.data.Dataset:
    """A stream of global batches, positioned at `start_step`.

    Batch `k` of the stream is the same for every run with the same seed, whatever step
    the run (re)started at: epochs are reshuffled with `epoch_seed(seed, epoch)`, the
    resumed epoch is rebuilt and the batches already consumed are skipped.

    Args:
      examples: one epoch of unbatched examples in a fixed order.
      global_batch_size: examples per step summed over all replicas.
      seed: the run's seed.
      start_step: the global step the stream starts at.
      shuffle_buffer: examples in the shuffle buffer; None shuffles the whole epoch.
      num_steps: batches in the stream; None: endless. A run should pass the steps it has
        left: destroying an iterator that has not reached its end waits for tf.data's
        autotuning thread, which sleeps up to a minute between rounds (BUILD_NOTES.md,
        "teardown"). Streams without augmentation or a
        shuffle buffer do not autotune, so they never stall.
      augment: the dataset's `augment` (see `Dataset`), or None.
    """
    per_epoch = steps_per_epoch(examples, global_batch_size)
    start_epoch, offset = divmod(start_step, per_epoch)
    gathered = augment is None and shuffle_buffer is None
    if gathered:
        batches = _gathered_epochs(examples, global_batch_size, seed, per_epoch, start_epoch)
    else:
        batches = _shuffled_epochs(examples, global_batch_size, seed, shuffle_buffer, augment,
                                   per_epoch, start_epoch)
    batches = batches.skip(offset)
    if num_steps is not None:
        batches = batches.take(num_steps)
    if not gathered:
        return _sharded_by_data(batches.prefetch(tf.data.AUTOTUNE))
    # Nothing to tune here, and without tf.data's autotuning thread the iterator is
    # destroyed at once (see num_steps).
    options = tf.data.Options()
    options.autotune.enabled = False
    return _sharded_by_data(batches.prefetch(_batches_kept_ready(batches)).with_options(
        options))


def _sharded_by_data(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` of global batches that every worker of a cluster builds whole and keeps
    its share of. tf.data's default would split the files a pipeline reads among the
    workers instead: batches that depend on the worker count, and an error when there are
    fewer files than workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return batches.with_options(options)


def _batches_kept_ready(batches: tf.data.Dataset, most: int = 16,
                        budget_bytes: int = 64 * 2**20) -> int:
    """Batches kept ready: `most`, enough to cover the burst of the next gather for short
    steps (BUILD_NOTES.md measures the input wait), as long as they fit in `budget_bytes`;
    large images get fewer, never under 2."""
    specs = tf.nest.flatten(batches.element_spec)
    if any(spec.shape.num_elements() is None for spec in specs):
        return 2
    batch_bytes = sum(spec.shape.num_elements() * spec.dtype.size for spec in specs)
    return max(2, min(most, budget_bytes // max(1, batch_bytes)))


def _gathered_epochs(examples, global_batch_size, seed, per_epoch, start_epoch,
                     batches_per_gather=64):
    """Batches gathered from every example held as one tensor per component, in the order
    of a seeded permutation per epoch, `batches_per_gather` batches per gather op.

    A few ops per 64 batches instead of a shuffle buffer and a batch op handling each
    example: less CPU per batch, which the training step would otherwise share on a small
    machine (BUILD_NOTES.md has the figures).
    """
    whole = examples.batch(2**31).get_single_element()  # one tensor per component
    size = int(tf.nest.flatten(whole)[0].shape[0])
    used = per_epoch * global_batch_size

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size, dtype=tf.int64), seed=tf.stack([epoch_seed(seed, epoch), 0]))
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(order[:used], [per_epoch, global_batch_size])).batch(batches_per_gather)

    def gathered_batches(indices):  # [batches, global_batch_size] -> that many batches
        return tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda component: tf.gather(component, indices), whole))

    return (tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(one_epoch)
            .flat_map(gathered_batches))


def _shuffled_epochs(examples, global_batch_size, seed, shuffle_buffer, augment, per_epoch,
                     start_epoch):
    """Batches of a shuffle buffer over the cached examples, each example augmented with
    its own seed (made from the run's seed, the epoch and the example's index)."""
    if augment is not None:
        examples = examples.enumerate()  # the index seeds the example's augmentation
    examples = examples.cache()  # decode once; later epochs read memory
    buffer = shuffle_buffer or per_epoch * global_batch_size + global_batch_size

    def one_epoch(epoch):
        shuffled = examples.shuffle(buffer, seed=epoch_seed(seed, epoch))
        if augment is not None:
            def augment_example(index, example):
                return augment(*example, tf.stack([epoch_seed(seed, epoch), index]))
            shuffled = shuffled.map(augment_example, num_parallel_calls=tf.data.AUTOTUNE)
        return shuffled.batch(global_batch_size, drop_remainder=True)

    return tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(one_epoch)


def evaluation_batches(examples: tf.data.Dataset, global_batch_size: int) -> tf.data.Dataset:
    """Every evaluation example once, in order, in global batches (the last may be short)."""
    return _sharded_by_data(examples.batch(global_batch_size).cache().prefetch(
        tf.data.AUTOTUNE))
