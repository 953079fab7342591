"""A shared trunk with one named head per question the dataset asks (multi-task learning)."""

import dataclasses

import gin
import keras

from framework import capabilities, registry
from framework.heads import resolve_heads
from framework.plugin_checks import check_kind
from framework.registry import register


@register.model
def multi_head(info, trunk=gin.REQUIRED, heads=()):
    """Any model plugin as the trunk, with one small network per dataset head on top.

    trunk: a model plugin; everything below its output layer (its last layer) is shared.
      A trunk with a frozen feature extractor (inception_v3 in 'frozen' mode) stays frozen,
      and its features can be cached. Learning-rate multipliers of the trunk carry over.
    heads: `Head`s (framework/heads.py) for heads that need more than the defaults.

    Outputs {head name: output}; its heads ((Head, HeadInfo) pairs, framework.capabilities)
    tell the framework each head's loss and metrics.
    """
    check_kind("model", trunk, "models.multi_head.trunk")
    resolved = resolve_heads(info, heads)
    for head, _ in resolved:
        if head.loss is not None:
            check_kind("loss", head.loss, f"{head.name}/Head.loss")
    # The trunk plugin builds a single-output model; its output layer is cut off below.
    first = info.heads[0]
    full = registry.build(trunk, dataclasses.replace(
        info, task=first.task, num_outputs=first.num_outputs, heads=()))
    frozen = capabilities.frozen_features(full)
    shared = frozen[0] if frozen else keras.Model(full.inputs, full.layers[-2].output,
                                                  name=f"{full.name}_trunk")
    features = keras.Input(shared.output.shape[1:])
    outputs = {}
    for head, head_info in resolved:
        hidden = features
        for index, units in enumerate(head.hidden_units):
            hidden = keras.layers.Dense(units, activation="relu",
                                        name=f"{head.name}_hidden_{index}")(hidden)
        outputs[head.name] = keras.layers.Dense(
            head.outputs or head_info.num_outputs, activation=head.activation,
            name=head.name)(hidden)
    heads_model = keras.Model(features, outputs, name="heads")
    inputs = keras.Input(info.input_shape)
    model = keras.Model(inputs, heads_model(shared(inputs)), name=f"{full.name}_multi_head")
    capabilities.set_heads(model, resolved)
    if frozen:
        capabilities.set_frozen_features(model, shared, heads_model)
    multipliers = capabilities.learning_rate_multipliers(full)
    if multipliers:
        capabilities.set_learning_rate_multipliers(model, multipliers)
    return model
