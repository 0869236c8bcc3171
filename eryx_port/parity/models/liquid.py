# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.LiquidLikeMotions`` calls on :class:`eryx_port.models.LiquidLikeMotions`,
and the gradchecks of sigma, per-axis sigmas and gamma.

As for the translations (:mod:`.translations`): one model per scenario, methods replayed on a copy
of the port object built from the scenario's constructor call, carrying only the scan record the
call read; results and attributes set are compared. eryx convolves with scipy's FFTs, the port
with torch's: their rounding differs by a few eps of the largest value, within the default floor.
"""

from __future__ import annotations

import copy
import functools

import torch

from eryx_port.models import LiquidLikeMotions
from trace_tools.registry import gradcheck, parity

from ._recorded import init_args, structure_paths
from .translations import method_outcome, plot_outcome, projected, sigma_start, with_read_state, written

_NAME = "eryx.models.LiquidLikeMotions"
GAMMA = (2.5, 6.0)  # correlation lengths at which the gradients are checked (Angstrom)


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> LiquidLikeMotions:
    return LiquidLikeMotions(**init_args(f"{_NAME}.__init__", scenario))


@parity(f"{_NAME}.__init__", port="eryx_port.models.LiquidLikeMotions.__init__")
def _(call):
    return written(_built(call.scenario), call)


@parity(f"{_NAME}._setup", port="eryx_port.models.LiquidLikeMotions._setup")
def _(call):
    port = copy.copy(_built(call.scenario))
    a = structure_paths(call.args)
    return method_outcome(port, call, lambda p: p._setup(**a))


@parity(f"{_NAME}.fft_convolve", port="eryx_port.models.LiquidLikeMotions.fft_convolve")
def _(call):
    return _built(call.scenario).fft_convolve(call.args["transform"], call.args["kernel"]), call.result


@parity(f"{_NAME}.apply_disorder", port="eryx_port.models.LiquidLikeMotions.apply_disorder")
def _(call):
    return _built(call.scenario).apply_disorder(call.args["sigmas"], call.args["gammas"]), call.result


@parity(f"{_NAME}.optimize", port="eryx_port.models.LiquidLikeMotions.optimize")
def _(call):
    port = with_read_state(_built(call.scenario), call)
    return method_outcome(port, call, lambda p: p.optimize(**call.args))


@parity(f"{_NAME}.plot_scan", port="eryx_port.models.LiquidLikeMotions.plot_scan")
def _(call):
    return plot_outcome(with_read_state(_built(call.scenario), call), call)


@gradcheck(f"{_NAME}.apply_disorder", inputs=("sigma", "sigmas_xyz", "gamma"))
def _(call, name):
    """The maps of the scenario's model as functions of isotropic sigmas (2,), per-axis sigmas (2, 3)
    or gammas (2,), the other parameter held."""
    port = _built(call.scenario)
    if name == "gamma":
        x0 = torch.tensor(GAMMA, dtype=torch.float64, requires_grad=True)
        sigmas = torch.tensor(0.5, dtype=torch.float64)
        maps = lambda g: port.apply_disorder(sigmas, g)  # noqa: E731
    else:
        x0 = sigma_start(name)
        gammas = torch.tensor(GAMMA, dtype=torch.float64)
        maps = lambda s: port.apply_disorder(s, gammas)  # noqa: E731
    ref = maps(x0.detach())
    keep = ~ref.isnan()
    return projected(maps, keep, ref[keep].abs().max()), (x0,)
