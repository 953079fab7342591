"""A study shared by every worker and command that points at it: opening it, counting its
trials, and failing and retrying the trials whose process died.

Optuna's storage is the only coordinator: numbering is the storage's, so trials are never
run twice; a trial knows the process running it (its 'process' user attribute), so a dead
one is found and retried from its checkpoint.

User attributes the search keeps on a trial:
  process   {'host', 'boot', 'pid', 'start'} of the process running it (liveness)
  steps     train steps it ran
  retry_of  the interrupted trial it continues; that one then does not count
  surplus   True: asked by a command that found the study already full; not counted
"""

import dataclasses
import hashlib
import math
import os
import re
import socket
import time
import warnings

import optuna
from optuna.trial import TrialState

from framework.errors import UserError
from framework.run_dir import config_changes

# A trial whose process never recorded itself (killed within milliseconds of being asked)
# is taken as dead after this long.
_UNRECORDED_S = 300
_MAX_ATTEMPTS = 3  # an interrupted trial is run at most this often in all


def open_study(storage, name: str, direction: str, config_text: str) -> optuna.Study:
    """The study `name` in `storage`, created if new. `config_text` (the search's gin
    config) is kept with a new study; a study made from another config is refused, as its
    trials would not compare with new ones. Search.trials may change: a study can be
    extended."""
    study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise UserError(f"Study '{name}' was created to {study.direction.name.lower()} its "
                        f"objective, and this config says {direction}. Use a new --study_dir "
                        "(or --study_name).")
    config_text = re.sub(r"(?m)^Search\.trials = .*\n?", "", config_text)
    fingerprint = hashlib.sha256(config_text.encode()).hexdigest()
    if "config_sha256" not in study.user_attrs:
        # Of several commands creating the study at once only one config survives (a
        # database keeps the first write, a journal the last): each reads back whose it is.
        study.set_user_attr("config_sha256", fingerprint)
        study.set_user_attr("config", config_text)
    if study.user_attrs["config_sha256"] != fingerprint:
        changes = config_changes(study.user_attrs.get("config", ""), config_text)
        raise UserError(f"Study '{name}' was made from another config, so its trials would "
                        f"not compare with new ones:\n{changes}\nUse a new --study_dir (or "
                        "--study_name), or run the study's own config.")
    return study


@dataclasses.dataclass(frozen=True)
class Census:
    """Where a study stands. `counted` trials take a place among the requested ones:
    finished (complete, pruned, failed), running or waiting, leaving out interrupted trials
    that were retried and surplus ones."""

    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    best: optuna.trial.FrozenTrial | None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def counted(self) -> int:
        return self.finished + self.running + self.waiting


def counted_trials(trials: list) -> list:
    """The trials that take a place in the study (see Census), in number order."""
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    return [t for t in trials
            if t.number not in retried and not t.user_attrs.get("surplus")]


def census(study: optuna.Study) -> Census:
    trials = counted_trials(study.get_trials(deepcopy=False))
    states = [t.state for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t.value)]
    best = None
    if complete:
        pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(complete, key=lambda t: t.value)
    return Census(states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED),
                  states.count(TrialState.FAIL), states.count(TrialState.RUNNING),
                  states.count(TrialState.WAITING), best)


def place(study: optuna.Study, number: int) -> int:
    """How many counted trials come before trial `number`: a trial whose place is at or
    beyond the requested count is surplus (two commands asked at once for the last one)."""
    return sum(1 for t in counted_trials(study.get_trials(deepcopy=False)) if t.number < number)


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queues the interrupted `trial` again with its parameters, unless it has had its
    attempts; the queued trial continues from the interrupted one's checkpoint."""
    attempt = trial.user_attrs.get("attempt", 1)
    if attempt >= _MAX_ATTEMPTS:
        return
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                  "attempt": attempt + 1})


# -- liveness -------------------------------------------------------------------------------

def this_process() -> dict:
    """What identifies the running process across machines and reboots ('process')."""
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(),
            "start": _start_ticks(os.getpid())}


def is_alive(process: dict) -> bool | None:
    """Whether the process a trial recorded still runs; None when it ran on another
    machine (its storage's heartbeat decides there)."""
    if process.get("host") != socket.gethostname() or process.get("boot") != _boot_id():
        return None
    pid = process.get("pid")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    start = _start_ticks(pid)
    return start is None or start == process.get("start")  # else the PID was reused


def fail_dead_trials(study: optuna.Study, storage) -> list[int]:
    """Fails (and retries) each running trial whose process has died, here or, through the
    storage's heartbeats, elsewhere. `storage`: the study's. Returns the numbers of the
    trials failed here."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # database storages: missed heartbeats
    failed = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        process = trial.user_attrs.get("process")
        if process is None:
            started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
            dead = time.time() - started > _UNRECORDED_S
        else:
            dead = is_alive(process) is False
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        # Of several workers that find the same dead trial, only one changes its state.
        if dead and storage.set_trial_state_values(trial_id, TrialState.FAIL):
            retry(study, trial)
            failed.append(trial.number)
    return failed


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # Field 22, counted after the command name, which may hold spaces.
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)
