"""The command line: flags -> gin -> Experiment -> run(mode); signals and exit statuses.

    python -m framework.main --gin_file=gin/cnn.gin [--gin_bindings='Experiment.train_steps=500']
                             [--model_dir=runs/x] [--mode=train_and_eval]
    python -m framework.main --list_plugins
"""

import datetime
import os
import re
import signal
import sys

from absl import app, flags, logging

from framework import assembly, config, registry
from framework.errors import UserError
from framework.experiment import Experiment
from framework.hooks import StopRequest
from framework.predict import predict_files

GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Gin config file; repeatable, read in order.")
BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "One gin binding, e.g. 'Experiment.train_steps=500'; repeatable, "
    "applied after the files.")
MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where checkpoints, summaries and the config go; re-using it resumes. "
    "Default: a fresh folder under runs/.")
MODE = flags.DEFINE_enum("mode", "train_and_eval",
                         ["train", "eval", "train_and_eval", "predict"],
                         "What to do; predict classifies the files given by --predict.")
PREDICT = flags.DEFINE_string(
    "predict", None, "With --mode=predict: an image file, or a folder of them.")
TOP_K = flags.DEFINE_integer("top_k", 3, "With --mode=predict: classes shown per file.")
LIST_PLUGINS = flags.DEFINE_bool(
    "list_plugins", False, "Print every registered plugin with its parameters and exit.")
VERBOSE = flags.DEFINE_bool("verbose", False, "Show Python tracebacks for errors.")
CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", "latest", ["latest", "best"],
    "With --mode=eval or predict: use the latest checkpoint or the best one "
    "(checkpoints/best).")


def fresh_model_dir(gin_files: list[str]) -> str:
    """runs/<first config's name>-<time>, unique even for runs started in the same second."""
    stem = os.path.splitext(os.path.basename(gin_files[0]))[0] if gin_files else "run"
    base = os.path.join("runs", f"{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    path, suffix = base, 1
    while os.path.exists(path):
        path, suffix = f"{base}-{suffix}", suffix + 1
    return path


def stop_on_signals() -> StopRequest:
    """SIGTERM (preemption) and Ctrl-C end the run cleanly after the current host loop,
    with a checkpoint; a second Ctrl-C leaves at once. Returns the request they make."""
    stop = StopRequest()

    def handle(signum, frame):
        del frame
        name = signal.Signals(signum).name
        if stop.requested and signum == signal.SIGINT:
            print(f"{name} again: leaving now, without a checkpoint.", file=sys.stderr)
            os._exit(128 + signum)  # pylint: disable=protected-access
        stop(f"received {name}", exit_status=128 + signum)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)
    return stop


def predict(experiment: Experiment, model_dir: str) -> None:
    """Prints the top classes of each file given by --predict."""
    if not PREDICT.value:
        raise UserError("--mode=predict needs --predict=PATH (an image file or a folder).")
    run = assembly.build(experiment, model_dir, CHECKPOINT.value)
    if run.restored_from is None:
        raise UserError(f"--mode=predict needs a trained run, and {model_dir} has no "
                        f"{CHECKPOINT.value} checkpoint. Pass the --model_dir of a run.")
    for path, top in predict_files(run, PREDICT.value, TOP_K.value):
        print(f"{path}: " + (_classes(top) if isinstance(top, list) else " | ".join(
            f"{head}: {_classes(head_top)}" for head, head_top in top.items())))


def _classes(top: list) -> str:
    return ", ".join(f"{name} {probability:.3f}" for name, probability in top)


def run(argv, keep_alive: list) -> int:
    """Does what the flags say; returns the exit status. What must not be torn down before
    the process leaves (the run, its data streams) goes into `keep_alive`."""
    if len(argv) > 1:
        raise UserError(f"Unexpected arguments {argv[1:]}; flags look like --gin_file=FILE.")
    registry.discover()
    if LIST_PLUGINS.value:
        print(registry.describe())
        return 0
    if not GIN_FILES.value and not BINDINGS.value:
        raise UserError("No experiment given. Pass --gin_file=gin/cnn.gin (see gin/), or "
                        "--list_plugins to see what is available.")
    config.parse(GIN_FILES.value, BINDINGS.value)
    model_dir = MODEL_DIR.value or fresh_model_dir(GIN_FILES.value)
    if not MODEL_DIR.value:
        logging.info("No --model_dir given; this run writes to %s", model_dir)
    try:
        experiment = Experiment()
    except (ValueError, TypeError) as error:
        raise UserError(config.explain(error)) from error
    if MODE.value == "predict":
        predict(experiment, model_dir)
        return 0
    results = experiment.run(model_dir, MODE.value, CHECKPOINT.value, stop_on_signals(),
                             keep_alive)
    for name, value in results["eval"].items():
        print(f"final eval {name}: {value:.4f} (step {results['step']})")
    print(f"Watch this run with: tensorboard --logdir {model_dir}")
    return results["exit_status"]


def main(argv):
    status, keep_alive = 0, []
    try:
        status = run(argv, keep_alive)
    except UserError as error:
        if VERBOSE.value:
            raise
        # gin appends "In call to configurable ..." to errors raised inside configurables:
        # noise to the user, whose message already names the parameter.
        message = re.sub(r"\n\s*In call to configurable .*", "", str(error))
        print(f"error: {message}", file=sys.stderr)
        status = 2
    # Everything that must outlive the process (checkpoints, flushed summaries) is on disk
    # now; leave without TensorFlow's slow teardown of datasets, iterators and models
    # (also seen at interpreter shutdown under MirroredStrategy).
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access


if __name__ == "__main__":
    app.run(main)
