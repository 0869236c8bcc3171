"""Disorder models. :class:`OnePhonon`: one-phonon diffuse scattering from a lattice of rigid ASUs.

Same constructor, attributes and methods as ``eryx.models.OnePhonon`` (results are torch tensors),
computed without loops over k-vectors, cells, ASUs, atoms or q-points, and differentiable in
the spring constants, the coordinates and the B-factors.

Differentiable inputs
---------------------
* ``gamma_intra`` / ``gamma_inter``: pass 0-d tensors with ``requires_grad=True``.
* coordinates: keyword-only ``xyz=`` (n_asu, n_atoms, 3) replaces the expanded coordinates read
  from the file (the contact list of the network is still found once from positions, without gradient).
* B-factors: keyword-only ``adp=`` (n_atoms,) or (n_asu, n_atoms) replaces the file's B-factors
  (used by ``apply_disorder(use_data_adp=True)`` and by the ADP scale of the GNM covariance).

``apply_disorder`` returns the flat map; NaN outside the resolution mask and where eryx puts NaN
(modes with zero frequency: every integral Miller index for ``rank=-1``). Mask NaN before reducing
a loss (e.g. ``torch.nansum`` or ``I[~I.isnan()]``); no NaN reaches the gradients.

For the full map at k != 0 the intensity ``sum_m |F V_m|^2 / lambda_m`` equals ``F K(k)^-1 F^H``
(the masses cancel); it is computed with a Cholesky factor of K(k), exact and with clean
derivatives. The eigen-decomposition gives ``V``/``Winv`` and the rank-resolved maps.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np
import torch

from .. import diffuse, phonons
from ..map_utils import generate_grid, get_resolution_mask, grid_axes
from ..pdb import AtomicModel, Crystal
from ..gnm import GaussianNetworkModel
from ..tensors import as_real, complex_dtype, resolve_device, resolve_dtype
from ..validation import check_network, check_rigid_bodies
from ._atoms import override_atoms
from ._checks import check_positive, check_res_limit, check_samplings

__all__ = ["OnePhonon"]

# q-point x ASU x component elements of the structure-factor sums per chunk in apply_disorder: small
# chunks keep the elementwise work in cache (7n2h benchmark: 0.65 s against 1.35 s with 4e6)
_CHUNK_ELEMENTS = 300_000
# Two modes count as degenerate (apply_disorder's degenerate="cluster") when their inverse eigenvalues
# agree to this fraction of their size: eigensolvers return degenerate eigenvalues equal to ~1e-14,
# while the closest distinct modes met in the recorded structures are 1.4% apart.
DEGENERATE_RTOL = 1e-9
# Operators of -k and k are conjugate when they agree to this fraction of their largest element
# (the dynamical matrices are sums of phase factors: their round-off is ~1e-15).
_CONJUGATE_RTOL = 1e-12


class OnePhonon:
    """Lattice of interacting rigid ASUs in the one-phonon approximation (eryx's model, in torch).

    Parameters as eryx: ``pdb_path, hsampling, ksampling, lsampling`` ((min, max, oversampling) each),
    ``expand_p1``, ``group_by`` (only 'asu'), ``res_limit``, ``model`` ('gnm' or 'rb'), ``gnm_cutoff``,
    ``gamma_intra``, ``gamma_inter``; ``batch_size`` and ``n_processes`` are accepted and unused
    (the computation is vectorised). Keyword-only: ``device``, ``dtype`` (float64 default, or float32),
    ``xyz``/``adp`` overrides (see the module docstring), ``lever_arms`` ('eryx', default, reproduces
    eryx's A matrix, whose rotational lever arms are running sums of the centred coordinates; 'centered'
    uses each atom's position relative to its ASU mean), ``progress`` (tqdm bars, default True).

    Attributes have eryx's meaning and shapes; ``Winv`` is real (eryx stores it as complex with a zero
    imaginary part). :meth:`update` swaps spring constants, coordinates or B-factors without re-reading
    the file.
    """

    def __init__(
        self,
        pdb_path,
        hsampling,
        ksampling,
        lsampling,
        expand_p1=True,
        group_by="asu",
        res_limit=0.0,
        model="gnm",
        gnm_cutoff=4.0,
        gamma_intra=1.0,
        gamma_inter=1.0,
        batch_size=10000,
        n_processes=8,
        *,
        device=None,
        dtype=None,
        xyz=None,
        adp=None,
        lever_arms="eryx",
        progress=True,
    ):
        self.hsampling = hsampling
        self.ksampling = ksampling
        self.lsampling = lsampling
        self._sampling = check_samplings(hsampling, ksampling, lsampling)
        if group_by != "asu":
            raise ValueError(
                f"group_by={group_by!r} is not supported: only group_by='asu' (rigid ASUs) is implemented "
                "(eryx's group_by=None leaves Amat unset and fails later)"
            )
        if model not in ("gnm", "rb"):
            raise ValueError(f"model must be 'gnm' or 'rb', not {model!r}")
        if lever_arms not in ("eryx", "centered"):
            raise ValueError(f"lever_arms must be 'eryx' or 'centered', not {lever_arms!r}")
        check_res_limit(res_limit)
        if model == "gnm":
            check_positive(gamma_intra, "gamma_intra")
            check_positive(gamma_inter, "gamma_inter")
            if isinstance(gnm_cutoff, torch.Tensor):
                gnm_cutoff = float(gnm_cutoff)
            check_positive(gnm_cutoff, "gnm_cutoff")
        self.batch_size = batch_size
        self.n_processes = n_processes
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.lever_arms = lever_arms
        self.progress = progress
        self._xyz_override, self._adp_override = xyz, adp
        self._setup(pdb_path, expand_p1=expand_p1, res_limit=res_limit, group_by=group_by)
        self._setup_phonons(pdb_path, model, gnm_cutoff, gamma_intra, gamma_inter)

    # ------------------------------------------------------------------ parameters

    def update(self, *, gamma_intra=None, gamma_inter=None, xyz=None, adp=None):
        """Replace spring constants, coordinates and/or B-factors and recompute what depends on them.

        The cheap way to evaluate the model many times (fitting, gradients): the file, the grid and
        the contact list are kept (the contacts stay those found at construction). Tensors with
        ``requires_grad`` carry their gradient through the next :meth:`apply_disorder`.
        """
        if xyz is not None or adp is not None:
            self._xyz_override = xyz if xyz is not None else self._xyz_override
            self._adp_override = adp if adp is not None else self._adp_override
            self._apply_overrides()
        if xyz is not None:
            self._build_A()
            self._build_M()
        if getattr(self, "gnm", None) is None:
            if gamma_intra is not None or gamma_inter is not None:
                raise ValueError("gamma_intra/gamma_inter only apply to model='gnm'")
            return self
        if gamma_intra is not None:
            self.gnm.gamma_intra = check_positive(gamma_intra, "gamma_intra")
        if gamma_inter is not None:
            self.gnm.gamma_inter = check_positive(gamma_inter, "gamma_inter")
        if gamma_intra is not None or gamma_inter is not None:
            self.gnm.build_gamma()
        self.compute_gnm_phonons()
        self.compute_covariance_matrix()  # the ADPs follow the new springs
        return self

    # ------------------------------------------------------------------ set-up

    def _setup(self, pdb_path, expand_p1, res_limit, group_by) -> None:
        """Read the model, build the hkl/q grid, the resolution mask and the 3x3x3 supercell."""
        self.model = AtomicModel(pdb_path, expand_p1, device=self.device, dtype=self.dtype)
        n_copies = int(self.model.xyz.shape[0])
        if n_copies != self.model.n_asu:
            raise ValueError(
                f"{os.path.basename(str(pdb_path))}: expand_p1={expand_p1!r} gives {n_copies} cop{'y' if n_copies == 1 else 'ies'} of the atoms "
                f"but the symmetry operations describe {self.model.n_asu} ASUs; use expand_p1=True with the "
                "asymmetric unit (eryx fails on this combination, e.g. a '_p1' file with expand_p1=False)"
            )
        self._apply_overrides()
        # per-axis Miller indices only: the per-q-point grids below are computed when read
        self.res_limit = res_limit
        self._axes = grid_axes(self.hsampling, self.ksampling, self.lsampling, dtype=self.dtype, device=self.device)
        self.map_shape = tuple(int(a.numel()) for a in self._axes)

        self.crystal = Crystal(atomic_model=self.model)
        self.crystal.supercell_extent(1, 1, 1)  # the reference cell and its 26 neighbours
        self.id_cell_ref = self.crystal.hkl_to_id((0, 0, 0))
        self.n_cell = int(self.crystal.n_cell)
        self.n_asu = int(self.model.n_asu)
        self.n_atoms_per_asu = int(self.model.xyz.shape[-2])
        self.n_dof_per_asu_actual = 3 * self.n_atoms_per_asu
        self.group_by = group_by
        self.n_dof_per_asu = 6
        self.n_dof_per_cell = self.n_dof_per_asu * self.n_asu

    # Per-q-point attributes of eryx, computed when read (a paper-scale grid would need gigabytes for each).

    @property
    def hkl_grid(self) -> torch.Tensor:
        """Miller indices of every grid point, (n_points, 3), in the map's flat (C) order."""
        return generate_grid(self.model.A_inv, self.hsampling, self.ksampling, self.lsampling, return_hkl=True)[0]

    @property
    def q_grid(self) -> torch.Tensor:
        """q-vectors ``2 pi A_inv^T hkl`` of every grid point, (n_points, 3)."""
        return 2 * math.pi * (self.hkl_grid @ self.model.A_inv)

    @property
    def res_mask(self) -> torch.Tensor:
        """Whether each grid point is coarser than ``res_limit``, (n_points,) bool."""
        return self._keep(self.hkl_grid)

    def _keep(self, hkl: torch.Tensor) -> torch.Tensor:
        """The resolution mask of Miller indices (..., 3)."""
        mask, _ = get_resolution_mask(self.model.cell, hkl.reshape(-1, 3), self.res_limit)
        return mask.reshape(hkl.shape[:-1])

    def _apply_overrides(self):
        """Put user tensors (possibly requiring grad) in place of the file's coordinates / B-factors."""
        override_atoms(self.model, self._xyz_override, self._adp_override, self.dtype, self.device)

    def _setup_phonons(self, pdb_path, model, gnm_cutoff, gamma_intra, gamma_inter):
        """Rigid-body matrices, k-vectors, then GNM phonons and covariance, or eryx's 'rb' model."""
        check_rigid_bodies(self)  # a single atom or collinear atoms: refused by name (StructureError)
        self._build_A()
        self._build_M()
        self._build_kvec_Brillouin()
        if model == "gnm":
            self._setup_gnm(pdb_path, gnm_cutoff=gnm_cutoff, gamma_intra=gamma_intra, gamma_inter=gamma_inter)
            self.compute_gnm_phonons()
            check_network(self)  # zero modes beyond the acoustic ones: refused with the numbers, before any map
            self.compute_covariance_matrix()  # covar and ADP
        else:
            self.compute_rb_phonons()

    def _setup_gnm(self, pdb_path, gnm_cutoff, gamma_intra, gamma_inter) -> None:
        """The Gaussian network model of the crystal (contacts found from this model's coordinates)."""
        self.gnm = GaussianNetworkModel.from_model(self.model, gnm_cutoff, gamma_intra, gamma_inter)

    def _build_A(self):
        """``Amat`` (n_asu, n_atoms*3, 6): rigid-body displacements to atomic displacements."""
        self._arms = phonons.lever_arms(self.model.xyz, self.lever_arms)
        self._A = phonons.rigid_body_projection(self._arms)
        self.Amat = self._A.reshape(self.n_asu, self.n_dof_per_asu_actual, self.n_dof_per_asu)

    def _build_M(self):
        """``Linv`` (n_asu*6, n_asu*6): inverse Cholesky factor of the projected mass matrix."""
        A = self._A.to(torch.float64)
        self._Linv64 = phonons.mass_whitening(phonons.projected_mass(A, self.model.masses.to(torch.float64)))
        self.Linv = self._Linv64.to(self.dtype)

    def _build_M_allatoms(self):
        """Dense all-atom mass matrix (n_asu, n_atoms*3, n_asu, n_atoms*3) (small structures only)."""
        m = self.model.masses.reshape(-1).repeat_interleave(3)
        n = self.n_dof_per_asu_actual
        return torch.diag(m).reshape(self.n_asu, n, self.n_asu, n)

    def _project_M(self, M_allatoms) -> torch.Tensor:
        """``A^T M_0 A`` per ASU pair: (n_asu, 6, n_asu, 6) from a dense all-atom mass matrix."""
        M = as_real(M_allatoms, self.dtype, self.device)
        return torch.einsum("iap,iajb,jbq->ipjq", self.Amat, M, self.Amat)

    def _center_kvec(self, x, L):
        """``x / L`` folded into [-1/2, 1/2) (a Python float, as eryx)."""
        r = int(x) % int(L)
        return (r - L if 2 * r >= L else r) / L

    def _build_kvec_Brillouin(self) -> None:
        """``kvec`` (n_h, n_k, n_l, 3) sampling the first Brillouin zone, and ``kvec_norm`` (..., 1)."""
        n = [s[2] for s in self._sampling]
        self.kvec, self.kvec_norm = phonons.kvec_grid(self.model.A_inv, *n)

    def _at_kvec_from_miller_points(self, hkl_kvec) -> torch.Tensor:
        """Flat map indices of the q-points whose k-vector is ``hkl_kvec`` (grid indices congruent to it)."""
        n = [s[2] for s in self._sampling]
        idx = [torch.arange(int(h0), size, step, device=self.device) for h0, size, step in zip(hkl_kvec, self.map_shape, n)]
        _, nk, nl = self.map_shape
        return ((idx[0][:, None, None] * nk + idx[1][None, :, None]) * nl + idx[2][None, None, :]).reshape(-1)

    # ------------------------------------------------------------------ phonons

    def compute_hessian(self):
        """Projected Hessian (n_asu, 6, n_cell, n_asu, 6), complex as in eryx (the values are real)."""
        return self._hessian().to(complex_dtype(self.dtype))

    # The phonon linear algebra (small matrices) runs in float64 whatever the working dtype: the
    # acoustic modes near k = 0 make K(k) ill-conditioned, and float32 would blur eryx's absolute
    # zero-frequency rule. Results are cast back to the working dtype.

    def _hessian(self):
        A = self._A.to(torch.float64)
        return phonons.projected_hessian(A, tuple(self.gnm.contacts), self.gnm.gamma.to(torch.float64), self.id_cell_ref)

    def _dynamical(self):
        """K(k) for every k-vector, (n_k, n, n) complex128, k in C order of the (n_h, n_k, n_l) grid."""
        return phonons.dynamical_matrices(
            self._hessian(), self.kvec.to(torch.float64), self.crystal.cell_origins().to(torch.float64)
        )

    def compute_gnm_phonons(self):
        """``V`` (n_h, n_k, n_l, n, n) and ``Winv`` (n_h, n_k, n_l, n) from the GNM dynamical matrices."""
        self._K = self._dynamical()
        V, Winv = phonons.phonon_modes(self._K, self._Linv64)
        grid = tuple(self.kvec.shape[:3])
        self.V = V.reshape(grid + V.shape[-2:]).to(complex_dtype(self.dtype))
        self.Winv = Winv.reshape(grid + Winv.shape[-1:]).to(self.dtype)

    def compute_rb_phonons(self):
        """eryx's 'rb' model: identity modes, ``Winv`` a Gaussian of |k| (scaled by |kvec[3,0,0]|)."""
        self._K = None
        self.gnm = None
        weight = phonons.rb_mode_weight(self.kvec)
        n = self.n_dof_per_cell
        eye = torch.eye(n, dtype=complex_dtype(self.dtype), device=self.device)
        self.V = eye.expand(weight.shape + (n, n)).clone()
        self.Winv = weight[..., None].expand(weight.shape + (n,)).clone()

    def compute_covariance_matrix(self) -> None:
        """``covar`` (n_asu, 6, n_cell, n_asu, 6) and ``ADP`` (n_atoms,), scaled to the mean data B-factor."""
        K = self._K if getattr(self, "_K", None) is not None else self._dynamical()
        kvec = self.kvec.to(torch.float64)
        Kinv = phonons.inverse_dynamical(K)
        covar = phonons.lattice_covariance(Kinv, kvec, self.crystal.cell_origins().to(torch.float64))
        adp = phonons.adp_from_covariance(covar[:, self.id_cell_ref, :].diagonal().real, self._A.to(torch.float64))
        scale = self.model.adp.to(torch.float64).mean() / (8 * math.pi**2 * adp.mean() / 3)
        self.ADP = (adp * scale).to(self.dtype)
        n = self.n_dof_per_asu
        self.covar = (covar.real * scale).reshape(self.n_asu, n, self.n_cell, self.n_asu, n).to(self.dtype)

    # ------------------------------------------------------------------ intensity

    def _class_operators(self, rank: int, cluster: bool = False):
        """Per k-vector class: contraction matrices B (n_k, n, R), weights (n_k, R) or None, NaN flags (n_k,).

        ``cluster``: for ``rank >= 0``, every mode degenerate with mode ``rank`` at that k-vector is
        kept (weights zero elsewhere), so the map does not depend on how the eigensolver picked a
        basis inside a degenerate eigenspace.
        """
        n = self.n_dof_per_cell
        V = self.V.reshape(-1, n, n)
        Winv = self.Winv.reshape(-1, n)
        if rank >= 0 and cluster:
            w = Winv[:, rank : rank + 1]
            nan = w[:, 0].isnan()
            same = (Winv - w).abs() <= DEGENERATE_RTOL * torch.maximum(Winv.abs(), w.abs())
            return V, torch.where(same & ~nan[:, None], Winv, torch.zeros_like(Winv)), nan
        if rank >= 0:
            w = Winv[:, rank : rank + 1]
            nan = w[:, 0].isnan()
            return V[:, :, rank : rank + 1], torch.where(nan[:, None], torch.zeros_like(w), w), nan
        nan = Winv.isnan().any(dim=-1)
        if self._K is None:  # no dynamical matrix (the 'rb' model): straight from the modes
            return V, torch.where(Winv.isnan(), torch.zeros_like(Winv), Winv), nan
        # F K^-1 F^H = |F L^-H|^2 with K = L L^H; NaN classes get the identity so the factorisation exists
        eye = torch.eye(n, dtype=self._K.dtype, device=self.device)
        K = torch.where(nan[:, None, None], eye, self._K)
        L = torch.linalg.cholesky(K)
        B = torch.linalg.solve_triangular(L, eye.expand(K.shape), upper=False).mH
        return B, None, nan

    def _centrosymmetric(self, B, weights, nan_class) -> bool:
        """Whether the operators of k-vector -k are the conjugates of those of k, to round-off.

        Then the map of all modes is centrosymmetric (see :mod:`eryx_port.diffuse`). Checked on the
        dynamical matrices where there are (an exact identity of real force constants), else on the
        covariance ``B diag(w) B^H`` itself (eryx's 'rb' weights are not symmetric in k).
        """
        partner = diffuse.mirror_classes(tuple(s[2] for s in self._sampling), device=nan_class.device)
        if not torch.equal(nan_class, nan_class[partner]):
            return False
        if self._K is not None:
            M = self._K.detach()  # a yes/no on values: no graph for the fitting loop's backward pass
        else:
            w = torch.ones(B.shape[::2], dtype=B.real.dtype, device=B.device) if weights is None else weights.detach()
            M = (B.detach() * w.to(B.dtype)[:, None, :]) @ B.detach().mH
        diff = (M - M[partner].conj()).abs().amax(dim=(-2, -1))
        return bool(((diff <= _CONJUGATE_RTOL * M.abs().amax(dim=(-2, -1))) | nan_class).all())

    def apply_disorder(self, rank=-1, outdir=None, use_data_adp=False, *, degenerate="mode", out=None, max_memory=None):
        """One-phonon diffuse intensity on the flattened grid (n_points,), real; ``rank >= 0``: one mode only.

        ``use_data_adp``: Debye-Waller factors from the data B-factors (``adp[0] / 8 pi^2``) instead
        of the GNM's ``ADP``. With ``outdir`` the map is also saved as ``rank_{rank:05}.npy`` there.
        ``degenerate`` (``rank >= 0`` only): ``"mode"`` (eryx's map of mode ``rank`` alone; where that
        mode is degenerate with another, which vector of the eigenspace it is depends on the eigensolver,
        in eryx as here) or ``"cluster"`` (the map summed over every mode degenerate with it at each
        k-vector: the same whatever basis the eigensolver returned).
        ``out``: a tensor or NumPy array (a memmap of an ``.npy`` file, say) of ``map_shape`` or
        (n_points,) elements to write the map into slab by slab; it is returned, flattened. Working
        memory besides the map stays below ``max_memory`` bytes (default: a quarter of what is available).
        """
        n = self.n_dof_per_cell
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not -1 <= rank < n:
            raise ValueError(f"rank must be -1 (all modes) or a mode number in [0, {n}), got {rank!r}")
        if degenerate not in ("mode", "cluster"):
            raise ValueError(f"degenerate must be 'mode' or 'cluster', got {degenerate!r}")
        if use_data_adp:
            U = self.model.adp[0] / (8 * math.pi**2)
        else:
            if not hasattr(self, "ADP"):
                raise ValueError("this model has no ADP (model='rb' computes no covariance): call apply_disorder(use_data_adp=True)")
            U = self.ADP
        target = None
        if out is not None:
            if not isinstance(out, (torch.Tensor, np.ndarray)):
                raise ValueError(f"out must be a torch tensor or a NumPy array, not {type(out).__name__}")
            if out.size != math.prod(self.map_shape) if isinstance(out, np.ndarray) else out.numel() != math.prod(self.map_shape):
                raise ValueError(f"out must have {math.prod(self.map_shape)} elements (map_shape {self.map_shape}), got shape {tuple(out.shape)}")
            if out.dtype not in (np.float64, np.float32, torch.float64, torch.float32):
                raise ValueError(f"out must hold float64 or float32 values, not {out.dtype}")
            target = out.reshape(self.map_shape)
        if max_memory is not None and (isinstance(max_memory, bool) or not isinstance(max_memory, numbers.Real) or max_memory <= 0):
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        B, weights, nan_class = self._class_operators(int(rank), cluster=degenerate == "cluster")
        sampling = tuple(s[2] for s in self._sampling)
        ff = (self.model.ff_a[0], self.model.ff_b[0], self.model.ff_c[0])
        Id = diffuse.onephonon_map(
            self._axes, sampling, self.model.A_inv, self.model.xyz, self._arms, ff, U, B, weights,
            nan_class=nan_class, keep=self._keep if self.res_limit > 0 else None, out=target, max_memory=max_memory, progress=self.progress,
            q_max=2 * math.pi / self.res_limit if self.res_limit > 0 else None,
            symmetric=int(rank) < 0 and self._centrosymmetric(B, weights, nan_class),
        ).reshape(-1)
        if outdir is not None:
            np.save(os.path.join(outdir, f"rank_{rank:05}.npy"), Id.detach().cpu().numpy() if isinstance(Id, torch.Tensor) else Id)
        return Id
