# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.RigidBodyRotations`` calls on :class:`eryx_port.models.RigidBodyRotations`.

Random draws. eryx draws its rotations from NumPy's global generator; the scenarios
(traces/scenarios_rotations.py) seed it with the scenario's number k (``np.random.seed(k)`` for
``5zck-s30``) right before each recorded drawing call, so every recorded call starts on that
stream. The adapter takes the same stream from ``np.random.RandomState(k)`` in eryx's order
(:func:`eryx_port.models.rotations.numpy_legacy_draws`) and hands it to the port as ``draws``:
the port computes the same rotations, exactly.

Maps are checked point by point on the scale of their incoherent sum ``mean_r |A_r|^2``, where
``<|A|^2> - |<A>|^2`` cancels (see :mod:`eryx_port.parity.models.ensemble`).
"""

from __future__ import annotations

import copy
import functools
import tempfile

import numpy as np
import torch

from eryx_port.models.rotations import RigidBodyRotations, RotationDraws, numpy_legacy_draws
from trace_tools.registry import gradcheck, parity

from .ensemble import _np, compare_written, init_args, map_tolerance

_INIT = "eryx.models.RigidBodyRotations.__init__"


def scenario_seed(scenario: str) -> int:
    """The seed the scenario gives NumPy before each drawing call: its number (``5zck-s30`` -> 30)."""
    return int(scenario.rsplit("-s", 1)[1])


def eryx_draws(scenario: str, shape) -> RotationDraws:
    """The draws eryx takes after ``np.random.seed(scenario_seed(scenario))``, batch shape ``shape``."""
    return numpy_legacy_draws(np.random.RandomState(scenario_seed(scenario)), shape)


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> RigidBodyRotations:
    return RigidBodyRotations(**init_args(_INIT, scenario))


def _port(call) -> RigidBodyRotations:
    return copy.copy(_built(call.scenario))


@parity(_INIT, port="eryx_port.models.RigidBodyRotations.__init__")
def _(call):
    return compare_written(_port(call), call)


@parity("eryx.models.RigidBodyRotations._setup", port="eryx_port.models.RigidBodyRotations._setup")
def _(call):
    port = _port(call)
    a = call.args
    port._setup(init_args(_INIT, call.scenario)["pdb_path"], a["expand_p1"], a["res_limit"])
    return compare_written(port, call)


@parity("eryx.models.RigidBodyRotations.generate_rotations_around_axis",
        port="eryx_port.models.RigidBodyRotations.generate_rotations_around_axis")
def _(call):
    a = call.args
    draws = eryx_draws(call.scenario, (a["num_rot"],))
    return RigidBodyRotations.generate_rotations_around_axis(a["sigma"], a["num_rot"], a["axis"], draws=draws), call.result


def _draws_for(port, call, sigmas, num_rot) -> tuple[torch.Tensor, RotationDraws]:
    s = port._sigmas(sigmas)
    return s, eryx_draws(call.scenario, (s.shape[0], port.model.n_asu, num_rot))


@parity("eryx.models.RigidBodyRotations.apply_disorder", port="eryx_port.models.RigidBodyRotations.apply_disorder")
def _(call):
    port = _port(call)
    a = call.args
    num_rot = 1 if a["ensemble_dir"] is not None else a["num_rot"]
    s, draws = _draws_for(port, call, a["sigmas"], num_rot)
    with tempfile.TemporaryDirectory() as folder:
        I = port.apply_disorder(a["sigmas"], a["num_rot"], folder if a["ensemble_dir"] is not None else None, draws=draws)
    incoherent = port._maps(s, num_rot, None, draws, incoherent_only=True).reshape(s.shape[0], -1)
    return _np(I), map_tolerance(call.result, incoherent)


@parity("eryx.models.RigidBodyRotations.optimize", port="eryx_port.models.RigidBodyRotations.optimize")
def _(call):
    port = _port(call)
    a = call.args
    n_asu = port.model.n_asu
    draws = eryx_draws(call.scenario, (a["n_search"], n_asu, a["num_rot"]))
    ccs, sigmas = port.optimize(a["target"], a["sigma_min"], a["sigma_max"], a["n_search"], a["num_rot"], draws=draws)
    actual, expected = compare_written(port, call)
    if "opt_map" in expected:
        i = int(np.argmin(np.abs(_np(sigmas) - port.opt_sigma)))
        incoherent = port._maps(sigmas[i : i + 1], a["num_rot"], None,
                                RotationDraws(draws.quaternions[i : i + 1], draws.angles[i : i + 1]),
                                incoherent_only=True)
        expected["opt_map"] = map_tolerance(expected["opt_map"], incoherent)
    return {"result": (_np(ccs), _np(sigmas)), **actual}, {"result": call.result, **expected}


# ---------------------------------------------------------------- gradchecks (sigma through fixed draws)


@gradcheck("eryx.models.RigidBodyRotations.generate_rotations_around_axis", inputs=("sigma",))
def _(call, name):
    a = call.args
    draws = eryx_draws(call.scenario, (a["num_rot"],))

    def fn(sigma):
        return RigidBodyRotations.generate_rotations_around_axis(sigma, a["num_rot"], draws=draws)

    return fn, (torch.tensor(float(a["sigma"]), dtype=torch.float64, requires_grad=True),)


@gradcheck("eryx.models.RigidBodyRotations.apply_disorder", inputs=("sigmas",))
def _(call, name):
    """The map as a function of two sigmas, with eryx's draws for 3 rotations, on a 3 x 3 x 2 grid.

    Divided by its largest value and reduced to 3 fixed random projections (one backward pass each).
    """
    args = init_args(_INIT, call.scenario)
    args.update(hsampling=(-1, 1, 1), ksampling=(-1, 1, 1), lsampling=(0, 1, 1), res_limit=0.0)
    port = RigidBodyRotations(**args)
    sig0 = torch.tensor([1.5, 4.0], dtype=torch.float64)
    draws = eryx_draws(call.scenario, (2, port.model.n_asu, 3))
    ref = port.apply_disorder(sig0, 3, draws=draws).detach()
    keep = ~ref.isnan()
    scale = ref[keep].abs().max()
    proj = torch.rand(3, int(keep.sum()), generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(s):
        return proj @ (port.apply_disorder(s, 3, draws=draws)[keep] / scale)

    return fn, (sig0.clone().requires_grad_(True),)
