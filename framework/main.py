"""The command line: flags -> gin -> Experiment -> run(mode); signals and exit statuses.

    python -m framework.main --gin_file=gin/cnn.gin [--gin_bindings='Experiment.train_steps=500']
                             [--model_dir=runs/x] [--mode=train_and_eval]
    python -m framework.main --gin_file=gin/cnn.gin --model_dir=runs/x --mode=export
    python -m framework.main --list_plugins
"""

from framework import cli

# TensorFlow's C++ side prints banners (oneDNN, CPU features) as it loads: the filter must
# be in place before anything imports TensorFlow. --verbose keeps them.
cli.filter_native_logs()

# pylint: disable=wrong-import-position
import datetime  # noqa: E402
import os  # noqa: E402

from absl import app, flags  # noqa: E402

from framework import assembly, registry  # noqa: E402
from framework.console import CONSOLE  # noqa: E402
from framework.errors import UserError  # noqa: E402
from framework.experiment import Experiment, from_config  # noqa: E402
from framework.export import export_mode  # noqa: E402
from framework.hooks import StopRequest  # noqa: E402
from framework.predict import check_can_predict, predict_files  # noqa: E402
from framework.search import settings  # noqa: E402,F401  (a search config's Search.* parse)

GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Gin config file; repeatable, read in order.")
BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "One gin binding, e.g. 'Experiment.train_steps=500'; repeatable, "
    "applied after the files.")
MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Where checkpoints, summaries and the config go; re-using it resumes. "
    "Default: a fresh folder under runs/.")
MODE = flags.DEFINE_enum("mode", "train_and_eval",
                         ["train", "eval", "train_and_eval", "predict", "export"],
                         "What to do; predict classifies the files given by --predict; "
                         "export writes a SavedModel, a .keras file and the class names.")
PREDICT = flags.DEFINE_string(
    "predict", None, "With --mode=predict: an image file, or a folder of them.")
TOP_K = flags.DEFINE_integer("top_k", 3, "With --mode=predict: classes shown per file.")
LIST_PLUGINS = flags.DEFINE_bool(
    "list_plugins", False, "Print every registered plugin with its parameters and exit.")
VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Show everything: TensorFlow's and the framework's log lines, and "
    "Python tracebacks for errors. (absl's --verbosity alone sets the log level.)")
CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", "latest", ["latest", "best"],
    "With --mode=eval, predict or export: use the latest checkpoint or the best one "
    "(checkpoints/best).")
EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "With --mode=export: the folder to write. Default: "
    "model_dir/export/<step of the checkpoint>.")
OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "With --mode=export: replace an earlier export in that folder.")


def fresh_model_dir(gin_files: list[str]) -> str:
    """runs/<first config's name>-<time>, unique even for runs started in the same second."""
    stem = os.path.splitext(os.path.basename(gin_files[0]))[0] if gin_files else "run"
    base = os.path.join("runs", f"{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    path, suffix = base, 1
    while os.path.exists(path):
        path, suffix = f"{base}-{suffix}", suffix + 1
    return path


def stop_on_signals() -> StopRequest:
    """The request SIGTERM (preemption) and Ctrl-C make: see framework.cli.stop_on_signals."""
    stop = StopRequest()
    cli.stop_on_signals(stop)
    return stop


def predict(experiment: Experiment, model_dir: str) -> None:
    """Prints the top classes of each file given by --predict."""
    if not PREDICT.value:
        raise UserError("--mode=predict needs --predict=PATH (an image file or a folder).")
    run = assembly.build(experiment, model_dir, CHECKPOINT.value)
    check_can_predict(run.datasets[0])
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
    experiment = from_config(GIN_FILES.value, BINDINGS.value)
    model_dir = MODEL_DIR.value or fresh_model_dir(GIN_FILES.value)
    if MODE.value == "predict":
        predict(experiment, model_dir)
        return 0
    if MODE.value == "export":
        export_mode(experiment, model_dir, CHECKPOINT.value, EXPORT_DIR.value, OVERWRITE.value)
        return 0
    CONSOLE.line(f"{' '.join(GIN_FILES.value) or '(bindings only)'} -> {model_dir}"
                 + ("" if MODEL_DIR.value else " (a fresh folder; pass --model_dir to choose)"))
    if settings.declared():
        CONSOLE.line("This config declares a search (Search.*); this trains its experiment "
                     "once. To search: python -m framework.search "
                     f"--gin_file={(GIN_FILES.value or ['CONFIG'])[-1]} --study_dir=DIR")
    results = experiment.run(model_dir, MODE.value, CHECKPOINT.value, stop_on_signals(),
                             keep_alive)
    print_results(results, model_dir)
    return results["exit_status"]


def print_results(results: dict, model_dir: str) -> None:
    """The run's last lines: final metrics, a small model's learned values, what next."""
    source = "eval" if results["eval"] else "train"
    for name, value in sorted(results[source].items()):
        CONSOLE.line(f"final {source} {name}: {value:.4f} (step {results['step']})")
    for name, values in results.get("weights", {}).items():
        CONSOLE.line(f"learned {name} = {_rounded(values)}")
    CONSOLE.line(f"Watch this run with: tensorboard --logdir {model_dir}")


def _rounded(values):
    return [_rounded(v) for v in values] if isinstance(values, list) else round(values, 4)


def main(argv):
    keep_alive = []  # must outlive the run: see run()
    cli.run_command(lambda: run(argv, keep_alive), VERBOSE.value)


if __name__ == "__main__":
    app.run(main)
