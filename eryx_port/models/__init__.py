"""eryx's disorder models, one module per model family (eryx keeps them all in ``eryx.models``).

``from eryx_port.models import OnePhonon`` works as ``from eryx.models import OnePhonon`` does.
"""

from .onephonon import OnePhonon
from .brillouin import OnePhononBrillouin
from .deformable import NonInteractingDeformableMolecules

__all__ = ["OnePhonon", "NonInteractingDeformableMolecules", "OnePhononBrillouin"]
from .translations import RigidBodyTranslations  # noqa: E402
from .liquid import LiquidLikeMotions  # noqa: E402
__all__ += ["RigidBodyTranslations", "LiquidLikeMotions"]
from .rotations import RigidBodyRotations  # noqa: E402
from .ensemble import Ensemble  # noqa: E402

__all__ += ["RigidBodyRotations", "Ensemble"]
