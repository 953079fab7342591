"""The search command: trials of a gin experiment, in parallel, until the study has its count.

    python -m framework.search --gin_file=gin/search_cnn.gin --study_dir=runs/search
        [--gin_bindings=...] [--trials=N] [--workers=M] [--storage=URL|env:VAR|file:PATH]

Each of the M workers runs one trial at a time, each in a process of its own
(framework.search.trial) on its share of the CPUs. Several commands (on one machine, or on
many through a database storage) may work on the same study: the storage numbers the
trials, so none is run twice, and each command stops when the study has its trials.
Re-running a command whose workers were killed retries their interrupted trials from their
checkpoints. See framework/search/__init__.py for the modules.
"""

import os
import sys

from framework import cli

cli.filter_native_logs()

# pylint: disable=wrong-import-position
import gin  # noqa: E402
import optuna  # noqa: E402
from absl import app, flags  # noqa: E402

from framework import registry  # noqa: E402
from framework.console import CONSOLE  # noqa: E402
from framework.errors import UserError  # noqa: E402
from framework.search import results, storage as storages, study as studies  # noqa: E402
from framework.search import space as search_space  # noqa: E402
from framework.search.workers import Workers  # noqa: E402

GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Gin config of the search: the experiment and its Search.* settings.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings; repeatable.")
STUDY_DIR = flags.DEFINE_string(
    "study_dir", None, "The study's folder: its trials, trials.csv, best.gin and (without "
    "--storage) the study itself. Re-using it continues the study.")
STUDY_NAME = flags.DEFINE_string("study_name", "search", "The study's name in its storage.")
TRIALS = flags.DEFINE_integer("trials", None, "Trials in the study; default Search.trials.")
WORKERS = flags.DEFINE_integer(
    "workers", 1, "Trials run at once on this machine, each on its share of the CPUs.")
STORAGE = flags.DEFINE_string(
    "storage", None, "Where the study lives: a database URL (postgresql://user@host/db), "
    "env:VAR or file:PATH holding one (keeps a password off the command line), or "
    "journal:PATH. Default: study_dir/study.journal.")
VERBOSE = flags.DEFINE_bool("verbose", False, "Log lines and tracebacks for errors.")

def main(argv):
    cli.run_command(lambda: search(argv), VERBOSE.value)


def search(argv) -> int:
    if len(argv) > 1:
        raise UserError(f"Unexpected arguments {argv[1:]}; flags look like --gin_file=FILE.")
    if not STUDY_DIR.value or not GIN_FILES.value:
        raise UserError("Pass --gin_file=CONFIG (e.g. gin/search_cnn.gin) and "
                        "--study_dir=FOLDER (where the trials go).")
    if WORKERS.value < 1:
        raise UserError(f"--workers must be at least 1, got {WORKERS.value}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    registry.discover()
    space = search_space.load(GIN_FILES.value, BINDINGS.value, TRIALS.value)
    config_text = gin.config_str()
    url = storages.resolve(STORAGE.value, STUDY_DIR.value)
    storage = storages.open_storage(url, studies.retry)
    study = studies.open_study(storage, STUDY_NAME.value, space.direction, config_text)
    for params in space.first_trials:  # once: a trial with these values is not queued again
        study.enqueue_trial(params, skip_if_exists=True)
    os.makedirs(STUDY_DIR.value, exist_ok=True)
    with open(os.path.join(STUDY_DIR.value, results.CONFIG_FILE), "w", encoding="utf-8") as f:
        f.write(config_text)
    results.declare_hparams(STUDY_DIR.value, space)
    CONSOLE.line(f"search: {space.trials} trials of {len(space.distributions)} parameters "
                 f"({space.sampler}, pruner {space.pruner}) for {space.direction[:3]} "
                 f"{space.objective} · {WORKERS.value} worker"
                 f"{'s' if WORKERS.value > 1 else ''} · study {storages.shown(url)}")
    workers = Workers(study, storage, space, STUDY_DIR.value, _trial_command(space), url)
    status = workers.run(WORKERS.value)
    table = results.rows(study, space)
    results.write_csv(os.path.join(STUDY_DIR.value, results.TRIALS_FILE), table, space)
    CONSOLE.line(results.format_table(table, space))
    if workers.error:
        raise UserError(workers.error)
    best = workers.census().best
    if best is not None:
        best_path = os.path.join(STUDY_DIR.value, results.BEST_FILE)
        results.write_best(best_path, best, space, config_text, STUDY_DIR.value)
        CONSOLE.line(f"best: trial {best.number}, {space.objective} {best.value:.4f}. "
                     f"Retrain it: python -m framework.main --gin_file={best_path}")
    CONSOLE.line(f"Watch the trials with: tensorboard --logdir {STUDY_DIR.value}")
    return status


def _trial_command(space) -> list[str]:
    return [sys.executable, "-m", "framework.search.trial", f"--study_dir={STUDY_DIR.value}",
            f"--study_name={STUDY_NAME.value}", f"--trials={space.trials}",
            f"--workers={WORKERS.value}",
            *(f"--gin_file={f}" for f in GIN_FILES.value),
            *(f"--gin_bindings={b}" for b in BINDINGS.value)]


if __name__ == "__main__":
    app.run(main)
