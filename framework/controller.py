"""The outer loop: which mode runs, when to train, summarize, checkpoint and evaluate, and
when to stop. It builds nothing and computes nothing itself.

Its collaborators come in through the constructor (see `Controller`), so it is tested with
fakes and no TensorFlow work (tests/test_controller.py).
"""

import dataclasses
import time

from absl import logging

from framework.cadence import Cadence, steps_to_next_boundary
from framework.hooks import Hook, RunContext, StopRequest
from framework.observers import EvalOutput, LoopOutput, Observer

MODES = ("train", "eval", "train_and_eval")


@dataclasses.dataclass(frozen=True)
class Cadences:
    """summaries, checkpoints, evaluation: training's own; others: observers' (histograms,
    profiling), at which a host loop ends too. Evaluation follows its cadence during
    training; train_and_eval evaluates once more at the end."""

    summaries: Cadence
    checkpoints: Cadence
    evaluation: Cadence
    others: tuple[Cadence, ...] = ()


class Controller:
    """Drives a built run.

    Collaborators (duck-typed, so tests pass fakes):
      trainer: `train(inputs, num_steps) -> LoopOutput`; `results(reset) -> {tag: value}`,
        the training metrics since the last reset; `summary_scalars() -> {tag: value}`, what
        else a summary shows (learning rate, ...).
      evaluator: `evaluate() -> EvalOutput`; None when the data has no evaluation split.
      checkpoints: `save(step) -> path` and `latest` (the newest path, or None).
      observers: `Observer`s (summaries, monitoring, the best checkpoint), told first.
      hooks: user `Hook`s, each given a `RunContext`.
      any_worker_stops: in a multi-worker run, `(stops_here: bool) -> bool`, whether any
        worker asks to stop (a collective every worker calls after each host loop), so
        that all stop after the same step; None in a single process.
    """

    def __init__(self, *, trainer, evaluator, checkpoints, cadences: Cadences,
                 train_steps: int, steps_per_loop: int, examples_per_step: int, step: int,
                 model_dir: str, stop: StopRequest | None = None,
                 observers: list[Observer] = (), hooks: list[Hook] = (),
                 any_worker_stops=None):
        self.trainer, self.evaluator, self.checkpoints = trainer, evaluator, checkpoints
        self.cadences, self.train_steps = cadences, train_steps
        self.steps_per_loop, self.examples_per_step = steps_per_loop, examples_per_step
        self.observers, self.hooks = list(observers), list(hooks)
        self.stop = stop or StopRequest()
        self.any_worker_stops = any_worker_stops
        self.context = RunContext(self.stop, train_steps, lambda: checkpoints.latest,
                                  model_dir, step)
        self._last_eval: tuple[int, dict] | None = None  # (step, scalars)

    @property
    def step(self) -> int:
        return self.context.step

    def run(self, mode: str, make_inputs=None) -> dict:
        """Trains and/or evaluates, as `mode` says (see `train` for make_inputs).

        Returns {'step', 'train', 'eval', 'stopped', 'exit_status'}: the final step, the
        last training summary's scalars, the final evaluation's metrics, why training
        stopped early (None if it did not) and the exit status that asked for.
        """
        results = {"train": {}, "eval": {}}
        if mode == "eval":
            results["eval"] = self.evaluate()
        else:
            results["train"] = self.train(make_inputs)
            if mode == "train_and_eval" and self.stop.exit_status == 0:
                # A run stopped right after an evaluation (early stopping, a pruned trial)
                # ends with that one.
                evaluated_now = self._last_eval and self._last_eval[0] == self.step
                results["eval"] = self._last_eval[1] if evaluated_now else self.evaluate()
        return {"step": self.step, **results, "stopped": self.stop.reason,
                "exit_status": self.stop.exit_status}

    def train(self, make_inputs) -> dict:
        """Trains to train_steps, or until a stop is requested; returns the scalars of the
        last training summary ({} when there was nothing left to train).

        make_inputs(start_step): what the trainer trains on (the data streams positioned at
        that step); called once, only when there are steps to train.
        """
        step = self.step
        if step >= self.train_steps:
            logging.info("Already trained to step %d of %d.", step, self.train_steps)
            return {}
        logging.info("Training from step %d to %d.", step, self.train_steps)
        inputs = make_inputs(step)
        for observer in self.observers:
            observer.begin(step)
        for hook in self.hooks:
            hook.begin(self.context)
        boundaries = [self.cadences.summaries, self.cadences.checkpoints,
                      self.cadences.evaluation, *self.cadences.others]
        last_saved, summary = None, {}
        window = (time.perf_counter(), step)
        while step < self.train_steps and not self.stop.requested:
            num_steps = steps_to_next_boundary(step, boundaries, self.train_steps,
                                               self.steps_per_loop)
            for observer in self.observers:
                observer.before_train_loop(step)
            output = self.trainer.train(inputs, num_steps)
            step += num_steps
            self.context.step = step
            self._after_train_loop(step, output)
            self._agree_on_stopping()
            if self.cadences.summaries.due(step) or step == self.train_steps:
                summary = self._summarize(step, window)
                window = (time.perf_counter(), step)
            if self.cadences.checkpoints.due(step) and not self.stop.requested:
                last_saved = self.checkpoints.save(step)
            if self.cadences.evaluation.due(step) and step < self.train_steps \
                    and not self.stop.requested:
                self.evaluate()
        self._save_at_end(step, last_saved)
        for observer in self.observers:
            observer.end(step)
        for hook in self.hooks:
            hook.end(self.context, step)
        return summary

    def evaluate(self) -> dict:
        """One evaluation of the model as it is now; returns its scalar metrics."""
        if self.evaluator is None:
            return {}
        output: EvalOutput = self.evaluator.evaluate()
        for observer in self.observers:
            observer.after_eval(self.step, output)
        logging.info("eval at step %d: %s", self.step, _format(output.scalars))
        for hook in self.hooks:
            hook.after_eval(self.context, self.step, output.scalars)
        self._last_eval = (self.step, output.scalars)
        return output.scalars

    def _agree_on_stopping(self) -> None:
        """A signal or hook on one worker stops every worker after this host loop."""
        if self.any_worker_stops is None:
            return
        if self.any_worker_stops(self.stop.requested) and not self.stop.requested:
            self.stop("another worker of the cluster stopped (a signal or a hook)",
                      exit_status=128 + 15)

    def _after_train_loop(self, step: int, output: LoopOutput) -> None:
        for observer in self.observers:
            observer.after_train_loop(step, output)
        if not self.hooks:  # reading the metrics costs a few ops: only when watched
            return
        loop = {"steps": output.steps, "nonfinite_steps": output.nonfinite_steps,
                "first_nonfinite_step": output.first_nonfinite_step,
                **self.trainer.results(reset=False)}
        for hook in self.hooks:
            hook.after_train_loop(self.context, step, loop)

    def _summarize(self, step: int, window: tuple[float, int]) -> dict:
        started_at, started_step = window
        metrics = self.trainer.results(reset=True)  # waits for the window's last step
        steps_per_second = (step - started_step) / (time.perf_counter() - started_at)
        scalars = {**metrics, **self.trainer.summary_scalars(),
                   "steps_per_second": steps_per_second,
                   "examples_per_second": steps_per_second * self.examples_per_step}
        for observer in self.observers:
            observer.after_train_summary(step, scalars)
        logging.info("step %d/%d: %s", step, self.train_steps, _format(scalars))
        return scalars

    def _save_at_end(self, step: int, last_saved: str | None) -> None:
        """A checkpoint of the final state, unless a stop asked not to save it."""
        if self.stop.requested and not self.stop.save:
            logging.error("Stopped at step %d: %s. Nothing was saved after the last good "
                          "checkpoint, %s.", step, self.stop.reason, self.checkpoints.latest)
            return
        if last_saved is None or not last_saved.endswith(f"-{step}"):
            last_saved = self.checkpoints.save(step)
        if self.stop.requested:
            logging.warning("Stopped at step %d: %s. Checkpoint %s holds this state; re-run "
                            "the same command to go on.", step, self.stop.reason, last_saved)


def _format(values: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())
