"""Datasets as sharded TFRecord files: `python -m framework.tfrecord` writes them, the
`tfrecord` dataset plugin reads them back example for example, and damage is named."""

import gzip
import itertools
import json
import os
import re
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

import configs
from helpers import FASHION_MNIST_DIR, REPO, cli_environment, run_cli
from framework import pipeline, registry, verified_files
from framework.errors import UserError
from plugins.datasets.captcha import captcha
from plugins.datasets.idx import fashion_mnist
from plugins.datasets.image_folder import image_folder
from plugins.datasets.synthetic import synthetic
from plugins.datasets.tfrecord import tfrecord
from test_image_folder import write_images

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")


# An experiment for the converter to read its dataset from; tests bind another dataset.
EXPERIMENT = [f"--gin_bindings={line}" for line in configs.SYNTHETIC_MLP.strip().splitlines()]


def convert(*args, timeout=300) -> subprocess.CompletedProcess:
    """`python -m framework.tfrecord` on EXPERIMENT, then `args`."""
    return subprocess.run([sys.executable, "-m", "framework.tfrecord", *EXPERIMENT, *args],
                          cwd=REPO, env=cli_environment(), capture_output=True, text=True,
                          timeout=timeout)


def built(plugin, bindings: str = ""):
    """The Dataset a dataset plugin builds with gin `bindings`."""
    gin.clear_config()
    gin.parse_config(bindings)
    return registry.build(plugin)


def converted(directory):
    return built(tfrecord, f"datasets.tfrecord.directory = '{directory}'")


def elements(dataset: tf.data.Dataset) -> list:
    return [tf.nest.flatten(element) for element in dataset.as_numpy_iterator()]


def assert_same_examples(original, converted):
    assert converted.info == original.info
    for split in ("train", "eval"):
        mine, theirs = elements(getattr(original, split)), elements(getattr(converted, split))
        assert len(mine) == len(theirs)
        for a, b in zip(mine, theirs):
            assert all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b))


def small_fashion_mnist(folder, train: int = 300, test: int = 100):
    """The first images of the real Fashion-MNIST as IDX files of their own."""
    folder.mkdir()
    for prefix, count in (("train", train), ("t10k", test)):
        for kind, header in (("images", 16), ("labels", 8)):
            with gzip.open(FASHION_MNIST_DIR / f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz") as f:
                data = f.read()
            item = 784 if kind == "images" else 1
            head = bytearray(data[:header])
            head[4:8] = count.to_bytes(4, "big")
            name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
            (folder / name).write_bytes(bytes(head) + data[header:header + count * item])
    return folder


@needs_fashion_mnist
def test_fashion_mnist_round_trip_as_png(tmp_path):
    data = small_fashion_mnist(tmp_path / "fashion")
    result = convert("--gin_bindings=Experiment.dataset = @datasets.fashion_mnist",
                     f"--gin_bindings=datasets.fashion_mnist.data_dir = '{data}'",
                     f"--output={tmp_path / 'records'}", "--shards=3")
    assert result.returncode == 0, result.stderr
    assert "train 300 examples in 3 shards, eval 100 examples in 3 shards (png images)" \
        in result.stdout
    metadata = json.loads((tmp_path / "records" / "metadata.json").read_text())
    assert metadata["spec"]["features"]["encoding"] == "png"
    assert_same_examples(built(fashion_mnist, f"datasets.fashion_mnist.data_dir = '{data}'"),
                         converted(tmp_path / "records"))


def test_captcha_round_trip_keeps_every_head(tmp_path):
    bindings = ["datasets.captcha.train_size = 60", "datasets.captcha.eval_size = 20",
                f"datasets.captcha.cache_dir = '{tmp_path / 'cache'}'"]
    result = convert("--gin_bindings=Experiment.dataset = @datasets.captcha",
                     *[f"--gin_bindings={b}" for b in bindings],
                     f"--output={tmp_path / 'records'}", "--shards=4", "--compression=gzip")
    assert result.returncode == 0, result.stderr
    files = sorted(os.listdir(tmp_path / "records"))
    assert files[0] == "eval-00000-of-00004.tfrecord.gz" and "metadata.json" in files
    records = converted(tmp_path / "records")
    assert [head.name for head in records.info.heads] == ["char_0", "char_1", "char_2",
                                                          "char_3"]
    assert_same_examples(built(captcha, "\n".join(bindings)), records)


def test_image_folder_round_trip(tmp_path):
    for seed, (name, colour) in enumerate({"blue": (0.1, 0.2, 0.9), "red": (0.9, 0.1, 0.1)}
                                          .items()):
        write_images(tmp_path / "images" / name, colour, 10, seed)
    bindings = [f"datasets.image_folder.directory = '{tmp_path / 'images'}'",
                "datasets.image_folder.image_size = (16, 16)"]
    result = convert("--gin_bindings=Experiment.dataset = @datasets.image_folder",
                     *[f"--gin_bindings={b}" for b in bindings],
                     f"--output={tmp_path / 'records'}", "--shards=2")
    assert result.returncode == 0, result.stderr
    assert_same_examples(built(image_folder, "\n".join(bindings)),
                         converted(tmp_path / "records"))


@pytest.fixture(scope="module")
def synthetic_records(tmp_path_factory):
    """configs.SYNTHETIC_MLP's data converted into 4 raw shards."""
    folder = tmp_path_factory.mktemp("synthetic")
    result = convert(f"--output={folder / 'records'}", "--shards=4")
    assert result.returncode == 0, result.stderr
    return folder / "records"


def test_training_on_the_files_is_training_on_the_data(synthetic_records, tmp_path):
    """The same examples in the same order: the same run, to the last bit of its loss."""
    runs = {}
    for name, extra in (("memory", []), ("files", [
            "--gin_bindings=Experiment.dataset = @datasets.tfrecord",
            f"--gin_bindings=datasets.tfrecord.directory = '{synthetic_records}'"])):
        result = run_cli(*EXPERIMENT, *extra, f"--model_dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr
        runs[name] = re.search(r"final eval loss: (\S+)", result.stdout).group(1)
    assert runs["files"] == runs["memory"]


def test_a_damaged_shard_is_named(synthetic_records, tmp_path):
    copy = tmp_path / "records"
    subprocess.run(["cp", "-r", str(synthetic_records), str(copy)], check=True)
    shard = copy / "train-00002-of-00004.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the record's checksum fails
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match=re.escape(str(shard)) + r" is damaged or unreadable"
                       r".*Convert the dataset again"):
        converted(copy)
    shard.write_bytes(bytes(data[:-10]))  # truncated
    with pytest.raises(UserError, match=re.escape(str(shard)) + r" has \d+ bytes, and the "
                       r"conversion wrote \d+"):
        converted(copy)


def test_shards_are_verified_once_per_machine_until_they_change(synthetic_records, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setattr(verified_files, "MARKS_DIR", str(tmp_path / "marks"))
    copy = tmp_path / "records"
    subprocess.run(["cp", "-r", str(synthetic_records), str(copy)], check=True)
    converted(copy)
    assert len(os.listdir(tmp_path / "marks")) == 8  # 4 training and 4 evaluation shards
    shard = copy / "train-00001-of-00004.tfrecord"
    times = (shard.stat().st_atime_ns, shard.stat().st_mtime_ns)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=times)  # damage that keeps size and time: not read again
    converted(copy)
    os.utime(shard)  # a file rewritten: verified again
    with pytest.raises(UserError, match=re.escape(str(shard)) + r" is damaged"):
        converted(copy)


def test_an_unfinished_conversion_is_refused_and_then_replaced(synthetic_records, tmp_path):
    unfinished = tmp_path / "records"
    unfinished.mkdir()
    (unfinished / "train-00000-of-00004.tfrecord.partial").write_bytes(b"half")
    with pytest.raises(UserError, match="not a finished conversion"):
        converted(unfinished)
    result = convert(f"--output={unfinished}", "--shards=4")
    assert result.returncode == 0, result.stderr
    assert not [name for name in os.listdir(unfinished) if name.endswith(".partial")]
    again = convert(f"--output={unfinished}", "--shards=4")
    assert again.returncode == 2 and again.stderr.startswith("error: ") and \
        "--overwrite" in again.stderr


# -- reading in parts: one part of the files per replica ------------------------------------

def mirrored_over_two_cpus():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


def replica_batches(dataset, start: int, steps: int, batch_size: int = 32, seed: int = 5):
    """[step][replica] -> that replica's features, from the run's iterator at `start`."""
    strategy = mirrored_over_two_cpus()
    data = pipeline.RunData([dataset])
    iterator, = pipeline.training_iterators(strategy, data, None, batch_size, seed, None,
                                            start, start + steps)
    return [[features.numpy() for features in strategy.experimental_local_results(batch[0])]
            for batch in itertools.islice(iterator, steps)]


def test_each_replica_streams_its_own_files_and_resumes_exactly(synthetic_records):
    dataset = converted(synthetic_records)
    whole = np.stack([features for features, _ in dataset.train.as_numpy_iterator()])
    index = {row.tobytes(): i for i, row in enumerate(whole)}
    epoch = replica_batches(dataset, 0, 16)  # two epochs of each 128-example part
    for replica in (0, 1):
        seen = [index[row.tobytes()] for step in epoch[:8] for row in step[replica]]
        # Part r is shards r and r + 2, which hold the examples i with i mod 4 in {r, r+2}:
        # every one of them once per epoch.
        assert sorted(seen) == [i for i in range(256) if i % 2 == replica]
        later = [index[row.tobytes()] for step in epoch[8:] for row in step[replica]]
        assert sorted(later) == sorted(seen) and later != seen  # reshuffled
    resumed = replica_batches(dataset, 5, 11)
    for expected, actual in zip(epoch[5:], resumed):
        for replica in (0, 1):
            np.testing.assert_array_equal(actual[replica], expected[replica])


def test_fewer_files_than_replicas_fall_back_to_sharing_batches_with_a_warning(tmp_path,
                                                                                caplog):
    result = convert(f"--output={tmp_path / 'one'}", "--shards=1")
    assert result.returncode == 0, result.stderr
    dataset = converted(tmp_path / "one")
    with caplog.at_level("WARNING"):
        from_files = replica_batches(dataset, 0, 3)
    assert "training files are fewer than the run's 2 replicas" in caplog.text
    assert "--shards=2" in caplog.text
    in_memory = replica_batches(built(synthetic, "datasets.synthetic.train_size = 256\n"
                                                 "datasets.synthetic.eval_size = 64"), 0, 3)
    for expected, actual in zip(in_memory, from_files):  # the global stream, split in two
        for replica in (0, 1):
            np.testing.assert_array_equal(actual[replica], expected[replica])
