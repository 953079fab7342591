"""A generated, learnable classification dataset for tests and quick experiments."""

import numpy as np
import tensorflow as tf

from framework.data import Dataset, DatasetInfo, HeadInfo
from framework.registry import register


@register.dataset
def synthetic(input_shape=(28, 28, 1), num_classes=10, train_size=1024, eval_size=256,
              noise=0.3, seed=0):
    """Noisy copies of one random prototype per class: learnable in a few dozen steps.

    Deterministic in `seed`, needs no files, so tests and examples run offline.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(0.0, 1.0, (num_classes, *input_shape)).astype(np.float32)

    def split(size):
        labels = rng.integers(0, num_classes, size)
        features = prototypes[labels] + noise * rng.standard_normal(
            (size, *input_shape)).astype(np.float32)
        return tf.data.Dataset.from_tensor_slices((features, labels.astype(np.int64)))

    info = DatasetInfo(
        name="synthetic", input_shape=tuple(input_shape), task="classification",
        num_outputs=num_classes, class_names=tuple(f"class_{i}" for i in range(num_classes)),
        train_size=train_size, eval_size=eval_size,
    )
    return Dataset(train=split(train_size), eval=split(eval_size), info=info)


@register.dataset
def synthetic_heads(heads=("a", "b"), labelled=None, input_shape=(8, 8, 1),
                    num_classes=3, train_size=512, eval_size=128, noise=0.3, seed=0):
    """A generated multi-head dataset: each head has its own class per example.

    Features are the sum of one random prototype per head (the one of that head's class)
    plus noise, so every head is learnable from the same input. labelled: the heads this
    dataset labels (default all), for alternating training in tests and examples.
    """
    rng = np.random.default_rng(seed)
    prototypes = {head: rng.uniform(0.0, 1.0, (num_classes, *input_shape)).astype(np.float32)
                  for head in heads}
    labelled = tuple(labelled or heads)

    def split(size):
        classes = {head: rng.integers(0, num_classes, size) for head in heads}
        features = sum(prototypes[head][classes[head]] for head in heads)
        features = features + noise * rng.standard_normal(features.shape).astype(np.float32)
        labels = {head: classes[head].astype(np.int64) for head in labelled}
        return tf.data.Dataset.from_tensor_slices((features, labels))

    head_infos = [HeadInfo(head, "classification", num_classes,
                           tuple(f"class_{i}" for i in range(num_classes))) for head in labelled]
    info = DatasetInfo.multi_head("synthetic_heads", input_shape, head_infos,
                                  train_size=train_size, eval_size=eval_size)
    return Dataset(train=split(train_size), eval=split(eval_size), info=info)
