"""eryx's disorder models, one module per model family (eryx keeps them all in ``eryx.models``).

``from eryx_port.models import OnePhonon`` works as ``from eryx.models import OnePhonon`` does.
"""

from .brillouin import OnePhononBrillouin
from .deformable import NonInteractingDeformableMolecules
from .ensemble import Ensemble
from .liquid import LiquidLikeMotions
from .onephonon import OnePhonon
from .rotations import RigidBodyRotations
from .translations import RigidBodyTranslations

__all__ = [
    "RigidBodyTranslations", "LiquidLikeMotions", "RigidBodyRotations", "Ensemble",
    "NonInteractingDeformableMolecules", "OnePhonon", "OnePhononBrillouin",
]
