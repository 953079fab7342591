"""Which of Optuna's file-based storages holds up when several processes share one study.

    python -m framework.bench.search_storage [--processes=4] [--trials_per_process=25] \\
        [--reports=5] [--storages=journal_symlink,journal_open,sqlite,sqlite_timeout60] \\
        [--json=PATH]

A search command with `--workers=M` runs M processes against one study in one study
directory on one machine. This benchmark reproduces that load without any training: for
each candidate storage it creates a fresh temporary directory and a study there (direction
maximize), then starts `--processes` worker processes (multiprocessing, 'spawn') that each
run `--trials_per_process` trials of

    study.ask({"x": FloatDistribution(0, 1)})
    `--reports` times: trial.report(value, step); trial.should_prune()
    study.tell(trial, value)

with the default pruner (MedianPruner, which reads the finished trials on every
should_prune) and a RandomSampler, so the time is the storage's, not a sampler's. The
pruner's answer is counted but not acted on: every trial does the same storage work.

Candidates:

  journal_symlink   JournalStorage(JournalFileBackend(path)): the default lock, a symlink
  journal_open      the same with lock_obj=JournalFileOpenLock(path) (O_CREAT|O_EXCL)
  sqlite            RDBStorage("sqlite:///.../study.db"), default engine settings (the
                    sqlite3 module's 5 s busy timeout)
  sqlite_timeout60  the same with engine_kwargs={"connect_args": {"timeout": 60}}

A worker never dies of a storage error: it counts the error by kind (e.g. sqlite's
"database is locked"), pauses briefly and retries the same call, until it has finished its
trials or reached `--error_limit` errors. Afterwards the study is loaded again and checked:
as many trials as asks that succeeded, trial numbers unique and exactly 0..n-1, no trial
left RUNNING, as many COMPLETE trials as tells that succeeded, and every reported
intermediate value (and final value) present and equal to what was reported.

Prints per storage: wall time (first worker's start to last worker's end: opening the
storage included, Python and optuna start-up excluded), completed trials per second, errors
by kind, and the integrity verdict ("ok" or what broke). `--json=PATH` also writes the
results as JSON.
"""

import collections
import dataclasses
import json
import math
import multiprocessing
import os
import queue
import tempfile
import time

import optuna
from absl import app, flags

STORAGES = ("journal_symlink", "journal_open", "sqlite", "sqlite_timeout60")

PROCESSES = flags.DEFINE_integer("processes", 4, "Worker processes sharing the study.")
TRIALS_PER_PROCESS = flags.DEFINE_integer("trials_per_process", 25, "Trials each worker runs.")
REPORTS = flags.DEFINE_integer("reports", 5, "trial.report + should_prune calls per trial.")
STORAGE_LIST = flags.DEFINE_list("storages", list(STORAGES), f"Which of {', '.join(STORAGES)}.")
ERROR_LIMIT = flags.DEFINE_integer("error_limit", 20,
                                   "Storage errors after which a worker gives up.")
TIMEOUT = flags.DEFINE_integer("timeout", 300,
                               "Seconds a storage's run may take before workers are killed.")
JSON_PATH = flags.DEFINE_string("json", None, "Also write the results as JSON here.")

STUDY_NAME = "bench"
SEARCH_SPACE = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
RETRY_PAUSE_S = 0.05


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every worker of one run does."""
    storage: str
    directory: str
    trials: int
    reports: int
    error_limit: int


@dataclasses.dataclass
class WorkerTally:
    """What one worker did, sent back to the parent."""
    asked_numbers: list = dataclasses.field(default_factory=list)
    told: int = 0
    prune_said_yes: int = 0
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    gave_up: bool = False
    started: float = math.nan
    finished: float = math.nan


class ErrorLimitReached(Exception):
    """A worker has seen as many storage errors as it tolerates."""


# --- storages -----------------------------------------------------------------------------

def open_storage(name: str, directory: str):
    """A new storage object of kind `name` on the files in `directory`."""
    if name in ("journal_symlink", "journal_open"):
        log_path = os.path.join(directory, "journal.log")
        lock = (optuna.storages.journal.JournalFileOpenLock(log_path)
                if name == "journal_open" else None)  # None: the backend's symlink lock
        backend = optuna.storages.journal.JournalFileBackend(log_path, lock_obj=lock)
        return optuna.storages.JournalStorage(backend)
    url = f"sqlite:///{os.path.join(directory, 'study.db')}"
    if name == "sqlite":
        return optuna.storages.RDBStorage(url)
    if name == "sqlite_timeout60":
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    raise ValueError(f"Unknown storage {name!r}; expected one of {', '.join(STORAGES)}.")


# --- the worker process -------------------------------------------------------------------

def error_kind(error: Exception) -> str:
    """A short label grouping errors of the same kind: class name and first message line."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"[:80]


def with_retries(call, tally: WorkerTally, error_limit: int):
    """The result of `call()`, retried after each error (counted by kind) until it
    succeeds; raises ErrorLimitReached once the worker has seen `error_limit` errors."""
    while True:
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - counting every kind is the point
            tally.errors[error_kind(error)] += 1
            if sum(tally.errors.values()) >= error_limit:
                raise ErrorLimitReached from error
            time.sleep(RETRY_PAUSE_S)


def intermediate_value(x: float, step: int, reports: int) -> float:
    """What a trial with parameter x reports at `step`; the last step reports x itself."""
    return x * (step + 1) / reports


def run_one_trial(study: optuna.Study, plan: Plan, tally: WorkerTally) -> None:
    """ask, `plan.reports` times report + should_prune, tell; each call retried on error."""
    def retried(call):
        return with_retries(call, tally, plan.error_limit)

    trial = retried(lambda: study.ask(SEARCH_SPACE))
    tally.asked_numbers.append(trial.number)
    x = trial.params["x"]
    for step in range(plan.reports):
        retried(lambda: trial.report(intermediate_value(x, step, plan.reports), step))
        if retried(trial.should_prune):
            tally.prune_said_yes += 1
    # skip_if_finished: a retried tell whose first attempt did commit is not an error.
    retried(lambda: study.tell(trial, x, skip_if_finished=True))
    tally.told += 1


def run_worker(plan: Plan, worker_index: int, start_line, results) -> None:
    """One worker process: waits for the others, opens the study, runs its trials, and
    puts its WorkerTally on `results` whatever happens."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tally = WorkerTally()
    try:
        start_line.wait(timeout=120)
        tally.started = time.time()
        sampler = optuna.samplers.RandomSampler(seed=worker_index)
        study = with_retries(
            lambda: optuna.load_study(study_name=STUDY_NAME, sampler=sampler,
                                      storage=open_storage(plan.storage, plan.directory)),
            tally, plan.error_limit)
        for _ in range(plan.trials):
            run_one_trial(study, plan, tally)
    except ErrorLimitReached:
        tally.gave_up = True
    except Exception as error:  # noqa: BLE001 - reported, not raised, so the parent hears
        tally.errors[f"worker crashed: {error_kind(error)}"] += 1
        tally.gave_up = True
    finally:
        tally.finished = time.time()
        results.put(tally)


# --- the parent -----------------------------------------------------------------------------

def run_workers(plan: Plan, processes: int, timeout_s: float) -> tuple[list, int]:
    """Starts the workers together; returns their tallies and how many had to be killed."""
    context = multiprocessing.get_context("spawn")
    start_line = context.Barrier(processes)
    results = context.Queue()
    workers = [context.Process(target=run_worker, args=(plan, index, start_line, results))
               for index in range(processes)]
    for worker in workers:
        worker.start()
    tallies = []
    deadline = time.monotonic() + timeout_s
    while len(tallies) < processes:
        try:
            tallies.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            break
    killed = 0
    for worker in workers:
        worker.join(timeout=5)
        if worker.is_alive():
            worker.kill()
            worker.join()
            killed += 1
    return tallies, killed


def duplicates(numbers: list) -> list:
    return sorted(number for number, count in collections.Counter(numbers).items() if count > 1)


def integrity_problems(trials: list, tallies: list, reports: int) -> list[str]:
    """What is wrong with the stored trials given what the workers did; empty when ok."""
    problems = []
    asked = [number for tally in tallies for number in tally.asked_numbers]
    stored = [trial.number for trial in trials]
    if len(stored) != len(asked):
        problems.append(f"{len(stored)} trials stored for {len(asked)} successful asks")
    if duplicates(asked):
        problems.append(f"workers got the same number: {duplicates(asked)[:5]}")
    if sorted(stored) != list(range(len(stored))):
        problems.append(f"numbers not 0..{len(stored) - 1} (duplicated: "
                        f"{duplicates(stored)[:5]})")
    by_state = collections.Counter(trial.state.name for trial in trials)
    if by_state["RUNNING"]:
        problems.append(f"{by_state['RUNNING']} left RUNNING")
    told = sum(tally.told for tally in tallies)
    if by_state["COMPLETE"] != told:
        problems.append(f"{by_state['COMPLETE']} COMPLETE for {told} successful tells")
    wrong_values = [trial.number for trial in trials
                    if trial.state.name == "COMPLETE" and not values_as_reported(trial, reports)]
    if wrong_values:
        problems.append(f"{len(wrong_values)} trials with missing or wrong values "
                        f"(e.g. {wrong_values[:5]})")
    return problems


def values_as_reported(trial: optuna.trial.FrozenTrial, reports: int) -> bool:
    """Whether the trial holds every intermediate value and the final value it reported."""
    x = trial.params.get("x")
    if x is None:
        return False
    expected = {step: intermediate_value(x, step, reports) for step in range(reports)}
    return trial.intermediate_values == expected and trial.value == x


def wall_seconds(tallies: list) -> float:
    """First worker's start to last worker's end (NaN when no worker reported)."""
    if not tallies:
        return math.nan
    return max(tally.finished for tally in tallies) - min(tally.started for tally in tallies)


def benchmark(storage: str, processes: int, trials: int, reports: int, error_limit: int,
              timeout_s: float) -> dict:
    """One candidate: a fresh directory and study, the workers, then the checks."""
    with tempfile.TemporaryDirectory(prefix=f"search-storage-{storage}-") as directory:
        optuna.create_study(study_name=STUDY_NAME, direction="maximize",
                            storage=open_storage(storage, directory))
        plan = Plan(storage, directory, trials, reports, error_limit)
        tallies, killed = run_workers(plan, processes, timeout_s)
        stored = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(storage, directory))
        trials_stored = stored.get_trials(deepcopy=False)
    problems = integrity_problems(trials_stored, tallies, reports)
    if killed or len(tallies) < processes:
        problems.append(f"{processes - len(tallies)} workers did not report ({killed} killed)")
    gave_up = sum(tally.gave_up for tally in tallies)
    if gave_up:
        problems.append(f"{gave_up} workers gave up after {error_limit} errors")
    errors = sum((tally.errors for tally in tallies), collections.Counter())
    seconds = wall_seconds(tallies)
    completed = sum(trial.state.name == "COMPLETE" for trial in trials_stored)
    return {
        "storage": storage,
        "wall_s": round(seconds, 2),
        "trials_completed": completed,
        "trials_per_s": round(completed / seconds, 2) if seconds > 0 else None,
        "prune_said_yes": sum(tally.prune_said_yes for tally in tallies),
        "errors": dict(errors.most_common()),
        "integrity": "ok" if not problems else "; ".join(problems),
    }


def print_table(results: list[dict]) -> None:
    header = f"{'storage':<17} {'wall s':>7} {'trials':>6} {'trials/s':>8}  {'errors':<40} integrity"
    print(header)
    print("-" * len(header))
    for row in results:
        errors = ", ".join(f"{count}x {kind}" for kind, count in row["errors"].items()) or "-"
        print(f"{row['storage']:<17} {row['wall_s']:>7.2f} {row['trials_completed']:>6} "
              f"{row['trials_per_s'] or 0:>8.2f}  {errors:<40} {row['integrity']}")


def main(argv):
    del argv
    unknown = sorted(set(STORAGE_LIST.value) - set(STORAGES))
    if unknown:
        raise app.UsageError(f"Unknown --storages {unknown}; choose from {', '.join(STORAGES)}.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"{PROCESSES.value} processes x {TRIALS_PER_PROCESS.value} trials, "
          f"{REPORTS.value} reports each, on {os.cpu_count()} CPUs", flush=True)
    results = [benchmark(storage, PROCESSES.value, TRIALS_PER_PROCESS.value, REPORTS.value,
                         ERROR_LIMIT.value, TIMEOUT.value)
               for storage in STORAGE_LIST.value]
    print_table(results)
    if JSON_PATH.value:
        settings = {"processes": PROCESSES.value, "trials_per_process": TRIALS_PER_PROCESS.value,
                    "reports": REPORTS.value, "error_limit": ERROR_LIMIT.value,
                    "cpus": os.cpu_count(), "optuna": optuna.__version__}
        with open(JSON_PATH.value, "w") as file:
            json.dump({"settings": settings, "results": results}, file, indent=2)


if __name__ == "__main__":
    app.run(main)
