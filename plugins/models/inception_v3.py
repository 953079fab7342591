"""InceptionV3 as a feature extractor with a small trainable head (transfer learning)."""

import os

import keras

from framework import capabilities
from framework.errors import UserError
from framework.registry import register

NO_TOP_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
NO_TOP_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                      "inception_v3/" + NO_TOP_WEIGHTS_FILE)
MODES = ("scratch", "frozen", "fine_tune")
BLOCKS = 11  # InceptionV3's mixed0 ... mixed10


@register.model
def inception_v3(info, mode="frozen", weights="imagenet", dropout=0.2, hidden_units=0,
                 fine_tune_blocks=2, fine_tune_learning_rate_multiplier=0.1):
    """InceptionV3 (no top, average-pooled) on [0, 1] images, then a small head.

    mode: 'frozen' (the backbone does not train and always runs in inference mode, so its
    BatchNorm statistics stay fixed; only the head trains), 'fine_tune' (the top
    fine_tune_blocks inception blocks train too, at fine_tune_learning_rate_multiplier
    times the head's rate; their BatchNorm layers stay frozen) or 'scratch' (random
    initialisation, everything trains). weights: 'imagenet' (Keras downloads and caches them
    when online), a path to a weights file, or None.
    """
    if mode not in MODES:
        raise UserError(f"inception_v3.mode must be one of {', '.join(MODES)}, got {mode!r}.")
    backbone = _backbone(info.input_shape, None if mode == "scratch" else weights)
    # Two parts, so that frozen features can be computed once and cached (see
    # framework/feature_cache.py): extractor = images -> pooled features, head = the rest.
    # Every mode builds the same structure, so a fine-tune run can start from a frozen
    # run's checkpoint.
    images = keras.Input(info.input_shape)
    scaled = keras.layers.Rescaling(2.0, offset=-1.0, name="to_inception_range")(images)
    if mode == "scratch":
        pooled = backbone(scaled)
    else:
        _freeze_below_top_blocks(backbone, fine_tune_blocks if mode == "fine_tune" else 0)
        pooled = backbone(scaled, training=False)
    extractor = keras.Model(images, pooled, name="features")
    features = keras.Input(pooled.shape[1:])
    hidden = keras.layers.Dropout(dropout)(features) if dropout else features
    if hidden_units:
        hidden = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(hidden)
    head = keras.Model(features, keras.layers.Dense(info.num_outputs, name="logits")(hidden),
                       name="head")
    inputs = keras.Input(info.input_shape)
    model = keras.Model(inputs, head(extractor(inputs)), name=f"inception_v3_{mode}")
    if mode == "frozen":
        capabilities.set_frozen_features(model, extractor, head)
    if mode == "fine_tune":
        capabilities.set_learning_rate_multipliers(model, {
            v.path: fine_tune_learning_rate_multiplier for v in backbone.trainable_variables})
    return model


def _freeze_below_top_blocks(backbone: keras.Model, top_blocks: int) -> None:
    """Makes only the layers after block mixed{10 - top_blocks} trainable (none for 0)."""
    if not 0 <= top_blocks <= BLOCKS:
        raise UserError(f"inception_v3.fine_tune_blocks must be 0 to {BLOCKS}, got {top_blocks}.")
    if top_blocks == 0:
        backbone.trainable = False
        return
    last_frozen = backbone.layers.index(backbone.get_layer(f"mixed{BLOCKS - 1 - top_blocks}")) \
        if top_blocks < BLOCKS else -1
    for index, layer in enumerate(backbone.layers):
        # BatchNorm layers stay frozen even in the top blocks: a trainable Keras 3 BatchNorm
        # updates its moving statistics when the model trains, even inside a backbone called
        # with training=False (seen), and small fine-tuning batches would wreck them.
        layer.trainable = index > last_frozen and not isinstance(
            layer, keras.layers.BatchNormalization)


def _backbone(input_shape, weights) -> keras.Model:
    """The backbone with the requested weights; one clear error when they cannot be had."""
    build = lambda w: keras.applications.InceptionV3(  # noqa: E731
        include_top=False, weights=w, pooling="avg", input_shape=input_shape)
    if weights is None:
        return build(None)
    if weights != "imagenet":
        if not os.path.isfile(weights):
            raise UserError(f"inception_v3.weights = '{weights}': no such file. Give the path "
                            f"of a weights file such as {NO_TOP_WEIGHTS_FILE}, 'imagenet', or None.")
        backbone = build(None)
        backbone.load_weights(weights)
        return backbone
    try:
        return build("imagenet")
    except Exception as error:  # pylint: disable=broad-except  (Keras raises a bare Exception)
        raise UserError(
            f"Could not get InceptionV3's ImageNet weights ({str(error).splitlines()[0]}). "
            f"Offline? Download {NO_TOP_WEIGHTS_URL} once, copy it to this machine and set "
            f"inception_v3.weights = '/path/to/{NO_TOP_WEIGHTS_FILE}' (a path, so that Keras "
            "does not try to download it again), or use inception_v3.weights = None."
        ) from error
