"""Images after each evaluation, into eval/: confusion matrices with class names, a grid of
fixed eval examples captioned "prediction confidence% (truth)" (wrong ones red; one line
per head for several heads), and the first feature maps of the model's first
convolutions for a few fixed examples, each labelled (layer, example, filter)."""

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from framework import figures, tasks
from framework.data import DatasetInfo
from framework.figures import short_name
from framework.observers import EvalOutput, Observer
from framework.precision import float32_outputs
from framework.summaries import Summaries


class EvalImages(Observer):
    """examples(size) -> (features, labels): the first `size` eval examples, the same every
    time (None, None without an evaluation split). With `show_examples` False (features
    that are not images, or cached features), only confusion matrices are written."""

    def __init__(self, summaries: Summaries, model: keras.Model,
                 info: DatasetInfo, examples, show_examples: bool, grid_examples: int,
                 activation_examples: int, activation_filters: int, activation_layers: int):
        self.summaries, self.model, self.info, self.examples = summaries, model, info, examples
        self.show_examples, self.grid_examples = show_examples, grid_examples
        self.activation_examples, self.activation_filters = activation_examples, activation_filters
        self.activation_layers = activation_layers
        self._activation_model = None

    def after_eval(self, step: int, output: EvalOutput) -> None:
        with self.summaries.writer("eval").as_default(step=step):
            for tag, matrix in output.matrices.items():
                tf.summary.image(tag, figures.confusion_matrix_image(
                    matrix, self._class_names(tag, len(matrix)), f"{tag} at step {step}")[None])
            if self.show_examples:
                self._write_prediction_grid()
                self._write_activations()

    def _class_names(self, tag: str, count: int) -> list[str]:
        names = (self.info.head(tag.split("/", 1)[1]).class_names if "/" in tag
                 else self.info.class_names)
        return list(names) if names and len(names) == count else [str(i) for i in range(count)]

    def _write_prediction_grid(self) -> None:
        features, labels = self.examples(self.grid_examples)
        if features is None:
            return
        outputs = float32_outputs(self.model(features, training=False))
        # With alternating datasets the examples come from the first, which may not label
        # every head: the grid shows the heads it labels.
        heads = ([(h.name, h) for h in self.info.heads if h.name in labels]
                 if self.info.heads else [(None, self.info)])
        predictions = []
        for name, head in heads:
            if not tasks.classifies(head.task):
                return  # regression: no classes to show
            head_outputs = outputs if name is None else outputs[name]
            head_labels = labels if name is None else labels[name]
            names = list(head.class_names or [
                str(i) for i in range(tasks.class_count(head.num_outputs))])
            probabilities = tasks.probabilities(head_outputs).numpy()
            classes = tasks.predicted_classes(head_outputs).numpy()
            predictions.append(HeadPredictions(
                name, [names[c] for c in classes],
                [names[int(c)] for c in np.reshape(head_labels, [-1])],
                probabilities[np.arange(len(classes)), classes],
                tasks.correct(head_labels, head_outputs).numpy()))
        right = np.logical_and.reduce([head.right for head in predictions])
        tf.summary.image("predictions", figures.prediction_grid(
            features.numpy(), prediction_captions(predictions), right)[None])

    def _write_activations(self) -> None:
        if self._activation_model is None:
            self._activation_model = activation_model(self.model, self.info.input_shape,
                                                      self.activation_layers) or False
        if self._activation_model is False:
            return
        features, _ = self.examples(self.activation_examples)
        maps = float32_outputs(self._activation_model(features, training=False))
        names = self._activation_model.conv_layer_names
        examples = features.numpy()
        for layer_name, layer_maps in zip(names, maps if isinstance(maps, list) else [maps]):
            chosen = layer_maps.numpy()[..., :self.activation_filters]
            tf.summary.image(f"activations/{layer_name}", np.stack([
                figures.activation_figure(
                    examples[i], chosen[i], f"{layer_name}, example {i + 1} of {len(chosen)}")
                for i in range(len(chosen))]), max_outputs=len(chosen))


class HeadPredictions(NamedTuple):
    """One head's predictions on the grid's examples (name None for a single output)."""

    name: str | None
    predicted: list[str]
    truth: list[str]
    confidence: np.ndarray
    right: np.ndarray


def prediction_captions(heads: list[HeadPredictions]) -> list[str]:
    """Per example: 'prediction confidence%' above '(truth)' for one head, and for heads
    that each name one character (a captcha) the string they spell with its joint
    confidence; for other heads one line each, 'head: prediction confidence%', followed
    on the wrong ones by '(truth)'. A ✗ starts what is wrong."""
    spelled = len(heads) > 1 and all(len(n) == 1 for head in heads for n in head.predicted)
    captions = []
    for i in range(len(heads[0].predicted)):
        if len(heads) == 1 or spelled:
            mark = "" if all(head.right[i] for head in heads) else "✗ "
            confidence = np.prod([head.confidence[i] for head in heads])
            captions.append(f"{mark}{''.join(short_name(h.predicted[i]) for h in heads)} "
                            f"{100 * confidence:.0f}%\n"
                            f"({''.join(short_name(h.truth[i]) for h in heads)})")
        else:
            captions.append("\n".join(
                f"{'' if h.right[i] else '✗ '}{h.name}: {short_name(h.predicted[i])} "
                f"{100 * h.confidence[i]:.0f}%"
                + ("" if h.right[i] else f" ({short_name(h.truth[i])})") for h in heads))
    return captions


def activation_model(model: keras.Model, input_shape, max_layers: int):
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
