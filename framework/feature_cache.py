"""Frozen-backbone features computed once and kept on disk.

A model plugin whose first part never trains declares it with
`capabilities.set_frozen_features(model, extractor, head)`, with model(x) ==
head(extractor(x)). When the dataset has a fingerprint and no augmentation, the run trains
and evaluates `head` on cached `extractor` outputs.
The cache key covers the dataset's fingerprint, the extractor's weights and its input and
output shapes and configuration, so changing any of them computes a new cache.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from framework import capabilities

_COMPLETE = "COMPLETE"  # written last: a folder without it is an interrupted computation


def cache_key(dataset_fingerprint: str, extractor) -> str:
    """A digest of the data's fingerprint and of the extractor: every layer's type and
    configuration (preprocessing included) and every weight's value, by position. Keras's
    automatic layer names are left out: they differ between otherwise equal models."""
    digest = hashlib.sha256()
    digest.update(dataset_fingerprint.encode())
    for layer in extractor._flatten_layers():  # pylint: disable=protected-access
        config = _without_names(layer.get_config()) if hasattr(layer, "get_config") else {}
        digest.update(type(layer).__name__.encode())
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for variable in extractor.weights:
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _without_names(value):
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items()
                if k not in ("name", "inbound_nodes", "input_layers", "output_layers")}
    if isinstance(value, (list, tuple)):
        return [_without_names(v) for v in value]
    return value


def feature_caches(model, datasets, enabled: bool, directory: str):
    """(the model to train, one FeatureCache per dataset or None): the head alone on cached
    features when the model's extractor is frozen and the data allows it; else the model."""
    frozen = capabilities.frozen_features(model)
    if not frozen or not enabled:
        return model, None
    if any(dataset.augment is not None for dataset in datasets):
        logging.info("Feature cache off: the dataset augments its training images, so the "
                     "backbone must see every new variant.")
        return model, None
    unkeyed = [dataset.info.name for dataset in datasets if not dataset.fingerprint]
    if unkeyed:
        logging.info("Feature cache off: dataset '%s' gives no fingerprint to key it by.",
                     unkeyed[0])
        return model, None
    extractor, head = frozen
    return head, [FeatureCache(directory, extractor, dataset.fingerprint) for dataset in datasets]


class FeatureCache:
    """`features(split, examples)`: the cached (extractor(x), y) dataset, made if missing,
    in `directory`/<cache_key>/<split>."""

    def __init__(self, directory: str, extractor, dataset_fingerprint: str,
                 batch_size: int = 64):
        self.root, self.fingerprint = directory, dataset_fingerprint
        self.extractor, self.batch_size = extractor, batch_size

    def features(self, split: str, examples: tf.data.Dataset) -> tf.data.Dataset:
        # Keyed when first used, not when built: by then the builder has restored the run's
        # checkpoint or loaded Experiment.init_checkpoint into the extractor.
        path = os.path.join(self.root, cache_key(self.fingerprint, self.extractor), split)
        if tf.io.gfile.exists(os.path.join(path, _COMPLETE)):
            logging.info("Feature cache: reusing %s", path)
        else:
            logging.info("Feature cache: computing the %s features into %s", split, path)
            self._compute(path, examples)
        return tf.data.Dataset.load(os.path.join(path, "data"))

    def _compute(self, path: str, examples: tf.data.Dataset) -> None:
        extract = tf.function(lambda x: self.extractor(x, training=False))
        features, labels = [], []
        for batch_features, batch_labels in examples.batch(self.batch_size):
            features.append(extract(batch_features).numpy())
            labels.append(batch_labels.numpy())
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path)  # an interrupted computation
        tf.data.Dataset.from_tensor_slices(
            (np.concatenate(features), np.concatenate(labels))).save(os.path.join(path, "data"))
        with tf.io.gfile.GFile(os.path.join(path, _COMPLETE), "w") as f:
            f.write("ok")
