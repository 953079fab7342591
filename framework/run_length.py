"""How many steps the run being built trains for: the default length of learning-rate
schedules, so that overriding `Experiment.train_steps` alone keeps a schedule consistent.

The builder wraps the optimizer's construction in `training_for(train_steps)`; a schedule
plugin whose length is left unset asks `steps()`.
"""

import contextlib
import contextvars

from framework.errors import UserError

_STEPS = contextvars.ContextVar("train_steps", default=None)


@contextlib.contextmanager
def training_for(steps: int):
    """Inside this context, `steps()` is `steps`."""
    token = _STEPS.set(int(steps))
    try:
        yield
    finally:
        _STEPS.reset(token)


def current() -> int | None:
    """The steps of the run being built; None outside a build."""
    return _STEPS.get()


def steps(setting: str) -> int:
    """The steps of the run being built; UserError outside a build, naming `setting` as
    what to set instead."""
    value = _STEPS.get()
    if value is None:
        raise UserError(f"{setting} is unset and no run is being built to take its length "
                        f"from. Set {setting} explicitly.")
    return value
