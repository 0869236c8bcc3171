# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.NonInteractingDeformableMolecules`` calls, and their gradchecks.

Each scenario builds one such model, so a method call is replayed on a copy of the port object built
from that scenario's recorded constructor call. Singular vectors (``u``) are defined up to a sign,
and up to a rotation within a cluster of equal singular values: the port's are put in eryx's gauge
(orthogonal Procrustes per cluster) before they are compared; nothing else is aligned. Maps are
computed on the port's own components (they are sums of ``|F u_r|^2`` and do not depend on the sign).

The covariance is a pseudo-inverse of the ASU's network Laplacian, so it carries that matrix's
conditioning: ``covar``/``ADP`` and the maps made from them get the floor ``16 eps cond(K)``
(:func:`..tolerances.inverse_floor`) on the scale of their largest element.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch

from eryx_port.models import NonInteractingDeformableMolecules
from trace_tools.compare import Tolerance
from trace_tools.registry import gradcheck, parity

from ..pdb import _mirror
from ._recorded import attribute_replay, init_args, structure_paths
from ..tolerances import inverse_floor

_CLASS = "eryx.models.NonInteractingDeformableMolecules"
_PORT = "eryx_port.models.NonInteractingDeformableMolecules"
_INIT = f"{_CLASS}.__init__"
_EPS = float(np.finfo(np.float64).eps)
# two singular values share a cluster when they agree to 1e-9 of their size (rounding is ~1e-15)
_CLUSTER_RTOL = 1e-9


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> NonInteractingDeformableMolecules:
    return NonInteractingDeformableMolecules(**init_args(_INIT, scenario))


def _port(call) -> NonInteractingDeformableMolecules:
    """A copy of the scenario's port object (methods set attributes on it)."""
    return copy.copy(_built(call.scenario))


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _covariance_floor(port) -> float:
    return inverse_floor(_np(port._asu_laplacian()))


def _clusters(s: np.ndarray) -> list[np.ndarray]:
    """Index sets of (numerically) equal values in a descending array."""
    out: list[list[int]] = []
    for i, v in enumerate(s):
        if out and abs(v - s[out[-1][-1]]) <= _CLUSTER_RTOL * max(abs(v), abs(s[out[-1][-1]])):
            out[-1].append(i)
        else:
            out.append([i])
    return [np.array(c) for c in out]


def aligned_components(u: np.ndarray, u_ref: np.ndarray, s_all: np.ndarray) -> tuple[np.ndarray, float]:
    """The port's singular vectors in eryx's gauge, and their round-off floor.

    ``s_all``: every singular value of the matrix (descending). Per cluster of equal values among
    the retained ones, the orthogonal factor closest to ``u^T u_ref`` is applied (for a single
    vector: its sign). Floor (Davis-Kahan): 16 eps s_max / the smallest gap between a retained
    cluster and any other singular value.
    """
    u = np.array(u, dtype=np.float64)
    u_ref = np.asarray(u_ref, dtype=np.float64)
    rank = u_ref.shape[1]
    clusters = _clusters(s_all)
    gaps = []
    for c in clusters:
        if c[0] >= rank:
            break
        kept = c[c < rank]
        w, _, vh = np.linalg.svd(u[:, kept].T @ u_ref[:, kept])
        u[:, kept] = u[:, kept] @ (w @ vh)
        others = np.delete(s_all, c)
        if others.size:
            gaps.append(np.abs(others - s_all[c[0]]).min())
    floor = 16 * _EPS * float(s_all[0]) / min(gaps) if gaps and min(gaps) > 0 else 0.0
    return u, floor


def _attr(port, name: str, written: dict):
    """(port value, expected value) of attribute ``name``."""
    value = getattr(port, name)
    expected = written[name]
    if name in ("covar", "ADP"):
        reason = "pseudo-inverse of the ASU's network Laplacian: 16 eps cond(K)"
        return _np(value), Tolerance(expected, floor=_covariance_floor(port), reason=reason)
    if name == "u":
        s_all = np.linalg.svd(_np(port.covar), compute_uv=False)
        u, floor = aligned_components(_np(value), expected, s_all)
        return u, Tolerance(expected, floor=max(floor, 256 * _EPS), reason="singular vectors: 16 eps s_max / gap (Davis-Kahan)")
    if name in ("model", "gnm"):
        return _mirror(value, expected)
    return _np(value), expected


def _compare_written(port, call):
    written = call.attrs_written
    pairs = {k: _attr(port, k, written) for k in written}
    return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}


def _map_expected(port, result):
    reason = "maps of the pseudo-inverse covariance: 16 eps cond(K) of their largest value"
    return Tolerance(np.asarray(result), floor=_covariance_floor(port), reason=reason)


@parity(_INIT, port=f"{_PORT}.__init__")
def _(call):
    return _compare_written(_port(call), call)


@parity(f"{_CLASS}._setup", port=f"{_PORT}._setup")
def _(call):
    port = _port(call)
    a = structure_paths(call.args)
    port._setup(a["pdb_path"], a["expand_p1"], a["res_limit"], a["q2_rounding"])
    return _compare_written(port, call)


@parity(f"{_CLASS}._setup_gnm", port=f"{_PORT}._setup_gnm")
def _(call):
    port = _port(call)
    port._setup_gnm(None, call.args["gnm_cutoff"])
    return _compare_written(port, call)


for _method in ("_setup_covmat", "compute_covariance_matrix"):
    parity(f"{_CLASS}.{_method}", port=f"{_PORT}.{_method}")(attribute_replay(_port, _compare_written, _method))


@parity(f"{_CLASS}._low_rank_truncation", port=f"{_PORT}._low_rank_truncation")
def _(call):
    """On eryx's matrix as recorded; ``u`` put in eryx's gauge (sign / rotation per cluster)."""
    a = call.args
    port = _port(call)
    u, s = port._low_rank_truncation(a["sym_matrix"], rank=a["rank"], rec_error_threshold=a["rec_error_threshold"])
    u_ref, s_ref = call.result
    if np.asarray(u_ref).shape != tuple(u.shape):  # a different rank is a failure, shown as such
        return (_np(u), _np(s)), (u_ref, s_ref)
    s_all = np.linalg.svd(np.asarray(a["sym_matrix"]), compute_uv=False)
    aligned, floor = aligned_components(_np(u), u_ref, s_all)
    reason = "singular vectors: 16 eps s_max / gap (Davis-Kahan)"
    return (aligned, _np(s)), (Tolerance(u_ref, floor=max(floor, 256 * _EPS), reason=reason), s_ref)


@parity(
    f"{_CLASS}.compute_scl_intensity",
    port=f"{_PORT}.compute_scl_intensity",
    notes="rank >= 0 was recorded with n_processes=2 (eryx's single-process path raises IndexError); the port ignores n_processes.",
)
def _(call):
    port = _port(call)
    return _np(port.compute_scl_intensity(rank=call.args["rank"])), _map_expected(port, call.result)


@parity(f"{_CLASS}.compute_intensity_naive", port=f"{_PORT}.compute_intensity_naive")
def _(call):
    port = _port(call)
    result = _np(port.compute_intensity_naive())
    actual, expected = _compare_written(port, call)
    return {"result": result, **actual}, {"result": _map_expected(port, call.result), **expected}


@parity(f"{_CLASS}.apply_disorder", port=f"{_PORT}.apply_disorder")
def _(call):
    port = _port(call)
    return _np(port.apply_disorder(scl=call.args["scl"])), _map_expected(port, call.result)


# ---------------------------------------------------------------- gradchecks

def _map_fn(call, name, scl=None):
    """The map (scl as recorded, or as given) as a function of B-factors of three atoms or coordinates of two atoms.

    On the scenario's structure with a 3 x 3 x 3 grid; divided by its largest value and reduced to
    3 fixed random projections (one backward pass per output in gradcheck).
    """
    args = init_args(_INIT, call.scenario)
    args.update(hsampling=(-1, 1, 1), ksampling=(-1, 1, 1), lsampling=(-1, 1, 1), res_limit=0)
    scl = bool(call.args.get("scl", True)) if scl is None else scl
    port = NonInteractingDeformableMolecules(**args)
    ref = port.apply_disorder(scl=scl).detach()
    keep = ref.abs() > 0
    scale = ref[keep].abs().max()
    gen = torch.Generator().manual_seed(0)
    proj = torch.rand(3, int(keep.sum()), generator=gen, dtype=torch.float64)
    if name == "adp":
        adp0 = port.model.adp.detach().clone()
        x0 = adp0[0, :3].clone()

        def update(x):
            row = torch.cat([x, adp0[0, 3:]])
            port.update(adp=row.expand_as(adp0))
    else:
        xyz0 = port.model.xyz.detach().clone()
        x0 = xyz0[0, :2].clone()

        def update(x):
            port.update(xyz=torch.cat([torch.cat([x, xyz0[0, 2:]])[None], xyz0[1:]]))

    def fn(x):
        update(x)
        return proj @ (port.apply_disorder(scl=scl)[keep] / scale)

    return fn, (x0.requires_grad_(True),)


gradcheck(f"{_CLASS}.apply_disorder", inputs=("adp", "xyz"))(_map_fn)
# the exact intensity, exp(q2 C) - 1 (compute_scl_intensity's gradient is apply_disorder's with scl=True)
gradcheck(f"{_CLASS}.compute_intensity_naive", inputs=("adp", "xyz"))(lambda call, name: _map_fn(call, name, scl=False))
