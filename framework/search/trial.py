"""One trial, in a process of its own: `python -m framework.search.trial`, started by the
search command's workers (framework.search.__main__), never by hand.

It asks the study for a trial (Optuna picks its parameters, or hands over a queued retry),
runs it as an ordinary run in study_dir/trial_NNNN with the trial's bindings after the
study's, reports the objective at every evaluation and stops at the next host-loop
boundary when the pruner says so. Optuna's `optimize` records the outcome: COMPLETE with
the final evaluation's objective, PRUNED (by the pruner, or because the loss diverged), or
FAIL. An interrupted trial (SIGTERM) leaves its checkpoint and is queued again.

The storage URL comes in the environment (storage.STORAGE_ENV), never on the command line where
`ps` would show a password. Before the trial is asked for, output goes to the worker;
afterwards to trial_NNNN/trial.log. A UserError ends the whole search: its message goes to
the worker too, exit status 2. TensorFlow's native banners are not filtered here: nobody
reads a worker's output but the worker.
"""

import os
import sys

import optuna
from absl import app, flags

from framework import cli, registry
from framework.errors import UserError
from framework.search import space as search_space, storage as search_storage
from framework.search.study import retry
from framework.search.trial_objective import TrialObjective

GIN_FILES = flags.DEFINE_multi_string("gin_file", [], "The study's gin files.")
BINDINGS = flags.DEFINE_multi_string("gin_bindings", [], "The study's extra bindings.")
STUDY_DIR = flags.DEFINE_string("study_dir", None, "The study's folder.")
STUDY_NAME = flags.DEFINE_string("study_name", "search", "The study's name in its storage.")
TRIALS = flags.DEFINE_integer("trials", None, "The study's number of trials.")
SLOT = flags.DEFINE_integer("slot", 0, "Which of the workers this is (0-based).")
WORKERS = flags.DEFINE_integer("workers", 1, "Workers running at once on this machine.")
LAUNCHED_AT = flags.DEFINE_float("launched_at", None, "When the worker started this process.")
VERBOSE = flags.DEFINE_bool("verbose", False, "Tracebacks for errors.")


def cpu_share(slot: int, workers: int) -> list[int]:
    """The CPUs worker `slot` of `workers` trains on: an even split of those this process
    may use (all of them, shared, when there are more workers than CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    share = len(cpus) // workers
    if share == 0:
        return [cpus[slot % len(cpus)]]
    return cpus[slot * share:(slot + 1) * share]


def thread_bindings(cpus: list[int]) -> list[str]:
    """TensorFlow's thread pools sized to this worker's CPUs."""
    return [f"Experiment.intra_op_threads = {len(cpus)}",
            f"Experiment.inter_op_threads = {min(2, len(cpus))}"]


def sampler_seed(study_seed: int, trials_so_far: int, slot: int) -> int:
    """The sampler's seed for the next trial: a function of the study's seed and the
    trial's place, so a study run by one worker draws the same trials every time; workers
    running at once draw from streams of their own."""
    return (study_seed * 1_000_003 + trials_so_far * 1_009 + slot) % 2**32


def main(argv):
    del argv
    cli.run_command(_run_trial, VERBOSE.value)


def _run_trial() -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cpus = None
    if WORKERS.value > 1:
        cpus = cpu_share(SLOT.value, WORKERS.value)
        os.sched_setaffinity(0, cpus)
    registry.discover()
    space = search_space.load(GIN_FILES.value, BINDINGS.value, TRIALS.value)
    storage = search_storage.open_storage(os.environ[search_storage.STORAGE_ENV], retry)
    study = optuna.load_study(study_name=STUDY_NAME.value, storage=storage,
                              pruner=space.make_pruner())
    study.sampler = space.make_sampler(
        sampler_seed(space.seed, len(study.get_trials(deepcopy=False)), SLOT.value))
    objective = TrialObjective(
        space, STUDY_DIR.value, GIN_FILES.value,
        BINDINGS.value + (thread_bindings(cpus) if cpus else []), LAUNCHED_AT.value)
    worker_stderr = os.fdopen(os.dup(2), "w")  # the trial's own output goes to its log
    try:
        study.optimize(objective, n_trials=1, catch=objective.caught, gc_after_trial=False)
    except UserError as error:
        print(f"error: {cli.message_of(error)}", file=worker_stderr, flush=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
