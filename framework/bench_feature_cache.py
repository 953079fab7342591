"""The transfer config's feature-cache benchmark, on generated images, offline.

    python -m framework.bench_feature_cache [--images_per_class=100] [--image_size=150]

Writes a two-class image folder to a temporary directory and runs
`python -m framework.bench --variants=feature_cache` with gin/transfer_inception.gin on it
(InceptionV3 with weights=None: the cost does not depend on the values): one epoch of
training steps recomputing the frozen features, and one on cached features.
"""

import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf
from absl import app, flags

IMAGES_PER_CLASS = flags.DEFINE_integer("images_per_class", 100, "Generated images per class.")
IMAGE_SIZE = flags.DEFINE_integer("image_size", 150, "Height and width fed to InceptionV3.")
OUTPUT = flags.DEFINE_string("output", "bench_feature_cache.json", "Where the JSON goes.")
BATCH_SIZE = 20


def write_folder(root: pathlib.Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for name, colour in (("blue", (0.1, 0.2, 0.9)), ("red", (0.9, 0.1, 0.1))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + 0.15 * rng.standard_normal((64, 64, 3)), 0, 1)
            png = tf.io.encode_png(tf.constant((pixels * 255).astype(np.uint8)))
            (root / name / f"{i:04d}.png").write_bytes(png.numpy())


def main(argv):
    del argv
    with tempfile.TemporaryDirectory(prefix="bench_feature_cache-") as root:
        folder = pathlib.Path(root) / "images"
        write_folder(folder, IMAGES_PER_CLASS.value)
        size = IMAGE_SIZE.value
        bindings = [f"image_folder.directory = '{folder}'",
                    f"image_folder.image_size = ({size}, {size})",
                    "inception_v3.weights = None", f"Experiment.batch_size = {BATCH_SIZE}"]
        sys.exit(subprocess.call(
            [sys.executable, "-m", "framework.bench", "--gin_file=gin/transfer_inception.gin",
             *[f"--gin_bindings={binding}" for binding in bindings],
             "--variants=feature_cache", "--repeats=1", f"--output={OUTPUT.value}"]))


if __name__ == "__main__":
    app.run(main)
