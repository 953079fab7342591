"""TensorBoard in depth: what a user would otherwise print or plot by hand, each at its own
cadence and configured in gin (`Monitoring.histogram_every = 1000`, ...).

The scalars of every host loop (losses, learning rate, gradient norm, steps/s) are written
by the Experiment; this module adds, under model_dir:
  * train/: per trainable variable (grouped by layer: '<layer>/<variable>') a histogram,
    its mean, stddev, min and max, and a histogram of its gradient; the model summary
    table (text); the traced train loop (graph); the profile of steps (N, M].
  * eval/: after each evaluation, a grid of eval examples titled with prediction,
    confidence and truth (wrong ones in red), a confusion matrix per classifying output,
    and the feature maps of the first convolution layers for a few fixed examples.
  * the run's root: the hparams summary (the gin bindings as hyperparameters); the hparams
    dashboard finds the metrics in the run's train/ and eval/ beside it.
Everything off costs nothing: nothing is computed for a summary that is not written.
"""

import dataclasses
import inspect
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging
from gin import config_parser
from tensorboard.plugins.hparams import api as hparams_api

from framework import figures
from framework.errors import UserError
from framework.loop import float32_outputs
from framework.objective import head_correct


@gin.configurable
@dataclasses.dataclass
class Monitoring:
    """What goes to TensorBoard besides the scalars, and how often.

    Attributes:
      histogram_every: steps between weight and gradient histograms and the variables'
        mean/stddev/min/max; None: never.
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


class Monitor:
    """Writes what `Monitoring` asks for; the Experiment calls it at loop boundaries."""

    def __init__(self, options: Monitoring, experiment):
        self.options, self.experiment = options, experiment
        self.summaries = experiment.summaries
        self._tracing = self._profiling = False
        self._graph_due = options.graph  # the train loop's graph is exported once
        self._fixed_batches = {}

    # -- cadence ------------------------------------------------------------------

    def next_boundary(self, step: int) -> int | None:
        """The next step at which a host loop must end for this monitor, if any."""
        candidates = []
        if self.options.histogram_every:
            candidates.append(self.options.histogram_every * (step // self.options.histogram_every + 1))
        if self.options.profile_steps:
            candidates += [s for s in self.options.profile_steps if s > step]
        return min(candidates) if candidates else None

    # -- training -----------------------------------------------------------------

    def begin(self, step: int) -> None:
        if not self.summaries.enabled:
            return
        if self.options.model_summary:
            self.summaries.text("train", "model_summary", _as_code(_model_summary(
                self.experiment.model)), step)
        if self.options.hparams:
            self._write_hparams()
        self._profile(step)

    def before_train_loop(self) -> None:
        if self._graph_due and self.summaries.enabled:
            tf.summary.trace_on(graph=True)
            self._tracing, self._graph_due = True, False

    def after_train_loop(self, step: int) -> None:
        if self._tracing:
            with self.summaries.writer("train").as_default(step=step):
                tf.summary.trace_export("train_loop", step=step)
            self._tracing = False
        if not self.summaries.enabled:
            return
        if self.options.histogram_every and step % self.options.histogram_every == 0:
            self._write_histograms(step)
        self._profile(step)

    def end(self) -> None:
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False

    def _profile(self, step: int) -> None:
        if not self.options.profile_steps:
            return
        start, stop = self.options.profile_steps
        if step == start and not self._profiling:
            tf.profiler.experimental.start(os.path.join(self.experiment.model_dir, "train"))
            self._profiling = True
        elif step >= stop and self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False
            logging.info("Profiled steps %d to %d into %s", start + 1, stop,
                         os.path.join(self.experiment.model_dir, "train", "plugins", "profile"))

    def _write_histograms(self, step: int) -> None:
        model = self.experiment.trained_model
        variables = model.trainable_variables
        gradients = [None] * len(variables)
        if self.options.gradient_histograms:
            features, labels = self._fixed_batch("train", self.experiment.batch_size)
            gradients = self._gradients(features, labels)
        with self.summaries.writer("train").as_default(step=step):
            for variable, gradient in zip(variables, gradients):
                tag = _layer_tag(variable)
                value = tf.convert_to_tensor(variable)
                tf.summary.histogram(tag, value)
                tf.summary.scalar(f"{tag}/mean", tf.reduce_mean(value))
                tf.summary.scalar(f"{tag}/stddev", tf.math.reduce_std(value))
                tf.summary.scalar(f"{tag}/min", tf.reduce_min(value))
                tf.summary.scalar(f"{tag}/max", tf.reduce_max(value))
                if gradient is not None:
                    tf.summary.histogram(f"{tag}/gradient", gradient)

    @tf.function
    def _gradients(self, features, labels):
        model = self.experiment.trained_model
        with tf.GradientTape() as tape:
            per_example, _ = self.experiment.objective.losses(
                labels, float32_outputs(model(features, training=False)))
            loss = tf.reduce_mean(per_example)
        return tape.gradient(loss, model.trainable_variables)

    # -- evaluation ---------------------------------------------------------------

    def after_eval(self, step: int) -> None:
        if not (self.summaries.enabled and self.options.images_at_eval):
            return
        with self.summaries.writer("eval").as_default(step=step):
            for tag, matrix in getattr(self.experiment.trainer, "eval_matrices", {}).items():
                tf.summary.image(tag, figures.confusion_matrix_image(
                    matrix, self._class_names(tag, len(matrix)), f"{tag} at step {step}")[None])
            if len(self.experiment.info.input_shape) == 3 and \
                    self.experiment.info.input_shape[-1] in (1, 3) and \
                    self.experiment.feature_caches is None:  # images, not cached features
                self._write_prediction_grid()
                self._write_activations()

    def _class_names(self, tag: str, count: int) -> list[str]:
        info = self.experiment.info
        names = info.head(tag.split("/", 1)[1]).class_names if "/" in tag else info.class_names
        return list(names) if names and len(names) == count else [str(i) for i in range(count)]

    def _write_prediction_grid(self) -> None:
        features, labels = self._fixed_batch("eval", self.options.image_examples)
        if features is None:
            return
        outputs = float32_outputs(self.experiment.model(features, training=False))
        info = self.experiment.info
        heads = [(h.name, h) for h in info.heads] or [(None, info)]
        predicted, truth, confidence, right = [], [], 1.0, True
        for name, head in heads:
            if head.task not in ("classification", "binary"):
                return  # regression: no classes to show
            head_outputs = outputs if name is None else outputs[name]
            head_labels = labels if name is None else labels[name]
            names = list(head.class_names or [str(i) for i in range(max(2, head.num_outputs))])
            if head.task == "binary":
                positive = tf.sigmoid(tf.reshape(head_outputs, [-1])).numpy()
                classes = (positive > 0.5).astype(int)
                confidence = confidence * np.where(classes == 1, positive, 1.0 - positive)
            else:
                probabilities = tf.nn.softmax(head_outputs, axis=-1).numpy()
                classes = probabilities.argmax(axis=-1)
                confidence = confidence * probabilities.max(axis=-1)
            right = right & head_correct(head.task, head_labels, head_outputs).numpy()
            predicted.append([names[c] for c in classes])
            truth.append([names[int(c)] for c in np.reshape(head_labels, [-1])])
        joiner = "" if all(len(n) == 1 for row in predicted for n in row) else " "
        tf.summary.image("predictions", figures.prediction_grid(
            features.numpy(), [joiner.join(p) for p in zip(*predicted)],
            [joiner.join(t) for t in zip(*truth)], confidence, right)[None])

    def _write_activations(self) -> None:
        if not hasattr(self, "_activation_model"):
            self._activation_model = _activation_model(
                self.experiment.model, self.experiment.info.input_shape,
                self.options.activation_layers)
        if self._activation_model is None:
            return
        features, _ = self._fixed_batch("eval", self.options.activation_examples)
        maps = float32_outputs(self._activation_model(features, training=False))
        names = self._activation_model.conv_layer_names
        for layer_name, layer_maps in zip(names, maps if isinstance(maps, list) else [maps]):
            chosen = layer_maps.numpy()[..., :self.options.activation_filters]
            tf.summary.image(f"activations/{layer_name}",
                             np.stack([figures.activation_grid(m) for m in chosen]),
                             max_outputs=len(chosen))

    def _fixed_batch(self, split: str, size: int):
        """The first `size` examples of a split, in the dataset's order (the same every
        time, so images from different steps compare)."""
        key = (split, size)
        if key not in self._fixed_batches:
            examples = self.experiment._examples(split)  # pylint: disable=protected-access
            self._fixed_batches[key] = (None, None) if examples is None else \
                next(iter(examples.batch(size)))
        return self._fixed_batches[key]

    # -- hparams ------------------------------------------------------------------

    def _write_hparams(self) -> None:
        values = hyperparameters(gin.config_str())
        if values.get("Experiment.precision_policy") == "auto":  # what it was on this machine
            values["Experiment.precision_policy"] = f"auto: {self.experiment.compute_policy}"
        with self.summaries.writer("").as_default():
            hparams_api.hparams(values, trial_id=os.path.basename(
                os.path.normpath(self.experiment.model_dir)))


def hyperparameters(config: str) -> dict:
    """The gin bindings of `config` whose values differ from the parameters' defaults, as
    {'[scope/]configurable.parameter': bool, int, float or str} (others as text)."""
    values = {}
    for statement in config_parser.ConfigParser(config, _ReferencesAsText()):
        if not isinstance(statement, config_parser.BindingStatement) or not statement.selector:
            continue
        if statement.value == _default(statement.selector, statement.arg_name):
            continue
        name = f"{statement.scope + '/' if statement.scope else ''}" \
               f"{statement.selector}.{statement.arg_name}"
        value = statement.value
        values[name] = value if isinstance(value, (bool, int, float, str)) else repr(value)
    return values


class _ReferencesAsText:
    """Lets gin's parser read `@plugin()` and `%MACRO` as the text they are."""

    def configurable_reference(self, scoped_name, evaluate):
        return f"@{scoped_name}{'()' if evaluate else ''}"

    def macro(self, name):
        return f"%{name}"


def _default(selector: str, parameter: str):
    try:
        return inspect.signature(gin.config.get_configurable(selector)) \
            .parameters[parameter].default
    except (ValueError, KeyError, TypeError):
        return inspect.Parameter.empty


def _layer_tag(variable) -> str:
    """'<layer>/<variable>' (the last two parts of the variable's path), so TensorBoard
    groups a layer's summaries together."""
    return "/".join(variable.path.split("/")[-2:])


def _model_summary(model: keras.Model) -> str:
    lines = []
    model.summary(print_fn=lambda line, line_break=True: lines.append(line), expand_nested=True)
    return "\n".join(lines)


def _as_code(text: str) -> str:
    """Indented, so TensorBoard's markdown shows a table as it is."""
    return "\n".join("    " + line for line in text.splitlines())


def _activation_model(model: keras.Model, input_shape, max_layers: int):
    """A model from the features to the outputs of the first `max_layers` Conv2D layers of
    the model, or of its first sub-model that takes the features; None when there are none."""
    candidates = [model, *[layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
                           if isinstance(layer, keras.Model)]]
    for candidate in candidates:
        convolutions = [layer for layer in candidate.layers
                        if isinstance(layer, keras.layers.Conv2D)][:max_layers]
        try:
            takes_features = tuple(candidate.inputs[0].shape[1:]) == tuple(input_shape)
        except (AttributeError, IndexError, ValueError):
            takes_features = False
        if convolutions and takes_features:
            activations = keras.Model(candidate.inputs,
                                      [layer.output for layer in convolutions],
                                      name="activations")
            activations.conv_layer_names = [layer.name for layer in convolutions]
            return activations
    return None
