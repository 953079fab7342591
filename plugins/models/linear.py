"""One Dense unit: y = w.x + b, the model of the first gradient-descent lesson."""

import keras

from framework.registry import register


@register.model
def linear(info):
    """A single Dense layer with `num_outputs` units and no activation."""
    return keras.Sequential(
        [keras.Input(info.input_shape), keras.layers.Dense(info.num_outputs, name="dense")],
        name="linear",
    )
