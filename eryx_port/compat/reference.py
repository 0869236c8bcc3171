# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.reference`` with NumPy in and out (the port: :mod:`eryx_port.reference`)."""

from ._bridge import export
from ._optional import port_module

__all__ = export(globals(), port_module("reference"), ["structure_factors", "diffuse_covmat"], "eryx.reference")
