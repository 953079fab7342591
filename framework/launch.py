"""A local multi-worker cluster in one command: N `framework.main` processes on 127.0.0.1.

    python -m framework.launch --workers=2 -- --gin_file=gin/cnn.gin --model_dir=runs/cnn2

Each worker gets TF_CONFIG (the cluster on free loopback ports, and its own index) and
`Experiment.strategy = @strategies.multi_worker`; their output is merged line by line,
each line prefixed with `[worker I]`. When one worker fails, the others are stopped and
the launcher exits with its status; SIGTERM or Ctrl-C is passed on to every worker.
Worker 0 is the chief: it alone writes into the model_dir, which every worker must reach
(on several machines, a shared file system). The ports are TensorFlow's own gRPC servers:
unauthenticated, so bound to 127.0.0.1 here, and on a cluster kept on a private network.
"""

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

from framework import cli
from framework.errors import UserError

WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes to start on this machine.")
GRACE_S = flags.DEFINE_float("grace_s", 30.0, "When a worker fails or a signal comes: "
                             "seconds the others get to stop before they are killed.")
VERBOSE = flags.DEFINE_bool("verbose", False, "Tracebacks for the launcher's own errors.")

_STRATEGY = "--gin_bindings=Experiment.strategy = @strategies.multi_worker"


def free_ports(count: int) -> list[int]:
    """`count` ports free on 127.0.0.1 now (held together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def tf_config(workers: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def worker_arguments(arguments: list[str]) -> list[str]:
    """The main job's arguments for every worker: the multi-worker strategy bound last, and
    one --model_dir for all (a fresh one under runs/ when none is given)."""
    if not any(a.startswith("--model_dir") for a in arguments):
        stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
        arguments = [*arguments, f"--model_dir={os.path.join('runs', f'cluster-{stamp}')}"]
    return [*arguments, _STRATEGY]


class Cluster:
    """The worker processes, their merged output, and stopping them all."""

    def __init__(self, count: int, arguments: list[str], grace_s: float):
        addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
        self.grace_s = grace_s
        self.processes = [subprocess.Popen(
            [sys.executable, "-m", "framework.main", *arguments],
            env={**os.environ, "TF_CONFIG": tf_config(addresses, index)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
            for index in range(count)]
        self.readers = [threading.Thread(target=self._relay, args=(index, process.stdout),
                                         daemon=True)
                        for index, process in enumerate(self.processes)]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _relay(index: int, stream) -> None:
        for line in stream:
            sys.stdout.write(f"[worker {index}] {line}")
            sys.stdout.flush()

    def wait(self) -> int:
        """Waits for every worker; the first failure stops the rest. Returns the exit
        status: 0, or the first failed worker's."""
        status = 0
        while any(process.poll() is None for process in self.processes):
            failed = [p for p in self.processes if p.poll() not in (None, 0)]
            if failed and not status:
                status = failed[0].returncode
                index = self.processes.index(failed[0])
                print(f"[launch] worker {index} exited with status {status}; stopping the "
                      "others.", flush=True)
                self.stop()
            time.sleep(0.2)
        for reader in self.readers:
            reader.join()
        return status or next((p.returncode for p in self.processes if p.returncode), 0)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Passes `signum` to every live worker; kills those still alive after the grace."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signum)
        deadline = time.monotonic() + self.grace_s
        threading.Thread(target=self._kill_after, args=(deadline,), daemon=True).start()

    def _kill_after(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if all(process.poll() is not None for process in self.processes):
                return
            time.sleep(0.2)
        for process in self.processes:
            if process.poll() is None:
                process.kill()


def launch(argv) -> int:
    arguments = argv[1:]
    if WORKERS.value < 1:
        raise UserError(f"--workers must be at least 1, got {WORKERS.value}.")
    if not arguments:
        raise UserError("Pass the main job's arguments after --, e.g. python -m "
                        "framework.launch --workers=2 -- --gin_file=gin/cnn.gin")
    cluster = Cluster(WORKERS.value, worker_arguments(arguments), GRACE_S.value)
    received = []

    def forward(signum, frame):
        del frame
        received.append(signum)
        cluster.stop(signal.SIGTERM)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    status = cluster.wait()
    return 128 + received[0] if received else status


def main(argv):
    cli.run_command(lambda: launch(argv), VERBOSE.value)


if __name__ == "__main__":
    app.run(main)
