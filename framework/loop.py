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
      * `train(iterator, n)` runs n optimizer steps in one host call (an in-graph loop over
        the distributed iterator) and adds n to `global_step`.
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
        optimizer: keras.optimizers.Optimizer,
        make_metrics: Callable[[], list[keras.metrics.Metric]],
        global_batch_size: int,
        global_step: tf.Variable,
        clip_gradient_norm: float | None = None,
    ):
        self.strategy, self.model, self.loss_fn = strategy, model, loss_fn
        self.optimizer, self.global_batch_size = optimizer, global_batch_size
        self.global_step, self.clip_gradient_norm = global_step, clip_gradient_norm
        with strategy.scope():
            self.train_metrics = [keras.metrics.Mean(name="loss"), *make_metrics()]
            self.eval_metrics = [keras.metrics.Mean(name="loss"), *make_metrics()]
        self._train_steps = tf.function(self._train_steps_fn)
        self._evaluate = tf.function(self._evaluate_fn)

    # -- training ---------------------------------------------------------------------

    def train(self, iterator, num_steps: int) -> None:
        # A tensor, so that chunks of different lengths reuse one trace.
        self._train_steps(iterator, tf.constant(num_steps, tf.int64))

    def _train_steps_fn(self, iterator, num_steps):
        for _ in tf.range(num_steps):
            self.strategy.run(self._train_step, args=next(iterator))
        self.global_step.assign_add(num_steps)

    def _train_step(self, features, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(features, training=True)
            per_example_loss = self.loss_fn(labels, outputs)
            loss = tf.nn.compute_average_loss(
                per_example_loss, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        gradients = tape.gradient(loss, variables)
        if self.clip_gradient_norm:
            gradients = self._clipped(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
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

    def train_results(self) -> dict[str, float]:
        return _results_and_reset(self.train_metrics)

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
