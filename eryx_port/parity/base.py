# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.base`` calls on :mod:`eryx_port.base`, and their gradchecks.

* The transforms are replayed from the recorded structure file (``FileRef``) and samplings.
* The incoherent sums receive eryx's ``AtomicModel`` as recorded data (``ObjectData``); the replay
  hands the port the same attributes (coordinates, form-factor coefficients, cell, operators).
* ``natural_sort`` is also reached from ``guinier_reconstruct``, whose file names the recorder
  stores as file records (name and hash, the folder dropped): those calls are replayed on the
  names, which sort alike since they share one folder.
* ``guinier_reconstruct`` reads a folder that the scenario wrote (``traces/scenarios_base.py``):
  ``eryx-guinier-<seed>-<n_files>``, file ``<i>.npy`` the i-th draw of
  ``rng.normal(size=n) + 1j * rng.normal(size=n)`` from ``numpy.random.default_rng(seed)``, n the
  number of points in ``res_mask``. The replay writes the same files into a fresh folder.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from eryx_port import base
from trace_tools.registry import gradcheck, parity
from trace_tools.values import FileRef, ObjectData

from .paths import local_path as _path
from .outcome import recorded_outcome




def _t(value: Any) -> torch.Tensor:
    return torch.as_tensor(np.array(value, dtype=np.float64))


def model_from_record(record: Any) -> SimpleNamespace:
    """The attributes of a recorded eryx ``AtomicModel`` that the incoherent sums read, as tensors."""
    if not isinstance(record, ObjectData):
        return record
    a = record.attrs
    return SimpleNamespace(
        xyz=_t(a["xyz"]), ff_a=_t(a["ff_a"]), ff_b=_t(a["ff_b"]), ff_c=_t(a["ff_c"]), A_inv=_t(a["A_inv"]),
        cell=_t(a["cell"]), space_group=a["space_group"], sym_ops={int(k): _t(v) for k, v in a["sym_ops"].items()},
    )


_TRANSFORM_OPTIONS = {
    "compute_molecular_transform": ("U", "expand_p1", "expand_friedel", "res_limit", "batch_size", "n_processes"),
    "compute_crystal_transform": ("U", "expand_p1", "res_limit", "batch_size", "n_processes"),
}


def _transform(name: str, args: dict, **override):
    options = {k: args[k] for k in _TRANSFORM_OPTIONS[name] if k in args}
    options.update(override)
    fn = getattr(base, name)
    return fn(_path(args["pdb_path"]), args["hsampling"], args["ksampling"], args["lsampling"], **options)


@parity("eryx.base.compute_molecular_transform", port="eryx_port.base.compute_molecular_transform")
def _(call):
    return recorded_outcome(call, lambda: _transform("compute_molecular_transform", call.args))


@parity("eryx.base.compute_crystal_transform", port="eryx_port.base.compute_crystal_transform")
def _(call):
    return recorded_outcome(call, lambda: _transform("compute_crystal_transform", call.args))


@parity("eryx.base.incoherent_sum_real", port="eryx_port.base.incoherent_sum_real")
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: base.incoherent_sum_real(
        model_from_record(a["model"]), a["hkl_grid"], a["sampling"], U=a.get("U"), mask=a.get("mask"),
        batch_size=a.get("batch_size", 10000)))


@parity("eryx.base.incoherent_sum_reciprocal", port="eryx_port.base.incoherent_sum_reciprocal")
def _(call):
    a = call.args
    return recorded_outcome(call, lambda: base.incoherent_sum_reciprocal(
        model_from_record(a["model"]), a["hkl_grid"], a["sampling"], U=a.get("U"), batch_size=a.get("batch_size", 10000)))


def _names(values):
    return [v.name if isinstance(v, FileRef) else v for v in values]


@parity(
    "eryx.base.natural_sort", port="eryx_port.base.natural_sort",
    notes="File arguments (from guinier_reconstruct) are sorted by their names: the folder they share is not stored.",
)
def _(call):
    actual, expected = recorded_outcome(call, lambda: base.natural_sort(_names(call.args["l"])))
    return actual, (_names(expected) if call.exception is None else expected)


_ENSEMBLE = re.compile(r"eryx-guinier-(\d+)-(\d+)$")


def ensemble_folder(recorded_dir: str, n_values: int) -> str:
    """Write again the ensemble folder a scenario wrote (see this module's docstring); returns its path."""
    match = _ENSEMBLE.search(str(recorded_dir).rstrip("/"))
    if match is None:
        raise LookupError(f"ensemble folder {recorded_dir!r} is not named eryx-guinier-<seed>-<n_files>: cannot rebuild it")
    seed, n_files = int(match.group(1)), int(match.group(2))
    folder = Path(tempfile.mkdtemp(prefix="eryx-port-guinier-"))
    rng = np.random.default_rng(seed)
    for i in range(n_files):
        np.save(folder / f"{i}.npy", rng.normal(size=n_values) + 1j * rng.normal(size=n_values))
    return str(folder)


def _guinier_args(call) -> dict:
    a = call.args
    keep = np.asarray(a["res_mask"], dtype=bool)
    return {"ensemble_dir": ensemble_folder(a["ensemble_dir"], int(keep.sum())), "n_grid_points": a["n_grid_points"],
            "res_mask": keep, "n_asu": a["n_asu"], "weights": a.get("weights")}


@parity("eryx.base.guinier_reconstruct", port="eryx_port.base.guinier_reconstruct")
def _(call):
    return recorded_outcome(call, lambda: base.guinier_reconstruct(**_guinier_args(call)))


# ---------------------------------------------------------------- gradchecks

_N_OUT = 8  # map values checked per gradcheck (each needs one backward pass)
_N_ATOMS = 3  # atoms per ASU kept for the coordinate / U gradchecks of the incoherent sums


def _some_nonzero(values: torch.Tensor) -> torch.Tensor:
    flat = values.detach().reshape(-1)
    idx = torch.nonzero(torch.isfinite(flat) & (flat != 0)).reshape(-1)
    if idx.numel() == 0:
        raise ValueError("the map has no nonzero finite value to check a gradient on")
    return idx[torch.linspace(0, idx.numel() - 1, min(_N_OUT, idx.numel())).round().long()]


def _transform_grad(name: str):
    def build(call, input_name):
        u0 = torch.tensor(0.15, dtype=torch.float64)
        idx = _some_nonzero(_transform(name, call.args, U=u0)[1])

        def fn(u):
            return _transform(name, call.args, U=u)[1].reshape(-1)[idx]

        return fn, (u0.clone().requires_grad_(True),)

    return build


# U as one shared value: the recorded files have up to 1001 atoms per ASU (per-atom U and coordinates
# are checked on the incoherent sums below, on a few atoms)
gradcheck("eryx.base.compute_molecular_transform", inputs=("U",))(_transform_grad("compute_molecular_transform"))
gradcheck("eryx.base.compute_crystal_transform", inputs=("U",))(_transform_grad("compute_crystal_transform"))


def _small_model(call) -> SimpleNamespace:
    model = model_from_record(call.args["model"])
    for name in ("xyz", "ff_a", "ff_b", "ff_c"):
        setattr(model, name, getattr(model, name)[:, :_N_ATOMS])
    return model


def _sum_grad(port, with_mask: bool):
    def build(call, name):
        a = call.args
        model = _small_model(call)
        U = 0.1 + 0.05 * torch.arange(_N_ATOMS, dtype=torch.float64)
        extra = {"mask": a.get("mask")} if with_mask else {}
        idx = _some_nonzero(port(model, a["hkl_grid"], a["sampling"], U=U, **extra))
        if name == "U":
            def fn(x):
                return port(model, a["hkl_grid"], a["sampling"], U=x, **extra).reshape(-1)[idx]

            return fn, (U.clone().requires_grad_(True),)

        def fn(x):
            m = SimpleNamespace(**{**vars(model), "xyz": x})
            return port(m, a["hkl_grid"], a["sampling"], U=U, **extra).reshape(-1)[idx]

        return fn, (model.xyz.clone().requires_grad_(True),)

    return build


gradcheck("eryx.base.incoherent_sum_real", inputs=("U", "xyz"))(_sum_grad(base.incoherent_sum_real, True))
gradcheck("eryx.base.incoherent_sum_reciprocal", inputs=("U", "xyz"))(_sum_grad(base.incoherent_sum_reciprocal, False))


@gradcheck("eryx.base.guinier_reconstruct", inputs=("weights",))
def _(call, name):
    args = _guinier_args(call)
    n_files = len(list(Path(args["ensemble_dir"]).glob("*.npy")))
    n_conf = n_files // int(args["n_asu"])
    w0 = torch.linspace(0.5, 1.5, n_conf, dtype=torch.float64)
    w0 = w0 / w0.sum()
    idx = _some_nonzero(base.guinier_reconstruct(**{**args, "weights": w0}))

    def fn(w):
        return base.guinier_reconstruct(**{**args, "weights": w})[idx]

    return fn, (w0.clone().requires_grad_(True),)
