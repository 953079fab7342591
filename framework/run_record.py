"""What a training run records about itself when it starts (chief only): the operative
config (file and text summary), the data's info (class names for --mode=predict) and, for
precision_policy 'auto', what it became here."""

import gin

from framework.data import DatasetInfo
from framework.observers import Observer
from framework.run_dir import RunDir
from framework.summaries import Summaries, as_code


class RunRecord(Observer):
    """compute_policy: what 'auto' became (None when the policy was named)."""

    def __init__(self, run_dir: RunDir, summaries: Summaries, info: DatasetInfo,
                 compute_policy: str | None):
        self.run_dir, self.summaries = run_dir, summaries
        self.info, self.compute_policy = info, compute_policy

    def begin(self, step: int) -> None:
        config = gin.operative_config_str()
        self.run_dir.write_config(config)
        self.run_dir.write_dataset_info(self.info)
        if self.compute_policy is not None:
            self.run_dir.write_compute_policy(self.compute_policy)
        self.summaries.text("train", "operative_config", as_code(config), step)
