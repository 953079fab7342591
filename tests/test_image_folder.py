"""The image_folder dataset: classes from folders, splits, bad files, augmentation."""

import logging
import pathlib

import gin
import numpy as np
import pytest
import tensorflow as tf

from framework import registry
from framework.data import training_batches
from framework.errors import UserError
from framework.experiment import Experiment
from plugins.datasets.image_folder import image_folder

COLOURS = {"blue": (0.1, 0.2, 0.9), "red": (0.9, 0.1, 0.1)}


def write_images(folder: pathlib.Path, colour, count, seed, fmt="png"):
    """Noisy images of one dominant colour, as real PNG or JPEG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(np.array(colour) + 0.15 * rng.standard_normal((24, 32, 3)), 0, 1)
        pixels = tf.constant((pixels * 255).astype(np.uint8))
        data = tf.io.encode_png(pixels) if fmt == "png" else tf.io.encode_jpeg(pixels)
        (folder / f"img_{i:03d}.{fmt}").write_bytes(data.numpy())


@pytest.fixture
def folder(tmp_path):
    for seed, (name, colour) in enumerate(COLOURS.items()):
        write_images(tmp_path / "images" / name, colour, 20, seed,
                     fmt="png" if name == "red" else "jpg")
    return tmp_path / "images"


def built(**kwargs):
    with registry.building():
        return image_folder(image_size=(16, 16), **kwargs)


def test_classes_come_from_sorted_folder_names_with_a_seeded_split(folder):
    dataset = built(directory=str(folder), validation_fraction=0.25)
    assert dataset.info.class_names == ("blue", "red")
    assert dataset.info.task == "binary" and dataset.info.num_outputs == 1
    assert (dataset.info.train_size, dataset.info.eval_size) == (30, 10)
    images, labels = next(iter(dataset.train.batch(100)))
    assert images.shape == (30, 16, 16, 3) and labels.shape == (30, 1)
    # blue images have more blue than red, red the other way round
    blue_minus_red = tf.reduce_mean(images[..., 2] - images[..., 0], axis=[1, 2])
    np.testing.assert_array_equal((blue_minus_red.numpy() < 0).astype(np.float32),
                                  labels.numpy()[:, 0])
    again = built(directory=str(folder), validation_fraction=0.25)
    assert np.array_equal(next(iter(again.eval.batch(100)))[0], next(iter(dataset.eval.batch(100)))[0])


def test_train_and_validation_subfolders_are_used_when_present(tmp_path):
    for split, count in (("train", 6), ("validation", 3)):
        for seed, (name, colour) in enumerate(COLOURS.items()):
            write_images(tmp_path / split / name, colour, count, seed)
        write_images(tmp_path / split / "green", (0.1, 0.9, 0.1), count, 9)
    dataset = built(directory=str(tmp_path))
    assert dataset.info.class_names == ("blue", "green", "red")
    assert dataset.info.task == "classification" and dataset.info.num_outputs == 3
    assert (dataset.info.train_size, dataset.info.eval_size) == (18, 9)


def test_a_file_that_is_not_an_image_is_skipped_with_a_warning(folder, caplog):
    (folder / "red" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with caplog.at_level(logging.WARNING):
        dataset = built(directory=str(folder), validation_fraction=0.0)
    assert "Skipping " + str(folder / "red" / "broken.jpg") in caplog.text
    assert "Skipped 1 file(s)" in caplog.text
    assert sum(1 for _ in dataset.train) == 40


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist"),
    (lambda root: (root / "only_one").mkdir(parents=True), "at least two"),
    (lambda root: [(root / name).mkdir(parents=True) for name in ("a", "b")], "has no images"),
])
def test_bad_folders_are_clear_errors(tmp_path, setup, message):
    setup(tmp_path / "images")
    with pytest.raises(UserError, match=message):
        built(directory=str(tmp_path / "images"))


def test_augmentation_is_new_each_epoch_and_the_same_after_a_resume(folder):
    dataset = built(directory=str(folder), validation_fraction=0.0, flip=True, rotation=0.1,
                    zoom=0.2, contrast=0.3)
    stream = lambda start: training_batches(dataset.train, 8, seed=1, start_step=start,  # noqa: E731
                                            augment=dataset.augment)
    whole = [images.numpy() for images, _ in stream(0).take(12)]
    resumed = [images.numpy() for images, _ in stream(7).take(5)]
    for a, b in zip(whole[7:], resumed):
        np.testing.assert_array_equal(a, b)
    plain = built(directory=str(folder), validation_fraction=0.0)
    originals = np.stack([x.numpy() for x, _ in plain.train])
    assert not any(np.allclose(image, original, atol=1e-3)
                   for image in whole[0] for original in originals)  # augmented
    assert 0.0 <= whole[0].min() and whole[0].max() <= 1.0


def test_shifts_move_the_image_by_at_most_the_fraction_given():
    from plugins.datasets.image_augmentation import augmenter  # pylint: disable=import-outside-toplevel
    image = np.zeros((20, 20, 1), np.float32)
    image[10, 10] = 1.0  # one bright pixel: where it lands is how far the image moved
    augment = augmenter(shift=0.1)  # up to 2 pixels either way
    moves = []
    for seed in range(40):
        moved, _ = augment(tf.constant(image), 0, tf.constant([seed, 0]))
        weights = moved.numpy()[..., 0]
        rows, columns = np.indices(weights.shape)
        moves.append(((rows * weights).sum() / weights.sum() - 10,
                      (columns * weights).sum() / weights.sum() - 10))
        assert weights.sum() == pytest.approx(1.0, abs=1e-4)  # moved, not blurred away
    moves = np.array(moves)
    assert np.abs(moves).max() <= 2.0 + 1e-4
    assert (moves < -0.5).any(axis=0).all() and (moves > 0.5).any(axis=0).all()


def test_a_model_learns_the_folder(folder, tmp_path):
    gin.parse_config(f"""
        Experiment.dataset = @datasets.image_folder
        image_folder.directory = '{folder}'
        image_folder.image_size = (16, 16)
        image_folder.flip = True
        Experiment.model = @models.cnn
        models.cnn.filters = 8
        models.cnn.dense_units = 16
        Experiment.loss = @losses.binary_crossentropy
        Experiment.optimizer = @optimizers.adam
        optimizers.adam.learning_rate = 0.01
        Experiment.batch_size = 8
        Experiment.train_steps = 40
    """)
    results = Experiment().run(str(tmp_path / "run"))
    assert results["eval"]["accuracy"] == 1.0


def test_predict_prints_class_names_saved_with_the_run(folder, tmp_path):
    from helpers import run_cli  # pylint: disable=import-outside-toplevel
    config = tmp_path / "folder.gin"
    config.write_text(f"""
include 'gin/base.gin'
Experiment.dataset = @datasets.image_folder
image_folder.directory = '{folder}'
image_folder.image_size = (16, 16)
Experiment.model = @models.mlp
Experiment.loss = @losses.binary_crossentropy
Experiment.optimizer = @optimizers.adam
optimizers.adam.learning_rate = 0.01
Experiment.batch_size = 8
Experiment.train_steps = 30
""")
    model_dir = tmp_path / "run"
    trained = run_cli(f"--gin_file={config}", f"--model_dir={model_dir}")
    assert trained.returncode == 0, trained.stderr
    assert '"class_names": [\n    "blue",\n    "red"\n  ]' in (
        model_dir / "dataset_info.json").read_text()
    predicted = run_cli(f"--gin_file={config}", f"--model_dir={model_dir}", "--mode=predict",
                        f"--predict={folder / 'red'}", "--top_k=2")
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert len(lines) == 20 and lines[0].startswith(str(folder / "red" / "img_000.png") + ": red ")
    assert all(": red " in line and ", blue " in line for line in lines)
    missing = run_cli(f"--gin_file={config}", f"--model_dir={model_dir}", "--mode=predict",
                      f"--predict={folder / 'nothing'}")
    assert missing.returncode == 2 and "neither a file nor a folder" in missing.stderr
