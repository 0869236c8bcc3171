# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.pdb`` with NumPy in and out (the port: :mod:`eryx_port.pdb`, :mod:`eryx_port.gnm`)."""

from .. import pdb as _port
from ._bridge import export

__all__ = export(globals(), _port, [
    "sym_str_as_matrix", "extract_sym_ops", "extract_transformations", "get_unit_cell_axes",
    "AtomicModel", "Crystal", "GaussianNetworkModel",
], "eryx.pdb")
