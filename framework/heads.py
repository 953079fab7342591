"""Named heads of a multi-head model: what each one outputs, how it is trained and measured.

A multi-head model (plugins/models/multi_head.py) puts one small network per head on a
shared trunk and outputs `{head name: output}`. Its heads are `Head`s, configured in gin
by scope:

    models.multi_head.heads = [@coarse/Head()]
    coarse/Head.name = 'coarse'
    coarse/Head.loss_weight = 0.5

A head the dataset labels but the list does not name gets `Head(name)`'s defaults.
"""

import dataclasses
from typing import Any, Callable

import gin

from framework.data import DatasetInfo, HeadInfo
from framework.errors import UserError


@gin.configurable
@dataclasses.dataclass
class Head:
    """One head of a multi-head model.

    Attributes:
      name: the dataset head it predicts (a key of the dataset's labels).
      hidden_units: widths of ReLU layers between the trunk and this head's output layer.
      outputs: width of the output layer; None: the dataset head's num_outputs.
      activation: of the output layer; None (logits) is what the built-in losses and
        accuracies expect.
      loss: a loss plugin for this head; None: Experiment.loss.
      loss_weight: this head's per-example loss is multiplied by it in the summed loss.
      metrics: a callable returning keras.metrics for this head; None: by the head's task.
    """

    name: str = gin.REQUIRED
    hidden_units: tuple[int, ...] = ()
    outputs: int | None = None
    activation: str | None = None
    loss: Any = None
    loss_weight: float = 1.0
    metrics: Callable | None = None


def resolve_heads(info: DatasetInfo, heads) -> list[tuple[Head, HeadInfo]]:
    """Every head the dataset labels, in the dataset's order, with its configured `Head`.

    Raises UserError for a configured head the dataset does not label, or a dataset without
    heads.
    """
    if not info.heads:
        raise UserError(f"Dataset '{info.name}' has one label per example, not named heads; "
                        "a multi-head model needs a dataset whose labels are {head: label} "
                        "(its info made with DatasetInfo.multi_head).")
    configured = {}
    for head in heads or ():
        if not isinstance(head, Head):
            raise UserError(f"models.multi_head.heads must hold Head()s, got {head!r}.")
        if head.name not in {h.name for h in info.heads}:
            raise UserError(f"Head '{head.name}' is not labelled by dataset '{info.name}'; "
                            f"its heads are {', '.join(h.name for h in info.heads)}.")
        configured[head.name] = head
    return [(configured.get(h.name) or Head(name=h.name), h) for h in info.heads]
