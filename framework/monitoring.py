"""TensorBoard in depth, configured in gin (`Monitoring.histogram_every = 1000`, ...): what a
user would otherwise print or plot by hand, each at its own cadence, and nothing computed
for a summary that is off.

The scalars of training and evaluation are written by framework.summaries; the parts here:
  * histograms (framework.histograms) and eval images (framework.eval_images);
  * `RunDescription`: once, the model summary table (train/, text) and the hparams summary
    (the run's root: its resolved hyperparameters, framework.run_record, against the
    metrics it declares in train/ and eval/ beside it);
  * `GraphTrace`: once, the traced training loop (train/, graph);
  * `Profiler`: steps N+1 ... M with the TensorFlow profiler (train/, profile tab).
"""

import dataclasses

import gin
import keras
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.hparams import api_pb2

from framework.cadence import Cadence
from framework.errors import UserError
from framework.observers import EvalOutput, LoopOutput, Observer
from framework.summaries import Summaries, as_code


@gin.configurable
@dataclasses.dataclass
class Monitoring:
    """What goes to TensorBoard besides the scalars, and how often.

    Attributes:
      histogram_every: steps between weight and gradient histograms and the variables'
        mean/stddev/min/max (under weights/), which are written when training starts and
        ends too; None: never.
      gradient_histograms: with them, histograms of the gradients on a fixed training batch
        (in inference mode, so BatchNorm statistics and dropout are left alone).
      images_at_eval: after each evaluation, the prediction grid, confusion matrices and
        activation maps (for image data).
      image_examples: eval examples in the prediction grid.
      activation_examples, activation_filters, activation_layers: fixed eval examples,
        feature maps per layer and (first) convolution layers shown.
      model_summary, graph, hparams: write the model summary text, the traced train loop
        and the hparams summary once.
      profile_steps: (N, M): profile steps N+1 ... M with the TensorFlow profiler into
        train/ (TensorBoard's profile tab, with the tensorboard-plugin-profile package).
    """

    histogram_every: int | None = None
    gradient_histograms: bool = True
    images_at_eval: bool = False
    image_examples: int = 16
    activation_examples: int = 2
    activation_filters: int = 8
    activation_layers: int = 4
    model_summary: bool = True
    graph: bool = True
    hparams: bool = True
    profile_steps: tuple[int, int] | None = None

    def __post_init__(self):
        if self.histogram_every is not None and (
                not isinstance(self.histogram_every, int) or self.histogram_every < 1):
            raise UserError("Monitoring.histogram_every must be a positive integer or None, "
                            f"got {self.histogram_every!r}.")
        if self.profile_steps is not None:
            start, stop = self.profile_steps
            if not 0 <= start < stop:
                raise UserError("Monitoring.profile_steps must be (N, M) with 0 <= N < M, got "
                                f"{self.profile_steps!r}.")

    @property
    def histogram_cadence(self) -> Cadence:
        return Cadence(every=self.histogram_every)

    @property
    def profile_cadence(self) -> Cadence:
        return Cadence(at=tuple(self.profile_steps or ()))


class RunDescription(Observer):
    """The model summary table, once, when training begins, and the run's hparams at its
    root: the session (its hyperparameters) then, and with the first evaluation the
    experiment (each hyperparameter's type and the metrics to show beside them).

    hparams: {name: value} as framework.run_record.hyperparameters gives them (None: no
    hparams summary). The metrics are declared, not left to TensorBoard, which would take
    every scalar of train/ and eval/ (learning rate, speed, weight statistics) as one:
    the eval loss and every eval metric the evaluator reports (per head for a multi-head
    model), then the training loss. A run that never evaluates declares none.
    """

    def __init__(self, summaries: Summaries, model: keras.Model | None,
                 hparams: dict | None, trial_id: str):
        self.summaries, self.model, self.hparams, self.trial_id = summaries, model, hparams, trial_id
        self._declared = False

    def begin(self, step: int) -> None:
        if self.model is not None:
            self.summaries.text("train", "model_summary", as_code(_model_summary(self.model)),
                                step)
        if self.hparams is not None:
            with self.summaries.writer("").as_default():
                hparams_api.hparams(self.hparams, trial_id=self.trial_id)

    def after_eval(self, step: int, output: EvalOutput) -> None:
        if self.hparams is None or self._declared:
            return
        with self.summaries.writer("").as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(name, _TypeOnly(value))
                         for name, value in self.hparams.items()],
                metrics=hparams_metrics(output.scalars))
        self._declared = True


def hparams_metrics(eval_scalars: dict) -> list:
    """The metrics HParams shows beside the hyperparameters: the eval metrics (accuracy
    and the like first, per head and for all heads), the eval losses, the training loss."""
    tags = sorted(eval_scalars, key=lambda tag: (tag.split("/")[0] == "loss", tag != "loss"))
    return ([hparams_api.Metric(tag, group="eval", dataset_type=hparams_api.Metric.VALIDATION)
             for tag in tags]
            + [hparams_api.Metric("loss", group="train",
                                  dataset_type=hparams_api.Metric.TRAINING)])


class _TypeOnly(hparams_api.Domain):
    """A hyperparameter's type without a domain: a run knows its own value only, and a
    domain from it would let TensorBoard's filters hide the other runs."""

    _TYPES = {bool: api_pb2.DATA_TYPE_BOOL, str: api_pb2.DATA_TYPE_STRING,
              int: api_pb2.DATA_TYPE_FLOAT64, float: api_pb2.DATA_TYPE_FLOAT64}

    def __init__(self, value):
        self._dtype = type(value)

    @property
    def dtype(self):
        return self._dtype

    def sample_uniform(self, rng=None):
        raise NotImplementedError("a run's own value is not a domain to sample")

    def update_hparam_info(self, hparam_info):
        hparam_info.type = self._TYPES.get(self._dtype, api_pb2.DATA_TYPE_STRING)


class GraphTrace(Observer):
    """The first host loop's traced graph, exported into train/ as `train_loop`."""

    def __init__(self, summaries: Summaries):
        self.summaries, self._due, self._tracing = summaries, True, False

    def before_train_loop(self, step: int) -> None:
        if self._due:
            tf.summary.trace_on(graph=True)
            self._due, self._tracing = False, True

    def after_train_loop(self, step: int, output: LoopOutput) -> None:
        if self._tracing:
            with self.summaries.writer("train").as_default(step=step):
                tf.summary.trace_export("train_loop", step=step)
            self._tracing = False


class Profiler(Observer):
    """Profiles steps start+1 ... stop into `logdir` (the host loops end at both)."""

    def __init__(self, steps: tuple[int, int], logdir: str):
        (self.start, self.stop), self.logdir, self._on = steps, logdir, False

    def begin(self, step: int) -> None:
        self._switch(step)

    def after_train_loop(self, step: int, output: LoopOutput) -> None:
        self._switch(step)

    def end(self, step: int) -> None:
        if self._on:
            tf.profiler.experimental.stop()
            self._on = False

    def _switch(self, step: int) -> None:
        if step == self.start and not self._on:
            tf.profiler.experimental.start(self.logdir)
            self._on = True
        elif step >= self.stop and self._on:
            tf.profiler.experimental.stop()
            self._on = False
            logging.info("Profiled steps %d to %d into %s/plugins/profile", self.start + 1,
                         self.stop, self.logdir)


def _model_summary(model: keras.Model) -> str:
    lines = []
    model.summary(print_fn=lambda line, line_break=True: lines.append(line), expand_nested=True)
    return "\n".join(lines)
