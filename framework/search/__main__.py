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

import collections
import os
import signal
import subprocess
import sys
import threading

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

_POLL_S = 5.0  # how often a worker with nothing to start looks at the study again


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


class Workers:
    """M threads, each starting trial processes one after another until the study has its
    trials; a UserError in a trial (exit 2) or a signal to this command stops them all."""

    def __init__(self, study, storage, space, study_dir: str, command: list[str], url: str):
        self.study, self.storage, self.space = study, storage, space
        self.study_dir, self.command = study_dir, command
        self.env = {**os.environ, storages.STORAGE_ENV: url}
        self.children: dict[int, subprocess.Popen] = {}
        self.lock, self.halt = threading.Lock(), threading.Event()
        self.error: str | None = None
        self.signal_status = 0

    def census(self):
        return studies.census(self.study)

    def run(self, count: int) -> int:
        """Runs the workers to the end; returns the exit status (128 + a signal's number
        when one stopped them)."""
        studies.fail_dead_trials(self.study, self.storage)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop_children)
        threads = [threading.Thread(target=self._work, args=(slot, count), daemon=True)
                   for slot in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # wakes for signals
        return self.signal_status

    def _work(self, slot: int, count: int) -> None:
        while not self.halt.is_set():
            with self.lock:
                child = self._start_trial(slot, count)
            if child is None:
                if self.census().finished >= self.space.trials:
                    return
                self.halt.wait(_POLL_S)
                studies.fail_dead_trials(self.study, self.storage)
                continue
            output = collections.deque(child.stdout, maxlen=200)  # drained: never blocks
            child.wait()
            with self.lock:
                del self.children[child.pid]
                self._trial_ended(child, "".join(output))

    def _start_trial(self, slot: int, count: int) -> subprocess.Popen | None:
        """A new trial process, or None when the study's places are all taken (by trials
        running, waiting or done, or by processes of ours still asking for theirs)."""
        census = self.census()
        asking = set(self.children) - self._recorded_pids()
        if census.finished >= self.space.trials or (
                census.counted + len(asking) >= self.space.trials and not census.waiting):
            return None
        del count
        child = subprocess.Popen([*self.command, f"--slot={slot}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=self.env, text=True, errors="replace")
        self.children[child.pid] = child
        return child

    def _recorded_pids(self) -> set[int]:
        host = studies.this_process()["host"]
        return {t.user_attrs["process"]["pid"] for t in self.study.get_trials(deepcopy=False)
                if t.user_attrs.get("process", {}).get("host") == host}

    def _trial_ended(self, child: subprocess.Popen, output: str) -> None:
        trial = self._trial_of(child.pid)
        if child.returncode == 2:
            self.error = self.error or _error_message(output)
            self._stop_children()
            return
        if trial is None:
            if child.returncode and not self.halt.is_set():
                CONSOLE.line(f"a trial process failed before its trial began "
                             f"(exit {child.returncode}):\n{output[-2000:]}")
                self.error = self.error or "trial processes fail before their trial begins"
                self._stop_children()
            return
        if child.returncode:  # killed (or crashed) before Optuna could record how it ended
            studies.fail_dead_trials(self.study, self.storage)
            trial = self._trial_of(child.pid)
        CONSOLE.line(f"trial {trial.number} {self._outcome(trial)} · "
                     + results.progress_line(self.census(), self.space))
        table = results.rows(self.study, self.space)
        results.write_csv(os.path.join(self.study_dir, results.TRIALS_FILE), table,
                          self.space)

    def _outcome(self, trial) -> str:
        steps = trial.user_attrs.get("steps")
        at = f" at step {steps}" if steps is not None else ""
        if trial.user_attrs.get("surplus"):
            return "not run: the study was full"
        if trial.state.name == "COMPLETE":
            return f"complete{at}: {self.space.objective} {trial.value:.4f}"
        if trial.state.name == "PRUNED":
            return f"pruned{at}"
        retried = [t.number for t in self.study.get_trials(deepcopy=False)
                   if t.user_attrs.get("retry_of") == trial.number]
        if retried:
            return f"interrupted{at}; trial {retried[0]} continues it"
        return f"failed{at}; see {self.study_dir}/trial_{trial.number:04d}/trial.log"

    def _trial_of(self, pid: int):
        host = studies.this_process()["host"]
        for trial in reversed(self.study.get_trials(deepcopy=False)):
            process = trial.user_attrs.get("process", {})
            if process.get("pid") == pid and process.get("host") == host:
                return trial
        return None

    def _stop_children(self, signum=None, frame=None) -> None:
        """Stops every worker: running trials checkpoint and exit (they are retried when
        the study goes on)."""
        del frame
        if signum is not None:
            self.signal_status = 128 + signum
        self.halt.set()
        for child in list(self.children.values()):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)




def _error_message(output: str) -> str:
    """The `error:` message a trial process printed (exit status 2), without the prefix."""
    start = output.rfind("error: ")
    return output[start + len("error: "):].strip() if start >= 0 else output.strip()[-2000:]


if __name__ == "__main__":
    app.run(main)
