"""Built-in plugins. Every module below this package is imported by `registry.discover()`,
so a new built-in plugin is just a new file in the folder of its kind."""

import importlib
import pkgutil

for _module in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
    importlib.import_module(_module.name)
