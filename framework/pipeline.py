"""A run's streams: which dataset feeds each step, its examples (or cached features), and
the distributed iterators positioned at the step a run starts from.
"""

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


def training_iterators(strategy, data: RunData, schedule: np.ndarray | None,
                       batch_size: int, seed: int, shuffle_buffer: int | None, start: int,
                       train_steps: int) -> list:
    """One distributed iterator per dataset, positioned at the batch step `start` needs.

    Dataset k's stream is seeded with seed + k and advanced by the steps the schedule gave
    it before `start`, so a resumed run reads exactly the batches it would have.
    """
    iterators = []
    for index in range(len(data.datasets)):
        if schedule is None:
            done, remaining = start, train_steps - start
        else:
            done = int(np.sum(schedule[:start] == index))
            remaining = int(np.sum(schedule[start:] == index))
        batches = training_batches(data.examples("train", index), batch_size, seed + index,
                                   done, shuffle_buffer, num_steps=remaining,
                                   augment=data.augment(index))
        iterators.append(iter(strategy.experimental_distribute_dataset(batches)))
    return iterators


def evaluation_datasets(strategy, data: RunData, batch_size: int) -> list:
    """The distributed evaluation batches of every dataset that has an evaluation split
    ([] when none has)."""
    return [strategy.experimental_distribute_dataset(
                evaluation_batches(data.examples("eval", index), batch_size))
            for index, dataset in enumerate(data.datasets) if dataset.eval is not None]
