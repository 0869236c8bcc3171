# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx.map_utils`` with NumPy in and out (the port: :mod:`eryx_port.map_utils`)."""

from .. import map_utils as _port
from ._bridge import export

__all__ = export(globals(), _port, [
    "generate_grid", "get_symmetry_equivalents", "get_ravel_indices", "cos_sq", "sin_sq", "compute_resolution",
    "get_hkl_extents", "expand_sym_ops", "compute_multiplicity", "parse_asu_condition", "get_asu_mask",
    "get_resolution_mask", "get_dq_map", "get_centered_sampling", "resize_map",
], "eryx.map_utils")
