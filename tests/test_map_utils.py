# SPDX-License-Identifier: GPL-2.0-or-later
"""Checks of eryx_port.map_utils against independent references: gemmi, hand-written ASU rules, closed forms."""

import math

import numpy as np
import pytest
import torch

from eryx_port import map_utils as mu

import gemmi


def _orthorhombic_A_inv(a, b, c):
    return np.diag([1 / a, 1 / b, 1 / c])


def _p212121_ops():
    return {i: np.diag(d).astype(float) for i, d in enumerate([(1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1)])}


# ---------------------------------------------------------------- grids


def test_generate_grid_layout_and_q_vectors():
    A_inv = _orthorhombic_A_inv(10.0, 20.0, 40.0)
    hkl, shape = mu.generate_grid(A_inv, (-1, 1, 2), (0, 2, 1), (3, 3, 1), return_hkl=True)
    assert shape == (5, 3, 1) and all(type(n) is int for n in shape)
    assert hkl.dtype == torch.float64 and hkl.shape == (15, 3)
    # h varies slowest, l fastest
    expected = np.array([[h, k, 3.0] for h in (-1, -0.5, 0, 0.5, 1) for k in (0, 1, 2)])
    np.testing.assert_array_equal(hkl.numpy(), expected)
    q, shape_q = mu.generate_grid(A_inv, (-1, 1, 2), (0, 2, 1), (3, 3, 1))
    assert shape_q == shape
    np.testing.assert_allclose(q.numpy(), 2 * math.pi * expected / [10.0, 20.0, 40.0], rtol=1e-15)


def test_generate_grid_non_orthogonal_cell_and_float32():
    cell = gemmi.UnitCell(27.2, 27.2, 4.83, 90, 90, 120)
    A_inv = np.array(cell.frac.mat)
    q, _ = mu.generate_grid(A_inv, (-2, 2, 1), (-2, 2, 1), (-1, 1, 1))
    hkl, _ = mu.generate_grid(A_inv, (-2, 2, 1), (-2, 2, 1), (-1, 1, 1), return_hkl=True)
    # |q| = 2 pi / d for every reflection
    d = np.array([cell.calculate_d([int(v) for v in h]) if h.any() else np.inf for h in hkl.numpy()])
    np.testing.assert_allclose(q.norm(dim=1).numpy(), 2 * math.pi / d, rtol=1e-12, atol=1e-12)
    q32, _ = mu.generate_grid(A_inv, (-2, 2, 1), (-2, 2, 1), (-1, 1, 1), dtype=torch.float32)
    assert q32.dtype == torch.float32
    torch.testing.assert_close(q32.double(), q, rtol=1e-6, atol=1e-6)


def test_generate_grid_is_differentiable_in_A_inv():
    A_inv = torch.tensor(_orthorhombic_A_inv(10.0, 12.0, 15.0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda A: mu.generate_grid(A, (-1, 1, 1), (0, 1, 1), (0, 1, 2))[0], (A_inv,))


def test_centered_sampling_and_resize_map():
    sampling = mu.get_centered_sampling((9, 5, 3), (2, 1, 1))
    assert sampling == [(-2.0, 2.0, 2), (-2.0, 2.0, 1), (-1.0, 1.0, 1)]
    big = torch.arange(9 * 5 * 3, dtype=torch.float64).reshape(9, 5, 3)
    old = [(-1.0, 1.0, 2), (-2.0, 2.0, 1), (-1.0, 1.0, 1)]
    out = mu.resize_map(big, old, sampling)  # h grew by 1: 2 planes go at each end
    assert out.shape == (5, 5, 3)
    assert torch.equal(out, big[2:-2])
    assert torch.equal(mu.resize_map(big, sampling, sampling), big)


# ---------------------------------------------------------------- resolution


@pytest.mark.parametrize(
    "cell", [(27.2, 27.2, 4.83, 90, 90, 120), (14.002, 4.879, 15.1, 75.23, 75.88, 78.89), (78.54, 78.54, 37.77, 90, 90, 90)]
)
def test_compute_resolution_matches_gemmi(cell):
    hkl = np.random.default_rng(0).integers(-8, 9, size=(200, 3))
    hkl = hkl[np.abs(hkl).sum(axis=1) > 0]
    expected = np.array([gemmi.UnitCell(*cell).calculate_d([int(v) for v in h]) for h in hkl])
    got = mu.compute_resolution(np.array(cell), hkl)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert math.isinf(mu.compute_resolution(cell, [[0, 0, 0]])[0])


def test_resolution_mask_and_gradient_in_cell():
    cell = torch.tensor([14.002, 4.879, 15.1, 75.23, 75.88, 78.89], dtype=torch.float64, requires_grad=True)
    hkl = torch.tensor([[1.0, 0, 0], [1, 2, 3], [-2, 1, 4], [5, -1, 2]])  # float32: the cell keeps float64
    mask, res = mu.get_resolution_mask(cell, hkl, 3.0)
    assert mask.dtype == torch.bool and torch.equal(mask, res > 3.0) and mask.any() and not mask.all()
    assert torch.autograd.gradcheck(lambda c: mu.compute_resolution(c, hkl), (cell,))


def test_hkl_extents_cover_every_reflection_within_resolution():
    cell = (14.002, 4.879, 15.1, 75.23, 75.88, 78.89)
    dmin = 2.5
    hs, ks, ls = mu.get_hkl_extents(cell, dmin, oversampling=(2, 1, 3))
    assert (hs[2], ks[2], ls[2]) == (2, 1, 3)
    assert all(type(v) is int for v in (*hs[:2], *ks[:2], *ls[:2]))
    box = np.stack(np.meshgrid(*[np.arange(-12, 13)] * 3, indexing="ij"), -1).reshape(-1, 3)
    inside = mu.compute_resolution(cell, box).numpy() >= dmin
    for axis, (lo, hi, _) in enumerate((hs, ks, ls)):
        assert lo == -hi and hi > 0
        assert np.abs(box[inside, axis]).max() <= hi
    assert mu.get_hkl_extents(cell, dmin, 2)[0][2] == 2


def test_dq_map_is_zero_on_bragg_peaks_and_measures_offsets():
    A_inv = _orthorhombic_A_inv(10.0, 20.0, 40.0)
    hkl, _ = mu.generate_grid(A_inv, (-2, 2, 2), (0, 1, 1), (0, 0, 1), return_hkl=True)
    dq = mu.get_dq_map(A_inv, hkl)
    on_peak = (hkl == hkl.round()).all(dim=1)
    assert on_peak.any() and (~on_peak).any()
    assert torch.equal(dq[on_peak], torch.zeros(int(on_peak.sum()), dtype=torch.float64))
    np.testing.assert_allclose(dq[~on_peak].numpy(), round(2 * math.pi * 0.5 / 10.0, 8), rtol=0, atol=1e-15)


def test_cos_sq_plus_sin_sq_is_one():
    angles = torch.linspace(-4, 4, 17, dtype=torch.float64)
    torch.testing.assert_close(mu.cos_sq(angles) + mu.sin_sq(angles), torch.ones(17, dtype=torch.float64))


# ---------------------------------------------------------------- symmetry


def test_symmetry_equivalents_and_friedel_expansion():
    hkl = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    ops = _p212121_ops()
    sym = mu.get_symmetry_equivalents(hkl, ops)
    assert sym.shape == (4, 2, 3)
    np.testing.assert_array_equal(sym[0].numpy(), hkl)
    np.testing.assert_array_equal(sym[1].numpy(), hkl * [-1, -1, 1])
    expanded = mu.expand_sym_ops(ops)
    assert list(expanded) == list(range(8))
    for i in range(4):
        assert torch.equal(expanded[i + 4], -expanded[i])
    # rows are multiplied on the right: hkl @ R
    rot = np.array([[0.0, 1, 0], [-1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(mu.get_symmetry_equivalents(hkl, [rot])[0].numpy(), hkl @ rot)


def test_ravel_indices_match_numpy_ravel_multi_index():
    hkl, _ = mu.generate_grid(np.eye(3), (-1, 1, 2), (-2, 2, 1), (0, 1, 3), return_hkl=True)
    sym = mu.get_symmetry_equivalents(hkl, mu.expand_sym_ops(_p212121_ops()))
    ravel, shape = mu.get_ravel_indices(sym, (2, 1, 3))
    assert shape == (5, 5, 7) and ravel.dtype == torch.int64 and ravel.shape == (8, hkl.shape[0])
    idx = np.rint(sym.numpy() * [2, 1, 3]).astype(int).reshape(-1, 3)
    expected = np.ravel_multi_index(tuple((idx - idx.min(axis=0)).T), shape).reshape(8, -1)
    np.testing.assert_array_equal(ravel.numpy(), expected)


def test_multiplicity_of_mmm_grid_points():
    class Model:  # anything with sym_ops and A_inv
        sym_ops = _p212121_ops()
        A_inv = _orthorhombic_A_inv(5.0, 6.0, 7.0)

    hkl, mult = mu.compute_multiplicity(Model(), (-2, 2, 1), (-1, 1, 1), (-1, 1, 1))
    assert mult.shape == (5, 3, 3)
    zeros = (hkl == 0).sum(dim=1).reshape(5, 3, 3)
    # general points have 8 mates under mmm; each zero index halves that, the origin is alone
    assert torch.equal(mult, torch.tensor([8, 4, 2, 1])[zeros])


def test_multiplicity_p1_is_friedel_pairs():
    class Model:
        sym_ops = {0: np.eye(3)}
        A_inv = np.eye(3)

    hkl, mult = mu.compute_multiplicity(Model(), (-1, 1, 2), (-1, 1, 1), (0, 0, 1))
    origin = (hkl == 0).all(dim=1).reshape(mult.shape)
    assert int(mult[origin]) == 1 and (mult[~origin] == 2).all()


# ---------------------------------------------------------------- reciprocal ASU

# gemmi's ASU conditions, written out by hand as NumPy expressions
_ASU_RULES = {
    "P 1": lambda h, k, l: (l > 0) | ((l == 0) & ((h > 0) | ((h == 0) & (k >= 0)))),
    "P 21 21 21": lambda h, k, l: (h >= 0) & (k >= 0) & (l >= 0),
    "P 31": lambda h, k, l: ((h >= 0) & (k > 0)) | ((h == 0) & (k == 0) & (l >= 0)),
    "P 43 21 2": lambda h, k, l: (h >= k) & (k >= 0) & (l >= 0),
    "C 1 2 1": lambda h, k, l: (k >= 0) & ((l > 0) | ((l == 0) & (h >= 0))),
    "P 61 2 2": lambda h, k, l: (h >= k) & (k >= 0) & (l >= 0),
    "I 41 2 2": lambda h, k, l: (h >= k) & (k >= 0) & (l >= 0),
    "P 3 1 2": lambda h, k, l: (h >= k) & (k >= 0) & ((k > 0) | (l >= 0)),
    "P 3 2 1": lambda h, k, l: (h >= k) & (k >= 0) & ((h > k) | (l >= 0)),
    "P 4": lambda h, k, l: (l >= 0) & (((h >= 0) & (k > 0)) | ((h == 0) & (k == 0))),
    "P 2 3": lambda h, k, l: (h >= 0) & (((l >= h) & (k > h)) | ((l == h) & (k == h))),
    "F m -3 m": lambda h, k, l: (k >= l) & (l >= h) & (h >= 0),
}


@pytest.mark.parametrize("space_group", sorted(_ASU_RULES))
def test_asu_mask_follows_gemmi_condition_on_fractional_grid(space_group):
    hkl, _ = mu.generate_grid(np.eye(3), (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), return_hkl=True)
    mask = mu.get_asu_mask(space_group, hkl)
    h, k, l = hkl.numpy().T
    expected = _ASU_RULES[space_group](h, k, l)
    assert mask.dtype == torch.bool and 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(mask.numpy(), expected)


def test_asu_mask_equals_gemmi_is_in_for_every_setting():
    hkl = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    settings = list(gemmi.spacegroup_table())
    assert len(settings) > 500 and sum(sg.is_reference_setting() for sg in settings) == 230
    for sg in settings:
        # gemmi's condition string (which eryx evaluates) is written for the reference setting of the
        # space group, so in a non-reference setting (e.g. P 1 1 2) the mask is the reference one
        reference = gemmi.ReciprocalAsu(gemmi.SpaceGroup(sg.number))
        expected = np.array([reference.is_in([int(v) for v in m]) for m in hkl])
        got = mu.get_asu_mask(sg, hkl).numpy()
        assert np.array_equal(got, expected), sg.xhm()
        if sg.is_reference_setting():
            own = gemmi.ReciprocalAsu(sg)
            assert all(own.is_in([int(v) for v in m]) == g for m, g in zip(hkl, got)), sg.xhm()


def test_asu_mask_accepts_numbers_names_and_integer_tensors():
    hkl = torch.tensor([[1, 2, 3], [-1, 0, 0], [0, 0, 0], [2, -1, 5]])
    by_name = mu.get_asu_mask("P 21 21 21", hkl)
    assert torch.equal(by_name, mu.get_asu_mask(19, hkl))
    assert torch.equal(by_name, mu.get_asu_mask(gemmi.SpaceGroup(19), hkl.double().numpy()))
    assert by_name.tolist() == [True, False, True, False]


def test_asu_condition_parser_rejects_anything_else():
    for bad in ["h>=0 and", "(h>0", "h>=0 or or k>0", "__import__('os')", "h>=0; k", "1>=2", "h >= x"]:
        with pytest.raises(ValueError, match="ASU condition"):
            mu._parse_condition(bad)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: mu.generate_grid(np.eye(2), (0, 1, 1), (0, 1, 1), (0, 1, 1)), "A_inv"),
        (lambda: mu.generate_grid(np.eye(3), (1, 0, 1), (0, 1, 1), (0, 1, 1)), "hsampling"),
        (lambda: mu.generate_grid(np.eye(3), (0, 1, 1), (0, 1), (0, 1, 1)), "ksampling"),
        (lambda: mu.compute_resolution([10, 10, 10, 90, 90], [[1, 0, 0]]), "cell"),
        (lambda: mu.compute_resolution([10, 10, 10, 90, 90, 90], [[1, 0]]), "hkl"),
        (lambda: mu.get_dq_map(np.eye(3), np.zeros((4, 4))), "hkl_grid"),
        (lambda: mu.get_symmetry_equivalents(np.zeros((2, 3)), {}), "sym_ops"),
        (lambda: mu.get_symmetry_equivalents(np.zeros((2, 3)), [np.eye(2)]), "sym_ops"),
        (lambda: mu.get_ravel_indices(np.zeros((2, 3)), (1, 1, 1)), "hkl_grid_sym"),
        (lambda: mu.get_ravel_indices(np.zeros((1, 2, 3)), (1, 1)), "sampling"),
        (lambda: mu.get_asu_mask("Q 99", np.zeros((2, 3))), "space_group"),
        (lambda: mu.get_asu_mask("P 1", np.zeros((2, 2))), "hkl_grid"),
        (lambda: mu.get_hkl_extents([10, 10, 10, 90, 90, 90], 0.0), "resolution"),
        (lambda: mu.compute_multiplicity(object(), (0, 1, 1), (0, 1, 1), (0, 1, 1)), "sym_ops"),
        (lambda: mu.resize_map(np.zeros((3, 3)), [(0, 1, 1)] * 3, [(0, 1, 1)] * 3), "new_map"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
