"""What Optuna's `optimize` calls for one trial: the trial's run, and the hook that reports
its evaluations and stops it when pruned.

A trial is an ordinary run in study_dir/trial_NNNN, so --mode=eval, predict and export work
on it; its TensorBoard folder also gets `search/pruned` and `search/steps_trained`, which
the study's HParams view shows beside the metrics.
"""

import math
import os
import shutil
import sys
import time

import optuna

from framework.console import CONSOLE
from framework.errors import UserError
from framework.experiment import from_config
from framework.hooks import Hook, StopRequest
from framework.modes import run_mode
from framework.cli import stop_on_signals
from framework.search import study as studies
from framework.search.results import write_trial_outcome
from framework.search.space import Space


def trial_dir(study_dir: str, number: int) -> str:
    return os.path.join(study_dir, f"trial_{number:04d}")


class Surplus(Exception):
    """The study already had its trials when this one was asked for (another command took
    the last place first); the trial is failed, marked, and not counted."""


class Interrupted(Exception):
    """The trial's run was stopped by a signal; it has a checkpoint and is queued again."""


class PruningReporter(Hook):
    """Reports `objective` after each evaluation, and a diverged loss as NaN (which Optuna's
    pruners prune); asks `should_prune()` after each report but the last, at the full
    budget, and when it answers True stops the run after its host loop, with a checkpoint.
    Keeps when training began and ended (`times`) for the trial's overhead."""

    def __init__(self, objective: str, report, should_prune):
        self.objective, self.report, self.should_prune = objective, report, should_prune
        self.pruned_at: int | None = None
        self.times: dict[str, float] = {}

    def begin(self, context) -> None:
        self.times["training_began"] = time.time()

    def end(self, context, step: int) -> None:
        self.times["training_ended"] = time.time()

    def after_train_loop(self, context, step: int, loop: dict) -> None:
        if loop["nonfinite_steps"] and self.pruned_at is None:
            self.report(math.nan, step)
            self._prune(context, step, "its loss diverged")

    def after_eval(self, context, step: int, results: dict) -> None:
        if self.objective not in results:
            raise UserError(f"Search.objective = '{self.objective}' is not among this "
                            f"experiment's eval metrics: {', '.join(sorted(results))}.")
        if self.pruned_at is not None:
            return
        self.report(results[self.objective], step)
        if step < context.train_steps and self.should_prune():
            self._prune(context, step, f"{self.objective} {results[self.objective]:.4g} "
                                       f"at step {step} is not among the trials going on")

    def _prune(self, context, step: int, why: str) -> None:
        self.pruned_at = step
        context.request_stop(f"pruned: {why}")


class TrialObjective:
    """Runs one trial of `space` in study_dir with the study's gin files and bindings
    (`bindings` may add the worker's thread pools). Returns the final evaluation's
    objective, or raises optuna.TrialPruned, Surplus, Interrupted or the run's error.
    Besides 'process' and 'steps' (framework.search.study), it keeps on the trial when its
    process was launched and when training began and ended (epoch seconds): where its time
    went."""

    caught = (Surplus, Interrupted)  # failed without ending the worker

    def __init__(self, space: Space, study_dir: str, gin_files: list[str],
                 bindings: list[str], launched_at: float | None = None):
        self.space, self.study_dir, self.launched_at = space, study_dir, launched_at
        self.gin_files, self.bindings = gin_files, bindings
        self.keep_alive = []  # the run outlives the trial: the process leaves right after

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("process", studies.this_process())
        if self.launched_at is not None:  # when the worker started this process
            trial.set_user_attr("launched_at", self.launched_at)
        model_dir = trial_dir(self.study_dir, trial.number)
        if studies.place(trial.study, trial.number) >= self.space.trials:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"the study already has its {self.space.trials} trials")
        os.makedirs(model_dir, exist_ok=True)
        _log_to(os.path.join(model_dir, "trial.log"))
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is not None:
            _continue_from(trial_dir(self.study_dir, retry_of), model_dir)
        bindings = self.space.bindings(self.space.suggest(trial))
        CONSOLE.line(f"trial {trial.number}: " + ", ".join(bindings))
        experiment = from_config(self.gin_files, self.bindings + bindings)
        reporter = PruningReporter(self.space.objective, trial.report, trial.should_prune)
        stop = StopRequest()
        stop_on_signals(stop)
        results = run_mode(experiment, model_dir, "train_and_eval", stop=stop,
                           keep_alive=self.keep_alive, extra_hooks=[reporter])
        for name, value in {**reporter.times, "steps": results["step"]}.items():
            trial.set_user_attr(name, value)
        write_trial_outcome(model_dir, results["step"], pruned=reporter.pruned_at is not None)
        if results["exit_status"] >= 128:  # a signal: go on later from the checkpoint
            studies.retry(trial.study, next(t for t in trial.study.get_trials(deepcopy=False)
                                            if t.number == trial.number))
            raise Interrupted(results["stopped"])
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(results["stopped"])
        if results["exit_status"]:
            raise RuntimeError(f"the run failed: {results['stopped']}")
        return results["eval"][self.space.objective]


def _continue_from(interrupted_dir: str, model_dir: str) -> None:
    """A retried trial starts from the interrupted one's folder: its checkpoints (the run
    resumes from the latest), summaries and config. Skipped when that folder is on
    another machine, or when this trial has a checkpoint of its own."""
    if not os.path.isdir(interrupted_dir) or os.path.isdir(os.path.join(model_dir, "checkpoints")):
        return
    shutil.copytree(interrupted_dir, model_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".lock", "trial.log"))
    CONSOLE.line(f"continuing {interrupted_dir}")


def _log_to(path: str) -> None:
    """From here on, this process's output (console, logs) goes to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
