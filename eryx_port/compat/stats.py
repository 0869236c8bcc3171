# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.stats`` with NumPy in and out (the port: :mod:`eryx_port.stats`)."""

from ._bridge import export
from ._optional import port_module

__all__ = export(globals(), port_module("stats"), ["compute_cc", "compute_cc_by_shell", "compute_cc_by_dq"],
                 "eryx.stats")
