"""Keras's optimizers. `learning_rate` takes a number, a schedule, or a schedule plugin
(`registry.build` turns the latter into a schedule)."""

import keras

from framework import registry
from framework.registry import register


@register.optimizer
def sgd(learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None):
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return keras.optimizers.SGD(registry.build(learning_rate), momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)


@register.optimizer
def adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False):
    """Adam."""
    return keras.optimizers.Adam(registry.build(learning_rate), beta_1=beta_1, beta_2=beta_2,
                                 epsilon=epsilon, amsgrad=amsgrad)


@register.optimizer
def adamw(learning_rate=1e-3, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam with decoupled weight decay."""
    return keras.optimizers.AdamW(registry.build(learning_rate), weight_decay=weight_decay,
                                  beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)


@register.optimizer
def rmsprop(learning_rate=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    """RMSprop."""
    return keras.optimizers.RMSprop(registry.build(learning_rate), rho=rho, momentum=momentum,
                                    epsilon=epsilon, centered=centered)


@register.optimizer
def adagrad(learning_rate=1e-3, initial_accumulator_value=0.1, epsilon=1e-7):
    """Adagrad."""
    return keras.optimizers.Adagrad(registry.build(learning_rate),
                                    initial_accumulator_value=initial_accumulator_value,
                                    epsilon=epsilon)


@register.optimizer
def adadelta(learning_rate=1e-3, rho=0.95, epsilon=1e-7):
    """Adadelta."""
    return keras.optimizers.Adadelta(registry.build(learning_rate), rho=rho, epsilon=epsilon)


@register.optimizer
def adamax(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adamax."""
    return keras.optimizers.Adamax(registry.build(learning_rate), beta_1=beta_1, beta_2=beta_2,
                                   epsilon=epsilon)


@register.optimizer
def nadam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam with Nesterov momentum."""
    return keras.optimizers.Nadam(registry.build(learning_rate), beta_1=beta_1, beta_2=beta_2,
                                  epsilon=epsilon)
