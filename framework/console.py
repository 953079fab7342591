"""What a run shows on the console by default: a header, one progress line, evaluation lines
and the results. Everything else goes to absl logging, shown with --verbose.

On a terminal the progress line redraws in place; elsewhere (CI, a log file) each progress
update is a plain line, so `Progress` prints those less often.
"""

import shutil
import sys

from framework.observers import EvalOutput, Observer


class Console:
    """Lines for the user on `stream`, with at most one live (redrawn) line at the bottom."""

    def __init__(self, stream=None):
        self._stream = stream
        self._live = False  # a progress line is on screen without its newline

    @property
    def stream(self):
        return self._stream or sys.stdout  # looked up late: tests and absl replace it

    @property
    def redraws(self) -> bool:
        """Whether progress redraws in place (the stream is a terminal)."""
        return self.stream.isatty()

    def line(self, text: str) -> None:
        """Prints `text` as a line of its own, below any progress line."""
        self._end_live_line()
        print(text, file=self.stream, flush=True)

    def progress(self, text: str) -> None:
        """Shows `text` as the progress line: redrawn in place on a terminal, else a line."""
        if not self.redraws:
            self.line(text)
            return
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()
        self._live = True

    def _end_live_line(self) -> None:
        if self._live:
            self.stream.write("\n")
            self._live = False


# The process's console: the progress hook, the evaluation lines and main share its one
# live line.
CONSOLE = Console()


def format_scalars(scalars: dict[str, float]) -> str:
    """'accuracy 0.9123 · loss 0.2531', in tag order."""
    return " · ".join(f"{tag} {value:.4g}" for tag, value in sorted(scalars.items()))


class EvalLines(Observer):
    """One console line per evaluation."""

    def __init__(self, console: Console = CONSOLE):
        self._console = console

    def after_eval(self, step: int, output: EvalOutput) -> None:
        self._console.line(f"eval at step {step}: {format_scalars(output.scalars)}")
