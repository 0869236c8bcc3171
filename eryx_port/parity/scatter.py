# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.scatter`` calls on :mod:`eryx_port.scatter`, and their gradchecks.

Form factors have two code paths in the port: atoms sharing coefficients are evaluated once
(``torch.unique``) unless a coefficient requires grad. Every call is therefore replayed twice,
with plain coefficients and with coefficients that require grad, and both outputs are compared
with eryx's.
"""

from __future__ import annotations

import numpy as np
import torch

from eryx_port import scatter
from trace_tools.registry import gradcheck, parity

from .outcome import recorded_outcome

_SF_OPTIONS = ("U", "compute_qF", "project_on_components", "sum_over_atoms")


def _sf_kwargs(args: dict, with_batching: bool) -> dict:
    kwargs = {name: args[name] for name in _SF_OPTIONS if name in args}
    if with_batching:
        kwargs.update({name: args[name] for name in ("batch_size", "n_processes") if name in args})
    return kwargs


def _atoms(args: dict) -> tuple:
    return tuple(args[name] for name in ("q_grid", "xyz", "ff_a", "ff_b", "ff_c"))


def _coefficients_requiring_grad(args: dict) -> dict:
    """The call's arguments with ff_a, ff_b, ff_c as float64 tensors that require grad (the port's gradient path)."""
    out = dict(args)
    for name in ("ff_a", "ff_b", "ff_c"):
        out[name] = torch.tensor(np.array(args[name], dtype=np.float64), requires_grad=True)
    return out


def _both_paths(call, replay) -> tuple[dict, dict]:
    """``replay(args)`` on the recorded arguments and on coefficients requiring grad, each against eryx."""
    plain, grad = (
        recorded_outcome(call, lambda args=args: replay(args))
        for args in (call.args, _coefficients_requiring_grad(call.args))
    )
    return {"plain": plain[0], "grad path": grad[0]}, {"plain": plain[1], "grad path": grad[1]}


@parity("eryx.scatter.compute_form_factors", port="eryx_port.scatter.compute_form_factors")
def _(call):
    return _both_paths(call, lambda a: scatter.compute_form_factors(a["q_grid"], a["ff_a"], a["ff_b"], a["ff_c"]))


@parity("eryx.scatter.structure_factors_batch", port="eryx_port.scatter.structure_factors_batch")
def _(call):
    return _both_paths(call, lambda a: scatter.structure_factors_batch(*_atoms(a), **_sf_kwargs(a, False)))


@parity("eryx.scatter.structure_factors", port="eryx_port.scatter.structure_factors")
def _(call):
    return _both_paths(call, lambda a: scatter.structure_factors(*_atoms(a), **_sf_kwargs(a, True)))


# ---------------------------------------------------------------- gradchecks on shrunk inputs

N_Q, N_ATOMS, N_COMPONENTS = 8, 5, 3
# Added to recorded q-points that lie on an axis or plane: a zero q component zeroes the
# derivative along it, which gradcheck could not see wrong.
_OFF_AXIS = np.array([0.031, -0.047, 0.023])


def off_axis_q(q_grid, n: int = N_Q) -> np.ndarray:
    """``n`` recorded q-points with every component nonzero (shifted off the axes where needed)."""
    q = np.asarray(q_grid, dtype=np.float64).reshape(-1, 3)
    # recorded grids may hold fewer than n points, or few off the axes: add shifted copies
    q = np.concatenate([q + j * _OFF_AXIS for j in range(n + 1)])
    return q[(np.abs(q) > 1e-3).all(axis=1)][:n]


def _small(call, name: str) -> tuple[dict, dict]:
    """The recorded inputs cut to a few off-axis q-points and atoms as float64 tensors, ``name`` requiring grad."""
    a = call.args
    n_atoms = min(N_ATOMS, len(a["ff_c"]))
    t = {
        "q_grid": torch.as_tensor(off_axis_q(a["q_grid"])),
        "ff_a": torch.as_tensor(a["ff_a"][:n_atoms], dtype=torch.float64),
        "ff_b": torch.as_tensor(a["ff_b"][:n_atoms], dtype=torch.float64),
        "ff_c": torch.as_tensor(a["ff_c"][:n_atoms], dtype=torch.float64),
    }
    if "xyz" in a:
        t["xyz"] = torch.as_tensor(a["xyz"][:n_atoms], dtype=torch.float64)
    options = {}
    if "U" in a or name == "U":
        U = a.get("U")
        if U is None or torch.as_tensor(U).ndim == 0:
            # no (or one shared) recorded U: a small positive U per atom, so the U path is exercised
            base = 0.2 if U is None else float(U)
            U = base + 0.05 * torch.arange(n_atoms, dtype=torch.float64)
        else:
            U = torch.as_tensor(U[:n_atoms], dtype=torch.float64)
        t["U"] = U
    qf = bool(a.get("compute_qF", False))
    proj = a.get("project_on_components")
    if proj is not None:
        rows = (3 if qf else 1) * n_atoms
        proj = torch.as_tensor(proj, dtype=torch.float64)
        options["project_on_components"] = proj[:rows, :N_COMPONENTS] if proj.ndim == 2 else proj[:rows]
    for key in ("compute_qF", "sum_over_atoms"):
        if key in a:
            options[key] = a[key]
    t[name] = t[name].detach().clone().requires_grad_(True)
    return t, options


def _sf_builder(port):
    def build(call, name):
        t, options = _small(call, name)
        fixed = {k: v for k, v in t.items() if k != name}

        def fn(x):
            return port(**{**fixed, name: x}, **options)

        return fn, (t[name],)

    return build


gradcheck("eryx.scatter.structure_factors", inputs=("xyz", "U", "q_grid"))(_sf_builder(scatter.structure_factors))
gradcheck("eryx.scatter.structure_factors_batch", inputs=("xyz", "U", "q_grid"))(
    _sf_builder(scatter.structure_factors_batch)
)


@gradcheck("eryx.scatter.compute_form_factors", inputs=("q_grid", "ff_a", "ff_b", "ff_c"))
def _(call, name):
    t, _ = _small(call, name)
    fixed = {k: v for k, v in t.items() if k != name and k in ("q_grid", "ff_a", "ff_b", "ff_c")}

    def fn(x):
        return scatter.compute_form_factors(**{**fixed, name: x})

    return fn, (t[name],)
