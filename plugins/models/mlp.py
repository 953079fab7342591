"""A multi-layer perceptron: Fashion-MNIST's first model and small regressions."""

import keras

from framework.registry import register


@register.model
def mlp(info, hidden_units=(128,), activation="relu", dropout=0.0):
    """Flatten -> Dense(hidden_units[i], activation) ... -> Dense(num_outputs).

    The layers are named hidden_1, hidden_2, ... and outputs, whatever else the process has
    built, so that a Keras weights file of one mlp loads by layer name into another
    (Experiment.init_checkpoint).
    """
    layers = [keras.Input(info.input_shape), keras.layers.Flatten()]
    for number, units in enumerate(hidden_units, start=1):
        layers.append(keras.layers.Dense(units, activation=activation, name=f"hidden_{number}"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(info.num_outputs, name="outputs"))
    return keras.Sequential(layers, name="mlp")
