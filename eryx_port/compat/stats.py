# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.stats`` with NumPy in and out (the port: :mod:`eryx_port.stats`)."""

from .. import stats as _port
from ._bridge import export

__all__ = export(globals(), _port, ["compute_cc", "compute_cc_by_shell", "compute_cc_by_dq"],
                 "eryx.stats")
