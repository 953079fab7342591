"""MultiWorkerMirroredStrategy with two worker processes on this machine (localhost)."""

import json
import re
import socket

import tensorflow as tf

import events
from helpers import run_cli_process

CONFIG = [
    "--gin_bindings=Experiment.dataset = @datasets.synthetic",
    "--gin_bindings=Experiment.model = @models.mlp",
    "--gin_bindings=Experiment.loss = @losses.sparse_categorical_crossentropy",
    "--gin_bindings=Experiment.optimizer = @optimizers.adam",
    "--gin_bindings=Experiment.strategy = @strategies.multi_worker",
    "--gin_bindings=Experiment.batch_size = 32",
    "--gin_bindings=Experiment.train_steps = 6",
    "--gin_bindings=Experiment.steps_per_loop = 3",
    "--gin_bindings=Experiment.summary_every = 3",
    "--gin_bindings=Experiment.precision_policy = 'auto'",
]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_together_and_only_the_chief_writes(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    model_dir = tmp_path / "run"
    processes = [
        run_cli_process(*CONFIG, f"--model_dir={model_dir}", env={
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                     "task": {"type": "worker", "index": index}}),
            # Each worker times the model afresh: 'auto' must still agree.
            "XDG_CACHE_HOME": str(tmp_path / f"cache_{index}")})
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=240) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr
    assert "final eval accuracy" in outputs[0][0]
    policies = [re.search(r"precision (\S+) \(auto: ", stdout)[1] for stdout, _ in outputs]
    assert policies[0] == policies[1] == (model_dir / "compute_policy.txt").read_text()
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-6")
    train = events.read(model_dir / "train")
    assert [step for step, _ in train["loss"]] == [3, 6]  # one writer: no duplicates
    assert "multi_worker" in (model_dir / "operative_config.gin").read_text()
