"""Points on a line or a parabola: the first lessons in gradient descent."""

import numpy as np
import tensorflow as tf

from framework.data import Dataset, DatasetInfo
from framework.registry import register


def _points(name, x, y) -> Dataset:
    """x and y as (n, 1) float32 arrays; the same points serve training and evaluation."""
    examples = tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float32).reshape(-1, 1), y.astype(np.float32).reshape(-1, 1)))
    info = DatasetInfo(name=name, input_shape=(1,), task="regression", num_outputs=1,
                       train_size=len(x), eval_size=len(x))
    return Dataset(train=examples, eval=examples, info=info)


@register.dataset
def linear_points(num_points=100, weight=0.1, bias=0.3, noise=0.0, seed=0):
    """y = weight * x + bias (+ Gaussian noise) for x uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, num_points)
    y = weight * x + bias + noise * rng.standard_normal(num_points)
    return _points("linear_points", x, y)


@register.dataset
def quadratic_points(num_points=300, low=-0.5, high=0.5, noise=0.02, seed=0):
    """y = x**2 + Gaussian noise for x uniform in [low, high)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, num_points)
    y = x ** 2 + noise * rng.standard_normal(num_points)
    return _points("quadratic_points", x, y)
