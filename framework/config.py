"""Parsing gin files and bindings: where files are found, and errors that suggest the fix.

Where a gin file is found (a top-level --gin_file, or an `include` inside a file):
  1. an absolute path is taken as it is;
  2. an include is looked up relative to the file that includes it;
  3. then relative to the current directory;
  4. then among the built-in configs shipped with the package (`cnn.gin`), where
     `gin/cnn.gin` also names the built-in `cnn.gin`.
So a config anywhere may `include 'gin/base.gin'`, and `--gin_file=cnn.gin` works from any
directory, in a checkout or after `pip install`.

gin names the file and line of a mistake but suggests nothing (`No configurable matching
'my_modle'`); `parse` adds the closest known names. `framework.main` never imports
`gin.tf`: on TF >= 2.16 it imports the removed `tf.estimator`.
"""

import contextlib
import difflib
import inspect
import io
import os
import re
import urllib.parse

import gin

from framework import registry
from framework.errors import UserError

_UNKNOWN_CONFIGURABLE = re.compile(r"No configurable matching (?:reference )?'@?([\w./]+?)(?:\(\))?'")
_MISSING_BINDINGS = re.compile(r"Required bindings for `([\w.]+)` not provided in config: \[(.*)\]")
_UNKNOWN_PARAMETER = re.compile(r"Configurable '([\w.]+)' doesn't have a parameter named '(\w+)'")


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The built-in configs: framework/configs/ in an installed package (pyproject.toml maps the
# checkout's gin/ there), gin/ beside framework/ in a checkout.
BUILTIN_CONFIGS = next(
    (folder for folder in (os.path.join(_PACKAGE_DIR, "framework", "configs"),
                           os.path.join(_PACKAGE_DIR, "gin")) if os.path.isdir(folder)),
    os.path.join(_PACKAGE_DIR, "gin"))

# gin reads files through registered readers. Paths carrying this mark were resolved here;
# the reader below opens them with their own includes resolved in turn, so gin's own
# lookup (current directory first) never sees a relative include. The resolved path is
# quoted into one name inside the `framework` package folder: gin's package-resource reader,
# consulted before ours, then finds no such file instead of logging an error.
_RESOLVED = "framework/resolved-gin-file:"
_INCLUDE = re.compile(r"""^([ \t]*include[ \t]+)(?:'([^'\n]*)'|"([^"\n]*)")""", re.MULTILINE)


def find_gin_file(name: str, including_dir: str | None = None) -> str | None:
    """The absolute path of gin file `name`, looked up as the module docstring says, or
    None when there is no such file."""
    if os.path.isabs(name):
        return name if os.path.isfile(name) else None
    candidates = [os.path.join(including_dir, name)] if including_dir else []
    candidates += [os.path.abspath(name), os.path.join(BUILTIN_CONFIGS, name)]
    if name.startswith("gin/"):
        candidates.append(os.path.join(BUILTIN_CONFIGS, name[len("gin/"):]))
    return next((os.path.abspath(c) for c in candidates if os.path.isfile(c)), None)


def _mark_resolved(path: str) -> str:
    return _RESOLVED + urllib.parse.quote(path, safe="")


def _is_resolved(path: str) -> bool:
    return path.startswith(_RESOLVED)


def _unmark(text: str) -> str:
    """`text` with marked paths shown as the paths they stand for."""
    return re.sub(re.escape(_RESOLVED) + r"([^'\"\s]+)",
                  lambda match: urllib.parse.unquote(match.group(1)), text)


@contextlib.contextmanager
def _read_resolved(path: str):
    """A resolved gin file, its include lines pointing at resolved files in turn."""
    filename = _unmark(path)
    with open(filename, encoding="utf-8") as file:
        text = file.read()

    def resolve(match: re.Match) -> str:
        name = match.group(2) if match.group(2) is not None else match.group(3)
        found = find_gin_file(name, os.path.dirname(filename))
        if found is None:
            line = text.count("\n", 0, match.start()) + 1
            raise UserError(
                f"{filename}, line {line}: include '{name}' names no file. Looked relative "
                f"to {os.path.dirname(filename)}, in the current directory {os.getcwd()} and "
                f"among the built-in configs ({', '.join(builtin_configs())}). Fix the path.")
        return match.group(1) + repr(_mark_resolved(found))

    stream = io.StringIO(_INCLUDE.sub(resolve, text))
    stream.name = filename  # gin names this file in its error messages
    yield stream


gin.config.register_file_reader(_read_resolved, _is_resolved)


def builtin_configs() -> list[str]:
    """The names of the built-in configs, e.g. ['base.gin', 'cnn.gin', ...]."""
    return sorted(f for f in os.listdir(BUILTIN_CONFIGS) if f.endswith(".gin"))


def parse(gin_files: list[str], bindings: list[str]) -> None:
    """Parses the files then the bindings into gin's global config; raises UserError.

    A file that cannot be read or parsed, whatever the mistake in it, is one UserError
    naming the file (and line, where gin knows it)."""
    resolved = []
    for path in gin_files:
        found = find_gin_file(path)
        if found is None:
            near = _nearby_gin_files(path)
            raise UserError(
                f"Gin file '{path}' does not exist here or among the built-in configs."
                + (f" Did you mean {', '.join(near)}?" if near else ""))
        resolved.append(_mark_resolved(found))
    try:
        gin.parse_config_files_and_bindings(resolved, bindings, finalize_config=False)
    except UserError:
        raise
    except UnicodeDecodeError as error:
        raise UserError(f"A gin file is not UTF-8 text ({error}). Fix: save it as UTF-8."
                        ) from error
    except Exception as error:  # pylint: disable=broad-except  (gin's parser raises many kinds)
        raise UserError(explain(error)) from error


def explain(error: Exception) -> str:
    """gin's message (which names file and line), plus the closest known names."""
    if isinstance(error, SyntaxError) and error.filename:
        # str() of a SyntaxError names only the file's base name and not the line.
        pointer = f"\n    {' ' * max((error.offset or 1) - 1, 0)}^" if error.offset else ""
        return (f"{_unmark(error.filename)}, line {error.lineno}: {error.msg}\n"
                f"    {(error.text or '').rstrip()}{pointer}\n"
                "This gin file cannot be parsed. Fix that line; bindings look like "
                "`Experiment.batch_size = 64`.")
    message = _unmark(str(error).strip())
    if isinstance(error, ImportError):
        return (f"{message}\nA gin `import` line names a module that cannot be imported. "
                "Fix: install the plugin package or put its folder on PYTHONPATH.")
    unknown = _UNKNOWN_CONFIGURABLE.search(message)
    if unknown:
        return message + "\n" + _suggest_configurable(unknown.group(1).split("/")[-1])
    missing = _MISSING_BINDINGS.search(message)
    if missing:
        configurable, names = missing.group(1), re.findall(r"'(\w+)'", missing.group(2))
        return (f"{configurable} needs {', '.join(f'{configurable}.{n}' for n in names)}, which "
                "the config does not set. Fix: bind them (e.g. `Experiment.model = @models.cnn`)"
                ", or run a config that does (base.gin and classification.gin are shared "
                "settings for other configs to include, not experiments).")
    parameter = _UNKNOWN_PARAMETER.search(message)
    if parameter:
        return message + "\n" + _suggest_parameter(*parameter.groups())
    if "\n  In file" in message:
        return (f"{message}\nThis gin file cannot be parsed. Fix the line named above; "
                "bindings look like `Experiment.batch_size = 64`.")
    return message


def _suggest_configurable(name: str) -> str:
    """'Did you mean' among plugins of the same kind (all plugins if the kind is unknown)."""
    module, _, short = name.rpartition(".")
    kind = next((k for k, gin_module in registry.KINDS.items() if gin_module == module), None)
    kinds = [kind] if kind else list(registry.KINDS)
    by_short_name = {p.name: p.gin_name for k in kinds for p in registry.plugins(k).values()}
    if not kind:  # the framework's own configurables
        by_short_name.update(Experiment="Experiment", Monitoring="Monitoring", Head="Head")
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
    """Files close to a mistyped name: in its folder, else among the built-in configs."""
    folder = os.path.dirname(path)
    if folder and os.path.isdir(folder):
        candidates = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".gin")]
        return difflib.get_close_matches(path, candidates, n=3, cutoff=0.3) or sorted(candidates)
    names = builtin_configs()
    return difflib.get_close_matches(os.path.basename(path), names, n=3, cutoff=0.3) or names

