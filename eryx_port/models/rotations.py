# SPDX-License-Identifier: GPL-2.0-or-later
"""Rigid-body rotational disorder: each ASU turns as a whole by a small random rotation.

:class:`RigidBodyRotations` has eryx's constructor, attributes, ``generate_rotations_around_axis``,
``apply_disorder`` and ``optimize``. For each sigma (degrees) and ASU, ``num_rot`` rotations are
drawn: a uniformly random axis (the third column of a Haar-random rotation, from a normalised
4-vector of standard normals) and an angle ``sigma * z`` (z standard normal). The ASU's atoms are
turned about their mean position, ``(xyz - com) @ R + com`` as eryx writes it, and

    I(q) = sum_asu [ mean_r |A_r(q)|^2 - |mean_r A_r(q)|^2 ]

with the structure factors of every rotated copy from the port's grid engine (no loop over
rotations, ASUs or sigmas). NaN outside the resolution mask.

Random numbers. eryx draws from NumPy's global generator. The port draws standard normals with
torch (``generator=`` a ``torch.Generator``, or ``seed=`` at construction) and takes them as
:class:`RotationDraws`; ``draws=`` passes them explicitly (the same draws give the same map, and the
map is a smooth function of sigma for fixed draws: the reparameterisation behind its gradient and
:meth:`RigidBodyRotations.fit`). ``draws`` holding NumPy's stream reproduce eryx's maps exactly
(see :func:`numpy_legacy_draws`).
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np
import torch

from ..pdb import AtomicModel
from ..stats import compute_cc
from ..tensors import as_real, resolve_device, resolve_dtype
from ._scan import best, check_target, linspace
from ._checks import check_count, check_res_limit, check_samplings
from .ensemble import fit_points, masked_map, member_intensity, save_masked, setup_grid

__all__ = ["RigidBodyRotations", "RotationDraws", "draw_rotations", "numpy_legacy_draws", "rotations_from_draws"]

_DEG = math.pi / 180


class RotationDraws(NamedTuple):
    """Standard-normal draws behind a set of random rotations.

    ``quaternions`` (..., n, 4): unnormalised (x, y, z, w) whose direction gives a Haar-random
    rotation (its third column is the rotation axis); ``angles`` (..., n): angle in units of sigma.
    """

    quaternions: torch.Tensor
    angles: torch.Tensor


def draw_rotations(shape, generator: torch.Generator | None = None, *, dtype=None, device=None) -> RotationDraws:
    """Fresh draws for rotations of batch shape ``shape`` (e.g. (n_sigma, n_asu, num_rot)).

    Drawn in float64 on the generator's device (the CPU by default), so a seed gives the same
    rotations on every device and in every precision.
    """
    shape = tuple(int(s) for s in shape)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    q = torch.randn((*shape, 4), generator=generator, dtype=torch.float64, device=gen_device)
    z = torch.randn(shape, generator=generator, dtype=torch.float64, device=gen_device)
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    return RotationDraws(q.to(device=device, dtype=dtype), z.to(device=device, dtype=dtype))


def numpy_legacy_draws(random_state: np.random.RandomState, shape) -> RotationDraws:
    """The draws eryx takes from a NumPy ``RandomState`` (e.g. ``np.random.RandomState(seed)`` after
    ``np.random.seed(seed)``), in eryx's order: for each leading index (sigma, then ASU), the
    quaternions of all ``num_rot`` rotations (``normal(size=(num_rot, 4))``, scipy's
    ``Rotation.random``), then their angles (``randn(num_rot)``). ``shape`` = (..., num_rot).
    """
    shape = tuple(int(s) for s in shape)
    lead, n = shape[:-1], shape[-1]
    qs, zs = [], []
    for _ in range(int(np.prod(lead, dtype=np.int64))):  # eryx's own sequence of generator calls
        qs.append(random_state.normal(size=(n, 4)))
        zs.append(random_state.randn(n))
    q = np.stack(qs).reshape(*shape, 4) if qs else np.zeros((*shape, 4))
    z = np.stack(zs).reshape(shape) if zs else np.zeros(shape)
    return RotationDraws(torch.from_numpy(q), torch.from_numpy(z))


def _quaternion_matrix(x, y, z, w) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of unit quaternions given by their components."""
    x2, y2, z2, w2 = x * x, y * y, z * z, w * w
    xy, zw, xz, yw, yz, xw = x * y, z * w, x * z, y * w, y * z, x * w
    rows = (
        (x2 - y2 - z2 + w2, 2 * (xy - zw), 2 * (xz + yw)),
        (2 * (xy + zw), -x2 + y2 - z2 + w2, 2 * (yz - xw)),
        (2 * (xz - yw), 2 * (yz + xw), -x2 - y2 + z2 + w2),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def rotations_from_draws(sigma, draws: RotationDraws) -> torch.Tensor:
    """Rotation matrices (..., n, 3, 3) for angle scale ``sigma`` (degrees; broadcasts against the
    draws' batch shape without their last axis, e.g. (n_sigma, 1) for draws (n_sigma, n_asu, n)).

    The axis of rotation r is the third column of the rotation of the normalised ``quaternions[r]``;
    the rotation turns by ``sigma * angles[r]`` degrees about it (half-angle quaternion, smooth in sigma).
    """
    q = draws.quaternions
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    x, y, z, w = q.unbind(-1)
    axis = torch.stack([2 * (x * z + y * w), 2 * (y * z - x * w), -x * x - y * y + z * z + w * w], dim=-1)
    sigma = as_real(sigma, q.dtype, q.device)
    half = 0.5 * (sigma * _DEG)[..., None] * draws.angles
    s = torch.sin(half)
    v = s[..., None] * axis
    return _quaternion_matrix(v[..., 0], v[..., 1], v[..., 2], torch.cos(half))


def _check_draws(draws: Any, shape: tuple, dtype, device) -> RotationDraws:
    if not isinstance(draws, tuple) or len(draws) != 2:
        raise ValueError("draws must be RotationDraws(quaternions, angles)")
    q, z = (as_real(d, dtype, device) for d in draws)
    if tuple(q.shape) != (*shape, 4) or tuple(z.shape) != shape:
        raise ValueError(f"draws must have quaternions of shape {(*shape, 4)} and angles of shape {shape}, "
                         f"got {tuple(q.shape)} and {tuple(z.shape)}")
    return RotationDraws(q, z)


class RigidBodyRotations:
    """Rigid-body rotational disorder of the ASUs (eryx's ``RigidBodyRotations``, in torch).

    Parameters as eryx: ``pdb_path, hsampling, ksampling, lsampling``, ``expand_p1``, ``res_limit``,
    ``batch_size`` / ``n_processes`` (accepted, unused). Keyword-only: ``device``, ``dtype`` (float64
    default), ``seed`` or ``generator`` (a ``torch.Generator``; the random source of the draws when a
    call gives none), ``max_memory`` (bytes per slab of the grid).

    Attributes as eryx: ``model`` (read with frame -1), ``q_grid``, ``q_mags``, ``mask``, ``map_shape``;
    after :meth:`optimize`, ``opt_sigma`` and ``opt_map``.
    """

    def __init__(self, pdb_path, hsampling, ksampling, lsampling, expand_p1=True, res_limit=0, batch_size=10000,
                 n_processes=8, *, device=None, dtype=None, seed=None, generator=None, max_memory=None):
        self.hsampling, self.ksampling, self.lsampling = check_samplings(hsampling, ksampling, lsampling, integral=False)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.max_memory = max_memory
        if seed is not None and generator is not None:
            raise ValueError("give seed or generator, not both")
        if seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self._setup(pdb_path, expand_p1, res_limit)
        self.batch_size = batch_size
        self.n_processes = n_processes

    def _setup(self, pdb_path, expand_p1, res_limit=0) -> None:
        """Read every model of the file and build the grid, |q| and the resolution mask."""
        check_res_limit(res_limit)
        self.model = AtomicModel(pdb_path, expand_p1=expand_p1, frame=-1, device=self.device, dtype=self.dtype)
        if int(self.model.xyz.shape[0]) < self.model.n_asu:
            raise ValueError(
                f"{os.path.basename(str(pdb_path))}: expand_p1={expand_p1!r} gives {int(self.model.xyz.shape[0])} "
                f"copies of the atoms for {self.model.n_asu} ASUs; use expand_p1=True for an asymmetric unit "
                "with symmetry mates (eryx fails with an IndexError here)"
            )
        setup_grid(self, res_limit)

    # ------------------------------------------------------------------ rotations

    @staticmethod
    def generate_rotations_around_axis(sigma, num_rot, axis=(0.0, 0.0, 1.0), *, generator=None, draws=None,
                                       dtype=None, device=None) -> torch.Tensor:
        """``num_rot`` random rotation matrices (num_rot, 3, 3), angles normal with ``sigma`` degrees.

        As in eryx, each rotation turns about its own uniformly random axis: ``axis`` is checked
        (three finite numbers, not all zero) but does not enter the result. ``draws``
        (:class:`RotationDraws` of shape (num_rot, 4) / (num_rot,)) replace the random draws.
        Differentiable in ``sigma`` (a tensor) for given draws.
        """
        num_rot = check_count(num_rot, "num_rot")
        ax = np.asarray(axis.detach().cpu() if isinstance(axis, torch.Tensor) else axis, dtype=np.float64).reshape(-1)
        if ax.size != 3 or not np.isfinite(ax).all() or not ax.any():
            raise ValueError(f"axis must be three finite numbers, not all zero, got {axis!r}")
        dtype = resolve_dtype(dtype if dtype is not None else (sigma.dtype if isinstance(sigma, torch.Tensor) and sigma.is_floating_point() else None))
        device = resolve_device(device if device is not None else (sigma.device if isinstance(sigma, torch.Tensor) else None))
        s = as_real(sigma, dtype, device)
        if s.ndim != 0 or not math.isfinite(float(s.detach())):
            raise ValueError(f"sigma must be one finite number (degrees), got {sigma!r}")
        if draws is None:
            draws = draw_rotations((num_rot,), generator, dtype=dtype, device=device)
        draws = _check_draws(draws, (num_rot,), dtype, device)
        return rotations_from_draws(s, draws)

    def _sigmas(self, sigmas) -> torch.Tensor:
        if isinstance(sigmas, (str, bytes)) or sigmas is None:
            raise ValueError(f"sigmas must be a number or a 1-d array of angles in degrees, got {sigmas!r}")
        try:
            s = as_real(sigmas, self.dtype, self.device)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sigmas must be a number or a 1-d array of angles in degrees, got {sigmas!r}") from exc
        s = s.reshape(1) if s.ndim == 0 else s
        if s.ndim != 1 or s.numel() == 0:
            raise ValueError(f"sigmas must be a number or a 1-d array of angles in degrees, got shape {tuple(s.shape)}")
        if not bool(torch.isfinite(s.detach()).all()):
            raise ValueError(f"sigmas must be finite, got {s.detach().cpu().tolist()}")
        return s

    def rotated_coordinates(self, sigmas, draws: RotationDraws) -> torch.Tensor:
        """Coordinates of every rotated copy: (n_sigma, n_asu, num_rot, n_atoms, 3), each ASU turned
        about its mean position as eryx does, ``(xyz - com) @ R + com``."""
        n_asu = self.model.n_asu
        xyz = self.model.xyz[:n_asu]
        com = xyz.mean(dim=1, keepdim=True)
        R = rotations_from_draws(sigmas[:, None], draws)  # (n_sigma, n_asu, num_rot, 3, 3)
        return torch.einsum("anj,sarjk->sarnk", xyz - com, R) + com[None, :, None]

    def apply_disorder(self, sigmas, num_rot=100, ensemble_dir=None, *, generator=None, draws=None) -> torch.Tensor:
        """Diffuse maps (n_sigma, n_points) for rotation widths ``sigmas`` (degrees; a number or 1-d),
        NaN outside the resolution mask.

        ``num_rot`` rotations are drawn per sigma and ASU (from ``generator``, else the model's, else
        torch's global generator), or taken from ``draws`` (:class:`RotationDraws` of batch shape
        (n_sigma, n_asu, num_rot)). With ``ensemble_dir`` (eryx's ensemble mode) one rotation is drawn
        per sigma and ASU, its structure factors at the masked points are saved as
        ``rot_<num_rot:05>_asu<asu>.npy`` there (the last sigma's remain) and the map is zero.
        Differentiable in ``sigmas`` for given draws.
        """
        s = self._sigmas(sigmas)
        num_rot = check_count(num_rot, "num_rot")
        prefix = None
        if ensemble_dir is not None:
            if not os.path.isdir(ensemble_dir):
                raise ValueError(f"ensemble_dir {ensemble_dir!r} is not a folder")
            prefix, num_rot = f"rot_{num_rot:05}", 1
        n_sigma, n_asu = s.shape[0], self.model.n_asu
        last = (n_sigma - 1) * n_asu  # the groups (sigma, ASU) of the last sigma: their copies are saved
        saved = []

        def keep(first_group, axis, start, stop, A):
            n = A.shape[0] // num_rot
            for g in range(max(first_group, last), first_group + n):
                saved.append((g - last, axis, A[(g - first_group) * num_rot].detach()))

        I = self._maps(s, num_rot, generator, draws, keep=keep if prefix is not None else None)
        if prefix is not None:
            for asu in range(n_asu):  # a few files, one per ASU
                parts = [(axis, a) for g, axis, a in saved if g == asu]
                A = parts[0][1] if len(parts) == 1 else torch.cat([a for _, a in parts], dim=parts[0][0])
                save_masked(os.path.join(ensemble_dir, f"{prefix}_asu{asu}.npy"), A, self.mask)
        return masked_map(I, self.mask)

    def _maps(self, s, num_rot, generator, draws, *, keep=None, incoherent_only=False) -> torch.Tensor:
        """(n_sigma, n_h, n_k, n_l) maps (or only their incoherent sums ``mean_r |A_r|^2``) for sigmas ``s``."""
        m, n_asu, n_sigma = self.model, self.model.n_asu, s.shape[0]
        shape = (n_sigma, n_asu, num_rot)
        if draws is None:
            draws = draw_rotations(shape, generator if generator is not None else self.generator,
                                   dtype=self.dtype, device=self.device)
        draws = _check_draws(draws, shape, self.dtype, self.device)
        xyz = self.rotated_coordinates(s, draws).reshape(-1, m.xyz.shape[1], 3)
        copy_asu = torch.arange(n_asu, device=self.device).repeat_interleave(num_rot).repeat(n_sigma)
        U = m.adp[:n_asu][copy_asu] / (8 * math.pi**2)
        ff = (m.ff_a[:n_asu][copy_asu], m.ff_b[:n_asu][copy_asu], m.ff_c[:n_asu][copy_asu])
        # one group per (sigma, ASU); weight set s averages the rotations of sigma s's groups
        w = torch.eye(n_sigma, dtype=self.dtype, device=self.device).repeat_interleave(n_asu, dim=1)
        w = (w / num_rot)[:, :, None].expand(n_sigma, n_sigma * n_asu, num_rot)
        return member_intensity(self._axes, m.A_inv, xyz, U, ff, w, n_sigma * n_asu, max_memory=self.max_memory,
                                keep=keep, incoherent_only=incoherent_only)

    # ------------------------------------------------------------------ eryx's scan and a gradient fit

    def optimize(self, target, sigma_min, sigma_max, n_search=20, num_rot=100, *, generator=None, draws=None):
        """eryx's grid scan: maps for ``n_search`` sigmas from ``sigma_min`` to ``sigma_max`` (one call of
        :meth:`apply_disorder`, so one set of draws), their Pearson correlation with ``target``
        (shape ``map_shape``); sets ``opt_sigma`` and ``opt_map`` (the best map, ``map_shape``) and
        returns ``(ccs, sigmas)``."""
        t = check_target(target, self.map_shape, self.dtype, self.device)
        n = check_count(n_search, "n_search")
        lo, hi = float(sigma_min), float(sigma_max)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"sigma_min and sigma_max must be finite, got {sigma_min!r} and {sigma_max!r}")
        sigmas = linspace(lo, hi, n, self.dtype, self.device)
        Id = self.apply_disorder(sigmas, num_rot, generator=generator, draws=draws)
        ccs = compute_cc(Id, t.reshape(1, -1))
        i = best(ccs)
        self.opt_sigma = float(sigmas[i])
        self.opt_map = Id[i].reshape(self.map_shape)
        print(f"Optimal sigma: {self.opt_sigma}, with correlation coefficient {float(ccs[i]):.4f}")
        return ccs, sigmas

    def fit(self, target, sigma0, num_rot=20, *, draws=None, generator=None, max_iter=50, tolerance=1e-12, mask=None):
        """Fit the rotation width to ``target`` (map_shape or flat) by L-BFGS from ``sigma0`` degrees.

        One set of draws (``draws`` of batch shape (1, n_asu, num_rot), else drawn once) serves every
        evaluation, so the map is a smooth function of sigma. ``log(sigma)`` is optimised to minimise
        the squared difference ``sum (I - target)^2 / sum target^2`` over the points finite in
        ``target``, inside the resolution mask and ``mask`` (True = keep).
        Returns ``(sigma (0-d tensor), map (n_points,))``.
        """
        t = as_real(target, self.dtype, self.device).reshape(-1)
        if t.numel() != self.q_grid.shape[0]:
            raise ValueError(f"target has {t.numel()} points, the model's map has {self.q_grid.shape[0]} {tuple(self.map_shape)}")
        s0 = float(sigma0)
        if not (math.isfinite(s0) and s0 > 0):
            raise ValueError(f"sigma0 must be a positive number of degrees, got {sigma0!r}")
        num_rot = check_count(num_rot, "num_rot")
        shape = (1, self.model.n_asu, num_rot)
        if draws is None:
            draws = draw_rotations(shape, generator if generator is not None else self.generator,
                                   dtype=self.dtype, device=self.device)
        draws = _check_draws(draws, shape, self.dtype, self.device)
        keep, t_norm = fit_points(t, self.mask, mask)
        log_s = torch.tensor(math.log(s0), dtype=self.dtype, device=self.device, requires_grad=True)
        opt = torch.optim.LBFGS([log_s], max_iter=check_count(max_iter, "max_iter"), tolerance_grad=tolerance,
                                tolerance_change=tolerance * 1e-3, history_size=10, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            I = self.apply_disorder(log_s.exp(), num_rot, draws=draws)[0]
            loss = ((I[keep] - t[keep]) ** 2).sum() / t_norm
            loss.backward()
            return loss

        opt.step(closure)
        sigma = log_s.detach().exp()
        return sigma, self.apply_disorder(sigma, num_rot, draws=draws)[0].detach()
