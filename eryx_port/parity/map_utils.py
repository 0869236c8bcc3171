# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.map_utils`` calls on :mod:`eryx_port.map_utils`.

``parse_asu_condition`` returns eryx's text for ``eval``; the port returns the same text but
never evaluates it (:func:`eryx_port.map_utils.get_asu_mask` parses gemmi's condition).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

from eryx_port import map_utils
from trace_tools.registry import parity
from trace_tools.values import ObjectData

from .outcome import recorded_outcome


def _register(name: str, replay: Callable[[dict], Any]) -> None:
    parity(f"eryx.map_utils.{name}", port=f"eryx_port.map_utils.{name}")(
        lambda call: recorded_outcome(call, lambda: replay(call.args))
    )


def _model(value: Any) -> Any:
    """The model argument of compute_multiplicity: recorded as ObjectData, rebuilt with the attributes used."""
    if isinstance(value, ObjectData):
        return SimpleNamespace(**value.attrs)
    return value


_REPLAYS: dict[str, Callable[[dict], Any]] = {
    "generate_grid": lambda a: map_utils.generate_grid(
        a["A_inv"], a["hsampling"], a["ksampling"], a["lsampling"], return_hkl=a.get("return_hkl", False)
    ),
    "get_symmetry_equivalents": lambda a: map_utils.get_symmetry_equivalents(a["hkl_grid"], a["sym_ops"]),
    "get_ravel_indices": lambda a: map_utils.get_ravel_indices(a["hkl_grid_sym"], a["sampling"]),
    "cos_sq": lambda a: map_utils.cos_sq(a["angles"]),
    "sin_sq": lambda a: map_utils.sin_sq(a["angles"]),
    "compute_resolution": lambda a: map_utils.compute_resolution(a["cell"], a["hkl"]),
    "get_hkl_extents": lambda a: map_utils.get_hkl_extents(a["cell"], a["resolution"], a.get("oversampling", 1)),
    "expand_sym_ops": lambda a: map_utils.expand_sym_ops(a["sym_ops"]),
    "compute_multiplicity": lambda a: map_utils.compute_multiplicity(
        _model(a["model"]), a["hsampling"], a["ksampling"], a["lsampling"]
    ),
    "get_asu_mask": lambda a: map_utils.get_asu_mask(a["space_group"], a["hkl_grid"]),
    "get_resolution_mask": lambda a: map_utils.get_resolution_mask(a["cell"], a["hkl_grid"], a["res_limit"]),
    "get_dq_map": lambda a: map_utils.get_dq_map(a["A_inv"], a["hkl_grid"]),
    "get_centered_sampling": lambda a: map_utils.get_centered_sampling(a["map_shape"], a["sampling"]),
    "parse_asu_condition": lambda a: map_utils.parse_asu_condition(a["asu_condition"]),
    "resize_map": lambda a: map_utils.resize_map(a["new_map"], a["old_sampling"], a["new_sampling"]),
}

for _name, _replay in _REPLAYS.items():
    _register(_name, _replay)
