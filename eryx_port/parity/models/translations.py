# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.RigidBodyTranslations`` calls on
:class:`eryx_port.models.RigidBodyTranslations`, and the gradchecks of its sigmas.

Each scenario builds one model, so a method call is replayed on a copy of the port object built
from that scenario's recorded constructor call (the port's own transform: nothing of eryx's
state is lent to it except the scan record a call read, ``scan_*`` and ``opt_map``, which
earlier scans of the scenario left). A call is compared on its result and on every attribute
it set. ``plot_scan`` is compared on what it drew: the recorded scan, on a fresh Agg figure,
and whether it saved a file.
"""

from __future__ import annotations

import copy
import functools
import os
import tempfile

import numpy as np
import torch

from eryx_port.models import RigidBodyTranslations
from trace_tools.registry import gradcheck, parity

from ._recorded import init_args, structure_paths

_NAME = "eryx.models.RigidBodyTranslations"
_SCAN_LISTS = ("scan_sigmas", "scan_gammas", "scan_ccs")


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> RigidBodyTranslations:
    return RigidBodyTranslations(**init_args(f"{_NAME}.__init__", scenario))


def with_read_state(port, call):
    """A copy of ``port`` carrying the scan record the recorded call read (lists of tensors, opt_map)."""
    port = copy.copy(port)
    for name in _SCAN_LISTS:
        if hasattr(port, name):
            setattr(port, name, list(getattr(port, name)))
    for name, value in call.attrs_read.items():
        if name in _SCAN_LISTS:
            setattr(port, name, [torch.as_tensor(np.array(v, dtype=np.float64)) for v in value])
        elif name == "opt_map":
            port.opt_map = None if value is None else torch.as_tensor(np.array(value, dtype=np.float64))
    return port


def _value(x):
    if isinstance(x, list):
        return [_value(v) for v in x]
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def written(port, call, skip=()) -> tuple[dict, dict]:
    """(port, eryx) values of every attribute the recorded call set."""
    names = [k for k in call.attrs_written if k not in skip]
    return {k: _value(getattr(port, k)) for k in names}, {k: call.attrs_written[k] for k in names}


def method_outcome(port, call, run) -> tuple[dict, dict]:
    """Result and attributes set, against eryx's."""
    result = run(port)
    actual, expected = written(port, call)
    return {"result": result, **actual}, {"result": call.result, **expected}


def plot_outcome(port, call) -> tuple[dict, dict]:
    """What ``plot_scan`` drew and saved, on a fresh Agg figure, against the recorded scan it plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = call.args.get("output")
    with tempfile.TemporaryDirectory() as tmp:
        path = None if output is None else os.path.join(tmp, os.path.basename(str(output)) or "scan.png")
        fig = plt.figure()
        try:
            result = port.plot_scan(output=path)
            drawn = _drawn(fig)
        finally:
            plt.close(fig)
        saved = path is not None and os.path.getsize(path) > 0
    return ({"result": result, "drawn": drawn, "saved": saved},
            {"result": None, "drawn": _expected_drawing(call.attrs_read), "saved": output is not None})


def _drawn(fig) -> dict:
    ax = fig.axes[0]
    if ax.collections and ax.lines:  # CC against sigma: scatter points and a line through them
        return {"points": np.asarray(ax.collections[0].get_offsets(), dtype=np.float64),
                "line": np.asarray(ax.lines[0].get_xydata(), dtype=np.float64)}
    # a heat map over (sigma, gamma): its extents
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    return {"extent": np.array([x0, x1, y0, y1]), "colorbar": len(fig.axes) == 2}


def _expected_drawing(read: dict) -> dict:
    sigmas = np.array(read["scan_sigmas"], dtype=np.float64)
    ccs = np.array(read["scan_ccs"], dtype=np.float64)
    if "scan_gammas" not in read:
        xy = np.stack([sigmas, ccs], axis=1)
        return {"points": xy, "line": xy}
    gammas = np.array(read["scan_gammas"], dtype=np.float64)
    return {"extent": np.array([sigmas.min(), sigmas.max(), gammas.min(), gammas.max()]), "colorbar": True}


@parity(f"{_NAME}.__init__", port="eryx_port.models.RigidBodyTranslations.__init__")
def _(call):
    return written(_built(call.scenario), call)


@parity(f"{_NAME}._setup", port="eryx_port.models.RigidBodyTranslations._setup")
def _(call):
    port = copy.copy(_built(call.scenario))
    a = structure_paths(call.args)
    return method_outcome(port, call, lambda p: p._setup(**a))


@parity(f"{_NAME}.apply_disorder", port="eryx_port.models.RigidBodyTranslations.apply_disorder")
def _(call):
    return _built(call.scenario).apply_disorder(call.args["sigmas"]), call.result


@parity(f"{_NAME}.optimize", port="eryx_port.models.RigidBodyTranslations.optimize")
def _(call):
    port = with_read_state(_built(call.scenario), call)
    return method_outcome(port, call, lambda p: p.optimize(**call.args))


@parity(f"{_NAME}.plot_scan", port="eryx_port.models.RigidBodyTranslations.plot_scan")
def _(call):
    return plot_outcome(with_read_state(_built(call.scenario), call), call)


# ---------------------------------------------------------------- gradchecks

# sigmas at which the gradients are checked: two isotropic values, two per-axis triples (Angstrom)
SIGMA = (0.45, 0.8)
SIGMAS_XYZ = ((0.3, 0.55, 0.7), (0.65, 0.4, 0.5))


def projected(maps, keep: torch.Tensor, scale: torch.Tensor, n: int = 3):
    """``maps`` (…, n_points) at the kept points, divided by ``scale`` and reduced to ``n`` fixed
    random projections (gradcheck needs one backward pass per output value)."""
    proj = torch.rand(n, int(keep.sum()), generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(*x):
        return proj @ (maps(*x)[keep] / scale)

    return fn


def sigma_start(name: str) -> torch.Tensor:
    value = SIGMA if name == "sigma" else SIGMAS_XYZ
    return torch.tensor(value, dtype=torch.float64, requires_grad=True)


@gradcheck(f"{_NAME}.apply_disorder", inputs=("sigma", "sigmas_xyz"))
def _(call, name):
    """The maps of the scenario's model as functions of isotropic sigmas (2,) or per-axis sigmas (2, 3)."""
    port = _built(call.scenario)
    x0 = sigma_start(name)
    ref = port.apply_disorder(x0.detach())
    keep = ~ref.isnan()
    return projected(port.apply_disorder, keep, ref[keep].abs().max()), (x0,)
