"""The compiled train and eval steps: GradientTape, tf.function, strategy.run.

`Trainer` only knows how to run N training steps and one evaluation pass; the Experiment
decides when to call which (and when to summarize and checkpoint).
"""

from typing import Callable

import keras
import tensorflow as tf


class Trainer:
    """Train and eval steps for one model, loss and optimizer under one strategy.

    Contract:
      * `train(iterator, n)` runs n steps in one host call (an in-graph loop over the
        distributed iterator) and adds n to `global_step`.
      * A step whose loss or gradients are not finite on any replica is counted in
        `nonfinite_steps` (the first in `first_nonfinite_step`); with
        `skip_nonfinite_steps` its update is not applied, else it is.
      * `optimizer_groups` ([(optimizer, indices into model.trainable_variables)], see
        framework.optimization) apply the gradients, each to its own variables.
      * The training loss is the per-example loss averaged over the *global* batch
        (`tf.nn.compute_average_loss`) plus the model's regularization losses scaled by the
        number of replicas (`tf.nn.scale_regularization_loss`).
      * Metrics are keras.metrics objects; `train_results()` and `evaluate()` return their
        values and reset them. The metric called `loss` is the mean per-example loss.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        model: keras.Model,
        loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
        optimizer_groups: list[tuple[keras.optimizers.Optimizer, list[int]]],
        make_metrics: Callable[[], list[keras.metrics.Metric]],
        global_batch_size: int,
        global_step: tf.Variable,
        clip_gradient_norm: float | None = None,
        skip_nonfinite_steps: bool = False,
    ):
        self.strategy, self.model, self.loss_fn = strategy, model, loss_fn
        self.optimizer_groups, self.global_batch_size = optimizer_groups, global_batch_size
        self.global_step, self.clip_gradient_norm = global_step, clip_gradient_norm
        self.skip_nonfinite_steps = skip_nonfinite_steps
        with strategy.scope():
            self.train_metrics = [keras.metrics.Mean(name="loss"), *make_metrics()]
            self.eval_metrics = [keras.metrics.Mean(name="loss"), *make_metrics()]
            # Steps whose loss or gradients were NaN or Inf, and the first of them (-1:
            # none). Read at loop boundaries by the NaN guard.
            self.nonfinite_steps = tf.Variable(
                0, dtype=tf.int64, trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.first_nonfinite_step = tf.Variable(
                -1, dtype=tf.int64, trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._train_steps = tf.function(self._train_steps_fn)
        self._evaluate = tf.function(self._evaluate_fn)

    # -- training ---------------------------------------------------------------------

    def train(self, iterator, num_steps: int) -> None:
        # A tensor, so that chunks of different lengths reuse one trace.
        self._train_steps(iterator, tf.constant(num_steps, tf.int64))

    def _train_steps_fn(self, iterator, num_steps):
        for _ in tf.range(num_steps):
            features, labels = next(iterator)
            if self.skip_nonfinite_steps:
                # The update is decided in cross-replica context: a cond in replica context
                # cannot hold apply_gradients (it calls merge_call).
                nonfinite, gradients, outputs = self.strategy.run(
                    self._gradients, args=(features, labels))
                all_finite = self._all_replicas(nonfinite)
                if all_finite:
                    self.strategy.run(self._apply, args=(gradients, labels, outputs))
            else:
                nonfinite = self.strategy.run(self._train_step, args=(features, labels))
                all_finite = self._all_replicas(nonfinite)
            self.global_step.assign_add(1)
            if not all_finite:
                self.nonfinite_steps.assign_add(1)
                if self.first_nonfinite_step < 0:
                    self.first_nonfinite_step.assign(self.global_step)

    def _all_replicas(self, nonfinite):
        """True when no replica saw a non-finite value (`nonfinite` is 0.0 or 1.0 each)."""
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, nonfinite, axis=None) == 0.0

    def _train_step(self, features, labels):
        nonfinite, gradients, outputs = self._gradients(features, labels)
        self._apply(gradients, labels, outputs)
        return nonfinite

    def _gradients(self, features, labels):
        """Gradients on this replica's share of the global batch, whether the loss or any
        gradient is not finite (1.0) or is (0.0), and what the metrics need."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(features, training=True)
            per_example_loss = self.loss_fn(labels, outputs)
            loss = tf.nn.compute_average_loss(
                per_example_loss, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        gradients = tape.gradient(loss, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(x))
                                for x in [loss, *gradients] if x is not None])
        nonfinite = 1.0 - tf.cast(finite, tf.float32)
        # The per-example losses travel with the outputs, for the loss metric.
        return nonfinite, gradients, (outputs, per_example_loss)

    def _apply(self, gradients, labels, outputs):
        outputs, per_example_loss = outputs
        if self.clip_gradient_norm:
            gradients = self._clipped(gradients)
        variables = self.model.trainable_variables
        for optimizer, indices in self.optimizer_groups:
            optimizer.apply_gradients([(gradients[i], variables[i]) for i in indices])
        self.train_metrics[0].update_state(per_example_loss)
        for metric in self.train_metrics[1:]:
            metric.update_state(labels, outputs)

    def _clipped(self, gradients):
        """Clips the replica-summed gradient by its global norm.

        Clipping each replica's partial gradient would clip the wrong vector, so sum first.
        Keras sums gradients over replicas again inside apply_gradients; every replica now
        holds the whole sum, so each hands on 1/N of it.
        """
        context = tf.distribute.get_replica_context()
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        clipped, _ = tf.clip_by_global_norm(summed, self.clip_gradient_norm)
        return [g / context.num_replicas_in_sync for g in clipped]

    def train_results(self, reset: bool = True) -> dict[str, float]:
        """Training metrics since the last reset (the mean loss and the task's metrics)."""
        if reset:
            return _results_and_reset(self.train_metrics)
        return {metric.name: float(metric.result()) for metric in self.train_metrics}

    # -- evaluation -------------------------------------------------------------------

    def evaluate(self, distributed_batches) -> dict[str, float]:
        """One pass over `distributed_batches`; the metrics of that pass alone."""
        for metric in self.eval_metrics:
            metric.reset_state()
        self._evaluate(distributed_batches)
        return _results_and_reset(self.eval_metrics)

    def _evaluate_fn(self, distributed_batches):
        for batch in distributed_batches:
            self.strategy.run(self._eval_step, args=batch)

    def _eval_step(self, features, labels):
        outputs = self.model(features, training=False)
        self.eval_metrics[0].update_state(self.loss_fn(labels, outputs))
        for metric in self.eval_metrics[1:]:
            metric.update_state(labels, outputs)


def _results_and_reset(metrics) -> dict[str, float]:
    results = {metric.name: float(metric.result()) for metric in metrics}
    for metric in metrics:
        metric.reset_state()
    return results
