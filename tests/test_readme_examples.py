"""The README's example dataset and loss plugins, copied out of the README and trained."""

import re

from helpers import REPO, run_cli


def test_the_readme_dataset_and_loss_plugins_train(tmp_path):
    readme = (REPO / "README.md").read_text()
    plugin = re.search(r"```python\n# my_plugins/noisy_xor.py\n(.*?)```", readme, re.S).group(1)
    config = re.search(r"```\n(import my_plugins.noisy_xor\n.*?)```", readme, re.S).group(1)
    (tmp_path / "my_plugins").mkdir()
    (tmp_path / "my_plugins" / "__init__.py").write_text("")
    (tmp_path / "my_plugins" / "noisy_xor.py").write_text(plugin)
    (tmp_path / "xor.gin").write_text(config)
    result = run_cli("--gin_file=xor.gin", "--gin_bindings=Experiment.train_steps=300",
                     f"--model_dir={tmp_path / 'run'}", cwd=tmp_path,
                     env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    accuracy = float(re.search(r"final eval accuracy: ([\d.]+)", result.stdout).group(1))
    assert accuracy > 0.8  # XOR of signs is learned; chance is 0.5
