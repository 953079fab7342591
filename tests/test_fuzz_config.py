"""Malformed gin files, found by fuzzing: the shipped configs with a character deleted,
inserted or swapped at a random place (in the file run or in one it includes). Every
outcome is an Experiment (a search config: its search space) or one UserError naming the
file; never another exception, and through the command line exit status 2, no traceback,
no model_dir. Search spaces are fuzzed as values too: random `Search.parameters` entries.

Seeded, so a failure repeats; bounded by a case count and a time budget."""

import random
import shutil
import time

import gin
import pytest

from framework import experiment, registry
from framework.errors import UserError
from framework.search import space as search_space
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


def load(config: str):
    """What the command that runs `config` reads from it: a search space or an Experiment."""
    if "Search." in open(config, encoding="utf-8").read():
        return search_space.load([config], [])
    return experiment.from_config([config], [])


def fuzz(next_case) -> dict:
    """Runs seeded cases (CASES at most, BUDGET_SECONDS in all): next_case(rng) -> (load,
    description); load() must return or raise one UserError with a message, nothing else.
    Returns how often each happened."""
    rng = random.Random(SEED)
    outcomes = {"loaded": 0, "user error": 0}
    deadline = time.monotonic() + BUDGET_SECONDS
    for case in range(CASES):
        if time.monotonic() > deadline:
            break
        load_case, description = next_case(rng)
        gin.clear_config()
        try:
            load_case()
            outcomes["loaded"] += 1
        except UserError as error:
            assert str(error).strip(), f"case {case} ({description}): an empty message"
            outcomes["user error"] += 1
        except Exception as error:  # pylint: disable=broad-except
            pytest.fail(f"case {case}: {description} raised {type(error).__name__}: {error}")
    gin.clear_config()
    return outcomes


def test_every_mutated_config_gives_an_experiment_or_one_user_error(tmp_path):
    def mutated(rng):
        top, victim = mutated_configs(tmp_path / "gin", rng)
        return (lambda: load(top)), f"{top} with {victim} mutated"
    outcomes = fuzz(mutated)
    # Both kinds of outcome happen: the mutations reach values as well as syntax.
    assert outcomes["loaded"] > 0 and outcomes["user error"] > 0, outcomes


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


# What a random Search.parameters entry is made of: plausible and implausible pieces.
_USED = ["models.mlp.hidden_units", "models.mlp.dropout", "Experiment.batch_size",
         "schedules.cosine_decay.initial_learning_rate"]
_NAMES = _USED + ["models.mlp.hiden_units", "Experiment", "", "x.y.z", 3]
_VALID = [{"choices": [(64,), (128,)]}, {"int": (16, 64), "step": 16}, {"int": (1, 3)},
          {"float": (0.0, 0.5)}, {"float": (1e-4, 1e-2), "log": True}, {"choices": [1, 2.5]}]
_VALUES = [0, 1, -1, 2, 0.5, 1e-3, 1e9, -0.0, True, None, "1", (), [], (1,), (1, 2), (2, 1),
           (0.1, 0.2), (0, 0), [1, 2, 3], {"a": 1}, float("nan"), float("inf")]
_KEYS = ["choices", "int", "float", "log", "step", "range", 7]


def random_spec(rng: random.Random):
    """A valid entry two times in three, with one piece replaced at random one time in
    three; else a dict of random pieces, or a bare value."""
    roll = rng.random()
    if roll < 0.66:
        spec = dict(rng.choice(_VALID))
        if roll < 0.22:
            spec[rng.choice(_KEYS)] = rng.choice(_VALUES)
        return spec
    if roll < 0.9:
        return {rng.choice(_KEYS): rng.choice(_VALUES) for _ in range(rng.randint(0, 3))}
    return rng.choice(_VALUES)


def test_every_random_search_space_gives_a_space_or_one_user_error(tmp_path):
    base = (REPO / "gin" / "search_mlp.gin").read_text().split("Search.parameters")[0]
    config = tmp_path / "search.gin"

    def random_space(rng):
        parameters = {rng.choice(_USED if rng.random() < 0.8 else _NAMES): random_spec(rng)
                      for _ in range(rng.randint(1, 2))}
        extra = rng.choice(["", "Search.sampler = 'grid'", "Search.first_trials = [{}]",
                            f"Search.first_trials = [{{'models.mlp.dropout': {rng.random()}}}]"])
        config.write_text(f"{base}\nSearch.parameters = {parameters!r}\n{extra}\n")
        return (lambda: search_space.load([str(config)], [])), \
            f"Search.parameters = {parameters!r} ({extra})"
    outcomes = fuzz(random_space)
    assert outcomes["loaded"] > 0 and outcomes["user error"] > 0, outcomes
