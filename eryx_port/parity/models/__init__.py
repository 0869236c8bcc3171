"""Parity adapters for ``eryx.models``, one module per model family as in :mod:`eryx_port.models`."""

from . import onephonon  # noqa: F401  (imported for its registrations)
from . import deformable  # noqa: F401
from . import brillouin  # noqa: F401
from . import translations, liquid  # noqa: F401,E402
from . import rotations, ensemble  # noqa: F401,E402
