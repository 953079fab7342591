"""What a model plugin can tell the framework about its model, beyond being a keras.Model.

A plugin sets these with the `set_*` helpers; the framework reads them with the getters
and nowhere else. They are kept as attributes of the model (tracked by Keras like any
attribute holding layers, so checkpoints of earlier runs still restore).

  heads: [(Head, HeadInfo)] of a multi-head model (outputs {head name: logits});
  frozen features: (extractor, head) with model(x) == head(extractor(x)) and an extractor
    that never trains, so its outputs can be computed once and cached;
  learning-rate multipliers: {variable.path: factor} for variables that train at another
    rate (a fine-tuned backbone under a new head).
"""

import keras


def set_heads(model: keras.Model, heads: list) -> None:
    model.heads = heads


def heads(model: keras.Model) -> list | None:
    return getattr(model, "heads", None)


def set_frozen_features(model: keras.Model, extractor: keras.Model, head: keras.Model) -> None:
    model.frozen_features = (extractor, head)


def frozen_features(model: keras.Model) -> tuple[keras.Model, keras.Model] | None:
    return getattr(model, "frozen_features", None)


def set_learning_rate_multipliers(model: keras.Model, multipliers: dict[str, float]) -> None:
    model.learning_rate_multipliers = dict(multipliers)


def learning_rate_multipliers(model: keras.Model) -> dict[str, float]:
    return dict(getattr(model, "learning_rate_multipliers", None) or {})
