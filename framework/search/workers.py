"""The search command's workers: threads that each start trial processes
(framework.search.trial) one after another until the study has its trials, and report
each trial's outcome with the study's progress.
"""

import collections
import os
import signal
import subprocess
import threading
import time

from framework.console import CONSOLE
from framework.search import results, storage as storages, study as studies

_POLL_S = 5.0  # how often a worker with nothing to start looks at the study again


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
        """Runs `count` workers to the end; returns the exit status (128 + a signal's
        number when one stopped them)."""
        studies.fail_dead_trials(self.study, self.storage)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop_children)
        threads = [threading.Thread(target=self._work, args=(slot,), daemon=True)
                   for slot in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # wakes for signals
        return self.signal_status

    def _work(self, slot: int) -> None:
        while not self.halt.is_set():
            with self.lock:
                child = self._start_trial(slot)
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

    def _start_trial(self, slot: int) -> subprocess.Popen | None:
        """A new trial process, or None when the study's places are all taken (by trials
        running, waiting or done, or by processes of ours still asking for theirs)."""
        census = self.census()
        asking = set(self.children) - self._recorded_pids()
        if census.finished >= self.space.trials or (
                census.counted + len(asking) >= self.space.trials and not census.waiting):
            return None
        child = subprocess.Popen(
            [*self.command, f"--slot={slot}", f"--launched_at={time.time()}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env, text=True,
            errors="replace")
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
