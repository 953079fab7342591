"""Keeps TensorFlow's C++ info banners (oneDNN, CPU features) off the console.

TensorFlow's C++ code logs through absl before anything calls absl::InitializeLog(), and
such lines reach stderr whatever TF_CPP_MIN_LOG_LEVEL says. So the process's stderr (file
descriptor 2) is routed through a pipe; a thread forwards every line except C++ info and
warning lines (`I1203 04:12:00.1 123 port.cc:153] ...`, their continuation lines, and
absl's notice about InitializeLog). Errors (`E...`), Python's own log lines and tracebacks
pass through unchanged.
"""

import os
import re
import threading

_NATIVE_HEADER = re.compile(rb"^[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+\.(?:cc|h|cpp):\d+\] ")
_CONTINUATION = b"To enable the following instructions"
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"


class NativeLogFilter:
    """While started, lines written to file descriptor 2 pass through `keep`."""

    def __init__(self):
        self._stderr = self._thread = None

    def start(self) -> None:
        self._stderr = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._forward, args=(read_end,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Gives file descriptor 2 back and waits (briefly) until every line is forwarded."""
        if self._thread is None:
            return
        os.dup2(self._stderr, 2)  # closes the pipe's last write end: the thread sees EOF
        self._thread.join(timeout=2.0)
        self._thread = None

    def _forward(self, read_end: int) -> None:
        after_dropped = False
        with os.fdopen(read_end, "rb") as pipe:
            for line in iter(pipe.readline, b""):
                # cpu_feature_guard's message goes on in a second line of its own.
                continuation = after_dropped and line.startswith(_CONTINUATION)
                after_dropped = bool(_NATIVE_HEADER.match(line))
                if after_dropped or continuation or line.startswith(_ABSL_NOTICE):
                    continue
                os.write(self._stderr, line)
