# SPDX-License-Identifier: GPL-2.0-or-later
"""eryx's NumPy-facing API on top of the torch port: existing eryx code runs unchanged.

Two ways in::

    import eryx_port.compat as eryx          # eryx.models.OnePhonon(...), eryx.map_utils.generate_grid(...)

    import eryx_port.compat
    eryx_port.compat.install()               # then `import eryx`, `from eryx.models import *` ... use the port

Arguments and results are NumPy arrays (float64 on the CPU unless the inputs are float32); attributes
that eryx exposes as arrays are arrays, gemmi objects stay gemmi objects. Everything is computed by
the torch implementation (:mod:`eryx_port`): use that API directly for gradients, the GPU or float32.
"""

from __future__ import annotations

import sys

from . import base, map_utils, models, pdb, reference, scatter, stats

MODULES = ("base", "map_utils", "models", "pdb", "reference", "scatter", "stats")
__all__ = [*MODULES, "install", "uninstall"]


def install() -> None:
    """Make ``import eryx`` and ``import eryx.<module>`` give this facade (for code that imports eryx)."""
    sys.modules["eryx"] = sys.modules[__name__]
    for name in MODULES:
        sys.modules[f"eryx.{name}"] = sys.modules[f"{__name__}.{name}"]


def uninstall() -> None:
    """Undo :func:`install` (only the entries it made)."""
    for key in ["eryx", *(f"eryx.{name}" for name in MODULES)]:
        module = sys.modules.get(key)
        if module is not None and module.__name__.startswith(__name__):
            del sys.modules[key]
