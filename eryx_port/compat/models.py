# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.models`` with NumPy in and out (the port: :mod:`eryx_port.models`).

Like eryx's module it also hands out what it imports: the pdb classes, every map helper,
``structure_factors``, ``compute_cc`` and the two transforms (eryx's own tests use them after
``from eryx.models import *``).
"""

from .. import models as _port
from ._bridge import export
from .base import compute_crystal_transform, compute_molecular_transform  # noqa: F401
from .map_utils import *  # noqa: F401,F403
from .map_utils import __all__ as _map_utils_names
from .pdb import AtomicModel, Crystal, GaussianNetworkModel  # noqa: F401
from .scatter import structure_factors  # noqa: F401
from .stats import compute_cc  # noqa: F401

_own = export(globals(), _port, [
    "RigidBodyTranslations", "LiquidLikeMotions", "RigidBodyRotations", "Ensemble",
    "NonInteractingDeformableMolecules", "OnePhonon", "OnePhononBrillouin",
], "eryx.models")
__all__ = _own + list(_map_utils_names) + [
    "AtomicModel", "Crystal", "GaussianNetworkModel", "structure_factors", "compute_cc",
    "compute_molecular_transform", "compute_crystal_transform",
]
