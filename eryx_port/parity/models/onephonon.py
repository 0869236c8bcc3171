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
from trace_tools.compare import Tolerance
from trace_tools.registry import gradcheck, parity

from ._recorded import attribute_replay, init_args, structure_paths
from ..tolerances import inverse_floor

_INIT = "eryx.models.OnePhonon.__init__"
# Two eigenvalues form one (degenerate) cluster when they agree to 1e-9 of their own size. In the
# recorded GNM data the splittings of symmetry-degenerate modes are rounding, at most 3.9e-15 of
# the eigenvalue (5zck-s2), while the closest distinct modes are 4.5e-7 apart (5zck-s2; then 1.3e-5,
# 7n2h-s1), and the port's eigenvalues agree with eryx's to 5e-13: 1e-9 sits 2.5e5 times above the
# former and 450 times below the latter, so only genuinely equal eigenvalues share a cluster.
_CLUSTER_RTOL = 1e-9
_EPS = float(np.finfo(np.float64).eps)


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> OnePhonon:
    return OnePhonon(**init_args(_INIT, scenario), progress=False)


def _port(call) -> OnePhonon:
    """A copy of the scenario's port object (methods may set attributes on it)."""
    return copy.copy(_built(call.scenario))


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def eigenvalue_clusters(lam: np.ndarray) -> list[np.ndarray]:
    """Index sets of equal eigenvalues at one k (equal to ``_CLUSTER_RTOL`` of their own size).

    ``lam`` (n,) may hold NaN for zero-frequency modes (eryx's NaN ``Winv``): those form one cluster.
    """
    nan = np.isnan(lam)
    clusters = [np.flatnonzero(nan)] if nan.any() else []
    order = [int(i) for i in np.argsort(np.where(nan, np.inf, lam)) if not nan[i]]
    for i in order:
        last = clusters[-1] if clusters and not nan[clusters[-1][0]] else None
        if last is not None and abs(lam[i] - lam[last[-1]]) <= _CLUSTER_RTOL * max(abs(lam[i]), abs(lam[last[-1]])):
            clusters[-1] = np.append(last, i)
        else:
            clusters.append(np.array([i]))
    return clusters


def align_modes(V: np.ndarray, V_ref: np.ndarray, Winv_ref: np.ndarray, M: np.ndarray) -> np.ndarray:
    """The port's modes V (..., n, n) in eryx's gauge: a phase per distinct mode, a unitary per degenerate cluster.

    Modes are M-orthonormal (``V^H M V = I`` with M the rigid-body mass matrix), so the best unitary
    for a cluster C is the polar factor of ``V[:, C]^H M V_ref[:, C]`` (for a single mode: its phase).
    Clusters are eryx's exactly equal eigenvalues only (:func:`eigenvalue_clusters`): mixing two
    distinct modes is never undone here, so it shows in the comparison.
    """
    V = np.array(V, dtype=np.complex128)
    flat_V = V.reshape(-1, *V.shape[-2:])
    flat_ref = np.asarray(V_ref).reshape(flat_V.shape)
    lam = 1.0 / np.asarray(Winv_ref).real.reshape(flat_V.shape[0], -1)
    for k in range(flat_V.shape[0]):  # replay only: a few k-vectors of a small grid
        for c in eigenvalue_clusters(lam[k]):
            a, e = flat_V[k][:, c], flat_ref[k][:, c]
            u, _, wh = np.linalg.svd(a.conj().T @ M @ e)
            flat_V[k][:, c] = a @ (u @ wh)
    return flat_V.reshape(V.shape)


def _mass_matrix(port: OnePhonon) -> np.ndarray:
    L = np.linalg.inv(_np(port.Linv))
    return L @ L.T


def _is_rigid_body(port: OnePhonon) -> bool:
    """eryx's 'rb' model: its modes are the identity by construction, not an eigenbasis."""
    return getattr(port, "gnm", None) is None


def mode_floor(Winv_ref: np.ndarray, n: int) -> np.ndarray:
    """Round-off floor of eigenvectors at each k, relative to the largest |V| there: (n_k, 1, 1).

    Perturbation theory (Davis-Kahan): rounding K by ``eps * lambda_max`` turns a mode by
    ``eps * lambda_max / gap``, gap the distance to the nearest other cluster of eigenvalues.
    16 eps covers the rounding of K and of the mass weighting; measured port-vs-eryx turns stay
    below 1.1 eps lambda_max / gap (1.7e-9 of |V| for 5zck-s2's pair of modes 4.5e-7 apart).
    """
    lam = 1.0 / np.asarray(Winv_ref).real.reshape(-1, n)
    floors = np.empty(lam.shape[0])
    for k, lk in enumerate(lam):
        reps = np.array([lk[c[0]] for c in eigenvalue_clusters(lk)])
        reps = np.where(np.isnan(reps), 0.0, reps)  # zero-frequency modes sit at 0
        gaps = np.abs(reps[:, None] - reps[None, :])[~np.eye(reps.size, dtype=bool)]
        floors[k] = 16 * _EPS * np.abs(reps).max() / gaps.min() if gaps.size else 0.0
    return floors[:, None, None]


def _modes_expected(port: OnePhonon, written: dict):
    """(port V, eryx V) for the comparison: exact for 'rb', else in eryx's gauge with the eigenvector floor."""
    V = _np(port.V)
    if _is_rigid_body(port):  # the identity on both sides: nothing to align, any rotation is an error
        return V.astype(np.complex128), written["V"]
    V_ref = np.asarray(written["V"])
    n = V_ref.shape[-1]
    aligned = align_modes(V, V_ref, written["Winv"], _mass_matrix(port))
    scale = np.abs(V_ref.reshape(-1, n * n)).max(axis=1)[:, None, None]
    grid = V_ref.shape[:-2] + (1, 1)
    floor = mode_floor(written["Winv"], n).reshape(grid)
    reason = "eigenvectors: 16 eps lambda_max / gap at each k (Davis-Kahan)"
    return aligned, Tolerance(V_ref, floor=floor, scale=scale.reshape(grid), reason=reason)


def _covariance_floor(port: OnePhonon) -> float:
    K = port._K if getattr(port, "_K", None) is not None else port._dynamical()
    return inverse_floor(_np(K))


def _attr(port: OnePhonon, name: str, written: dict):
    """(port value, expected value) of attribute ``name`` in the form eryx stores it."""
    value = getattr(port, name)
    if name == "Winv":
        return _np(value).astype(np.complex128), written[name]
    if name == "V":
        return _modes_expected(port, written)
    if name in ("covar", "ADP") and not _is_rigid_body(port):
        reason = "sums of pseudo-inverses of K(k): 16 eps cond(K) at the worst k"
        return _np(value), Tolerance(written[name], floor=_covariance_floor(port), reason=reason)
    if isinstance(value, torch.Tensor):
        return _np(value), written[name]
    return value, written[name]


def _compare_written(port: OnePhonon, call, skip=("model", "crystal", "gnm")):
    """(actual, expected) dicts over the attributes the recorded call set (eryx objects are other adapters' job)."""
    written = call.attrs_written
    pairs = {k: _attr(port, k, written) for k in written if k not in skip}
    return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}


@parity(_INIT, port="eryx_port.models.OnePhonon.__init__")
def _(call):
    return _compare_written(_port(call), call)


@parity("eryx.models.OnePhonon._setup", port="eryx_port.models.OnePhonon._setup")
def _(call):
    port = _port(call)
    a = structure_paths(call.args)
    port._setup(a["pdb_path"], a["expand_p1"], a["res_limit"], a["group_by"])
    return _compare_written(port, call)


@parity("eryx.models.OnePhonon._setup_phonons", port="eryx_port.models.OnePhonon._setup_phonons")
def _(call):
    port = _port(call)
    a = call.args
    port._setup_phonons(None, a["model"], a["gnm_cutoff"], a["gamma_intra"], a["gamma_inter"])
    return _compare_written(port, call)


for _method in ("_build_A", "_build_M", "_build_kvec_Brillouin", "compute_gnm_phonons", "compute_covariance_matrix", "compute_rb_phonons"):
    parity(f"eryx.models.OnePhonon.{_method}", port=f"eryx_port.models.OnePhonon.{_method}")(attribute_replay(_port, _compare_written, _method))


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
    """The scenario's port object carrying eryx's modes and ADP (those the recorded call read)."""
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


def kvec_class(map_shape: tuple, sampling: tuple) -> np.ndarray:
    """Index of each map point's k-vector (C order over the sampling grid), as eryx's
    ``_at_kvec_from_miller_points`` pairs them: Miller index i along an axis sits at k-step i mod sampling."""
    steps = [i % s for i, s in zip(np.indices(map_shape), sampling)]
    return np.ravel_multi_index(steps, sampling).reshape(-1)


def degenerate_partners(Winv: np.ndarray, rank: int) -> dict[int, list[int]]:
    """Per k index where mode ``rank`` shares its (finite) eigenvalue: the other modes of its cluster."""
    n = Winv.shape[-1]
    partners = {}
    for k, lk in enumerate(1.0 / np.real(Winv).reshape(-1, n)):
        for cluster in eigenvalue_clusters(lk):
            if rank in cluster and cluster.size > 1 and not np.isnan(lk[rank]):
                partners[k] = [int(r) for r in cluster if r != rank]
    return partners


def class_scale(values: np.ndarray, where_k: np.ndarray) -> np.ndarray:
    """Per map point: the largest finite |value| among the points of the same k-vector.

    Points of different k-vectors are computed from different modes and weights (for 'rb' the
    weight alone spans 23 decades on 7n2h-s2), so each is rounded on its own k-vector's scale.
    """
    finite = np.where(np.isfinite(values), np.abs(values), 0.0)
    per_k = np.zeros(int(where_k.max()) + 1)
    np.maximum.at(per_k, where_k, finite)
    return per_k[where_k]


@parity("eryx.models.OnePhonon.apply_disorder", port="eryx_port.models.OnePhonon.apply_disorder")
def _(call):
    """The map on the port's own modes, ``Winv`` and ``ADP`` (nothing of eryx's state is lent to it).

    The full map (rank -1) does not depend on the basis of the modes, nor does one mode's map
    where that mode's eigenvalue is simple; 'rb' modes are the identity on both sides. Where
    eryx's mode ``rank`` is one of a cluster of equal eigenvalues, its map depends on an arbitrary
    basis of the cluster, so at the points of those k-vectors both sides are summed over the
    cluster: the port's own maps of every member, against eryx's recorded map plus the other
    members' maps of eryx's recorded modes (put through the port's kernel, which the other
    points and the rank -1 maps check against eryx directly). The sum is basis independent: the
    port's modes are never rotated onto eryx's.

    Tolerance: each point on the scale of its own k-vector (:func:`class_scale`); a one-mode map
    also carries its mode's eigenvector floor (|F V|^2 turns with V: twice :func:`mode_floor`,
    doubled again for the cross term with the nearest mode).
    """
    a = call.args
    rank = a["rank"]
    read = call.attrs_read

    def run(port, r):
        return _np(port.apply_disorder(rank=r, outdir=None, use_data_adp=a["use_data_adp"])).copy()

    port = _port(call)
    actual, expected = run(port, rank), np.array(call.result, dtype=np.float64)
    sampling = tuple(int(read[f"{axis}sampling"][2]) for axis in "hkl")
    where_k = kvec_class(tuple(read["map_shape"]), sampling)
    floor, reason = 0.0, "each point on its k-vector's scale"
    if rank >= 0 and not _is_rigid_body(port):
        Winv = np.asarray(read["Winv"])
        partners = degenerate_partners(Winv, rank)
        eryx_modes = _with_read_state(call) if partners else None
        for r in sorted({r for rs in partners.values() for r in rs}):
            at = np.isin(where_k, [k for k, rs in partners.items() if r in rs])
            actual[at] += run(port, r)[at]
            expected[at] += run(eryx_modes, r)[at]
        floor = 4 * mode_floor(Winv, Winv.shape[-1]).reshape(-1)[where_k]
        reason += "; one mode's map: 4 x its eigenvector floor"
    return actual, Tolerance(expected, floor=floor, scale=class_scale(expected, where_k), reason=reason)


# ---------------------------------------------------------------- gradchecks

def _small_map_fn(call, name):
    """The map as a function of one differentiable input, on the scenario's structure with a 2x2x2 k grid.

    The map is divided by its largest value (finite differences then see values of order one) and
    reduced to 3 fixed random projections (gradcheck needs one backward pass per output value).
    """
    args = init_args(_INIT, call.scenario)
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

    return fn, (x0.requires_grad_(True),), _MAP_FD_STEP


# The map divides by squared frequencies, so soft modes amplify its rounding: on 6o2h the map moves by
# ~5e-11 (relative) between neighbouring gamma values at random, which a 1e-6 central difference turns
# into ~1e-4 of the derivative. A step of 1e-4 keeps that noise below 1e-6 and the truncation error
# (step^2 f''') below 1e-7 (measured: 1.3e-7 at 1e-3, 4e-7 at 1e-4, 6e-6 at 1e-5, 9e-5 at 1e-6).
_MAP_FD_STEP = {"eps": 1e-4, "reason": "soft modes amplify the map's rounding (~5e-11 on 6o2h); step 1e-4 keeps FD noise < 1e-6"}


gradcheck("eryx.models.OnePhonon.apply_disorder", inputs=("gamma_intra", "gamma_inter", "xyz", "adp"))(_small_map_fn)
