"""Parity adapters: how each recorded NumPy call is replayed on the port.

Importing this package registers every entry in :data:`trace_tools.registry.REGISTRY`.
One module per NumPy module keeps the adapters next to each other.
"""

import importlib

for _name in ("map_utils", "scatter", "pdb", "models"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a module not written yet; any other import error is a bug
        if exc.name != f"{__name__}.{_name}":
            raise
