"""One evaluation pass, compiled: the model in inference mode over the evaluation batches."""

import warnings
from typing import Callable

import tensorflow as tf

from framework.objective import Objective, metric_values
from framework.observers import EvalOutput
from framework.precision import float32_outputs


class Evaluator:
    """Evaluates `model` on fixed distributed datasets with the objective's metrics.

    make_datasets() gives the distributed evaluation datasets; called once, at the first
    evaluation (their batches are cached there). `evaluate()` returns the metrics of that
    pass alone (scalars, and with `confusion_matrices` one matrix per classifying output).
    """

    def __init__(self, strategy: tf.distribute.Strategy, model, objective: Objective,
                 make_datasets: Callable[[], list], confusion_matrices: bool = False):
        self.strategy, self.model, self.objective = strategy, model, objective
        self.make_datasets, self.datasets = make_datasets, None
        with strategy.scope():
            self.metrics = objective.new_metrics(confusion_matrices)
        self._evaluate = tf.function(self._evaluate_fn)

    def evaluate(self) -> EvalOutput:
        if self.datasets is None:
            self.datasets = self.make_datasets()
        for entry in self.metrics:
            entry.metric.reset_state()
        with warnings.catch_warnings():
            # Tracing a loop over a multi-worker distributed dataset reads its tf.data
            # options in graph mode, and tf.data warns they may be stale there; they only
            # set prefetching and sharding, which are already applied.
            warnings.filterwarnings("ignore", message="To make it possible to preserve")
            self._evaluate(self.datasets)
        matrices = {entry.tag: entry.metric.result().numpy()
                    for entry in self.metrics if not entry.scalar}
        return EvalOutput(metric_values(self.metrics, reset=True), matrices)

    def _evaluate_fn(self, distributed_datasets):
        for batches in distributed_datasets:
            for batch in batches:
                self.strategy.run(self._eval_step, args=batch)

    def _eval_step(self, features, labels):
        outputs = float32_outputs(self.model(features, training=False))
        per_example_loss, head_losses = self.objective.losses(labels, outputs)
        self.objective.update(self.metrics, labels, outputs, per_example_loss, head_losses)
