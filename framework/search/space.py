"""The search space and objective, declared in gin beside the experiment they vary.

    include 'cnn.gin'
    Search.parameters = {
        'models.cnn.filters': {'choices': [32, 64, 128]},
        'models.cnn.dense_units': {'int': (64, 256), 'step': 64},
        'schedules.cosine_decay.initial_learning_rate': {'float': (1e-4, 1e-2), 'log': True},
    }
    Search.objective = 'accuracy'

Each key is a gin parameter the experiment uses (any plugin's, or Experiment's own); each
value one of: {'choices': [...]} (any gin literal, tuples included), {'int': (low, high)}
or {'float': (low, high)}, both inclusive, with an optional 'step' or 'log': True.
`load` checks all of it against the experiment before any trial runs.
"""

import ast
import dataclasses
import difflib
import inspect

import gin
import optuna

from framework import config
from framework.errors import UserError
from framework.experiment import Experiment, from_config
from framework.run_record import hyperparameters
from framework.search.settings import Search

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "successive_halving", "median", "none")
_KINDS = ("choices", "int", "float")


@dataclasses.dataclass(frozen=True)
class Space:
    """A validated search: the Optuna distributions by gin parameter, and the settings a
    study needs. Categorical choices are held by their gin text ('(32, 64)'), the form
    Optuna can store for any literal."""

    distributions: dict[str, optuna.distributions.BaseDistribution]
    objective: str
    direction: str
    trials: int
    sampler: str
    pruner: str
    min_steps: int | None
    reduction_factor: int
    seed: int
    train_steps: int  # the full budget of a trial
    encoded: frozenset[str] = frozenset()  # categoricals whose choices are held as gin text
    first_trials: tuple[dict, ...] = ()  # Optuna params to enqueue when the study starts

    def suggest(self, trial: optuna.Trial) -> dict:
        """Draws (or, for a queued trial, takes) the trial's parameters; returns
        trial.params."""
        for name, dist in self.distributions.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, optuna.distributions.IntDistribution):
                trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
            else:
                trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        return trial.params

    def bindings(self, params: dict) -> list[str]:
        """Optuna's params of a trial -> gin bindings ('models.cnn.filters = 64')."""
        values = self.values(params)
        return [f"{name} = {gin_text(values[name])}" for name in self.distributions]

    def values(self, params: dict) -> dict:
        """Optuna's params of a trial -> the Python values the trial trains with."""
        return {name: _value(self.distributions[name], value, name in self.encoded)
                for name, value in params.items() if name in self.distributions}

    def grid(self) -> dict[str, list]:
        """Every value of each parameter, for Optuna's GridSampler."""
        return {name: list(_grid_values(name, distribution))
                for name, distribution in self.distributions.items()}

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        """The sampler, seeded with `seed`; the grid's with the study's own seed, which
        orders the grid: every process must walk it in the same order."""
        if self.sampler == "grid":
            return optuna.samplers.GridSampler(self.grid(), seed=self.seed)
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # constant_liar: workers running at once see each other's running trials as
        # poor results and spread out instead of sampling the same point.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=self.min_steps, max_resource=self.train_steps,
                reduction_factor=self.reduction_factor)
        if self.pruner == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.min_steps, reduction_factor=self.reduction_factor)
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_warmup_steps=self.min_steps)
        return optuna.pruners.NopPruner()


def load(gin_files: list[str], bindings: list[str], trials: int | None = None) -> Space:
    """The search that gin files and bindings declare, checked against the experiment they
    vary; every mistake is one UserError, raised before anything runs or is written.
    `trials` (--trials) overrides Search.trials."""
    experiment = from_config(gin_files, bindings)
    try:
        search = Search()
    except Exception as error:  # pylint: disable=broad-except  (gin calls the config's values)
        raise UserError(config.explain(error).replace(
            "Experiment.model = @models.cnn", "Search.parameters = {...}")) from error
    known = _searchable_parameters()
    if not isinstance(search.parameters, dict) or not search.parameters:
        raise UserError("Search.parameters must be a dict of at least one gin parameter, "
                        "e.g. {'models.cnn.filters': {'choices': [32, 64]}}.")
    distributions = {name: distribution(name, spec, known)
                     for name, spec in search.parameters.items()}
    encoded = frozenset(name for name, spec in search.parameters.items()
                        if "choices" in spec and not _primitive(spec["choices"]))
    _check_choice(search.direction, ("maximize", "minimize"), "Search.direction")
    _check_choice(search.sampler, SAMPLERS, "Search.sampler")
    _check_choice(str(search.pruner).lower(), PRUNERS, "Search.pruner")
    _check_count(search.trials if trials is None else trials,
                 "Search.trials" if trials is None else "--trials", least=1)
    _check_count(search.reduction_factor, "Search.reduction_factor", least=2)
    if not _is_int(search.seed) and search.seed is not None:
        raise UserError(f"Search.seed must be an integer or None, got {search.seed!r}.")
    trials = search.trials if trials is None else trials
    if not isinstance(search.objective, str) or not search.objective:
        raise UserError("Search.objective must name an eval metric, e.g. 'accuracy'.")
    pruner = str(search.pruner).lower()
    min_steps = search.min_steps or experiment.eval_every
    if pruner != "none":
        if experiment.eval_every is None:
            raise UserError(
                f"Search.pruner = '{pruner}' judges trials at their evaluations, and this "
                "experiment evaluates only at its end. Set Experiment.eval_every (e.g. a "
                "tenth of train_steps), or Search.pruner = 'none'.")
        if not _is_int(min_steps) or not 1 <= min_steps < experiment.train_steps:
            raise UserError(f"Search.min_steps must be a number of steps below "
                            f"Experiment.train_steps ({experiment.train_steps}), got "
                            f"{min_steps!r}.")
    space = Space(distributions, search.objective, search.direction, trials, search.sampler,
                  pruner, min_steps, search.reduction_factor,
                  experiment.seed if search.seed is None else search.seed,
                  experiment.train_steps, encoded,
                  _first_trials(search.first_trials, distributions, encoded))
    if space.sampler == "grid":
        space.grid()  # raises for a parameter without a finite set of values
    return space


def distribution(name: str, spec, known: set[str]) -> optuna.distributions.BaseDistribution:
    """One `Search.parameters` entry as an Optuna distribution; UserError if it is wrong."""
    if not isinstance(name, str) or name not in known:
        close = difflib.get_close_matches(str(name), sorted(known), n=3, cutoff=0.6)
        raise UserError(
            f"Search.parameters names '{name}', which this experiment does not use. "
            + (f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
            + "Name a parameter as gin binds it ('models.cnn.filters'); "
            "`python -m framework.main --list_plugins` lists every plugin's parameters.")
    where = f"Search.parameters['{name}']"
    kinds = [kind for kind in _KINDS if isinstance(spec, dict) and kind in spec]
    if len(kinds) != 1 or set(spec) - {kinds[0], "log", "step"}:
        raise UserError(
            f"{where} must be a dict with one of {', '.join(repr(k) for k in _KINDS)} and "
            f"optionally 'log' or 'step', e.g. {{'choices': [32, 64]}}, "
            f"{{'int': (64, 256), 'step': 64}} or {{'float': (1e-4, 1e-2), 'log': True}}; "
            f"got {spec!r}.")
    kind, log, step = kinds[0], spec.get("log", False), spec.get("step")
    if kind == "choices":
        return _categorical(where, spec["choices"], log or step is not None)
    bounds = spec[kind]
    number = _is_int if kind == "int" else _is_number
    if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
            or not all(number(b) for b in bounds)):
        raise UserError(f"{where}: '{kind}' takes ({'low, high' if kind == 'int' else 'low, high'}"
                        f") as two {'integers' if kind == 'int' else 'numbers'}, got {bounds!r}.")
    low, high = bounds
    problem = (
        f"low {low} is above high {high}" if low > high else
        f"a log scale needs low above 0, got {low}" if log and low <= 0 else
        "'log' and 'step' cannot be combined" if log and step is not None else
        f"'log' must be True or False, got {log!r}" if not isinstance(log, bool) else
        f"'step' must be a positive {kind}, got {step!r}"
        if step is not None and (not number(step) or step <= 0) else None)
    if problem:
        raise UserError(f"{where}: {problem}.")
    if kind == "int":
        return optuna.distributions.IntDistribution(low, high, log=log, step=step or 1)
    return optuna.distributions.FloatDistribution(low, high, log=log, step=step)


def _value(distribution, param, encoded: bool):
    if encoded:
        return ast.literal_eval(param)
    if isinstance(distribution, optuna.distributions.FloatDistribution) and distribution.step:
        return round(param, 12)  # 0.3, not Optuna's 0.30000000000000004
    return param


def _first_trials(first_trials, distributions: dict, encoded: frozenset) -> tuple[dict, ...]:
    """Search.first_trials as Optuna params (encoded choices as their gin text), each value
    checked against its parameter's distribution."""
    if not isinstance(first_trials, (list, tuple)) or not all(
            isinstance(t, dict) for t in first_trials):
        raise UserError("Search.first_trials must be a list of dicts of parameter values, "
                        f"e.g. [{{'models.cnn.filters': 64}}]; got {first_trials!r}.")
    trials = []
    for trial in first_trials:
        params = {}
        for name, value in trial.items():
            where = f"Search.first_trials: {name} = {value!r}"
            if name not in distributions:
                raise UserError(f"{where}: {name} is not in Search.parameters.")
            param = gin_text(value) if name in encoded else value
            dist = distributions[name]
            inside = (param in dist.choices
                      if isinstance(dist, optuna.distributions.CategoricalDistribution)
                      else _is_number(param) and dist.low <= param <= dist.high)
            if not inside:
                raise UserError(f"{where} is outside the parameter's values "
                                f"({_described(dist)}).")
            params[name] = param
        trials.append(params)
    return tuple(trials)


def _described(distribution) -> str:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return f"choices {list(distribution.choices)}"
    return f"{distribution.low} to {distribution.high}"


def _categorical(where: str, choices, extra: bool):
    if extra:
        raise UserError(f"{where}: 'log' and 'step' go with 'int' or 'float', not 'choices'.")
    if not isinstance(choices, (list, tuple)) or not choices:
        raise UserError(f"{where}: 'choices' must be a non-empty list, got {choices!r}.")
    texts = [gin_text(choice) for choice in choices]
    if len(set(texts)) != len(texts):
        raise UserError(f"{where}: 'choices' lists a value twice: {choices!r}.")
    return optuna.distributions.CategoricalDistribution(
        list(choices) if _primitive(choices) else texts)


def _primitive(choices) -> bool:
    """Whether Optuna can hold these choices themselves (else it holds their gin text)."""
    return all(isinstance(c, (bool, int, float, str)) or c is None for c in choices)


def gin_text(value) -> str:
    """A Python literal as gin reads it back (strings quoted, tuples kept)."""
    return repr(value)


def _grid_values(name: str, distribution) -> list:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, optuna.distributions.FloatDistribution) and distribution.step:
        count = round((distribution.high - distribution.low) / distribution.step)
        return [round(distribution.low + i * distribution.step, 12) for i in range(count + 1)]
    raise UserError(f"Search.sampler = 'grid' needs a finite set of values, and "
                    f"Search.parameters['{name}'] is a continuous range. Give it 'choices' "
                    "or a 'step'.")


def _searchable_parameters() -> set[str]:
    """Every gin parameter the parsed experiment uses: those of the configurables its
    settings reach (bound or default), and Experiment's own settings."""
    used = {name for name in hyperparameters(gin.config_str()) if "." in name}
    own = inspect.signature(Experiment.__init__).parameters
    return used | {f"Experiment.{name}" for name in own if name != "self"}


def _check_count(value, name: str, least: int) -> None:
    if not _is_int(value) or value < least:
        raise UserError(f"{name} must be an integer of at least {least}, got {value!r}.")


def _check_choice(value, allowed: tuple, name: str) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, "
                        f"got {value!r}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
