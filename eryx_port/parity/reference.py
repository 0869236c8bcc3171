# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.reference`` calls on :mod:`eryx_port.reference`, and their gradchecks.

Tolerance: eryx's reference formulas take each form factor from gemmi's
``Element.it92.calculate_sf``, which evaluates the IT92 sum in single precision (measured 9e-8
relative to the float64 sum); the port evaluates the same coefficients in float64, as
``eryx.scatter`` and ``eryx_port.scatter`` do. Everything else agrees to round-off (with gemmi's
values substituted the recorded structure factors are matched to 2.5e-16), so the floor is 1e-6
of each array's largest value, about ten times the single-precision error propagated through
the sums. tests/test_reference.py checks the port against float64 double loops at 1e-12.
"""

from __future__ import annotations

import numpy as np
import torch

from eryx_port import reference
from trace_tools.registry import gradcheck, parity

from .outcome import recorded_outcome

_FLOOR = 1e-6
_REASON = ("eryx.reference evaluates form factors with gemmi's single-precision IT92 calculate_sf (9e-8 relative); "
           "the port uses float64 IT92 sums like eryx.scatter")


@parity("eryx.reference.structure_factors", port="eryx_port.reference.structure_factors", floor=_FLOOR, reason=_REASON)
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: reference.structure_factors(a["q_grid"], a["xyz"], a["elements"], U=a.get("U")))


@parity("eryx.reference.diffuse_covmat", port="eryx_port.reference.diffuse_covmat", floor=_FLOOR, reason=_REASON)
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: reference.diffuse_covmat(a["q_grid"], a["xyz"], a["elements"], a["V"]))


_NQ, _NA = 4, 3


def _small(call):
    a = call.args
    q = torch.as_tensor(np.array(a["q_grid"], dtype=np.float64)[:_NQ] + np.array([0.031, -0.047, 0.023]))
    xyz = torch.as_tensor(np.array(a["xyz"], dtype=np.float64)[:_NA])
    return a, q, xyz, list(a["elements"])[:_NA]


@gradcheck("eryx.reference.structure_factors", inputs=("q_grid", "xyz", "U"))
def _(call, name):
    a, q, xyz, el = _small(call)
    U = a.get("U")
    U = torch.full((_NA,), 0.2, dtype=torch.float64) if U is None else torch.as_tensor(np.array(U, dtype=np.float64)[:_NA])
    values = {"q_grid": q, "xyz": xyz, "U": U}

    def fn(x):
        v = {**values, name: x}
        return reference.structure_factors(v["q_grid"], v["xyz"], el, U=v["U"])

    return fn, (values[name].clone().requires_grad_(True),)


@gradcheck("eryx.reference.diffuse_covmat", inputs=("xyz", "V"))
def _(call, name):
    a, q, xyz, el = _small(call)
    V = torch.as_tensor(np.array(a["V"], dtype=np.float64)[:_NA, :_NA])
    values = {"xyz": xyz, "V": V}

    def fn(x):
        v = {**values, name: x}
        return reference.diffuse_covmat(q, v["xyz"], el, v["V"])

    return fn, (values[name].clone().requires_grad_(True),)
