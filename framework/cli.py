"""What every command of the framework shares: TensorFlow's native banners kept off the
console, quiet logs, signals that end a run cleanly, and the error layer — a UserError is
one line `error: ...` on stderr and exit status 2, with no traceback unless --verbose (a
ClusterError, a lost worker, the same with status 1).

A command imports this module before anything that imports TensorFlow, and calls
`filter_native_logs()` first thing.
"""

import atexit
import os
import re
import signal
import sys

from absl import flags, logging

from framework.errors import ClusterError, UserError
from framework.native_logs import NativeLogFilter

_NATIVE_LOGS = NativeLogFilter()


def filter_native_logs() -> None:
    """Routes stderr through the filter of TensorFlow's C++ info lines (framework.native_logs)
    unless --verbose is on the command line. Call before TensorFlow is imported."""
    if "--verbose" not in sys.argv:
        _NATIVE_LOGS.start()
        atexit.register(_NATIVE_LOGS.stop)  # a sys.exit before main (absl's flag errors) too


def quiet_logs(verbose: bool) -> None:
    """Warnings and errors only from absl's and TensorFlow's Python logging, unless the user
    asked for more with --verbose or absl's own --verbosity/-v."""
    if verbose:
        logging.set_verbosity(logging.INFO)
    elif not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def stop_on_signals(stop) -> None:
    """SIGTERM (preemption) and Ctrl-C call `stop(reason, exit_status=128 + signal)` (a
    framework.hooks.StopRequest: the run ends after its host loop, with a checkpoint); a
    second Ctrl-C leaves at once."""
    def handle(signum, frame):
        del frame
        name = signal.Signals(signum).name
        if stop.requested and signum == signal.SIGINT:
            print(f"{name} again: leaving now, without a checkpoint.", file=sys.stderr)
            os._exit(128 + signum)  # pylint: disable=protected-access
        stop(f"received {name}", exit_status=128 + signum)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handle)


def run_command(body, verbose: bool) -> None:
    """Runs body() -> exit status, and leaves the process with it; a UserError is printed
    as one `error:` message with status 2 (raised again with --verbose, for its traceback).

    Leaves with os._exit once output is flushed: everything that must outlive the process
    (checkpoints, summaries, the study) is on disk, and TensorFlow's teardown of datasets,
    iterators and models is slow (BUILD_NOTES.md, "Prompt exit").
    """
    quiet_logs(verbose)
    try:
        status = body()
    except UserError as error:
        if verbose:
            raise
        print(f"error: {message_of(error)}", file=sys.stderr)
        status = 2
    except ClusterError as error:
        if verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        status = 1
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    _NATIVE_LOGS.stop()
    os._exit(status)  # pylint: disable=protected-access


def message_of(error: UserError) -> str:
    """The error's message without what gin appends to errors raised inside configurables
    ("In call to configurable ..."): noise to a user whose message names the parameter."""
    return re.sub(r"\n\s*In call to configurable .*", "", str(error))
