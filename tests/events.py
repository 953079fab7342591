"""Reading TensorBoard summaries back as TensorBoard does: from the event files, and from
a real TensorBoard server's HTTP API."""

import contextlib
import json
import pathlib
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def read(run_dir: pathlib.Path) -> dict[str, list[tuple[int, object]]]:
    """{tag: [(step, value), ...]} for every tf.summary in `run_dir` (v2 stores tensors)."""
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    values = {}
    for tag in accumulator.Tags()["tensors"]:
        values[tag] = [(event.step, tf.make_ndarray(event.tensor_proto))
                       for event in accumulator.Tensors(tag)]
    return values


def hparams(run_dir: pathlib.Path) -> dict[str, object]:
    """The hyperparameters of the hparams session summary at `run_dir`."""
    accumulator = event_accumulator.EventAccumulator(str(run_dir))
    accumulator.Reload()
    content = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {name: getattr(value, value.WhichOneof("kind"))
            for name, value in session.hparams.items()}


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG image, from its header."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n"), png[:8]
    return struct.unpack(">II", png[16:24])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def tensorboard_server(logdir, runs: set[str], timeout: float = 90):
    """A real TensorBoard on 127.0.0.1 serving `logdir`, once it lists `runs`; yields
    get(path, body=None) -> the response (parsed JSON, or bytes for other content; a
    JSON `body` is POSTed). The server is stopped on leaving."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", "--host=127.0.0.1",
         f"--port={port}", "--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def get(path, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"} if body is not None else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            content = response.read()
            if response.headers.get_content_type() == "application/json":
                return json.loads(content)
            return content
    try:
        poll(lambda: runs <= set(get("/data/runs")), timeout,
             f"TensorBoard did not list {sorted(runs)}", process)
        yield get
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def poll(ready, timeout: float, failure: str, process=None, interval: float = 0.5):
    """ready()'s first truthy value, asked every `interval` seconds (connection errors
    count as not ready); fails with `failure` after `timeout` seconds or when `process`
    exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = ready()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError):
            pass
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{failure}: TensorBoard exited: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{failure} in {timeout} s")
        time.sleep(interval)
