"""Damaged data files, fuzzed: every outcome is a valid load or one UserError, never another
exception (framework.errors.reading is what makes this a property of the readers).

Copies of the real data files are truncated or corrupted at seeded random offsets and then
go through the real loading and build path (framework.assembly.build, which writes
nothing). Each fuzzer stops after its case count or its time budget, whichever comes first,
so the file stays fast on a loaded machine; the cases run are always the same seeded prefix.
One case goes through the command line: exit status 2, one 'error:' line, no traceback, no
model_dir.
"""

import gzip
import pathlib
import random
import shutil
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from framework.errors import UserError
from helpers import FASHION_MNIST_DIR, build_run, run_cli

SEED = 20251125
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

needs_fashion_mnist = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")

BUILD = """
Experiment.loss = @losses.sparse_categorical_crossentropy
Experiment.optimizer = @optimizers.sgd
Experiment.model = @models.mlp
models.mlp.hidden_units = (4,)
Experiment.batch_size = 8
"""


def damaged(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """`data` truncated, or with bytes flipped, zeroed or randomised, at a random offset
    (a third of the time inside the first 64 bytes, where the headers are)."""
    size = len(data)
    offset = rng.randrange(min(size, 64)) if rng.random() < 0.33 else rng.randrange(size)
    kind = rng.choice(["truncate", "truncate", "flip", "zeros", "random"])
    if kind == "truncate":
        return data[:offset], f"truncated at {offset}"
    length = rng.randint(1, 64)
    if kind == "flip":
        patch = bytes(b ^ 0xFF for b in data[offset:offset + length])
    elif kind == "zeros":
        patch = bytes(len(data[offset:offset + length]))
    else:
        patch = rng.randbytes(len(data[offset:offset + length]))
    return data[:offset] + patch + data[offset + len(patch):], f"{kind} {length} at {offset}"


def fuzz(cases: int, budget_s: float, one_case, least: int = 4) -> dict:
    """Runs one_case(rng, index) -> outcome until `cases` ran or `budget_s` passed (but at
    least `least` cases); returns {outcome: count}."""
    rng, outcomes, start = random.Random(SEED), {}, time.monotonic()
    for index in range(cases):
        if index >= least and time.monotonic() - start > budget_s:
            break
        outcome = one_case(rng, index)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{one_case.__name__}: {outcomes}")
    return outcomes


def assert_clean_error(error: UserError, path: pathlib.Path, model_dir: pathlib.Path):
    message = str(error)
    assert str(path) in message and "Fix" in message, message
    assert not model_dir.exists() or not any(model_dir.iterdir()), "a failed start wrote"


# -- Fashion-MNIST's IDX files, gzipped and not ------------------------------------------------


@pytest.fixture(scope="module")
def idx_copies(tmp_path_factory):
    """{'gz': folder, 'raw': folder}: intact copies of the four files, as shipped and
    uncompressed (read_idx takes both; corruption in an uncompressed file has no CRC to
    catch it)."""
    root = tmp_path_factory.mktemp("idx")
    folders = {"gz": root / "gz", "raw": root / "raw"}
    for folder in folders.values():
        folder.mkdir()
    for stem in IDX_FILES:
        shutil.copy(FASHION_MNIST_DIR / f"{stem}.gz", folders["gz"] / f"{stem}.gz")
        with gzip.open(FASHION_MNIST_DIR / f"{stem}.gz", "rb") as packed:
            (folders["raw"] / stem).write_bytes(packed.read())
    return folders


@needs_fashion_mnist
def test_damaged_idx_files_load_or_fail_cleanly(idx_copies, tmp_path):
    def idx_case(rng, index):
        variant = rng.choice(["gz", "raw"])
        stem = rng.choice(IDX_FILES)
        name = stem + (".gz" if variant == "gz" else "")
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        for other in idx_copies[variant].iterdir():  # the intact files, linked
            if other.name != name:
                (folder / other.name).symlink_to(other)
        data, how = damaged(rng, (idx_copies[variant] / name).read_bytes())
        (folder / name).write_bytes(data)
        model_dir = tmp_path / f"run{index}"
        gin.clear_config()
        try:
            _, run = build_run(BUILD + f"""
                Experiment.dataset = @datasets.fashion_mnist
                datasets.fashion_mnist.data_dir = '{folder}'""", model_dir)
        except UserError as error:
            assert_clean_error(error, folder / name, model_dir)
            return "UserError"
        finally:
            (folder / name).unlink()
        labels = np.concatenate([y.numpy() for _, y in run.datasets[0].train.batch(60000)])
        assert labels.min() >= 0 and labels.max() < 10, how
        images, _ = next(iter(run.datasets[0].eval.batch(10000)))
        assert images.shape[1:] == (28, 28, 1) and 0 <= float(tf.reduce_min(images)), how
        return "valid"

    outcomes = fuzz(cases=30, budget_s=25, one_case=idx_case)
    assert outcomes.get("UserError")


# -- a folder of images ------------------------------------------------------------------------


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    """One 28x28 grey image as a PNG, JPEG, BMP or GIF file's bytes."""
    if fmt in ("png", "jpg"):
        image = tf.constant(pixels[..., np.newaxis])
        return (tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image)).numpy()
    import io  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="BMP" if fmt == "bmp" else "GIF")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """{relative path: bytes}: three classes of eight images each, in four formats; Fashion-
    MNIST's first images when it is installed, else noise."""
    rng = np.random.default_rng(0)
    if FASHION_MNIST_DIR.is_dir():
        from plugins.datasets.idx import read_idx  # pylint: disable=import-outside-toplevel
        pixels = read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")[:24]
    else:
        pixels = rng.integers(0, 256, (24, 28, 28), dtype=np.uint8)
    formats = ("png", "jpg", "bmp", "gif")
    return {f"class_{i % 3}/img_{i:02d}.{formats[i % 4]}": encoded(pixels[i], formats[i % 4])
            for i in range(24)}


def test_damaged_images_load_or_fail_cleanly(image_files, tmp_path, monkeypatch):
    from framework import verified_files  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(verified_files, "MARKS_DIR", str(tmp_path / "checked"))

    def image_case(rng, index):
        root = tmp_path / f"case{index}"
        for name, data in image_files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        name = rng.choice(sorted(image_files))
        data, how = damaged(rng, image_files[name])
        (root / name).write_bytes(data)
        model_dir = tmp_path / f"run{index}"
        gin.clear_config()
        try:
            _, run = build_run(BUILD + f"""
                Experiment.dataset = @datasets.image_folder
                image_folder.directory = '{root}'
                image_folder.image_size = (28, 28)""", model_dir)
        except UserError as error:
            assert_clean_error(error, root / name, model_dir)
            return "UserError"
        # A valid load decodes every example the run will read, without an error.
        dataset = run.datasets[0]
        count = sum(1 for _ in dataset.train) + sum(1 for _ in dataset.eval)
        assert count == dataset.info.train_size + dataset.info.eval_size, how
        return "valid"

    outcomes = fuzz(cases=60, budget_s=10, one_case=image_case)
    assert outcomes.get("UserError")


# -- the captcha cache -------------------------------------------------------------------------


def test_a_damaged_captcha_cache_is_drawn_again(tmp_path, caplog):
    pytest.importorskip("captcha")
    from framework import registry  # pylint: disable=import-outside-toplevel
    from plugins.datasets import captcha  # pylint: disable=import-outside-toplevel
    settings = dict(length=2, image_size=(12, 24), train_size=24, eval_size=8, workers=1,
                    cache_dir=str(tmp_path))
    with registry.building():
        intact = captcha.captcha(**settings)
    (cache,) = tmp_path.glob("captcha-*.npz")
    pristine = cache.read_bytes()
    expected = [x.numpy() for x, _ in intact.train]

    def captcha_case(rng, index):
        data, how = damaged(rng, pristine)
        cache.write_bytes(data)
        caplog.clear()
        with registry.building():
            dataset = captcha.captcha(**settings)
        images = [x.numpy() for x, _ in dataset.train]
        if "is damaged" in caplog.text:  # drawn again: new images, the same labels
            assert len(images) == len(expected), how
            return "drawn again"
        assert all(np.array_equal(a, b) for a, b in zip(images, expected)), how
        return "valid"

    outcomes = fuzz(cases=30, budget_s=6, one_case=captcha_case)
    assert outcomes.get("drawn again")


# -- through the command line ------------------------------------------------------------------


@needs_fashion_mnist
def test_a_truncated_archive_is_one_message_from_the_command_line(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for stem in IDX_FILES:
        (folder / f"{stem}.gz").symlink_to(FASHION_MNIST_DIR / f"{stem}.gz")
    damaged_file = folder / "train-labels-idx1-ubyte.gz"
    data = damaged_file.read_bytes()
    damaged_file.unlink()
    damaged_file.write_bytes(data[:random.Random(SEED).randrange(len(data))])
    model_dir = tmp_path / "run"
    result = run_cli("--gin_file=gin/mlp.gin", f"--model_dir={model_dir}",
                     f"--gin_bindings=datasets.fashion_mnist.data_dir = '{folder}'")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(damaged_file) in errors[0], result.stderr
    assert "is damaged" in errors[0] and "Fix: replace it with an intact copy" in errors[0]
    assert not model_dir.exists()
