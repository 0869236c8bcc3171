"""Parity adapters: how each recorded NumPy call is replayed on the port.

Importing this package registers every entry in :data:`trace_tools.registry.REGISTRY`,
one module per NumPy module.
"""

from . import map_utils, models, pdb, scatter  # noqa: F401  (imported for their registrations)
from . import base, reference, stats  # noqa: F401  (eryx.base, eryx.reference, eryx.stats)
