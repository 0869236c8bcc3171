# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.base`` with NumPy in and out (the port: :mod:`eryx_port.base`).

eryx's module also hands out what it imports (``AtomicModel``, every map helper, ``structure_factors``),
and code written against it may use them, so they are here too.
"""

from .. import base as _port
from ._bridge import export
from .map_utils import *  # noqa: F401,F403  (eryx.base re-exports them)
from .map_utils import __all__ as _map_utils_names
from .pdb import AtomicModel  # noqa: F401
from .scatter import structure_factors  # noqa: F401

_own = export(globals(), _port, [
    "natural_sort", "guinier_reconstruct", "compute_crystal_transform", "compute_molecular_transform",
    "incoherent_sum_real", "incoherent_sum_reciprocal",
], "eryx.base")
__all__ = _own + list(_map_utils_names) + ["AtomicModel", "structure_factors"]
