# SPDX-License-Identifier: GPL-2.0-or-later
"""OnePhonon in torch: building blocks against independent formulas, NaN pattern, paths, dtypes, bad input.

Parity with NumPy eryx is replayed from the recorded traces in tests/test_parity.py (adapters in
eryx_port/parity/models/onephonon.py); these tests check what traces cannot.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eryx_port import OnePhonon, diffuse, grid_factors, phonons
from structures import structure

SMALL = ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2))




@pytest.fixture(scope="module")
def zck():
    return OnePhonon(structure("5zck"), *SMALL, progress=False)


@pytest.fixture(scope="module")
def n2h():
    return OnePhonon(structure("7n2h"), (-1, 1, 3), (-1, 1, 3), (-1, 1, 2), gnm_cutoff=3.5, gamma_inter=0.25, progress=False)


# ---------------------------------------------------------------- building blocks


def test_center_kvec_matches_vectorised_fractions(zck):
    for L in (1, 2, 3, 4, 5, 7):
        expected = phonons.centered_k_fraction(L)
        got = torch.tensor([zck._center_kvec(x, L) for x in range(L)], dtype=torch.float64)
        assert torch.equal(got, expected)
        assert float(expected.min()) >= -0.5 and float(expected.max()) < 0.5
    assert zck._center_kvec(5, 4) == 0.25 and zck._center_kvec(-1, 4) == -0.25


def test_lever_arms_conventions():
    xyz = torch.arange(2 * 3 * 3, dtype=torch.float64).reshape(2, 3, 3) ** 1.5
    centered = phonons.lever_arms(xyz, "centered")
    assert torch.allclose(centered.sum(dim=1), torch.zeros(2, 3, dtype=torch.float64), atol=1e-12)
    eryx = phonons.lever_arms(xyz, "eryx")  # running sums over all atoms, ASU after ASU
    assert torch.allclose(eryx[0, 1], centered[0, 0] + centered[0, 1])
    assert torch.allclose(eryx[1, 0], centered[0].sum(0) + centered[1, 0])
    with pytest.raises(ValueError, match="lever-arm convention"):
        phonons.lever_arms(xyz, "com")


def test_rigid_body_projection_moves_atoms_rigidly():
    arms = torch.tensor([[[1.0, 2.0, 3.0], [-0.5, 0.25, 2.0]]], dtype=torch.float64)
    A = phonons.rigid_body_projection(arms)
    t, lib = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64), torch.tensor([0.01, 0.02, -0.03], dtype=torch.float64)
    u = A @ torch.cat([t, lib])
    assert torch.allclose(u, t + torch.linalg.cross(lib.expand(arms.shape), arms))


def test_projected_hessian_equals_projection_of_dense_hessian(zck):
    dense = zck.gnm.compute_hessian().real  # (n_asu, n_atoms, n_cell, n_asu, n_atoms)
    A = zck._A  # (n_asu, n_atoms, 3, 6)
    expected = torch.einsum("iaxp,iacjb,jbxq->ipcjq", A, dense, A)
    got = zck.compute_hessian()
    assert got.dtype == torch.complex128
    assert torch.allclose(got.real, expected, rtol=1e-12, atol=1e-10 * expected.abs().max())
    assert torch.all(got.imag == 0)


def test_dynamical_matrix_is_hermitian_with_translation_null_space(zck):
    K = zck._K
    assert torch.allclose(K, K.mH, atol=1e-10 * K.abs().max())
    P = phonons.translation_projector(zck.n_asu)
    zero = phonons.zero_k_mask(zck.kvec)
    assert int(zero.sum()) == 1
    K0 = K[zero][0]
    assert (K0 @ P.to(K0.dtype)).abs().max() < 1e-9 * K0.abs().max()
    # the projector formula is the pseudo-inverse at k = 0 and the inverse elsewhere
    Kinv = phonons.inverse_dynamical(K)
    assert torch.allclose(Kinv[zero][0], torch.linalg.pinv(K0, hermitian=True, rtol=1e-12), rtol=1e-8, atol=1e-10 * Kinv.abs().max())
    assert torch.allclose(Kinv[~zero], torch.linalg.inv(K[~zero]), rtol=1e-8, atol=1e-12 * Kinv.abs().max())


def test_pseudo_inverse_handles_zero_modes_away_from_k0():
    """histidine: no contact between cells along a, so K(k) at k_a = 1/2 has the translations as zero modes."""
    model = OnePhonon(structure("histidine"), *SMALL, progress=False)
    K = model._K
    Kinv = phonons.inverse_dynamical(K)
    expected = torch.linalg.pinv(K, hermitian=True, rtol=phonons.PINV_RCOND)
    assert torch.allclose(Kinv, expected, rtol=1e-8, atol=1e-10 * expected.abs().max())
    assert int(model.Winv.isnan().sum()) == 6  # 3 zero modes at k = 0 and 3 at k = (1/2, 0, 0)


def test_modes_diagonalise_the_mass_weighted_dynamical_matrix(zck):
    n = zck.n_dof_per_cell
    V, Winv, K = zck.V.reshape(-1, n, n), zck.Winv.reshape(-1, n), zck._K
    M = torch.linalg.inv(zck.Linv.T @ zck.Linv).to(V.dtype)  # mass matrix, V^H M V = I
    assert torch.allclose(V.mH @ M @ V, torch.eye(n, dtype=V.dtype).expand_as(V), atol=1e-10)
    finite = ~Winv.isnan()
    lam = (V.mH @ K @ V).diagonal(dim1=-2, dim2=-1).real
    assert torch.allclose(lam[finite] * Winv[finite], torch.ones_like(lam[finite]), rtol=1e-9)
    # eryx's rule: exactly the three acoustic modes at k = 0 have NaN
    assert int((~finite).sum()) == 3 and bool((~finite[0, :3]).all())
    assert bool((Winv[finite][1:] >= 0).all())


def _naive_factors(model, U):
    """Direct formula for the rigid-body structure factors at every q of the map (n_q, n_asu*6)."""
    q = model.q_grid.numpy()
    A = model._A.numpy()
    xyz = model.model.xyz.numpy()
    fa, fb, fc = (t[0].numpy() for t in (model.model.ff_a, model.model.ff_b, model.model.ff_c))
    qsq = (q**2).sum(1)
    f = (fa[None] * np.exp(-fb[None] * qsq[:, None, None] / (16 * np.pi**2))).sum(-1) + fc[None]
    out = []
    for m in range(xyz.shape[0]):
        amp = f * np.exp(-0.5 * qsq[:, None] * U[None]) * np.exp(1j * q @ xyz[m].T)
        out.append(np.einsum("qj,qx,jxc->qc", amp, q, A[m]))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("name", ["zck", "n2h"])
def test_structure_factors_match_direct_formula(name, request):
    model = request.getfixturevalue(name)
    U = (model.model.adp[0] / (8 * math.pi**2)).numpy()
    nh, nk, nl = model.map_shape
    axes = tuple(model.hkl_grid.reshape(nh, nk, nl, 3)[i] for i in ((slice(None), 0, 0, 0), (0, slice(None), 0, 1), (0, 0, slice(None), 2)))
    ff = (model.model.ff_a[0], model.model.ff_b[0], model.model.ff_c[0])
    F = diffuse.rigid_body_structure_factors(axes, model.model.A_inv, model.model.xyz, model._arms, ff, torch.as_tensor(U))
    expected = _naive_factors(model, U)
    got = F.reshape(expected.shape).numpy()
    assert np.abs(got - expected).max() <= 1e-12 * np.abs(expected).max()


def test_triclinic_cell_agrees_with_direct_formula():
    # a fake triclinic metric: no axis is free of cross terms
    A_inv = torch.tensor([[0.07, -0.01, 0.02], [0.0, 0.2, -0.03], [0.0, 0.0, 0.066]], dtype=torch.float64)
    G = 4 * math.pi**2 * A_inv @ A_inv.T
    assert grid_factors.plan_layout((torch.zeros(2), torch.zeros(2), torch.zeros(2)), G).coupled
    gen = torch.Generator().manual_seed(1)
    xyz = 10 * torch.rand(2, 5, 3, generator=gen, dtype=torch.float64)
    arms = phonons.lever_arms(xyz, "centered")
    ff = (torch.rand(5, 4, generator=gen, dtype=torch.float64), torch.rand(5, 4, generator=gen, dtype=torch.float64) * 10,
          torch.rand(5, generator=gen, dtype=torch.float64))
    U = torch.rand(5, generator=gen, dtype=torch.float64) * 0.3
    axes = (torch.linspace(-1, 1, 5, dtype=torch.float64), torch.linspace(-2, 2, 3, dtype=torch.float64), torch.linspace(0, 1, 4, dtype=torch.float64))
    got = diffuse.rigid_body_structure_factors(axes, A_inv, xyz, arms, ff, U)
    # the direct sum over atoms and q-points
    hkl = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    q = 2 * math.pi * hkl @ A_inv
    qsq = (q**2).sum(-1)
    a, b, c = ff
    f = (a * torch.exp(-b * qsq[..., None, None] / (16 * math.pi**2))).sum(-1) + c
    amp = (f * torch.exp(-0.5 * qsq[..., None] * U))[..., None, :] * torch.exp(1j * torch.einsum("hklx,mjx->hklmj", q, xyz))
    A = phonons.rigid_body_projection(arms)
    expected = torch.einsum("hklmj,hklx,mjxc->hklmc", amp.to(torch.complex128), q.to(torch.complex128), A.to(torch.complex128))
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12 * expected.abs().max())


# ---------------------------------------------------------------- the map


def test_map_nan_pattern_and_values(zck):
    I = zck.apply_disorder()
    hkl = zck.hkl_grid
    integral = (hkl == hkl.round()).all(dim=1)
    assert torch.equal(I.isnan(), integral & zck.res_mask | ~zck.res_mask)
    assert bool((I[~I.isnan()] > 0).all())
    for rank, has_nan in ((0, True), (2, True), (3, False), (zck.n_dof_per_cell - 1, False)):
        Ir = zck.apply_disorder(rank=rank)
        assert bool(Ir.isnan().any()) == has_nan
        assert bool((Ir[~Ir.isnan()] >= 0).all())


def test_rank_maps_sum_to_full_map_where_all_modes_finite(n2h):
    """Cholesky path (full map) against the eigen path (sum of rank-resolved maps) for k != 0."""
    full = n2h.apply_disorder()
    ranks = torch.stack([n2h.apply_disorder(rank=r) for r in range(n2h.n_dof_per_cell)])
    finite = ~full.isnan()
    assert int(finite.sum()) > 0.5 * full.numel()
    total = ranks[:, finite].sum(0)
    assert torch.allclose(full[finite], total, rtol=1e-9)
    # where a mode is NaN (k = 0) the full map is NaN too
    assert torch.equal(ranks.isnan().any(0), ~finite)


def test_use_data_adp_changes_debye_waller_only(zck):
    I_gnm, I_data = zck.apply_disorder(), zck.apply_disorder(use_data_adp=True)
    assert torch.equal(I_gnm.isnan(), I_data.isnan())
    finite = ~I_gnm.isnan()
    assert not torch.allclose(I_gnm[finite], I_data[finite])


def test_res_limit_masks_high_resolution(tmp_path):
    model = OnePhonon(structure("5zck"), *SMALL, res_limit=4.6, progress=False)
    I = model.apply_disorder(outdir=str(tmp_path))
    assert bool((~model.res_mask).any()) and bool(I[~model.res_mask].isnan().all())
    saved = np.load(tmp_path / "rank_-0001.npy")
    np.testing.assert_array_equal(saved, I.numpy())


def test_at_kvec_indices_partition_the_map(n2h):
    Nh, Nk, Nl = (s[2] for s in (n2h.hsampling, n2h.ksampling, n2h.lsampling))
    parts = [n2h._at_kvec_from_miller_points((h, k, l)) for h in range(Nh) for k in range(Nk) for l in range(Nl)]
    every = torch.cat(parts).sort().values
    assert torch.equal(every, torch.arange(math.prod(n2h.map_shape)))
    cls = diffuse.class_index(n2h.map_shape, (Nh, Nk, Nl)).reshape(-1)
    for c, idx in enumerate(parts):
        assert bool((cls[idx] == c).all())


def test_rb_model_runs_with_data_adp():
    model = OnePhonon(structure("5zck"), (-1, 1, 4), (-1, 1, 2), (-1, 1, 2), model="rb", progress=False)
    assert model.V.shape == (4, 2, 2, 24, 24) and not bool(model.Winv.isnan().any())
    I = model.apply_disorder(use_data_adp=True)
    assert not bool(I.isnan().any()) and bool((I >= 0).all())
    origin = (model.hkl_grid == 0).all(dim=1)  # q = 0: no one-phonon scattering
    assert float(I[origin]) == 0.0 and bool((I[~origin] > 0).all())
    with pytest.raises(ValueError, match="use_data_adp=True"):
        model.apply_disorder()


def test_float32_close_to_float64(zck):
    m32 = OnePhonon(structure("5zck"), *SMALL, dtype=torch.float32, progress=False)
    I64, I32 = zck.apply_disorder(), m32.apply_disorder()
    assert I32.dtype == torch.float32
    assert torch.equal(I64.isnan(), I32.isnan())
    finite = ~I64.isnan()
    assert torch.allclose(I32[finite].double(), I64[finite], rtol=1e-3)


def test_explicit_cpu_device_and_centered_arms(zck):
    model = OnePhonon(structure("5zck"), *SMALL, device="cpu", lever_arms="centered", progress=False)
    I = model.apply_disorder()
    assert I.device.type == "cpu"
    assert torch.equal(I.isnan(), zck.apply_disorder().isnan())
    assert torch.allclose(model._arms.sum(dim=1), torch.zeros(model.n_asu, 3, dtype=torch.float64), atol=1e-10)


def test_update_matches_fresh_construction(zck):
    fresh = OnePhonon(structure("5zck"), *SMALL, gamma_intra=2.0, gamma_inter=0.5, progress=False)
    model = OnePhonon(structure("5zck"), *SMALL, progress=False).update(gamma_intra=2.0, gamma_inter=0.5)
    a, b = fresh.apply_disorder(), model.apply_disorder()
    assert torch.allclose(a[~a.isnan()], b[~b.isnan()], rtol=1e-12)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hsampling=(-1, 1, 2.5)), "oversampling must be a positive integer"),
        (dict(hsampling=(-1, 1, 0)), "oversampling must be a positive integer"),
        (dict(ksampling=(2, 1, 2)), "min 2 is larger than max 1"),
        (dict(lsampling=(-1, 1)), r"\(min, max, oversampling\)"),
        (dict(gamma_intra=0.0), "gamma_intra must be a positive"),
        (dict(gamma_inter=-1.0), "gamma_inter must be a positive"),
        (dict(gamma_inter=torch.tensor(-2.0)), "gamma_inter must be a positive"),
        (dict(gnm_cutoff=0.0), "gnm_cutoff must be a positive"),
        (dict(group_by=None), "group_by=None is not supported"),
        (dict(model="anm"), "model must be 'gnm' or 'rb'"),
        (dict(res_limit=-1.0), "res_limit must be a non-negative"),
        (dict(lever_arms="com"), "lever_arms must be"),
    ],
)
def test_bad_constructor_input(kwargs, match):
    args = dict(pdb_path=structure("5zck"), hsampling=SMALL[0], ksampling=SMALL[1], lsampling=SMALL[2], progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        OnePhonon(**args)


def test_p1_file_without_expansion_is_refused():
    with pytest.raises(ValueError, match="expand_p1=False"):
        OnePhonon(structure("5zck_p1"), *SMALL, expand_p1=False, progress=False)


def test_degenerate_rigid_body_is_refused():
    # the file reads as a single atom: rotations without inertia (eryx raises LinAlgError)
    with pytest.raises(ValueError, match="mass matrix of ASU"):
        OnePhonon(structure("pentagon"), *SMALL, progress=False)


def test_bad_apply_disorder_and_override_input(zck):
    with pytest.raises(ValueError, match="rank must be -1"):
        zck.apply_disorder(rank=zck.n_dof_per_cell)
    with pytest.raises(ValueError, match="rank must be -1"):
        zck.apply_disorder(rank=1.5)
    with pytest.raises(ValueError, match="xyz must have shape"):
        OnePhonon(structure("5zck"), *SMALL, xyz=torch.zeros(3, 3), progress=False)
    with pytest.raises(ValueError, match="adp must have shape"):
        OnePhonon(structure("5zck"), *SMALL, adp=torch.ones(5), progress=False)


@pytest.mark.slow
def test_lysozyme_193l_completes():
    """A real protein: 8 ASUs x 1001 atoms, (-2, 2, 2) on each axis (a few seconds)."""
    model = OnePhonon(structure("193l"), (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), progress=False)
    assert (model.n_asu, model.n_atoms_per_asu) == (8, 1001)
    I = model.apply_disorder()
    integral = (model.hkl_grid == model.hkl_grid.round()).all(dim=1)
    assert torch.equal(I.isnan(), integral)
    assert bool((I[~integral] > 0).all())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is absent")
def test_cuda_request_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        OnePhonon(structure("5zck"), *SMALL, device="cuda", progress=False)
