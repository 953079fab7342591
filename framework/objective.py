"""What the loop minimises and measures: the loss of a model's outputs, and its metrics.

A single-output model has one loss and the task's metrics ('loss', 'accuracy', ...). A
multi-head model (outputs `{head: output}`) has a loss per head; a batch may label only some
heads (alternating training), and then only those heads' losses and metrics count. Its
metrics are 'loss' (the weighted sum), 'loss/<head>', '<metric>/<head>' and, when every
head classifies, 'accuracy/all_heads': the share of examples with every head right at once
(for a captcha: the whole string).
"""

import dataclasses
from typing import Callable

import keras
import tensorflow as tf

from framework import capabilities, registry, tasks
from framework.data import Dataset, DatasetInfo
from framework.errors import UserError


@dataclasses.dataclass
class TrackedMetric:
    """A metric, the tag it is reported under, and what it reads from a step.

    update(labels, outputs, per_example_loss, head_losses) -> None.
    counter: a keras Mean whose count says whether any batch reached this metric since the
      last reset (a head no batch labelled has no value to report); None: always report.
    scalar: False for a metric whose value is an array (a confusion matrix).
    """

    tag: str
    metric: keras.metrics.Metric
    update: Callable
    counter: keras.metrics.Mean | None = None
    scalar: bool = True

    def has_value(self) -> bool:
        return self.counter is None or float(tf.convert_to_tensor(self.counter.count)) > 0


@dataclasses.dataclass
class ObjectiveHead:
    """One head as the objective sees it: its name, task, width, loss and the loss's weight."""

    name: str
    task: str
    num_outputs: int
    loss_fn: Callable
    loss_weight: float
    make_metrics: Callable


class Objective:
    """Losses and metrics of a model's outputs.

    Contract: `losses(labels, outputs)` returns (the per-example loss to minimise, {head:
    per-example loss}); for a multi-head model the first is the weighted sum over the heads
    that `labels` names, and `{}` is returned for a single-output model. `new_metrics()`
    gives a fresh set (one for training, one for evaluation); `update` feeds them a batch.
    """

    def __init__(self, info: DatasetInfo, loss_fn: Callable, make_metrics: Callable,
                 heads: list[ObjectiveHead] | None = None, joint_metric: bool = True):
        """info: the data's (its task, for a single-output model). joint_metric: report
        'accuracy/all_heads' (False when no dataset labels every head, so that no example
        could count)."""
        self.info, self.loss_fn, self.make_metrics, self.heads = info, loss_fn, make_metrics, heads
        self.joint_metric = joint_metric

    def losses(self, labels, outputs):
        if self.heads is None:
            return self.loss_fn(labels, outputs), {}
        head_losses = {head.name: head.loss_fn(labels[head.name], outputs[head.name])
                       for head in self.heads if head.name in labels}
        total = tf.add_n([head.loss_weight * head_losses[head.name]
                          for head in self.heads if head.name in head_losses])
        return total, head_losses

    def new_metrics(self, confusion_matrices: bool = False) -> list[TrackedMetric]:
        """A fresh set of metrics; with confusion_matrices, one (tag 'confusion_matrix' or
        'confusion_matrix/<head>') per classifying output too."""
        tracked = self._scalar_metrics()
        if confusion_matrices:
            tracked += self._confusion_matrices()
        return tracked

    def _confusion_matrices(self) -> list[TrackedMetric]:
        if self.heads is None:
            if not tasks.classifies(self.info.task):
                return []
            matrix = tasks.ConfusionMatrix(self.info.num_outputs)
            return [TrackedMetric("confusion_matrix", matrix, _plain_update(matrix),
                                  scalar=False)]
        tracked = []
        for head in self.heads:
            if tasks.classifies(head.task):
                matrix = tasks.ConfusionMatrix(head.num_outputs,
                                               name=f"confusion_matrix_{head.name}")
                tracked.append(TrackedMetric(f"confusion_matrix/{head.name}", matrix,
                                             _head_update(matrix, head.name), scalar=False))
        return tracked

    def _scalar_metrics(self) -> list[TrackedMetric]:
        mean_loss = keras.metrics.Mean(name="loss")
        loss = TrackedMetric("loss", mean_loss, lambda labels, outputs, per_example,
                             head_losses: mean_loss.update_state(per_example))
        if self.heads is None:
            return [loss, *[TrackedMetric(m.name, m, _plain_update(m))
                            for m in self.make_metrics()]]
        tracked = [loss]
        for head in self.heads:
            mean = keras.metrics.Mean(name=f"loss_{head.name}")
            tracked.append(TrackedMetric(f"loss/{head.name}", mean,
                                         _head_loss_update(mean, head.name), mean))
            tracked += [TrackedMetric(f"{m.name}/{head.name}", m, _head_update(m, head.name),
                                      mean)
                        for m in head.make_metrics()]
        classifying = [h for h in self.heads if tasks.classifies(h.task)]
        if self.joint_metric and classifying and len(classifying) == len(self.heads):
            tracked.append(_all_heads_accuracy(classifying))
        return tracked

    @staticmethod
    def update(tracked: list[TrackedMetric], labels, outputs, per_example_loss, head_losses):
        for entry in tracked:
            entry.update(labels, outputs, per_example_loss, head_losses)


def _plain_update(metric):
    return lambda labels, outputs, per_example, head_losses: metric.update_state(labels, outputs)


def _head_loss_update(metric, head):
    def update(labels, outputs, per_example, head_losses):
        if head in head_losses:  # decided while tracing: the batch's label keys are static
            metric.update_state(head_losses[head])
    return update


def _head_update(metric, head):
    def update(labels, outputs, per_example, head_losses):
        if head in labels:
            metric.update_state(labels[head], outputs[head])
    return update


def _all_heads_accuracy(heads: list[ObjectiveHead]) -> TrackedMetric:
    mean = keras.metrics.Mean(name="accuracy_all_heads")
    names = [h.name for h in heads]

    def update(labels, outputs, per_example, head_losses):
        if all(name in labels for name in names):  # only batches that label every head
            mean.update_state(tf.cast(tasks.all_correct(names, labels, outputs), tf.float32))
    return TrackedMetric("accuracy/all_heads", mean, update, mean)


def metric_values(tracked: list[TrackedMetric], reset: bool) -> dict[str, float]:
    """Scalar values by tag, leaving out metrics no batch reached (heads nothing labelled);
    with `reset`, every metric starts afresh after."""
    values = {entry.tag: float(entry.metric.result()) for entry in tracked
              if entry.scalar and entry.has_value()}
    if reset:
        for entry in tracked:
            entry.metric.reset_state()
    return values


def objective_for(model, info: DatasetInfo, loss_fn: Callable, make_metrics: Callable | None,
                  datasets: list[Dataset]) -> Objective:
    """The objective of `model` on `datasets` (combined `info`): per head for a multi-head
    model, else the task's. make_metrics: Experiment.metrics (None: by task)."""
    heads = capabilities.heads(model)
    if info.heads and heads is None:
        raise UserError(multi_head_hint(info))
    if heads is None:
        return Objective(info, loss_fn, make_metrics or (lambda: tasks.default_metrics(info.task)))
    names = {head.name for head, _ in heads}
    return Objective(
        info, loss_fn, None,
        [ObjectiveHead(head.name, head_info.task, head.outputs or head_info.num_outputs,
                       registry.build(head.loss) if head.loss else loss_fn, head.loss_weight,
                       head.metrics or (lambda task=head_info.task: tasks.default_metrics(task)))
         for head, head_info in heads],
        joint_metric=any(names <= {h.name for h in d.info.heads} for d in datasets))


def multi_head_hint(info: DatasetInfo) -> str:
    return (f"Dataset '{info.name}' labels the heads {', '.join(h.name for h in info.heads)}, "
            "so it needs a multi-head model (Experiment.model = @models.multi_head, with a "
            "trunk).")
