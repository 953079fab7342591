"""What a training run records about itself when it starts (chief only): the operative
config (file and text summary), the data's info (class names for --mode=predict), for
precision_policy 'auto' what it became here, and `hyperparameters`: the settings
TensorBoard's HParams dashboard compares runs by (written by framework.monitoring).
"""

import inspect

import gin
from gin import config_parser

from framework import registry, run_length
from framework.data import DatasetInfo
from framework.observers import Observer
from framework.run_dir import RunDir
from framework.summaries import Summaries, as_code

# The settings every run records under these names, whatever its config binds. TensorBoard
# lists hyperparameters by name and shows the first five, so they are capitalised: they
# sort before gin's parameter names, whose modules are lower case.
KEY_SETTINGS = ("Batch size", "Dataset", "Learning rate", "Model", "Optimizer", "Precision",
                "Seed", "Train steps")
# Experiment's settings besides the key ones that change what a run learns; recorded when
# they differ from their defaults (the cadences and thread pools change only how it runs).
EXPERIMENT_SETTINGS = ("clip_gradient_norm", "shuffle_buffer", "dataset_schedule",
                       "dataset_weights", "deterministic", "init_checkpoint", "jit_compile",
                       "metrics")
_NAMED_PLUGINS = ("Dataset", "Model", "Optimizer")  # shown by name; their parameters follow


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


def hyperparameters(config: str, compute_policy: str | None = None) -> dict:
    """The run's hyperparameters as {name: bool, int, float or str}, values resolved.

    config: gin config text with the run's bindings (gin.operative_config_str() or
    gin.config_str(); its Experiment's configurables must be registered). Recorded:
      * KEY_SETTINGS, always: the plugins' names ('cnn', 'adam'), the optimizer's learning
        rate (a number, or its schedule as 'cosine_decay(0.001, 9375, 0.05)'), the batch
        size, train steps, seed and precision: `compute_policy` (what 'auto' became) when
        given, else Experiment.precision_policy;
      * every parameter, bound or default, of every configurable the Experiment's settings
        refer to, directly or through another ('models.cnn.filters', 'coarse/Head.name');
      * EXPERIMENT_SETTINGS that differ from their defaults ('Experiment.clip_gradient_norm').
    Macros are replaced by their values and references by the configurable's name (or, for
    a call, by its name and arguments), so no value holds '%' or '@'.
    """
    bindings = _Bindings(config)
    experiment = bindings.parameters((), "Experiment")
    optimizer = experiment.get("optimizer")
    learning_rate = (bindings.parameters(optimizer.scopes, optimizer.selector)
                     .get("learning_rate") if isinstance(optimizer, _Reference) else None)
    learning_rate = _learning_rate(bindings, learning_rate, experiment["train_steps"])
    values = dict(zip(KEY_SETTINGS, (
        experiment["batch_size"], experiment.get("dataset"), learning_rate,
        experiment.get("model"), optimizer, compute_policy or experiment["precision_policy"],
        experiment["seed"], experiment["train_steps"])))
    values = {name: bindings.describe(value, name_only=name in _NAMED_PLUGINS)
              for name, value in values.items()}
    defaults = _defaults("Experiment")
    values.update({f"Experiment.{name}": bindings.describe(experiment[name])
                   for name in EXPERIMENT_SETTINGS
                   if name in experiment and experiment[name] != defaults.get(name)})
    values.update(bindings.reachable_parameters(experiment))
    return values


class _Reference:
    """`@scope/selector` (a configurable) or `@scope/selector()` (its result), as read."""

    def __init__(self, scoped_selector: str, evaluate: bool):
        *self.scopes, self.selector = scoped_selector.split("/")
        self.scopes, self.evaluate = tuple(self.scopes), evaluate


class _Macro:
    def __init__(self, name: str):
        self.name = name


class _Text(str):
    """A description shown as it is inside a container's repr."""

    def __repr__(self):
        return str(self)


class _Bindings:
    """A gin config's bindings, read with gin's parser, resolved the way gin resolves them:
    a scope inherits its parents' bindings, unbound parameters keep their defaults."""

    def __init__(self, config: str):
        self.macros, self.bound = {}, {}
        for statement in config_parser.ConfigParser(config, self):
            if not isinstance(statement, config_parser.BindingStatement):
                continue
            if not statement.arg_name:  # `NAME = value` defines a macro
                self.macros[statement.selector] = statement.value
                continue
            key = (statement.scope, _name(statement.selector))
            self.bound.setdefault(key, {})[statement.arg_name] = statement.value

    # gin's parser hands references and macros to these two (its ParserDelegate).
    def configurable_reference(self, scoped_selector, evaluate):
        return _Reference(scoped_selector, evaluate)

    def macro(self, name):
        return _Macro(name)

    def parameters(self, scopes: tuple, selector: str) -> dict:
        """{parameter: value} the configurable gets in `scopes`, macros resolved."""
        values = _defaults(selector)
        for depth in range(len(scopes) + 1):
            values.update(self.bound.get(("/".join(scopes[:depth]), _name(selector)), {}))
        return {name: self._resolved(value) for name, value in values.items()}

    def reachable_parameters(self, root: dict) -> dict:
        """'[scope/]module.name.parameter' -> described value, for every configurable that
        `root`'s values refer to, and those their values refer to in turn."""
        found, pending, seen = {}, list(root.values()), set()
        while pending:
            value = pending.pop()
            if isinstance(value, (list, tuple)):
                pending.extend(value)
            elif isinstance(value, dict):
                pending.extend(value.values())
            elif isinstance(value, _Reference) and (value.scopes, value.selector) not in seen:
                seen.add((value.scopes, value.selector))
                prefix = "/".join((*value.scopes, _name(value.selector)))
                for name, parameter in self.parameters(value.scopes, value.selector).items():
                    found[f"{prefix}.{name}"] = self.describe(parameter)
                    pending.append(parameter)
        return found

    def describe(self, value, name_only: bool = False):
        """A bool, int, float or str for TensorBoard: references as the configurable's
        short name ('cnn'), calls as 'name(arguments)' unless `name_only`, containers and
        None as Python text."""
        if isinstance(value, (bool, int, float, str)):
            return value
        return repr(self._shown(value, name_only))

    def _shown(self, value, name_only: bool):
        if isinstance(value, _Reference):
            short = _name(value.selector).rsplit(".", 1)[-1]
            if not value.evaluate or name_only:
                return _Text(short)
            arguments = self.parameters(value.scopes, value.selector).values()
            return _Text(f"{short}({', '.join(repr(self._shown(a, False)) for a in arguments)})")
        if isinstance(value, (list, tuple)):
            return type(value)(self._shown(item, name_only) for item in value)
        if isinstance(value, dict):
            return {key: self._shown(item, name_only) for key, item in value.items()}
        return value

    def _resolved(self, value):
        if isinstance(value, _Macro):
            if value.name in self.macros:
                return self._resolved(self.macros[value.name])
            try:
                return gin.query_parameter(value.name)  # a gin constant
            except ValueError:
                return value.name  # undefined: gin itself refuses it when it is used
        if isinstance(value, (list, tuple)):
            return type(value)(self._resolved(item) for item in value)
        if isinstance(value, dict):
            return {key: self._resolved(item) for key, item in value.items()}
        return value


def _learning_rate(bindings: "_Bindings", value, train_steps: int):
    """A number, or a schedule as 'name(arguments)' with the values it is built with: a
    schedule's unset length is the run's (framework.run_length), so it is built as the
    optimizer builds it, with gin's bindings, and its arguments are read back from it."""
    if not isinstance(value, _Reference):
        return value
    function = gin.config.get_configurable(value.selector)
    with gin.config_scope(list(value.scopes)), registry.building(), \
            run_length.training_for(train_steps):
        built = function()
    if isinstance(built, (int, float)):
        return float(built)
    return _schedule_text(bindings, value, built)


def _schedule_text(bindings: "_Bindings", reference: "_Reference", schedule) -> str:
    """'name(a, b, ...)': the plugin's arguments as the built Keras `schedule` holds them
    (a schedule inside it likewise); gin's description when it holds none of them."""
    settings = schedule.get_config() if hasattr(schedule, "get_config") else {}
    arguments = []
    for name, value in bindings.parameters(reference.scopes, reference.selector).items():
        if name not in settings:
            continue
        inner = settings[name]
        arguments.append(_schedule_text(bindings, value, inner)
                         if isinstance(value, _Reference) and hasattr(inner, "get_config")
                         else repr(inner))
    if not arguments:
        return bindings.describe(_Reference("/".join((*reference.scopes, reference.selector)),
                                            True))
    return f"{reference.selector.rsplit('.', 1)[-1]}({', '.join(arguments)})"


def _name(selector: str) -> str:
    """The name a configurable is recorded under whichever way a config spells it: a
    plugin's 'models.cnn' (also for 'cnn'), else its selector."""
    plugin = registry.find(selector)
    return plugin.gin_name if plugin is not None else selector


def _defaults(selector: str) -> dict:
    """{parameter: default} of the configurable's parameters that have one."""
    try:
        signature = inspect.signature(gin.config.get_configurable(selector))
    except (ValueError, TypeError):
        return {}
    return {name: parameter.default for name, parameter in signature.parameters.items()
            if parameter.default is not inspect.Parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
