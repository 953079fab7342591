"""When something happens during training: every N steps, or at listed steps.

One `Cadence` per concern (summaries, checkpoints, evaluation, histograms, profiling); the
controller ends each host loop at the next step any of them is due.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Cadence:
    """Due at every multiple of `every` (None: never) and at each step in `at`."""

    every: int | None = None
    at: tuple[int, ...] = ()

    def due(self, step: int) -> bool:
        return bool(self.every and step % self.every == 0) or step in self.at

    def next_after(self, step: int) -> int | None:
        """The first step after `step` at which this is due (None: never again)."""
        candidates = [s for s in self.at if s > step]
        if self.every:
            candidates.append(self.every * (step // self.every + 1))
        return min(candidates) if candidates else None


def steps_to_next_boundary(step: int, cadences, last_step: int, most: int) -> int:
    """Steps from `step` to the next step any cadence is due, or `last_step`, at most `most`."""
    nexts = [c.next_after(step) for c in cadences]
    boundary = min([n for n in nexts if n is not None] + [last_step])
    return min(most, boundary - step)
