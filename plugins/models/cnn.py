"""The classic Fashion-MNIST convolutional network."""

import keras

from framework.registry import register


@register.model
def cnn(info, filters=64, kernel_size=3, dense_units=128, dropout=0.0):
    """Conv(filters) -> MaxPool -> Conv(filters) -> MaxPool -> Dense(units) -> logits."""
    layers = [
        keras.Input(info.input_shape),
        keras.layers.Conv2D(filters, kernel_size, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(filters, kernel_size, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(dense_units, activation="relu"),
    ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(info.num_outputs, name="logits"))
    return keras.Sequential(layers, name="cnn")
