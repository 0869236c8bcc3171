# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.scatter`` calls on :mod:`eryx_port.scatter`, and their gradchecks."""

from __future__ import annotations

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


@parity("eryx.scatter.compute_form_factors", port="eryx_port.scatter.compute_form_factors")
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: scatter.compute_form_factors(a["q_grid"], a["ff_a"], a["ff_b"], a["ff_c"]))


@parity("eryx.scatter.structure_factors_batch", port="eryx_port.scatter.structure_factors_batch")
def _(call):
    return recorded_outcome(
        call, lambda: scatter.structure_factors_batch(*_atoms(call.args), **_sf_kwargs(call.args, False))
    )


@parity("eryx.scatter.structure_factors", port="eryx_port.scatter.structure_factors")
def _(call):
    return recorded_outcome(call, lambda: scatter.structure_factors(*_atoms(call.args), **_sf_kwargs(call.args, True)))


# ---------------------------------------------------------------- gradchecks on shrunk inputs

N_Q, N_ATOMS, N_COMPONENTS = 6, 5, 3


def _small(call, name: str) -> tuple[dict, dict]:
    """The recorded inputs cut to a few q-points and atoms as float64 tensors, ``name`` requiring grad."""
    a = call.args
    n_atoms = min(N_ATOMS, len(a["ff_c"]))
    t = {
        "q_grid": torch.as_tensor(a["q_grid"][:N_Q], dtype=torch.float64),
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
