"""Record calls of a NumPy package, store them as safe traces, replay them against a port.

This package must stay importable without torch: recordings run in the NumPy
reference's own virtual environment.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``from trace_tools import debug``: imported on first use, so ``import trace_tools`` stays light.
    # (The module is trace_tools.debug_calls: a submodule named ``debug`` would shadow the decorator.)
    if name == "debug":
        from .debug_calls import debug

        return debug
    raise AttributeError(f"module 'trace_tools' has no attribute {name!r}")
