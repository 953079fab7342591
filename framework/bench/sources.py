"""The input side of one epoch: a config's dataset from its own source against the same
data converted to TFRecords.

    python -m framework.bench.sources --gin_file=CONFIG --records=DIR [--rounds=3]

DIR is what `python -m framework.tfrecord --gin_file=CONFIG --output=DIR` wrote. Each
round, with an empty record of verified files (framework.verified_files), times for each
source: building the dataset (the plugin's checks: decoding every image of a folder,
reading every shard's checksums) and one pass over its training examples as the gathered
stream takes them (framework.data), first as a machine's first start, then again as a
later start that finds the files verified. The training steps themselves are the same
for both sources, so they are left out.
"""

import sys
import tempfile
import time

import gin
from absl import app, flags, logging

from framework import config, registry, verified_files
from framework.errors import UserError
from framework.experiment import Experiment


def time_source(plugin) -> tuple[float, float, int]:
    """(seconds to build the dataset, seconds for one pass over its training split,
    training examples)."""
    started = time.perf_counter()
    dataset = registry.build(plugin)
    built = time.perf_counter()
    examples = int(dataset.train.batch(2**31).get_single_element()[0].shape[0])
    return built - started, time.perf_counter() - built, examples


def rounds(source, records_dir: str, count: int) -> list[dict]:
    """`count` rounds of both sources at a first start and a later one."""
    from plugins.datasets.tfrecord import tfrecord  # pylint: disable=import-outside-toplevel
    gin.bind_parameter("datasets.tfrecord.directory", records_dir)
    results = []
    for _ in range(count):
        with tempfile.TemporaryDirectory(prefix="bench-sources-") as marks:
            verified_files.MARKS_DIR = marks
            for name, plugin in (("source", source), ("tfrecord", tfrecord)):
                for start in ("first start", "verified before"):
                    build_s, pass_s, examples = time_source(plugin)
                    results.append({"source": name, "start": start, "build_s": build_s,
                                    "pass_s": pass_s, "examples": examples})
    return results


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the plugins' INFO lines, once per build
    registry.discover()
    config.parse(GIN_FILES.value, BINDINGS.value)
    source = Experiment().plugins["dataset"]
    if isinstance(source, (list, tuple)):
        print("error: framework.bench.sources times one dataset; this config has several.",
              file=sys.stderr)
        sys.exit(2)
    try:
        results = rounds(source, RECORDS.value, ROUNDS.value)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for row in results:
        print(f"{row['source']:>8}, {row['start']:<15}: build {row['build_s']:5.2f} s, one "
              f"pass over {row['examples']} training examples {row['pass_s']:5.2f} s, total "
              f"{row['build_s'] + row['pass_s']:5.2f} s")


if __name__ == "__main__":  # flags only for the command: tests import the functions
    GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "Gin files of the experiment.")
    BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
    RECORDS = flags.DEFINE_string("records", None, "The config's data as TFRecords "
                                  "(python -m framework.tfrecord --output=DIR).")
    ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of both sources.")
    flags.mark_flag_as_required("records")
    app.run(main)
