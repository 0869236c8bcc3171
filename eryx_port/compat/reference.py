# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.reference`` with NumPy in and out (the port: :mod:`eryx_port.reference`)."""

from .. import reference as _port
from ._bridge import export

__all__ = export(globals(), _port, ["structure_factors", "diffuse_covmat"], "eryx.reference")
