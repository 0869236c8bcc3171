# SPDX-License-Identifier: GPL-2.0-or-later
"""RigidBodyRotations beyond the recorded calls: the rotations against scipy, the grid-engine maps
against a direct sum over rotated copies with eryx_port.scatter, eryx's ensemble mode, seeds, the
small-angle limit, the scan, the gradient fit and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from eryx_port import scatter
from eryx_port.models import RigidBodyRotations
from eryx_port.models.rotations import RotationDraws, draw_rotations, numpy_legacy_draws
from structures import structure as pdb_path

SAMPLING = ((-1, 1, 2), (-1, 1, 1), (-1, 1, 2))


@pytest.fixture(scope="module")
def model():
    return RigidBodyRotations(pdb_path("5zck"), *SAMPLING, res_limit=4.6)


@pytest.fixture(scope="module")
def triclinic():
    return RigidBodyRotations(pdb_path("2ol9"), (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), expand_p1=False)


def _direct_maps(model, sigmas, draws):
    """sum_asu <|A|^2> - |<A>|^2 from eryx_port.scatter, one rotated copy at a time (the slow, plain way)."""
    q = model.q_grid[model.mask]
    m = model.model
    xyz = model.rotated_coordinates(torch.as_tensor(sigmas, dtype=torch.float64), draws)
    out = torch.zeros(len(sigmas), model.q_grid.shape[0], dtype=torch.float64)
    for s in range(len(sigmas)):
        for asu in range(m.n_asu):
            A = torch.stack([scatter.structure_factors(q, x, m.ff_a[asu], m.ff_b[asu], m.ff_c[asu],
                                                       U=m.adp[asu] / (8 * math.pi**2)) for x in xyz[s, asu]])
            out[s, model.mask] += (A.abs() ** 2).mean(0) - A.mean(0).abs() ** 2
    out[:, ~model.mask] = float("nan")
    return out


def test_rotations_are_scipys_rotation_vectors_about_random_axes():
    """Each matrix turns by sigma * z degrees about the third column of the Haar rotation of the
    normalised quaternion: scipy's from_rotvec of that vector, and it leaves its axis fixed."""
    draws = draw_rotations((6,), torch.Generator().manual_seed(1))
    R = RigidBodyRotations.generate_rotations_around_axis(7.5, 6, draws=draws).numpy()
    q, z = draws.quaternions.numpy(), draws.angles.numpy()
    axis = Rotation.from_quat(q).as_matrix()[:, :, 2]
    expected = Rotation.from_rotvec(np.deg2rad(7.5) * z[:, None] * axis).as_matrix()
    np.testing.assert_allclose(R, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.einsum("rij,rj->ri", R, axis), axis, atol=1e-15)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-15)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-14)


def test_numpy_legacy_draws_follow_the_global_generator_as_eryx_reads_it():
    np.random.seed(11)
    quats = Rotation.random(4).as_quat()
    thetas = np.random.randn(4)
    d = numpy_legacy_draws(np.random.RandomState(11), (4,))
    np.testing.assert_allclose(d.quaternions.numpy() / np.linalg.norm(d.quaternions.numpy(), axis=1)[:, None],
                               quats, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(d.angles.numpy(), thetas)


def test_grid_engine_maps_match_a_direct_sum_over_rotated_copies(model):
    draws = draw_rotations((2, model.model.n_asu, 3), torch.Generator().manual_seed(2))
    I = model.apply_disorder([2.0, 6.0], num_rot=3, draws=draws)
    expected = _direct_maps(model, [2.0, 6.0], draws)
    assert torch.equal(torch.isnan(I), torch.isnan(expected)) and (~model.mask).any()
    keep = ~torch.isnan(expected)
    assert expected[keep].abs().max() > 0
    torch.testing.assert_close(I[keep], expected[keep], rtol=1e-9, atol=1e-11 * float(expected[keep].abs().max()))


def test_triclinic_map_matches_the_direct_sum(triclinic):
    draws = draw_rotations((1, 1, 4), torch.Generator().manual_seed(3))
    I = triclinic.apply_disorder(4.0, num_rot=4, draws=draws)
    expected = _direct_maps(triclinic, [4.0], draws)
    torch.testing.assert_close(I, expected, rtol=1e-9, atol=1e-11 * float(expected.abs().max()), equal_nan=True)


def test_ensemble_dir_saves_one_rotated_copy_per_asu_and_the_map_is_zero(model, tmp_path):
    draws = draw_rotations((2, model.model.n_asu, 1), torch.Generator().manual_seed(4))
    I = model.apply_disorder([1.0, 3.0], num_rot=7, ensemble_dir=str(tmp_path), draws=draws)
    assert torch.all(I[:, model.mask] == 0) and torch.isnan(I[:, ~model.mask]).all()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"rot_00007_asu{a}.npy" for a in range(model.model.n_asu)]
    xyz = model.rotated_coordinates(torch.tensor([1.0, 3.0], dtype=torch.float64), draws)
    m = model.model
    for a in range(m.n_asu):  # the last sigma's copy stays, as in eryx
        saved = np.load(tmp_path / f"rot_00007_asu{a}.npy")
        A = scatter.structure_factors(model.q_grid[model.mask], xyz[1, a, 0], m.ff_a[a], m.ff_b[a], m.ff_c[a],
                                      U=m.adp[a] / (8 * math.pi**2)).numpy()
        assert saved.dtype == np.complex128 and saved.shape == A.shape
        np.testing.assert_allclose(saved, A, rtol=1e-10, atol=1e-12 * np.abs(A).max())


def test_seed_and_generator_make_runs_reproducible(triclinic):
    path = pdb_path("2ol9")
    a = RigidBodyRotations(path, (-1, 1, 1), (-1, 1, 1), (0, 1, 1), expand_p1=False, seed=5).apply_disorder(3.0, 5)
    b = RigidBodyRotations(path, (-1, 1, 1), (-1, 1, 1), (0, 1, 1), expand_p1=False, seed=5).apply_disorder(3.0, 5)
    c = RigidBodyRotations(path, (-1, 1, 1), (-1, 1, 1), (0, 1, 1), expand_p1=False, seed=6).apply_disorder(3.0, 5)
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert not torch.allclose(a, c)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    torch.testing.assert_close(triclinic.apply_disorder(2.0, 4, generator=g1), triclinic.apply_disorder(2.0, 4, generator=g2),
                               rtol=0, atol=0, equal_nan=True)


def test_small_angles_give_a_map_growing_as_sigma_squared(model):
    """<|A|^2> - |<A>|^2 is the variance of A over the rotations: zero without rotation, ~ sigma^2 for small sigma."""
    one = draw_rotations((1, model.model.n_asu, 5), torch.Generator().manual_seed(7))
    draws = RotationDraws(one.quaternions.expand(3, -1, -1, -1), one.angles.expand(3, -1, -1))  # the same per sigma
    I = model.apply_disorder([0.0, 0.01, 0.02], num_rot=5, draws=draws)[:, model.mask]
    scale = model._maps(torch.tensor([0.02], dtype=torch.float64), 5, None,
                        RotationDraws(draws.quaternions[2:], draws.angles[2:]), incoherent_only=True).max()
    assert I[0].abs().max() <= 1e-13 * scale
    moved = model.q_mags[model.mask] > 0  # at q = 0 every copy scatters alike: a variance of zero, to round-off
    assert I[1:, ~moved].abs().max() <= 1e-13 * scale
    ratio = I[2, moved] / I[1, moved]
    # the sample of 5 angles has a nonzero third moment: the next term is O(sigma^3), 0.2% here
    assert torch.all(I[1, moved] > 0) and torch.allclose(ratio, torch.full_like(ratio, 4.0), rtol=5e-3)


def test_optimize_finds_the_sigma_of_the_target(model, capsys):
    n_asu = model.model.n_asu
    draws = draw_rotations((3, n_asu, 4), torch.Generator().manual_seed(8))
    target = model.apply_disorder(2.5, 4, draws=RotationDraws(draws.quaternions[1:2], draws.angles[1:2]))
    ccs, sigmas = model.optimize(target.reshape(model.map_shape).numpy(), 1.0, 4.0, n_search=3, num_rot=4, draws=draws)
    assert sigmas.tolist() == [1.0, 2.5, 4.0] and int(torch.argmax(ccs)) == 1
    assert abs(float(ccs[1]) - 1) < 1e-12 and float(ccs[0]) < 1 - 1e-6
    assert model.opt_sigma == 2.5 and model.opt_map.shape == model.map_shape
    torch.testing.assert_close(model.opt_map.reshape(-1), target[0], rtol=1e-12, atol=0, equal_nan=True)
    assert "Optimal sigma: 2.5" in capsys.readouterr().out


def test_fit_recovers_sigma_from_twice_the_value(triclinic):
    draws = draw_rotations((1, 1, 8), torch.Generator().manual_seed(10))
    target = triclinic.apply_disorder(3.0, 8, draws=draws)[0]
    sigma, fitted = triclinic.fit(target, 6.0, num_rot=8, draws=draws)
    assert abs(float(sigma) / 3.0 - 1) < 0.01
    keep = ~torch.isnan(target)
    torch.testing.assert_close(fitted[keep], target[keep], rtol=1e-3, atol=0)


def test_float32_and_float64_agree():
    path = pdb_path("2ol9")
    draws = draw_rotations((1, 1, 3), torch.Generator().manual_seed(12))
    I64 = RigidBodyRotations(path, (-1, 1, 1), (-1, 1, 1), (0, 1, 1), expand_p1=False).apply_disorder(3.0, 3, draws=draws)
    m32 = RigidBodyRotations(path, (-1, 1, 1), (-1, 1, 1), (0, 1, 1), expand_p1=False, dtype=torch.float32)
    I32 = m32.apply_disorder(3.0, 3, draws=RotationDraws(*(d.float() for d in draws)))
    assert I32.dtype == torch.float32
    torch.testing.assert_close(I32.double(), I64, rtol=2e-3, atol=1e-4 * float(I64.abs().max()), equal_nan=True)


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="target has shape"):
        model.optimize(np.ones((2, 2, 2)), 1.0, 2.0, n_search=2, num_rot=2)
    with pytest.raises(AssertionError):  # eryx asserts the target's shape
        model.optimize(np.ones((2, 2, 2)), 1.0, 2.0, n_search=2, num_rot=2)
    with pytest.raises(ValueError, match="num_rot"):
        model.apply_disorder(1.0, num_rot=0)
    with pytest.raises(ValueError, match="finite"):
        model.apply_disorder([1.0, float("nan")], num_rot=2)
    with pytest.raises(ValueError, match="draws must have"):
        model.apply_disorder(1.0, num_rot=2, draws=draw_rotations((1, 1, 2)))
    with pytest.raises(ValueError, match="axis"):
        RigidBodyRotations.generate_rotations_around_axis(1.0, 3, axis=(0, 0, 0))
    with pytest.raises(ValueError, match="ensemble_dir"):
        model.apply_disorder(1.0, num_rot=2, ensemble_dir="/nonexistent/folder")
    with pytest.raises(ValueError, match="expand_p1=True"):  # eryx: IndexError on the second ASU
        RigidBodyRotations(pdb_path("5zck"), *SAMPLING, expand_p1=False)
    with pytest.raises(ValueError, match="seed or generator"):
        RigidBodyRotations(pdb_path("2ol9"), *SAMPLING, seed=1, generator=torch.Generator())


def test_numpy_scalar_sigma_is_accepted(triclinic):
    """eryx wraps only Python floats/ints (len() of an np.float64 fails); the port takes any real scalar."""
    draws = draw_rotations((1, 1, 2), torch.Generator().manual_seed(13))
    a = triclinic.apply_disorder(np.float64(2.0), 2, draws=draws)
    b = triclinic.apply_disorder(2.0, 2, draws=draws)
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def test_a_small_memory_budget_changes_nothing_but_the_chunks(model, tmp_path):
    small = RigidBodyRotations(pdb_path("5zck"), *SAMPLING, res_limit=4.6, max_memory=20_000)
    draws = draw_rotations((2, model.model.n_asu, 3), torch.Generator().manual_seed(14))
    expected = model.apply_disorder([1.0, 3.0], 3, draws=draws)
    scale = float(expected[~torch.isnan(expected)].abs().max())
    torch.testing.assert_close(small.apply_disorder([1.0, 3.0], 3, draws=draws), expected, rtol=1e-10,
                               atol=1e-12 * scale, equal_nan=True)
    one = RotationDraws(draws.quaternions[:, :, :1], draws.angles[:, :, :1])
    small.apply_disorder([1.0, 3.0], 3, ensemble_dir=str(tmp_path), draws=one)
    whole = tmp_path / "whole"
    whole.mkdir()
    model.apply_disorder([1.0, 3.0], 3, ensemble_dir=str(whole), draws=one)
    for a in range(model.model.n_asu):
        saved = np.load(whole / f"rot_00003_asu{a}.npy")  # the engine rounds slabs a little differently
        np.testing.assert_allclose(np.load(tmp_path / f"rot_00003_asu{a}.npy"), saved, rtol=0, atol=1e-13 * np.abs(saved).max())
