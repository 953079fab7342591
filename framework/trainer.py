"""The compiled training steps: GradientTape, tf.function, strategy.run.

`Trainer` only knows how to run N training steps in one host call; the controller decides
when (and when to summarize, checkpoint and evaluate).
"""

import functools

import keras
import tensorflow as tf

from framework.objective import Objective, TrackedMetric, metric_values
from framework.observers import LoopOutput
from framework.optimization import take_over_aggregation
from framework.precision import float32_outputs


class Trainer:
    """Training steps for one model, objective and optimizer groups under one strategy.

    Contract:
      * `train(iterators, n)` runs n steps in one host call (an in-graph loop over the
        distributed iterators), adds n to `global_step` and returns a `LoopOutput`. With
        several iterators (one per dataset, alternating training), step s reads from
        iterators[schedule[s]], and only the heads that batch labels get gradients: the
        other heads' variables are not touched (no optimizer step on a zero gradient,
        which would still move them by momentum or weight decay).
      * Replicas' gradients are summed in one all-reduce per step, then measured (the
        global norm), clipped and applied as they are: Keras does not reduce them again.
      * A step whose loss or gradients are not finite on any replica is counted (the
        LoopOutput's nonfinite_steps and first_nonfinite_step, read back once per call);
        with `skip_nonfinite_steps` its update is not applied and its metrics not counted,
        else they are.
      * `optimizer_groups` ([(optimizer, indices into model.trainable_variables)], see
        framework.optimization) apply the gradients, each to its own variables. They are
        the Trainer's from then on: they no longer sum gradients over replicas.
      * The training loss is the objective's per-example loss averaged over the *global*
        batch (`tf.nn.compute_average_loss`) plus the model's regularization losses scaled
        by the number of replicas (`tf.nn.scale_regularization_loss`).
      * Metrics come from the objective; `results()` returns their values by tag (and
        resets them). The metric tagged `loss` is the mean per-example loss.
      * `summary_scalars()`: the learning rate and, when the model has them, its
        regularization losses, as they are now.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        model: keras.Model,
        objective: Objective,
        optimizer_groups: list[tuple[keras.optimizers.Optimizer, list[int]]],
        global_batch_size: int,
        global_step: tf.Variable,
        clip_gradient_norm: float | None = None,
        skip_nonfinite_steps: bool = False,
        schedule=None,
        jit_compile: bool = False,
        optimizer: keras.optimizers.Optimizer | None = None,
    ):
        """schedule: with several training iterators, the iterator index of every step.
        optimizer: the configured one, whose learning rate the summaries show (None: the
          first group's).
        jit_compile: compile each replica's forward and backward pass with XLA (the
          optimizer update and the in-graph loop stay outside: `IteratorGetNext` has no
          XLA kernel)."""
        self.strategy, self.model, self.objective = strategy, model, objective
        self.optimizer_groups, self.global_batch_size = optimizer_groups, global_batch_size
        self.global_step, self.clip_gradient_norm = global_step, clip_gradient_norm
        self.skip_nonfinite_steps = skip_nonfinite_steps
        self.optimizer = optimizer or optimizer_groups[0][0]
        for member, _ in optimizer_groups:
            take_over_aggregation(member)
        self.schedule = None if schedule is None else tf.constant(schedule, tf.int32)
        with strategy.scope():
            self.train_metrics = objective.new_metrics()
            # The norm of the whole (replica-summed) gradient before any clipping.
            self.gradient_norm = keras.metrics.Mean(name="gradient_norm")
            # Steps whose loss or gradients were NaN or Inf, and the first of them (-1:
            # none). Read at loop boundaries by the NaN guard.
            self.nonfinite_steps = tf.Variable(
                0, dtype=tf.int64, trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.first_nonfinite_step = tf.Variable(
                -1, dtype=tf.int64, trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._compute_gradients = (tf.function(self._gradients, jit_compile=True)
                                   if jit_compile else self._gradients)
        self._train_steps = tf.function(self._train_steps_fn)

    def train(self, iterators, num_steps: int) -> LoopOutput:
        """iterators: one distributed iterator, or a list of them (one per dataset)."""
        iterators = list(iterators) if isinstance(iterators, (list, tuple)) else [iterators]
        # A tensor, so that chunks of different lengths reuse one trace.
        self._train_steps(iterators, tf.constant(num_steps, tf.int64))
        return LoopOutput(num_steps, int(self.nonfinite_steps.numpy()),
                          int(self.first_nonfinite_step.numpy()))

    def _train_steps_fn(self, iterators, num_steps):
        for _ in tf.range(num_steps):
            if len(iterators) == 1:
                all_finite = self._step(iterators[0])
            else:
                # One branch per dataset, each traced with its own labels (the heads that
                # dataset labels), so a step computes only those heads' losses.
                all_finite = tf.switch_case(
                    tf.gather(self.schedule, self.global_step),
                    [functools.partial(self._step, iterator) for iterator in iterators])
            self.global_step.assign_add(1)
            if not all_finite:
                self.nonfinite_steps.assign_add(1)
                if self.first_nonfinite_step < 0:
                    self.first_nonfinite_step.assign(self.global_step)

    def _step(self, iterator):
        """One step on the next batch of `iterator`; True when every value was finite."""
        features, labels = next(iterator)
        if self.skip_nonfinite_steps:
            # The update is decided in cross-replica context: a cond in replica context
            # cannot hold apply_gradients (it calls merge_call).
            nonfinite, gradients = self.strategy.run(self._reduced_gradients,
                                                     args=(features, labels))
            all_finite = self._first_replica(nonfinite) == 0.0
            if all_finite:
                self.strategy.run(self._apply, args=(gradients,))
            return all_finite
        return self._first_replica(
            self.strategy.run(self._train_step, args=(features, labels))) == 0.0

    def _first_replica(self, value):
        """The first replica's `value`: every replica computed the same one from all-reduced
        values, so reading one costs no communication."""
        return self.strategy.experimental_local_results(value)[0]

    def _train_step(self, features, labels):
        nonfinite, gradients = self._reduced_gradients(features, labels)
        self._apply(gradients)
        return nonfinite

    def _reduced_gradients(self, features, labels):
        """This replica's part of a step: its gradients, summed over replicas in one
        all-reduce (the loss rides along, so that its finiteness is known everywhere), then
        the global norm, clipping and the metrics. Returns (1.0 if any replica's loss or
        gradient was NaN or Inf else 0.0, {index into trainable_variables: gradient to
        apply}). A gradient so large that its squared norm overflows float32 counts as not
        finite, which it is for every practical purpose."""
        loss, gradients, (outputs, per_example_loss, head_losses) = self._compute_gradients(
            features, labels)
        context = tf.distribute.get_replica_context()
        if context.num_replicas_in_sync > 1:
            loss, *summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                               [loss, *gradients.values()])
            gradients = dict(zip(gradients, summed))
        norm = tf.linalg.global_norm(list(gradients.values()))
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        counted = (norm, labels, outputs, per_example_loss, head_losses)
        if not self.skip_nonfinite_steps:
            self._count(*counted)
        elif finite:  # a skipped step is not counted
            self._count(*counted)
        if self.clip_gradient_norm:
            clipped, _ = tf.clip_by_global_norm(list(gradients.values()),
                                                self.clip_gradient_norm, use_norm=norm)
            gradients = dict(zip(gradients, clipped))
        return 1.0 - tf.cast(finite, tf.float32), gradients

    def _count(self, norm, labels, outputs, per_example_loss, head_losses):
        self.gradient_norm.update_state(norm)
        self.objective.update(self.train_metrics, labels, outputs, per_example_loss,
                              head_losses)

    def _gradients(self, features, labels):
        """This replica's loss (its share of the global batch's mean, plus regularization),
        its gradients ({index into trainable_variables: gradient}, for the variables the
        loss reaches) and what the metrics need."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = float32_outputs(self.model(features, training=True))
            per_example_loss, head_losses = self.objective.losses(labels, outputs)
            loss = tf.nn.compute_average_loss(
                per_example_loss, global_batch_size=self.global_batch_size)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
        # Heads this batch does not label get no gradient (None), hence no update.
        gradients = {i: g for i, g in enumerate(tape.gradient(loss, variables)) if g is not None}
        return loss, gradients, (outputs, per_example_loss, head_losses)

    def _apply(self, gradients):
        """Applies gradients already summed over replicas (see optimization.take_over_aggregation:
        the optimizers do not sum them again)."""
        variables = self.model.trainable_variables
        for optimizer, indices in self.optimizer_groups:
            pairs = [(gradients[i], variables[i]) for i in indices if i in gradients]
            if pairs:
                optimizer.apply_gradients(pairs)

    def results(self, reset: bool = True) -> dict[str, float]:
        """Training metrics since the last reset, by tag (the mean loss and the rest)."""
        gradient_norm = TrackedMetric(self.gradient_norm.name, self.gradient_norm, update=None)
        return metric_values([*self.train_metrics, gradient_norm], reset)

    def summary_scalars(self) -> dict[str, float]:
        # convert_to_tensor reads a (mirrored) variable in any context; float() cannot.
        scalars = {"learning_rate": float(tf.convert_to_tensor(self.optimizer.learning_rate))}
        if self.model.losses:
            scalars["regularization_loss"] = float(tf.add_n(self.model.losses))
        return scalars
