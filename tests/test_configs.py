"""Every shipped gin config parses and configures an Experiment."""

import pytest

from framework import config as config_module
from framework.experiment import Experiment
from helpers import REPO

CONFIGS = sorted(p.relative_to(REPO) for p in (REPO / "gin").glob("*.gin"))


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_config_parses(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # includes resolve from the including file, not from here
    config_module.parse([str(REPO / config)], [])
    if config.name in ("base.gin", "classification.gin"):
        return  # shared settings only: no dataset or model of their own
    experiment = Experiment()
    assert experiment.train_steps >= 1 and experiment.plugins["model"] is not None
