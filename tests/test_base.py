# SPDX-License-Identifier: GPL-2.0-or-later
"""Checks of eryx_port.base that do not rely on eryx: direct sums over the ASUs, the eryx bug on files
without symmetry records, Guinier's equation by hand, natural order, inputs left alone, dtypes, errors."""

import math

import numpy as np
import pytest
import torch

from eryx_port import base, map_utils
from eryx_port.pdb import AtomicModel
from eryx_port.scatter import structure_factors


def _direct_sum(path, hs, ks, ls, U=None, res_limit=0.0, coherent=False):
    """sum_asu |F_asu|^2 (or |sum_asu F_asu|^2) at every grid point, one ASU at a time: the definition."""
    model = AtomicModel(path, expand_p1=True)
    hkl, shape = map_utils.generate_grid(model.A_inv, hs, ks, ls, return_hkl=True)
    q = 2 * math.pi * hkl @ model.A_inv
    F = torch.stack([structure_factors(q, model.xyz[i], model.ff_a[i], model.ff_b[i], model.ff_c[i], U=U)
                     for i in range(model.xyz.shape[0])])
    I = (F.sum(0).abs() ** 2) if coherent else (F.abs() ** 2).sum(0)
    keep, _ = map_utils.get_resolution_mask(model.cell, hkl, res_limit)
    return hkl, torch.where(keep, I, torch.zeros_like(I)).reshape(shape)


def _without_symmetry_records(src, dst):
    """A copy of a structure without its REMARK 290 lines (eryx then takes gemmi's 3x4 operators)."""
    lines = [line for line in open(src).read().splitlines(keepends=True) if "REMARK 290" not in line]
    dst.write_text("".join(lines))
    return dst


@pytest.mark.parametrize("expand_friedel", [True, False])
def test_molecular_transform_is_the_incoherent_sum_over_asus(pdb_file, expand_friedel):
    # symmetric grid: both symmetry routes must give the direct sum at every point
    path = pdb_file("5zck.pdb")
    sampling = ((-1, 1, 2), (-2, 2, 1), (-2, 2, 1))
    U = torch.linspace(0.05, 0.4, 28, dtype=torch.float64)
    _, I = base.compute_molecular_transform(path, *sampling, U=U, expand_friedel=expand_friedel, res_limit=2.5)
    _, expected = _direct_sum(path, *sampling, U=U, res_limit=2.5)
    assert I.shape == expected.shape
    assert (expected > 0).sum() > 50
    torch.testing.assert_close(I, expected, rtol=1e-12, atol=1e-12 * float(expected.max()))


def test_trigonal_rotated_indices_match_the_direct_sum(pdb_file):
    # P 31: the operators mix h and k, so rotated indices leave the grid and are evaluated anew
    path = pdb_file("7n2h.pdb")
    sampling = ((-2, 1, 2), (-1, 1, 2), (-1, 1, 1))
    _, I = base.compute_molecular_transform(path, *sampling, U=0.2, expand_friedel=False)
    _, expected = _direct_sum(path, *sampling, U=0.2)
    # the direct sum places the ASUs with the file's SMTRY matrices, whose cos/sin 120 degrees are
    # rounded to 6 decimals (0.866025): the copies are rotated by 1e-7 rad off the exact symmetry
    # that rotating Miller indices uses, which moves the map by a few 1e-6
    torch.testing.assert_close(I, expected, rtol=1e-5, atol=1e-8 * float(expected.max()))


@pytest.mark.parametrize("expand_friedel", [True, False])
def test_no_symmetry_records_gives_the_map_of_the_full_file(pdb_file, tmp_path, expand_friedel):
    # eryx bug: without REMARK 290 its sym_ops are gemmi's 3x4 [R | t] and rotating Miller indices
    # with them fails on shapes; the port uses R. 5zck's operators are the same either way, and the
    # incoherent sum does not see the translations, so the map must equal 5zck's and the direct sum.
    src = pdb_file("5zck.pdb")
    bare = _without_symmetry_records(src, tmp_path / "5zck_no_remark290.pdb")
    model = AtomicModel(bare, expand_p1=True)
    assert all(op.shape == (3, 4) for op in model.sym_ops.values())  # the shape eryx trips on
    sampling = ((-1, 1, 2), (-2, 2, 1), (-2, 2, 1))
    _, I_bare = base.compute_molecular_transform(bare, *sampling, expand_friedel=expand_friedel)
    _, I_full = base.compute_molecular_transform(src, *sampling, expand_friedel=expand_friedel)
    _, expected = _direct_sum(src, *sampling)
    torch.testing.assert_close(I_bare, I_full, rtol=1e-12, atol=1e-12 * float(expected.max()))
    torch.testing.assert_close(I_bare, expected, rtol=1e-12, atol=1e-12 * float(expected.max()))


def test_p1_direct_path_and_friedel_expansion(pdb_file):
    # triclinic P 1, grid not symmetric in l: the direct path keeps the grid, the Friedel map covers -l too
    path = pdb_file("2ol9.pdb")
    sampling = ((-2, 2, 2), (-1, 1, 2), (0, 1, 1))
    _, I = base.compute_molecular_transform(path, *sampling, expand_friedel=False)
    _, expected = _direct_sum(path, *sampling)
    torch.testing.assert_close(I, expected, rtol=1e-12, atol=1e-12 * float(expected.max()))
    _, I_f = base.compute_molecular_transform(path, *sampling, expand_friedel=True)
    assert I_f.shape == (9, 5, 3)
    _, full = _direct_sum(path, (-2, 2, 2), (-1, 1, 2), (-1, 1, 1))
    torch.testing.assert_close(I_f, full, rtol=1e-12, atol=1e-12 * float(full.max()))


def test_crystal_transform_only_at_integral_indices(pdb_file):
    path = pdb_file("5zck.pdb")
    sampling = ((-2, 2, 2), (-1, 1, 2), (-1, 1, 1))
    q, I = base.compute_crystal_transform(path, *sampling, U=0.1, res_limit=4.0)
    hkl, expected = _direct_sum(path, *sampling, U=0.1, res_limit=4.0, coherent=True)
    integral = (hkl == hkl.round()).all(dim=1).reshape(I.shape)
    expected = torch.where(integral, expected, torch.zeros_like(expected))
    assert (I[~integral] == 0).all() and (I[integral] > 0).sum() > 5
    torch.testing.assert_close(I, expected, rtol=1e-12, atol=1e-12 * float(expected.max()))
    assert q.shape == (I.numel(), 3)


def test_crystal_transform_of_asus_stored_as_models(pdb_file):
    # the P1 file holds the 4 ASUs as models: without expansion it is the same crystal, up to the
    # file's coordinates rounded to 1e-3 A (eryx's own test compares the two at 1%)
    sampling = ((-2, 2, 1), (-2, 2, 1), (-1, 1, 1))
    _, I_p1 = base.compute_crystal_transform(pdb_file("5zck_p1.pdb"), *sampling, expand_p1=False)
    _, I = base.compute_crystal_transform(pdb_file("5zck.pdb"), *sampling, expand_p1=True)
    torch.testing.assert_close(I_p1, I, rtol=0, atol=1e-4 * float(I.max()))
    strong = I > 1e-3 * I.max()
    assert strong.sum() > 20
    torch.testing.assert_close(I_p1[strong], I[strong], rtol=1e-2, atol=0)


def test_incoherent_sum_real_leaves_the_mask_alone(pdb_file):
    model = AtomicModel(pdb_file("5zck.pdb"), expand_p1=True)
    hkl, _ = map_utils.generate_grid(model.A_inv, (-1, 1, 2), (-1, 1, 1), (-1, 1, 1), return_hkl=True)
    mask = np.ones(hkl.shape[0], dtype=bool)
    base.incoherent_sum_real(model, hkl, (2, 1, 1), mask=mask)
    assert mask.all()  # eryx multiplies it by the ASU mask in place


def test_gradients_in_U_and_coordinates(pdb_file):
    model = AtomicModel(pdb_file("5zck.pdb"), expand_p1=True)
    model.xyz, model.ff_a, model.ff_b, model.ff_c = (t[:, :3].clone() for t in (model.xyz, model.ff_a, model.ff_b, model.ff_c))
    hkl, _ = map_utils.generate_grid(model.A_inv, (-1, 1, 2), (-1, 1, 1), (0, 1, 1), return_hkl=True)
    U = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    xyz = model.xyz.clone().requires_grad_(True)

    def total(u, x):
        model.xyz = x
        return base.incoherent_sum_real(model, hkl, (2, 1, 1), U=u).sum()

    assert torch.autograd.gradcheck(total, (U, xyz))


def test_float32_and_errors(pdb_file):
    path = pdb_file("5zck.pdb")
    q, I = base.compute_molecular_transform(path, (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), dtype=torch.float32)
    assert q.dtype == I.dtype == torch.float32
    with pytest.raises(ValueError, match="U must be"):
        base.compute_molecular_transform(path, (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), U=np.ones(5))
    with pytest.raises(ValueError, match="U must be"):
        base.compute_crystal_transform(path, (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), U=np.ones(28))


def test_natural_sort():
    assert base.natural_sort(["b10", "b9", "A2", "a10", "a1b"]) == ["a1b", "A2", "a10", "b9", "b10"]
    assert base.natural_sort(["x/asu12_3.npy", "x/asu2_11.npy", "x/asu2_3.npy"]) == [
        "x/asu2_3.npy", "x/asu2_11.npy", "x/asu12_3.npy"]
    assert base.natural_sort(["1a", "a1"]) == ["1a", "a1"]  # number before text at the same place: no TypeError
    with pytest.raises(TypeError):
        base.natural_sort(["a", 3])


def _ensemble(folder, n_files, n_values, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=n_values) + 1j * rng.normal(size=n_values) for _ in range(n_files)]
    for i, a in enumerate(arrays):
        np.save(folder / f"{i}.npy", a)
    return arrays


def test_guinier_reconstruct_by_hand(tmp_path):
    keep = np.zeros(20, dtype=bool)
    keep[3:15] = True
    arrays = _ensemble(tmp_path, 12, int(keep.sum()))  # 4 conformations x 3 ASUs; 10.npy sorts after 9.npy
    w = np.array([0.1, 0.2, 0.3, 0.4])
    Id = base.guinier_reconstruct(tmp_path, 20, keep, 3, weights=w).numpy()
    expected = np.zeros(int(keep.sum()))
    for asu in range(3):
        A = np.stack(arrays[asu::3])  # files i * n_asu + asu
        expected += (w[:, None] * np.abs(A) ** 2).sum(0) - np.abs((w[:, None] * A).sum(0)) ** 2
    assert np.isnan(Id[~keep]).all()
    np.testing.assert_allclose(Id[keep], expected, rtol=1e-12)
    # one conformation: no variance, no diffuse scattering
    one = tmp_path / "one"
    one.mkdir()
    _ensemble(one, 2, int(keep.sum()))
    assert torch.all(base.guinier_reconstruct(one, 20, keep, 2)[keep].abs() < 1e-12)


def test_guinier_reconstruct_refuses_mismatches(tmp_path):
    keep = np.ones(6, dtype=bool)
    _ensemble(tmp_path, 6, 6)
    with pytest.raises(ValueError, match="multiple of n_asu"):
        base.guinier_reconstruct(tmp_path, 6, keep, 4)
    with pytest.raises(ValueError, match="one value per conformation"):
        base.guinier_reconstruct(tmp_path, 6, keep, 2, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="res_mask keeps"):
        base.guinier_reconstruct(tmp_path, 7, np.ones(7, dtype=bool), 2)
    w = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: base.guinier_reconstruct(tmp_path, 6, keep, 2, weights=x), (w,))


@pytest.mark.parametrize("case", ["molecular", "reciprocal", "p1", "crystal"])
def test_grid_engine_route_equals_the_direct_route(pdb_file, monkeypatch, case):
    # large product grids go through the grid engine; force each route on a small grid and compare
    def run():
        if case == "molecular":
            return base.compute_molecular_transform(pdb_file("7n2h.pdb"), (-2, 2, 2), (-2, 2, 2), (-1, 1, 1), U=0.2)[1]
        if case == "reciprocal":  # P 31's rotated indices: a box of the values they take
            return base.compute_molecular_transform(pdb_file("7n2h.pdb"), (-2, 1, 2), (-1, 2, 2), (-1, 1, 1),
                                                    expand_friedel=False, U=0.3)[1]
        if case == "p1":
            return base.compute_molecular_transform(pdb_file("2ol9.pdb"), (-2, 2, 2), (-1, 1, 2), (0, 2, 1),
                                                    expand_friedel=False, res_limit=2.0)[1]
        return base.compute_crystal_transform(pdb_file("5zck_p1.pdb"), (-2, 2, 3), (-2, 2, 2), (-1, 1, 1),
                                              expand_p1=False, U=0.2)[1]

    monkeypatch.setattr(base, "_ENGINE_MIN_PAIRS", 1 << 62)
    direct = run()
    monkeypatch.setattr(base, "_ENGINE_MIN_PAIRS", 1)
    engine = run()
    assert (direct > 0).sum() > 20
    torch.testing.assert_close(engine, direct, rtol=1e-12, atol=1e-13 * float(direct.max()))


def test_grid_engine_route_gradients(pdb_file, monkeypatch):
    monkeypatch.setattr(base, "_ENGINE_MIN_PAIRS", 1)
    model = AtomicModel(pdb_file("7n2h.pdb"), expand_p1=True)
    model.xyz, model.ff_a, model.ff_b, model.ff_c = (t[:, :3].clone() for t in (model.xyz, model.ff_a, model.ff_b, model.ff_c))
    hkl, _ = map_utils.generate_grid(model.A_inv, (-1, 1, 2), (-1, 1, 1), (0, 1, 1), return_hkl=True)
    U = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    xyz = model.xyz.clone().requires_grad_(True)

    def total(u, x):
        model.xyz = x
        return base.incoherent_sum_real(model, hkl, (2, 1, 1), U=u).reshape(-1)[::5]

    assert torch.autograd.gradcheck(total, (U, xyz))


def test_reciprocal_incoherent_sum_is_the_sum_over_operators_on_any_grid(pdb_file):
    """sum_R |F_0(R hkl)|^2 evaluated directly, on a P 31 grid whose h and k oversampling differ (rotated
    indices fall between grid points there; eryx's matching of rounded indices is 52% off on this case)."""
    import numpy as np
    import torch

    from eryx_port.base import incoherent_sum_reciprocal
    from eryx_port.map_utils import generate_grid, get_symmetry_equivalents
    from eryx_port.pdb import AtomicModel
    from eryx_port.scatter import structure_factors

    model = AtomicModel(pdb_file("7n2h.pdb"), expand_p1=True)
    hkl, _ = generate_grid(model.A_inv, (-3, 3, 2), (-3, 3, 1), (-2, 3, 1), return_hkl=True)
    got = incoherent_sum_reciprocal(model, hkl, (2, 1, 1))
    rotated = get_symmetry_equivalents(hkl, model.sym_ops)
    off_grid = (rotated[:, :, 1] != torch.round(rotated[:, :, 1])).any()
    assert off_grid, "the case must have rotated indices between grid points"
    expected = sum(
        structure_factors(2 * np.pi * r @ model.A_inv, model.xyz[0], model.ff_a[0], model.ff_b[0], model.ff_c[0]).abs() ** 2
        for r in rotated
    )
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12 * float(expected.max()))


@pytest.mark.parametrize("name,sampling,U", [
    ("5zck.pdb", ((-2, 3, 3), (-1, 4, 2), (0, 5, 2)), 0.3),  # grid not centred: the box grows, resize_map crops
    ("7n2h.pdb", ((-2, 2, 2), (-2, 2, 2), (-1, 1, 1)), None),  # P 31: operators mix h and k
    ("2ol9.pdb", ((-2, 2, 2), (-1, 1, 2), (0, 2, 1)), None),  # P 1: Friedel pairs only
])
def test_integer_grid_route_equals_the_rounding_route(pdb_file, monkeypatch, name, sampling, U):
    # the symmetry bookkeeping in integers (product grids) against eryx's rounding of rotated indices
    model = AtomicModel(pdb_file(name), expand_p1=True)
    hkl, _ = map_utils.generate_grid(model.A_inv, *sampling, return_hkl=True)
    rates = tuple(s[2] for s in sampling)
    fast = base.incoherent_sum_real(model, hkl, rates, U=U)
    monkeypatch.setattr(base, "_product_axes", lambda hkl: None)
    slow = base.incoherent_sum_real(model, hkl, rates, U=U)
    assert fast.shape == slow.shape and (slow > 0).sum() > 20
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-13 * float(slow.max()))
