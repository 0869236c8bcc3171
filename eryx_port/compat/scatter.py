# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.scatter`` with NumPy in and out (the port: :mod:`eryx_port.scatter`)."""

from .. import scatter as _port
from ._bridge import export

__all__ = export(globals(), _port, ["compute_form_factors", "structure_factors_batch", "structure_factors"],
                 "eryx.scatter")
