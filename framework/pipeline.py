"""A run's streams: which dataset feeds each step, its examples (or cached features), and
the distributed iterators positioned at the step a run starts from.
"""

import functools

from absl import logging
import numpy as np
import tensorflow as tf

from framework.data import Dataset, evaluation_batches, training_batches
from framework.errors import UserError

DATASET_SCHEDULES = ("round_robin", "weighted")


def dataset_schedule(count: int, schedule: str, weights, train_steps: int,
                     seed: int) -> np.ndarray | None:
    """With several datasets, the index of the dataset that feeds each step (a pure
    function of the config and the seed, so a resumed run picks the same ones); None for
    one dataset."""
    if count == 1:
        return None
    if schedule == "round_robin":
        return np.arange(train_steps) % count
    given, weights = weights, np.asarray(weights, dtype=np.float64)
    if weights.shape != (count,) or (weights < 0).any() or weights.sum() <= 0:
        raise UserError(f"Experiment.dataset_weights must be {count} non-negative numbers "
                        f"(one per dataset) that are not all zero, got {given!r}.")
    return np.random.default_rng(seed).choice(count, size=train_steps,
                                              p=weights / weights.sum())


class RunData:
    """The examples a run trains and evaluates on: each dataset's own, or, when a frozen
    extractor's features are cached, those features."""

    def __init__(self, datasets: list[Dataset], feature_caches: list | None = None):
        self.datasets, self.feature_caches = datasets, feature_caches

    @property
    def features_cached(self) -> bool:
        return self.feature_caches is not None

    def examples(self, split: str, index: int = 0) -> tf.data.Dataset | None:
        """Split 'train' or 'eval' of dataset `index` (None: it has no such split)."""
        dataset = self.datasets[index]
        examples = dataset.train if split == "train" else dataset.eval
        if self.feature_caches is None or examples is None:
            return examples
        return self.feature_caches[index].features(split, examples)

    def augment(self, index: int = 0):
        """Dataset `index`'s augmentation; None on cached features (the cache is only made
        for data without it)."""
        return self.datasets[index].augment

    def train_part(self, index: int):
        """Dataset `index`'s `train_part` (see `Dataset`); None when it has none or its
        features are cached."""
        return None if self.features_cached else self.datasets[index].train_part


def training_iterators(strategy, data: RunData, schedule: np.ndarray | None,
                       batch_size: int, seed: int, shuffle_buffer: int | None, start: int,
                       train_steps: int) -> list:
    """One distributed iterator per dataset, positioned at the batch step `start` needs.

    Dataset k's stream is seeded with seed + k and advanced by the steps the schedule gave
    it before `start`, so a resumed run reads exactly the batches it would have. Over
    several replicas, a dataset in files (`Dataset.train_part`) streams part r to replica
    r: each worker reads only its replicas' files, and a run of R replicas sees the same
    batches whether they are on one machine or several.
    """
    iterators = []
    for index in range(len(data.datasets)):
        if schedule is None:
            done, remaining = start, train_steps - start
        else:
            done = int(np.sum(schedule[:start] == index))
            remaining = int(np.sum(schedule[start:] == index))

        def stream(examples, size, seed, index=index, done=done, remaining=remaining):
            return training_batches(examples, size, seed, done, shuffle_buffer, remaining,
                                    data.augment(index))

        train_part = data.train_part(index)
        if strategy.num_replicas_in_sync == 1 or train_part is None:
            batches = stream(data.examples("train", index), batch_size, seed + index)
            iterators.append(iter(strategy.experimental_distribute_dataset(batches)))
        else:
            iterators.append(iter(strategy.distribute_datasets_from_function(
                functools.partial(_replica_batches, strategy.num_replicas_in_sync,
                                  train_part, data.examples("train", index), batch_size,
                                  seed + index, stream))))
    return iterators


def _replica_batches(replicas, train_part, examples, batch_size, seed, stream, context):
    """The per-replica batches of one input pipeline (`context`), replica by replica in
    turn: replica r's from part r of the files, or, when there are fewer files than
    replicas, its share of every global batch."""
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local
    size = context.get_per_replica_batch_size(batch_size)
    parts = [train_part(part, replicas) for part in range(first, first + local)]
    if parts[0] is None:
        logging.warning(
            "The training files are fewer than the run's %d replicas, so every worker reads "
            "all of them and keeps its share of each batch. Write them in %d files or a "
            "multiple (python -m framework.tfrecord --shards=%d) for each replica to read "
            "only its own.", replicas, replicas, replicas)
        return stream(examples, batch_size, seed).flat_map(
            lambda *batch: tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
                lambda component: tf.reshape(
                    component[first * size:(first + local) * size],
                    [local, size, *component.shape[1:]]), batch)))
    for part, examples_of_part in zip(range(first, first + local), parts):
        logging.info("Replica %d of %d reads its own part of the training files: %d "
                     "examples.", part, replicas, int(examples_of_part.cardinality()))
    streams = tuple(stream(examples_of_part, size, part_seed(seed, part))
                    for part, examples_of_part in zip(range(first, first + local), parts))
    if local == 1:
        return streams[0]
    return tf.data.Dataset.zip(streams).flat_map(
        lambda *batches: tf.data.Dataset.from_tensor_slices(
            tf.nest.map_structure(lambda *per_replica: tf.stack(per_replica), *batches)))


def part_seed(seed: int, part: int) -> int:
    """The stream seed of replica `part`'s part: distinct per part, fixed per run seed."""
    return seed * 7919 + part


def evaluation_datasets(strategy, data: RunData, batch_size: int) -> list:
    """The distributed evaluation batches of every dataset that has an evaluation split
    ([] when none has)."""
    return [strategy.experimental_distribute_dataset(
                evaluation_batches(data.examples("eval", index), batch_size))
            for index, dataset in enumerate(data.datasets) if dataset.eval is not None]
