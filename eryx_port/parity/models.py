# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.OnePhonon`` method calls on :class:`eryx_port.models.OnePhonon`.

Each scenario holds at most one OnePhonon, so a method call is replayed on a port object built
from that scenario's recorded constructor call. Eigenvectors are only defined up to a unitary
within each cluster of equal eigenvalues (a phase for a single mode; the pairs of degenerate
modes at the zone boundary of screw-axis crystals mix freely, and nearly equal ones are
ill-conditioned), so recorded ``V`` is compared after rotating the port's modes onto eryx's within
each cluster of (nearly) equal eigenvalues (mass-weighted Procrustes).
``apply_disorder`` is replayed with the modes, ``Winv`` and ``ADP`` it read (``attrs_read``), so
rank-resolved maps compare even where a mode is degenerate.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch

from eryx_port.models import OnePhonon
from trace_tools.paths import resolve_file
from trace_tools.registry import gradcheck, parity
from trace_tools.store import load_function
from trace_tools.values import FileRef

_INIT = "eryx.models.OnePhonon.__init__"
# Eigenvalues closer than this (relative to the largest) form one cluster. Rounding rotates
# eigenvectors within a cluster by about 1e-16 / (relative gap): eryx's own vectors are
# uncertain at 1e-9 for the 1e-7 gaps of 5zck's near-degenerate quartets, while the subspaces
# of clusters separated by more than 1e-4 are fixed to 1e-12.
_CLUSTER_RTOL = 1e-4


@functools.lru_cache(maxsize=None)
def _init_calls() -> dict:
    trace = load_function(_INIT)
    if trace is None:
        raise LookupError(f"no trace of {_INIT}: record it first (trace-tools record)")
    return {c.scenario: c for c in trace.calls}


def _init_args(scenario: str) -> dict:
    calls = _init_calls()
    if scenario not in calls:
        raise LookupError(f"scenario {scenario!r} has no recorded OnePhonon constructor call")
    args = dict(calls[scenario].args)
    if isinstance(args["pdb_path"], FileRef):
        args["pdb_path"] = str(resolve_file(args["pdb_path"]))
    return args


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> OnePhonon:
    return OnePhonon(**_init_args(scenario), progress=False)


def _port(call) -> OnePhonon:
    """A copy of the scenario's port object (methods may set attributes on it)."""
    return copy.copy(_built(call.scenario))


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def align_modes(V: np.ndarray, V_ref: np.ndarray, Winv_ref: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Rotate the port's modes V (..., n, n) onto V_ref within each cluster of equal eigenvalues.

    Modes are M-orthonormal (``V^H M V = I`` with M the rigid-body mass matrix), so the best unitary
    for a cluster C is the polar factor of ``V[:, C]^H M V_ref[:, C]``. Modes with NaN ``Winv`` (zero
    frequency) form one cluster.
    """
    V = np.array(V, dtype=np.complex128)
    flat_V = V.reshape(-1, *V.shape[-2:])
    flat_ref = np.asarray(V_ref).reshape(flat_V.shape)
    lam = 1.0 / np.asarray(Winv_ref).real.reshape(flat_V.shape[0], -1)
    for k in range(flat_V.shape[0]):  # replay only: a few k-vectors of a small grid
        lk = np.where(np.isnan(lam[k]), 0.0, lam[k])
        scale = np.abs(lk).max() if np.abs(lk).max() > 0 else 1.0
        start = 0
        n = lk.size
        while start < n:
            stop = start + 1
            while stop < n and abs(lk[stop] - lk[start]) <= _CLUSTER_RTOL * scale:
                stop += 1
            a, e = flat_V[k][:, start:stop], flat_ref[k][:, start:stop]
            u, _, wh = np.linalg.svd(a.conj().T @ M @ e)
            flat_V[k][:, start:stop] = a @ (u @ wh)
            start = stop
    return flat_V.reshape(V.shape)


def _mass_matrix(port: OnePhonon) -> np.ndarray:
    L = np.linalg.inv(_np(port.Linv))
    return L @ L.T


def _attr(port: OnePhonon, name: str, written: dict):
    """The port's value of attribute ``name`` in the form eryx stores it."""
    value = getattr(port, name)
    if name == "Winv":
        return _np(value).astype(np.complex128)
    if name == "V":
        return align_modes(_np(value), written["V"], written["Winv"], _mass_matrix(port))
    if isinstance(value, torch.Tensor):
        return _np(value)
    return value


def _compare_written(port: OnePhonon, call, skip=("model", "crystal", "gnm")):
    """(actual, expected) dicts over the attributes the recorded call set (eryx objects are other adapters' job)."""
    written = call.attrs_written
    keys = [k for k in written if k not in skip]
    return {k: _attr(port, k, written) for k in keys}, {k: written[k] for k in keys}


@parity(_INIT, port="eryx_port.models.OnePhonon.__init__")
def _(call):
    return _compare_written(_port(call), call)


@parity("eryx.models.OnePhonon._setup", port="eryx_port.models.OnePhonon._setup")
def _(call):
    port = _port(call)
    a = call.args
    port._setup(str(resolve_file(a["pdb_path"])) if isinstance(a["pdb_path"], FileRef) else a["pdb_path"], a["expand_p1"], a["res_limit"], a["group_by"])
    return _compare_written(port, call)


@parity("eryx.models.OnePhonon._setup_phonons", port="eryx_port.models.OnePhonon._setup_phonons")
def _(call):
    port = _port(call)
    a = call.args
    port._setup_phonons(None, a["model"], a["gnm_cutoff"], a["gamma_intra"], a["gamma_inter"])
    return _compare_written(port, call)


def _method_writes(method: str):
    def replay(call):
        port = _port(call)
        getattr(port, method)()
        return _compare_written(port, call)

    return replay


for _method in ("_build_A", "_build_M", "_build_kvec_Brillouin", "compute_gnm_phonons", "compute_covariance_matrix", "compute_rb_phonons"):
    parity(f"eryx.models.OnePhonon.{_method}", port=f"eryx_port.models.OnePhonon.{_method}")(_method_writes(_method))


@parity("eryx.models.OnePhonon._build_M_allatoms", port="eryx_port.models.OnePhonon._build_M_allatoms")
def _(call):
    return _port(call)._build_M_allatoms(), call.result


@parity("eryx.models.OnePhonon._project_M", port="eryx_port.models.OnePhonon._project_M")
def _(call):
    return _port(call)._project_M(call.args["M_allatoms"]), call.result


@parity("eryx.models.OnePhonon._center_kvec", port="eryx_port.models.OnePhonon._center_kvec")
def _(call):
    return OnePhonon._center_kvec(None, call.args["x"], call.args["L"]), call.result


@parity("eryx.models.OnePhonon._at_kvec_from_miller_points", port="eryx_port.models.OnePhonon._at_kvec_from_miller_points")
def _(call):
    return _port(call)._at_kvec_from_miller_points(tuple(call.args["hkl_kvec"])), call.result


@parity("eryx.models.OnePhonon.compute_hessian", port="eryx_port.models.OnePhonon.compute_hessian")
def _(call):
    return _port(call).compute_hessian(), call.result


def _with_read_state(call) -> OnePhonon:
    """The scenario's port object carrying the modes and ADP the recorded call read."""
    port = _port(call)
    read = call.attrs_read
    dtype, device = port.dtype, port.device
    if "V" in read:
        port.V = torch.as_tensor(np.array(read["V"]), device=device)
    if "Winv" in read:
        port.Winv = torch.as_tensor(np.array(np.real(read["Winv"])), dtype=dtype, device=device)
    if "ADP" in read:
        port.ADP = torch.as_tensor(np.array(read["ADP"]), dtype=dtype, device=device)
    return port


@parity("eryx.models.OnePhonon.apply_disorder", port="eryx_port.models.OnePhonon.apply_disorder")
def _(call):
    a = call.args
    out = _with_read_state(call).apply_disorder(rank=a["rank"], outdir=None, use_data_adp=a["use_data_adp"])
    return out, call.result


# ---------------------------------------------------------------- gradchecks

def _small_map_fn(call, name):
    """The map as a function of one differentiable input, on the scenario's structure with a 2x2x2 k grid.

    The map is divided by its largest value (finite differences then see values of order one) and
    reduced to 3 fixed random projections (gradcheck needs one backward pass per output value).
    """
    args = _init_args(call.scenario)
    args.update(hsampling=(-1, 1, 2), ksampling=(-1, 1, 2), lsampling=(-1, 1, 2), res_limit=0.0, model="gnm")
    use_data_adp = name == "adp"
    port = OnePhonon(**args, progress=False)
    ref = port.apply_disorder(use_data_adp=use_data_adp).detach()
    keep = ~ref.isnan()
    scale = ref[keep].abs().max()
    gen = torch.Generator().manual_seed(0)
    proj = torch.rand(3, int(keep.sum()), generator=gen, dtype=torch.float64).to(ref.device)
    if name in ("gamma_intra", "gamma_inter"):
        x0 = torch.tensor(float(args[name]), dtype=torch.float64)
        update = lambda x: port.update(**{name: x})  # noqa: E731
    elif name == "xyz":  # two atoms of the first ASU
        xyz0 = port.model.xyz.detach().clone()
        x0 = xyz0[0, :2].clone()
        update = lambda x: port.update(xyz=torch.cat([torch.cat([x, xyz0[0, 2:]])[None], xyz0[1:]]))  # noqa: E731
    else:  # B-factors of three atoms
        adp0 = port.model.adp[0].detach().clone()
        x0 = adp0[:3].clone()
        update = lambda x: port.update(adp=torch.cat([x, adp0[3:]]))  # noqa: E731

    def fn(x):
        update(x)
        return proj @ (port.apply_disorder(use_data_adp=use_data_adp)[keep] / scale)

    return fn, (x0.requires_grad_(True),)


gradcheck("eryx.models.OnePhonon.apply_disorder", inputs=("gamma_intra", "gamma_inter", "xyz", "adp"))(_small_map_fn)
