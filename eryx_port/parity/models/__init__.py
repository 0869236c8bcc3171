"""Parity adapters for ``eryx.models``, one module per model family as in :mod:`eryx_port.models`."""

from . import brillouin, deformable, ensemble, liquid, onephonon, rotations, translations  # noqa: F401  (registrations)
