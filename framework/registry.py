"""Plugin kinds, their register decorators, discovery and the --list_plugins listing.

A plugin is a plain factory function registered under a kind:

    @register.model
    def cnn(info, filters=64):
        '''The classic Fashion-MNIST CNN.'''
        return keras.Sequential([...])

Registering makes it gin-configurable in the kind's gin module (`models.cnn`), so a gin
file can bind its parameters (`models.cnn.filters = 32`) and hand it to the Experiment.

Either gin form may be used:
  * `Experiment.model = @models.cnn`   -- the factory itself;
  * `Experiment.model = @models.cnn()` -- gin calls it when it reads the binding, which is
    too early: variables must be created inside the strategy's scope and models need the
    dataset info. So a call made outside `building()` does not build anything: it returns a
    `Deferred` holding the arguments, and the builder (framework.assembly) builds it at
    the right moment.

Both forms are completed with `build(value, *context)` inside `building()`. Plugins that
call other plugins (a model that wraps a backbone) just call them: they already run inside
`building()`.
"""

import contextlib
import dataclasses
import functools
import importlib
import importlib.metadata
import inspect
import threading
from typing import Any, Callable

import gin
from absl import logging

from framework.errors import UserError

# Kind -> gin module. The gin module is the prefix users write in gin files.
KINDS = {
    "dataset": "datasets",
    "model": "models",
    "loss": "losses",
    "optimizer": "optimizers",
    "schedule": "schedules",
    "hook": "hooks",
    "strategy": "strategies",
}

# Installed packages announce plugin modules under this entry point group, e.g. in their
# pyproject.toml:  [project.entry-points."framework.plugins"]  my_plugins = "my_pkg.plugins"
ENTRY_POINT_GROUP = "framework.plugins"

# The built-in plugin modules; importing them registers their plugins.
BUILTIN_PLUGIN_PACKAGE = "plugins"


@dataclasses.dataclass(frozen=True)
class Plugin:
    """One registered plugin: its kind, name, the undecorated function and its gin twin."""

    kind: str
    name: str
    function: Callable[..., Any]
    configurable: Callable[..., Any]

    @property
    def gin_name(self) -> str:
        return f"{KINDS[self.kind]}.{self.name}"

    def parameters(self) -> list[inspect.Parameter]:
        """The gin-configurable parameters (those with defaults), in signature order."""
        return [
            p
            for p in inspect.signature(self.function).parameters.values()
            if p.default is not inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def summary(self) -> str:
        """The docstring's first paragraph, in one line."""
        doc = inspect.getdoc(self.function) or "(no docstring)"
        return " ".join(doc.split("\n\n")[0].split())


_PLUGINS: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}
_BUILDING = threading.local()


@contextlib.contextmanager
def building():
    """Inside this context, calling a plugin builds its object instead of deferring."""
    previous = getattr(_BUILDING, "active", False)
    _BUILDING.active = True
    try:
        yield
    finally:
        _BUILDING.active = previous


class Deferred:
    """A plugin call made outside `building()`: the plugin plus the arguments gin gave it."""

    def __init__(self, plugin: Plugin, args: tuple, kwargs: dict):
        self.plugin, self.args, self.kwargs = plugin, args, kwargs

    def __call__(self, *context, **kwargs):
        return self.plugin.configurable(*context, *self.args, **{**self.kwargs, **kwargs})

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"@{self.plugin.gin_name}({arguments})"


def build(value: Any, *context: Any) -> Any:
    """Builds a plugin given as a factory, a `Deferred`, or an already built object.

    `context` goes first in the plugin's arguments (a model gets the dataset info).
    Objects that are neither factories nor `Deferred` (a plain float learning rate, a
    built keras object) are returned as they are.
    """
    with building():
        if isinstance(value, Deferred) or _plugin_of(value) is not None:
            return value(*context)
    return value


def _plugin_of(value: Any) -> Plugin | None:
    return getattr(value, "__framework_plugin__", None)


def plugin_of(value: Any) -> Plugin | None:
    """The plugin a gin value names, bound as a factory (`@models.cnn`) or as a call
    (`@models.cnn()`); None for anything else (a number, a built object, None)."""
    return value.plugin if isinstance(value, Deferred) else _plugin_of(value)


def _register(kind: str, function: Callable | None = None, *, name: str | None = None):
    if function is None:  # used as @register.model(name="...")
        return functools.partial(_register, kind, name=name)
    name = name or function.__name__
    existing = _PLUGINS[kind].get(name)
    if existing is not None:
        if existing.function.__qualname__ == function.__qualname__ and (
            existing.function.__module__ == function.__module__
        ):
            return existing.configurable  # the same module imported twice
        raise UserError(
            f"Two {kind} plugins are called '{name}': one in {existing.function.__module__}"
            f" and one in {function.__module__}. Rename one of them "
            f"(@register.{kind}(name='...'))."
        )

    @functools.wraps(function)
    def call(*args, **kwargs):
        if getattr(_BUILDING, "active", False):
            return function(*args, **kwargs)
        return Deferred(plugin, args, kwargs)

    # gin reads defaults with getfullargspec, which ignores __wrapped__ but honours this;
    # without it the operative config would omit every default the plugin used.
    call.__signature__ = inspect.signature(function)
    configurable = gin.configurable(name, module=KINDS[kind])(call)
    plugin = Plugin(kind, name, function, configurable)
    configurable.__framework_plugin__ = plugin
    _PLUGINS[kind][name] = plugin
    return configurable


class _Register:
    """`register.dataset`, `register.model`, ...: one decorator per kind."""

    def __getattr__(self, kind: str):
        if kind not in KINDS:
            raise AttributeError(f"no plugin kind '{kind}'; kinds are {', '.join(KINDS)}")
        return functools.partial(_register, kind)


register = _Register()


def plugins(kind: str) -> dict[str, Plugin]:
    return dict(_PLUGINS[kind])


def find(gin_name: str) -> Plugin | None:
    """The plugin for `models.cnn` or a bare `cnn` (when only one kind has that name)."""
    module, _, name = gin_name.rpartition(".")
    matches = [
        p
        for kind, gin_module in KINDS.items()
        for p in _PLUGINS[kind].values()
        if p.name == name and module in ("", gin_module)
    ]
    return matches[0] if len(matches) == 1 else None


def discover() -> None:
    """Imports the built-in plugins and every installed package's plugin entry points.

    A broken installed plugin package is reported and skipped, so that it cannot stop
    experiments that do not use it.
    """
    importlib.import_module(BUILTIN_PLUGIN_PACKAGE)
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # pylint: disable=broad-except
            logging.warning(
                "Skipping plugin package '%s' (%s): importing it failed with %s: %s",
                entry_point.name, entry_point.value, type(error).__name__, error,
            )


def describe() -> str:
    """The --list_plugins text: every plugin by kind, its parameters and defaults."""
    lines = []
    for kind, gin_module in KINDS.items():
        lines.append(f"{kind} plugins (gin module '{gin_module}'):")
        if not _PLUGINS[kind]:
            lines.append("  (none registered)")
        for plugin in sorted(_PLUGINS[kind].values(), key=lambda p: p.name):
            lines.append(f"  {plugin.gin_name}: {plugin.summary()}")
            for parameter in plugin.parameters():
                default = "required" if parameter.default is gin.REQUIRED else repr(
                    parameter.default)
                lines.append(f"      {parameter.name} = {default}")
        lines.append("")
    return "\n".join(lines)
