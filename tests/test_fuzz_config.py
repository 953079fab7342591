"""Malformed gin files, found by fuzzing: the shipped configs with a character deleted,
inserted or swapped at a random place (in the file run or in one it includes). Every
outcome is an Experiment or one UserError naming the file; never another exception, and
through the command line exit status 2, no traceback, no model_dir.

Seeded, so a failure repeats; bounded by a case count and a time budget."""

import random
import shutil
import time

import gin
import pytest

from framework import experiment, registry
from framework.errors import UserError
from helpers import REPO, run_cli

registry.discover()

SEED = 20261203
CASES = 400
BUDGET_SECONDS = 25
CONFIGS = sorted(p.name for p in (REPO / "gin").glob("*.gin"))
CHARACTERS = "abcdefgxyzAEIXZ0123456789_.,:;=@%()[]{}'\"#/\\-+* \n\t"


def mutate(text: str, rng: random.Random) -> str:
    """`text` with one character deleted, inserted or two swapped."""
    i = rng.randrange(len(text))
    operation = rng.choice(["delete", "insert", "swap"])
    if operation == "delete":
        return text[:i] + text[i + 1:]
    if operation == "insert":
        return text[:i] + rng.choice(CHARACTERS) + text[i:]
    j = rng.randrange(len(text))
    characters = list(text)
    characters[i], characters[j] = characters[j], characters[i]
    return "".join(characters)


def mutated_configs(folder, rng: random.Random) -> tuple[str, str]:
    """A copy of gin/ in `folder` with one file mutated; (the config to run, the mutated)."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REPO / "gin", folder)
    top, victim = rng.choice(CONFIGS), rng.choice(CONFIGS)
    path = folder / victim
    path.write_text(mutate(path.read_text(), rng))
    return str(folder / top), victim


def test_every_mutated_config_gives_an_experiment_or_one_user_error(tmp_path):
    rng = random.Random(SEED)
    outcomes = {"experiment": 0, "user error": 0}
    deadline = time.monotonic() + BUDGET_SECONDS
    for case in range(CASES):
        if time.monotonic() > deadline:
            break
        top, victim = mutated_configs(tmp_path / "gin", rng)
        gin.clear_config()
        try:
            experiment.from_config([top], [])
            outcomes["experiment"] += 1
        except UserError as error:
            assert str(error).strip(), f"case {case} ({victim}): an empty message"
            outcomes["user error"] += 1
        except Exception as error:  # pylint: disable=broad-except
            pytest.fail(f"case {case}: {top} with {victim} mutated raised "
                        f"{type(error).__name__}: {error}")
    gin.clear_config()
    # Both kinds of outcome happen: the mutations reach values as well as syntax.
    assert outcomes["experiment"] > 0 and outcomes["user error"] > 0, outcomes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_config_broken_by_fuzzing_fails_cleanly_through_the_command_line(tmp_path, seed):
    """The first mutation of this seed that gin cannot read, run as a user would."""
    rng = random.Random(seed)
    while True:
        top, victim = mutated_configs(tmp_path / "gin", rng)
        gin.clear_config()
        try:
            experiment.from_config([top], [])
        except UserError:
            break
    gin.clear_config()
    model_dir = tmp_path / "run"
    result = run_cli(f"--gin_file={top}", f"--model_dir={model_dir}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert not model_dir.exists()
