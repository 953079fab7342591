"""Dataset plugins and the input pipeline."""

import gzip
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from framework import registry
from framework.data import evaluation_batches, training_batches
from framework.data import _batches_kept_ready  # pylint: disable=protected-access
from framework.errors import UserError
from helpers import FASHION_MNIST_DIR
from plugins.datasets import idx


def labels_of(batches, count):
    return [b[1].numpy().tolist() for b in batches.take(count)]


def numbered(n):
    """Examples whose label is their index, so batches show the order."""
    return tf.data.Dataset.from_tensor_slices((tf.zeros((n, 2)), tf.range(n, dtype=tf.int64)))


def test_every_epoch_is_a_permutation_and_epochs_differ():
    batches = labels_of(training_batches(numbered(40), 10, seed=3), 8)
    first, second = sum(batches[:4], []), sum(batches[4:], [])
    assert sorted(first) == sorted(second) == list(range(40))
    assert first != second and first != list(range(40))


def test_stream_is_a_function_of_seed_and_step():
    whole = labels_of(training_batches(numbered(40), 10, seed=3), 12)
    for start in (1, 4, 5, 9):
        resumed = labels_of(training_batches(numbered(40), 10, seed=3, start_step=start),
                            12 - start)
        assert resumed == whole[start:]
    other_seed = labels_of(training_batches(numbered(40), 10, seed=4), 12)
    assert other_seed != whole


def test_partial_last_batch_is_dropped_in_training_kept_in_eval():
    batches = labels_of(training_batches(numbered(25), 10, seed=0), 4)
    assert all(len(b) == 10 for b in batches)
    evaluation = [b[1].numpy().tolist() for b in evaluation_batches(numbered(25), 10)]
    assert sum(evaluation, []) == list(range(25))


def test_every_worker_builds_whole_batches_and_keeps_its_share():
    """The streams tell a multi-worker strategy to shard by data: with tf.data's default
    it would split the files a pipeline reads among the workers, and fail when there are
    fewer files than workers (an evaluation split in one TFRecord file did)."""
    data = tf.data.experimental.AutoShardPolicy.DATA
    streams = [training_batches(numbered(25), 10, seed=0),
               training_batches(numbered(25), 10, seed=0, shuffle_buffer=8),
               evaluation_batches(numbered(25), 10)]
    for stream in streams:
        assert stream.options().experimental_distribute.auto_shard_policy == data


def test_too_small_training_set_is_a_clear_error():
    with pytest.raises(UserError, match="fewer than one batch of 10"):
        training_batches(numbered(5), 10, seed=0)


def write_idx(path: pathlib.Path, array: np.ndarray, gzipped: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if gzipped else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def make_idx_folder(folder: pathlib.Path, gzipped: bool, train=6, test=4):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, size in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (size, 28, 28))
        labels = rng.integers(0, 10, size)
        suffix = ".gz" if gzipped else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images, gzipped)
        write_idx(folder / f"{split}-labels-idx1-ubyte{suffix}", labels, gzipped)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_files_read_gzipped_or_not(tmp_path, gzipped):
    arrays = make_idx_folder(tmp_path, gzipped)
    with registry.building():
        dataset = idx.mnist(data_dir=str(tmp_path))
    features, labels = next(iter(dataset.train.batch(6)))
    np.testing.assert_allclose(features.numpy()[..., 0], arrays["train"][0] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(labels.numpy(), arrays["train"][1])
    assert dataset.info.eval_size == 4 and dataset.info.input_shape == (28, 28, 1)


def test_explicit_data_dir_without_files_is_an_error_not_a_fallback(tmp_path):
    with registry.building(), pytest.raises(UserError, match="does not hold the fashion_mnist"):
        idx.fashion_mnist(data_dir=str(tmp_path))


def test_environment_variable_is_searched(tmp_path, monkeypatch):
    make_idx_folder(tmp_path, gzipped=True)
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    with registry.building():
        assert idx.mnist().info.train_size == 6


def test_nothing_found_and_offline_says_how_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(idx, "_keras_download", lambda *a: (_ for _ in ()).throw(
        OSError("URL fetch failure")))
    with registry.building(), pytest.raises(UserError, match="Cannot find the mnist data"):
        idx.mnist()


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    with registry.building():
        dataset = idx.fashion_mnist()
    assert (dataset.info.train_size, dataset.info.eval_size) == (60000, 10000)
    assert dataset.info.class_names[9] == "Ankle boot"
    features, labels = next(iter(dataset.train.batch(1000)))
    assert features.shape == (1000, 28, 28, 1)
    assert 0.0 <= float(tf.reduce_min(features)) and float(tf.reduce_max(features)) <= 1.0
    assert sorted(set(labels.numpy().tolist())) == list(range(10))


def test_stream_can_end_after_the_steps_a_run_has_left():
    batches = training_batches(numbered(40), 10, seed=3, start_step=2, num_steps=5)
    whole = labels_of(training_batches(numbered(40), 10, seed=3), 7)
    assert [b[1].numpy().tolist() for b in batches] == whole[2:7]


def test_the_gathered_stream_keeps_up_to_16_batches_ready_within_64_megabytes():
    def batch(shape):
        return tf.data.Dataset.from_tensors((tf.zeros(shape), tf.zeros(shape[:1], tf.int64)))
    assert _batches_kept_ready(batch([32, 28, 28, 1])) == 16  # 100 KB a batch
    assert _batches_kept_ready(batch([32, 128, 128, 3])) == 10  # 6.3 MB
    assert _batches_kept_ready(batch([32, 299, 299, 3])) == 2  # 34 MB: at least 2
