"""Parsing gin files and bindings, with errors that suggest the fix.

gin names the file and line of a mistake but suggests nothing (`No configurable matching
'my_modle'`); `parse` adds the closest known names. `framework.main` never imports
`gin.tf`: on TF >= 2.16 it imports the removed `tf.estimator`.
"""

import difflib
import inspect
import os
import re

import gin

from framework import registry
from framework.errors import UserError

_UNKNOWN_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?([\w./]+?)(?:\(\))?'")
_UNKNOWN_PARAMETER = re.compile(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'")


def parse(gin_files: list[str], bindings: list[str]) -> None:
    """Parses the files then the bindings into gin's global config; raises UserError."""
    for path in gin_files:
        if not os.path.isfile(path):
            near = _nearby_gin_files(path)
            raise UserError(
                f"Gin file '{path}' does not exist."
                + (f" Did you mean {', '.join(near)}?" if near else "")
            )
    try:
        gin.parse_config_files_and_bindings(gin_files, bindings, finalize_config=False)
    except (ValueError, KeyError, ImportError, ModuleNotFoundError, SyntaxError) as error:
        raise UserError(explain(error)) from error


def explain(error: Exception) -> str:
    """gin's message (which names file and line), plus the closest known names."""
    message = str(error).strip()
    if isinstance(error, ImportError):
        return (f"{message}\nA gin `import` line names a module that cannot be imported. "
                "Fix: install the plugin package or put its folder on PYTHONPATH.")
    unknown = _UNKNOWN_CONFIGURABLE.search(message)
    if unknown:
        return message + "\n" + _suggest_configurable(unknown.group(1).split("/")[-1])
    parameter = _UNKNOWN_PARAMETER.search(message)
    if parameter:
        return message + "\n" + _suggest_parameter(*parameter.groups())
    return message


def _suggest_configurable(name: str) -> str:
    """'Did you mean' among plugins of the same kind (all plugins if the kind is unknown)."""
    module, _, short = name.rpartition(".")
    kind = next((k for k, gin_module in registry.KINDS.items() if gin_module == module), None)
    kinds = [kind] if kind else list(registry.KINDS)
    by_short_name = {p.name: p.gin_name for k in kinds for p in registry.plugins(k).values()}
    if not kind:
        by_short_name["Experiment"] = "Experiment"
    close = [by_short_name[c] for c in _closest(short, list(by_short_name))]
    hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    if kind:
        return hint + f"Known {kind} plugins: {', '.join(sorted(by_short_name.values()))}."
    return hint + "Run `python -m framework.main --list_plugins` for every plugin."


def _suggest_parameter(configurable: str, parameter: str) -> str:
    plugin = registry.find(configurable)
    names = [p.name for p in plugin.parameters()] if plugin else _gin_parameters(configurable)
    close = _closest(parameter, names)
    hint = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return hint + f"'{configurable}' takes: {', '.join(names) or 'no parameters'}."


def _gin_parameters(configurable: str) -> list[str]:
    """The parameters of a configurable that is not a plugin (Experiment, Monitoring, Head)."""
    try:
        signature = inspect.signature(gin.config.get_configurable(configurable))
    except (ValueError, TypeError):
        return []
    return [name for name in signature.parameters if name != "self"]


def _closest(name: str, candidates: list[str]) -> list[str]:
    return difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)


def _nearby_gin_files(path: str) -> list[str]:
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        folder = "gin"
    if not os.path.isdir(folder):
        return []
    candidates = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".gin")]
    return difflib.get_close_matches(path, candidates, n=3, cutoff=0.3) or sorted(candidates)

