"""A multi-layer perceptron: Fashion-MNIST's first model and small regressions."""

import keras

from framework.registry import register


@register.model
def mlp(info, hidden_units=(128,), activation="relu", dropout=0.0):
    """Flatten -> Dense(hidden_units[i], activation) ... -> Dense(num_outputs)."""
    layers = [keras.Input(info.input_shape), keras.layers.Flatten()]
    for units in hidden_units:
        layers.append(keras.layers.Dense(units, activation=activation))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(info.num_outputs, name="outputs"))
    return keras.Sequential(layers, name="mlp")
