"""Converts the dataset a config names into sharded TFRecord files (framework.records).

    python -m framework.tfrecord --gin_file=gin/cnn.gin --output=data/fashion --shards=8
        [--image_encoding=png|raw] [--compression=none|gzip|zlib] [--overwrite]

Any dataset plugin, built-in or a user's, multi-head ones included: the training and
evaluation splits as they come out of the plugin (before shuffling, batching or
augmentation). Then `Experiment.dataset = @datasets.tfrecord` with
`datasets.tfrecord.directory = 'data/fashion'` trains on the files. Each shard is written
under a temporary name and renamed when complete, and the metadata comes last, so an
interrupted conversion leaves nothing a reader would take as finished.
"""

import os
import shutil

from framework import cli

cli.filter_native_logs()

# pylint: disable=wrong-import-position
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from framework import records, registry  # noqa: E402
from framework.console import CONSOLE  # noqa: E402
from framework.data import Dataset  # noqa: E402
from framework.errors import UserError  # noqa: E402
from framework.experiment import from_config  # noqa: E402
from framework.plugin_checks import build_plugin, check_dataset, plugin_name  # noqa: E402

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin config naming the dataset.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings; repeatable.")
OUTPUT = flags.DEFINE_string("output", None, "The folder to write (made if missing).")
SHARDS = flags.DEFINE_integer("shards", 8, "Files per split (at least the number of "
                              "workers that will read them).")
IMAGE_ENCODING = flags.DEFINE_enum(
    "image_encoding", "auto", ["auto", *records.ENCODINGS],
    "Images as PNG (8-bit values only: exact and several times smaller) or raw tensors; "
    "auto: PNG when the first 1,000 training images are 8-bit values, else raw.")
COMPRESSION = flags.DEFINE_enum("compression", "none", list(records.COMPRESSIONS),
                                "Compression of the record files.")
OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an earlier conversion in --output.")
VERBOSE = flags.DEFINE_bool("verbose", False, "Log lines and tracebacks for errors.")


def main(argv):
    cli.run_command(lambda: convert(argv), VERBOSE.value)


def convert(argv) -> int:
    if len(argv) > 1 or not OUTPUT.value or not (GIN_FILES.value or BINDINGS.value):
        raise UserError("Pass --gin_file=CONFIG (its Experiment.dataset is converted) and "
                        "--output=FOLDER.")
    if SHARDS.value < 1:
        raise UserError(f"--shards must be at least 1, got {SHARDS.value}.")
    registry.discover()
    experiment = from_config(GIN_FILES.value, BINDINGS.value)
    plugin = experiment.plugins["dataset"]
    if isinstance(plugin, (list, tuple)):
        raise UserError("This config trains on several datasets; convert each with a config "
                        "(or --gin_bindings='Experiment.dataset = @datasets.NAME') of its own.")
    dataset = build_plugin("dataset", plugin, Dataset)
    check_dataset(dataset, plugin_name(plugin))
    specs = records.components(dataset.train.element_spec)
    encoding = _image_encoding(IMAGE_ENCODING.value, dataset.train, specs["features"])
    _prepare(OUTPUT.value, OVERWRITE.value)
    splits = {}
    for split, examples in (("train", dataset.train), ("eval", dataset.eval)):
        if examples is not None:
            splits[split] = write_split(examples, split, specs, encoding)
    records.write_json_atomically(os.path.join(OUTPUT.value, records.METADATA_FILE), {
        "format": records.FORMAT_VERSION, "source": plugin_name(plugin).strip("'"),
        "info": records.info_to_json(dataset.info),
        "spec": records.spec_to_json(specs, encoding),
        "compression": COMPRESSION.value, "splits": splits})
    CONSOLE.line(f"{plugin_name(plugin).strip(chr(39))} -> {OUTPUT.value}: " + ", ".join(
        f"{split} {s['examples']} examples in {len(s['files'])} shards"
        for split, s in splits.items()) + f" ({encoding} images)" * (encoding == "png"))
    return 0


def _image_encoding(asked: str, train, features_spec) -> str:
    if not records.is_image(features_spec):
        return "raw"
    if asked != "auto":
        return asked
    sample = train.take(1000).batch(1000).get_single_element()[0]
    return "png" if records.is_8_bit(sample) else "raw"


def write_split(examples, split: str, specs: dict, encoding: str) -> dict:
    """Writes one split's shards; returns {'files', 'examples', 'bytes'} for the metadata."""
    count, compression = SHARDS.value, COMPRESSION.value
    names = [records.shard_name(split, i, count, compression) for i in range(count)]
    paths = [os.path.join(OUTPUT.value, name) for name in names]
    options = tf.io.TFRecordOptions(records.COMPRESSIONS[compression])
    writers = [tf.io.TFRecordWriter(path + ".partial", options) for path in paths]
    total = int(examples.cardinality())
    serialized = examples.map(records.serializer(specs, encoding),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    written = 0
    try:
        for written, values in enumerate(serialized.prefetch(64).as_numpy_iterator(), 1):
            writers[(written - 1) % count].write(records.example_bytes(list(specs), values))
            if written % 5000 == 0:
                CONSOLE.progress(f"{split}: {written}" + (f"/{total}" if total > 0 else ""))
    except tf.errors.InvalidArgumentError as error:
        if "not 8-bit values" in str(error):
            raise UserError(f"The {split} images are not 8-bit values scaled to [0, 1], so "
                            "PNG would change them. Use --image_encoding=raw.") from error
        raise
    finally:
        for writer in writers:
            writer.close()
    if written < count:
        raise UserError(f"The {split} split has {written} examples, fewer than --shards="
                        f"{count}. Write fewer shards.")
    for path in paths:
        os.replace(path + ".partial", path)
    return {"files": names, "examples": written,
            "bytes": [os.path.getsize(path) for path in paths]}


def _prepare(output: str, overwrite: bool) -> None:
    """An empty --output, or a finished conversion there replaced with --overwrite."""
    if os.path.exists(os.path.join(output, records.METADATA_FILE)):
        if not overwrite:
            raise UserError(f"{output} holds a conversion already. Pass --overwrite to "
                            "replace it, or choose another --output.")
        shutil.rmtree(output)
    elif os.path.isdir(output) and any(not name.endswith(".partial")
                                        for name in os.listdir(output)):
        raise UserError(f"{output} is not empty and holds no conversion. Choose another "
                        "--output.")
    os.makedirs(output, exist_ok=True)
    for name in os.listdir(output):  # an interrupted conversion's pieces
        os.remove(os.path.join(output, name))


if __name__ == "__main__":
    app.run(main)
