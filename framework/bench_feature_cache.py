"""Benchmark: a training epoch on cached frozen-backbone features vs recomputing them.

    python -m framework.bench_feature_cache [--images_per_class=100] [--image_size=150]

Writes a generated two-class image folder to a temporary directory, builds
gin/transfer_inception.gin on it (weights=None: the cost does not depend on the values) with
the feature cache off and on, and times one epoch of training steps in each (tracing and
the one-off cache computation excluded).
"""

import pathlib
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf
from absl import app, flags

from framework import registry
from framework.data import training_batches
from framework.experiment import Experiment

IMAGES_PER_CLASS = flags.DEFINE_integer("images_per_class", 100, "Generated images per class.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 150, "Height and width fed to InceptionV3.")
BATCH_SIZE = 20


def write_folder(root: pathlib.Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for name, colour in (("blue", (0.1, 0.2, 0.9)), ("red", (0.9, 0.1, 0.1))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + 0.15 * rng.standard_normal((64, 64, 3)), 0, 1)
            png = tf.io.encode_png(tf.constant((pixels * 255).astype(np.uint8)))
            (root / name / f"{i:04d}.png").write_bytes(png.numpy())


def epoch_seconds(folder: pathlib.Path, model_dir: pathlib.Path, cache: bool):
    gin.clear_config()
    gin.parse_config_file("gin/transfer_inception.gin")
    size = IMAGE_SIZE.value
    gin.parse_config(f"image_folder.directory = '{folder}'\nimage_folder.image_size = "
                     f"({size}, {size})\ninception_v3.weights = None\n"
                     f"Experiment.cache_features = {cache}\nExperiment.batch_size = {BATCH_SIZE}")
    experiment = Experiment()
    experiment.build(str(model_dir))
    examples = experiment._examples("train")  # pylint: disable=protected-access  (fills the cache)
    steps = experiment.info.train_size // BATCH_SIZE
    iterator = iter(experiment.strategy.experimental_distribute_dataset(
        training_batches(examples, BATCH_SIZE, seed=1)))
    experiment.trainer.train(iterator, 1)  # tracing
    experiment.trainer.train_results()
    start = time.perf_counter()
    experiment.trainer.train(iterator, steps)
    experiment.trainer.train_results()  # waits for the steps
    return (time.perf_counter() - start) * (steps + 1) / steps, steps + 1


def main(argv):
    del argv
    registry.discover()
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench_feature_cache-"))
    write_folder(root / "images", IMAGES_PER_CLASS.value)
    recomputing, steps = epoch_seconds(root / "images", root / "off", cache=False)
    cached, _ = epoch_seconds(root / "images", root / "on", cache=True)
    print(f"one epoch ({steps} steps of {BATCH_SIZE} images at {IMAGE_SIZE.value}x"
          f"{IMAGE_SIZE.value}): recomputing features {recomputing:.2f} s, cached features "
          f"{cached:.4f} s, {recomputing / cached:.0f}x faster")


if __name__ == "__main__":
    app.run(main)
