# SPDX-License-Identifier: GPL-2.0-or-later
"""The structure-factor engine (eryx_port.grid_factors) and the slab-by-slab map (eryx_port.diffuse).

Independent references: the direct sum over atoms and q-points in NumPy, scipy's Bessel functions,
and the map computed in one piece against the map computed in many slabs, with and without Friedel's law.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from eryx_port import OnePhonon, diffuse, grid_factors
from eryx_port.phonons import lever_arms

from structures import structure

# A triclinic cell with strong cross terms in every pair of axes (6o2h-like angles, a smaller cell).
A_INV = torch.tensor([[0.0731, 0.0292, 0.0276], [0.0, 0.067, 0.0072], [0.0, 0.0, 0.0614]], dtype=torch.float64)


def _atoms(n_asu=2, n_atoms=9, U_range=(0.05, 1.0), seed=3):
    gen = torch.Generator().manual_seed(seed)
    xyz = 20 * torch.rand(n_asu, n_atoms, 3, generator=gen, dtype=torch.float64)
    # three elements: atoms of one element share coefficients, as in a structure
    kinds = torch.arange(n_atoms) % 3
    a = torch.rand(3, 4, generator=gen, dtype=torch.float64)[kinds] * 3
    b = torch.rand(3, 4, generator=gen, dtype=torch.float64)[kinds] * 30
    c = torch.rand(3, generator=gen, dtype=torch.float64)[kinds]
    lo, hi = U_range
    U = lo + (hi - lo) * torch.rand(n_atoms, generator=gen, dtype=torch.float64)
    return xyz, (a, b, c), U


def _direct(axes, A_inv, xyz, weights, ff, U):
    """sum_j w_jc f_j(q) exp(-U_j |q|^2 / 2) exp(i q . r_j), in NumPy, point by point."""
    hkl = np.stack(np.meshgrid(*[a.numpy() for a in axes], indexing="ij"), -1)
    q = 2 * np.pi * hkl @ A_inv.numpy()
    qsq = (q**2).sum(-1)
    a, b, c = (t.numpy() for t in ff)
    f = (a * np.exp(-b * qsq[..., None, None] / (16 * np.pi**2))).sum(-1) + c  # (..., n_atoms)
    amp = f * np.exp(-0.5 * qsq[..., None] * U.numpy())
    phase = np.exp(1j * np.einsum("...x,mjx->...mj", q, xyz.numpy()))
    return np.einsum("...mj,mjc->...mc", amp[..., None, :] * phase, weights.numpy())


def _axes(*specs):
    return tuple(torch.arange(int(round((hi - lo) * n)) + 1, dtype=torch.float64) / n + lo for lo, hi, n in specs)


def test_bessel_coefficients_match_scipy():
    z = torch.tensor([-0.3, -1e-3, 0.0, 2e-4, 0.05, 0.4], dtype=torch.float64)
    got = grid_factors.bessel_coefficients(z, 6).numpy()
    for m in range(6):
        expected = (1 if m == 0 else 2) * (-1) ** m * special.iv(m, z.numpy())
        np.testing.assert_allclose(got[:, m], expected, rtol=1e-14, atol=1e-300)


def test_chebyshev_series_reaches_its_bound():
    # exp(-z y) on y in [-1, 1] from the truncated series: the error stays below the requested tolerance
    y = torch.linspace(-1, 1, 201, dtype=torch.float64)
    for z in (1e-4, 3e-3, 0.05, 0.5):
        n = grid_factors.chebyshev_terms(z, 1e-14)
        series = (grid_factors.bessel_coefficients(torch.tensor([z], dtype=torch.float64), n)[0]
                  * grid_factors.chebyshev_polynomials(y, n)).sum(-1)
        assert float((series - torch.exp(-z * y)).abs().max()) <= 1e-14
        assert n == 1 or float((series - torch.exp(-z * y)).abs().max()) > 0  # the bound is not vacuous


@pytest.mark.parametrize("U_range", [(0.05, 1.0), (0.3, 0.3), (0.0, 3.0)])
def test_triclinic_sums_match_direct_sum(U_range):
    """Many series terms (wide U range, coupled axes) and the trivial case (one U): per element to 1e-12."""
    xyz, ff, U = _atoms(U_range=U_range)
    axes = _axes((-2, 2, 5), (-3, 1.5, 4), (0, 2.5, 6))
    weights = torch.cat([torch.ones_like(xyz[..., :1]), lever_arms(xyz, "centered")], -1)
    layout = grid_factors.plan_layout(axes, 4 * math.pi**2 * A_INV @ A_INV.T)
    assert layout.coupled
    S = grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U, (0, axes[layout.perm[2]].numel()), layout)
    got = diffuse._to_hkl(S, layout.perm).numpy()
    expected = _direct(axes, A_INV, xyz, weights, ff, U).transpose(4, 3, 0, 1, 2)  # (W, n_asu, h, k, l)
    scale = np.abs(expected).max()
    err = np.abs(got - expected)
    assert err.max() <= 1e-13 * scale
    big = np.abs(expected) > 1e-3 * scale
    assert (err[big] / np.abs(expected[big])).max() <= 1e-11


def test_sums_on_a_column_range_equal_the_whole():
    xyz, ff, U = _atoms()
    axes = _axes((-1, 1, 3), (-1, 1, 3), (-2, 2, 5))
    weights = torch.ones_like(xyz[..., :1])
    layout = grid_factors.plan_layout(axes, 4 * math.pi**2 * A_INV @ A_INV.T)
    n = axes[layout.perm[2]].numel()
    whole = grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U, (0, n), layout)
    parts = [grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U, (s, min(n, s + 2)), layout, budget=1) for s in range(0, n, 2)]
    assert torch.allclose(torch.cat(parts, dim=4), whole, rtol=1e-13, atol=1e-13 * float(whole.abs().max()))


@pytest.mark.parametrize("U_range", [(0.1, 2.0), (0.3, 0.3)])
@pytest.mark.parametrize("by_term", [False, True])
def test_gradients_through_the_series(U_range, by_term, monkeypatch):
    """gradcheck of the sums in U and xyz on a triclinic cell where the series has several terms, and where
    every atom sits at the series' centre (one term for the values, not for the gradient); by_term: one
    product per term, each as three real products (Gauss)."""
    monkeypatch.setattr(grid_factors, "_FLIP_ORDER", by_term)
    monkeypatch.setattr(grid_factors, "_GAUSS_MIN_INNER", 1 if by_term else 1 << 30)
    xyz, ff, U = _atoms(n_asu=1, n_atoms=4, U_range=U_range)
    axes = _axes((-1, 1, 2), (-1, 1, 2), (0, 1.5, 2))
    layout = grid_factors.plan_layout(axes, 4 * math.pi**2 * A_INV @ A_INV.T)
    n = axes[layout.perm[2]].numel()
    weights = torch.ones_like(xyz[..., :1])

    def fn(U, xyz):
        S = grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U, (0, n), layout)
        return torch.view_as_real(S).reshape(-1)[::7]

    tracked = (U.clone().requires_grad_(True), xyz.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, tracked)
    # the values with a gradient tracked are those without (gradcheck compares derivatives only)
    torch.testing.assert_close(fn(*tracked).detach(), fn(U, xyz), rtol=1e-13, atol=1e-15)


@pytest.fixture(scope="module")
def tric():
    return OnePhonon(structure("2ol9"), (-2, 2, 3), (-1, 1, 2), (-2, 2, 2), progress=False)


def test_friedel_halving_and_slabs_agree(tric, monkeypatch):
    """Friedel's law, slabs of one column and tiny contraction chunks: the same map as in one piece without them."""
    halved = tric.apply_disorder()
    sliced = tric.apply_disorder(max_memory=1 << 14)  # one column per slab, a few q-points per chunk
    monkeypatch.setattr(diffuse, "_symmetric", lambda values: False)
    one_piece = tric.apply_disorder()
    finite = ~one_piece.isnan()
    assert int(finite.sum()) > 0.5 * one_piece.numel()
    for other in (halved, sliced):
        assert torch.equal(other.isnan(), one_piece.isnan())
        assert torch.allclose(other[finite], one_piece[finite], rtol=1e-12, atol=0)


def test_friedel_reflection_only_where_mirrors_pair_k_vectors(monkeypatch):
    """A symmetric grid whose bounds are not whole periods (h from -1/3 to 1/3 in steps of 1/3): the mirror of a
    point of k-vector class d is not of class -d, so the reflected intensity must not stand for it."""
    model = OnePhonon(structure("2ol9"), (-1 / 3, 1 / 3, 3), (-1, 1, 2), (-2 / 3, 2 / 3, 3), progress=False)
    halved = model.apply_disorder()
    monkeypatch.setattr(diffuse, "_symmetric", lambda values: False)
    one_piece = model.apply_disorder()
    finite = ~one_piece.isnan()
    assert int(finite.sum()) > 0.5 * one_piece.numel()
    assert torch.equal(halved.isnan(), one_piece.isnan())
    assert torch.allclose(halved[finite], one_piece[finite], rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def hexagonal():
    return OnePhonon(structure("7n2h"), (-2, 2, 3), (-2, 2, 2), (-1, 1, 3), progress=False)


@pytest.mark.parametrize("rank", [-1, 4])
def test_boxes_of_uncoupled_slabs_agree(hexagonal, monkeypatch, rank):
    """7n2h (hexagonal: only l is free of cross terms) in boxes of one period along h (a partial one at the end),
    Friedel halving reflected (all modes) or contracted on its own (one mode): the map in one piece without them.
    Both contraction paths run: boxes from class 0 assembled in class-major order, mirrored boxes gathered."""
    calls = {"sums": 0, "class_major": 0, "gathered": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    assert not _coupled(hexagonal)
    monkeypatch.setattr(diffuse, "_BOX_BYTES", 1)  # one period of h per box
    monkeypatch.setattr(diffuse, "grid_sums", counted("sums", diffuse.grid_sums))
    monkeypatch.setattr(diffuse, "_class_major_factors", counted("class_major", diffuse._class_major_factors))
    monkeypatch.setattr(diffuse, "_class_order", counted("gathered", diffuse._class_order))
    boxed = hexagonal.apply_disorder(rank=rank)
    assert calls["sums"] == 5 and calls["class_major"] > 0 and (calls["gathered"] > 0) == (rank >= 0)
    monkeypatch.setattr(diffuse, "_BOX_BYTES", 1 << 40)
    monkeypatch.setattr(diffuse, "_symmetric", lambda values: False)
    one_piece = hexagonal.apply_disorder(rank=rank)
    finite = ~one_piece.isnan()
    assert int(finite.sum()) > 0.5 * one_piece.numel()
    assert torch.equal(boxed.isnan(), one_piece.isnan())
    assert torch.allclose(boxed[finite], one_piece[finite], rtol=1e-12, atol=0)


def _coupled(model) -> bool:
    A_inv = model.model.A_inv.to(torch.float64)
    return grid_factors.plan_layout(model._axes, 4 * math.pi**2 * A_inv @ A_inv.T).coupled


def test_map_written_into_a_memmap(tric, tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "map.npy", mode="w+", dtype=np.float64, shape=tric.map_shape)
    returned = tric.apply_disorder(out=mm, max_memory=1 << 16)
    mm.flush()
    expected = tric.apply_disorder().numpy().reshape(tric.map_shape)  # eryx returns the flattened map
    saved = np.load(tmp_path / "map.npy")
    assert returned.base is mm or returned.base is mm.base or np.shares_memory(returned, mm)
    np.testing.assert_array_equal(np.isnan(saved), np.isnan(expected))
    np.testing.assert_allclose(saved[~np.isnan(saved)], expected[~np.isnan(expected)], rtol=1e-12)


def test_out_is_checked(tric):
    with pytest.raises(ValueError, match="elements"):
        tric.apply_disorder(out=np.empty(3))
    with pytest.raises(ValueError, match="float64 or float32"):
        tric.apply_disorder(out=np.empty(tric.map_shape, dtype=np.int64))
    with pytest.raises(ValueError, match="max_memory"):
        tric.apply_disorder(max_memory=-5)


def test_per_q_attributes_are_computed_when_read(tric):
    assert "hkl_grid" not in vars(tric) and "q_grid" not in vars(tric) and "res_mask" not in vars(tric)
    hkl = tric.hkl_grid
    assert hkl.shape == (math.prod(tric.map_shape), 3)
    assert torch.allclose(tric.q_grid, 2 * math.pi * hkl @ tric.model.A_inv)


@pytest.mark.parametrize("W", [1, 3])
@pytest.mark.parametrize("gauss_min", [1 << 30, 1])
def test_both_contraction_orders_of_coupled_cells_agree(monkeypatch, W, gauss_min):
    """Coupled cells take (term, atom) as one inner axis, or one product per term: the same sums, and the
    direct sum; copies sharing their displacements (one U row) and copies with their own agree too. An
    element of at least ``gauss_min`` atoms takes its products per term as three real products (Gauss)."""
    monkeypatch.setattr(grid_factors, "_GAUSS_MIN_INNER", gauss_min)
    xyz, ff, U = _atoms(n_asu=3, U_range=(0.05, 1.0))
    axes = _axes((-1, 1, 3), (-1, 1, 3), (-2, 2, 5))
    weights = 0.5 + torch.rand(*xyz.shape[:2], W, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    layout = grid_factors.plan_layout(axes, 4 * math.pi**2 * A_INV @ A_INV.T)
    assert layout.coupled
    n = axes[layout.perm[2]].numel()
    U_rows = torch.stack([U, U, 1.5 * U])  # two copies share a row of U, the third has its own
    got = []
    for flip in (False, True):
        monkeypatch.setattr(grid_factors, "_FLIP_ORDER", flip)
        got.append(grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U_rows, (0, n), layout, budget=1 << 16))
    assert torch.allclose(got[0], got[1], rtol=1e-13, atol=1e-14 * float(got[0].abs().max()))
    a, b, c = ff
    for asu in range(3):
        expected = _direct(axes, A_INV, xyz[asu : asu + 1], weights[asu : asu + 1], ff, U_rows[asu])[..., 0, :]
        order = [layout.perm.index(i) for i in range(3)]
        S = got[0][:, asu].permute(*[o + 1 for o in order], 0).numpy()  # (h, k, l, W)
        assert np.abs(S - expected).max() <= 1e-13 * np.abs(expected).max()


def test_block_order_is_the_natural_order_reordered():
    """natural_order=False leaves the rows in the layout's block order: slot reorders them to i1 * n2 + i2."""
    xyz, ff, U = _atoms()
    axes = _axes((-1, 1, 3), (-1, 1, 3), (-2, 2, 5))
    weights = torch.ones_like(xyz[..., :1])
    layout = grid_factors.plan_layout(axes, 4 * math.pi**2 * A_INV @ A_INV.T)
    n = axes[layout.perm[2]].numel()
    natural = grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U, (0, n), layout)
    blocks = grid_factors.grid_sums(axes, A_INV, xyz, weights, ff, U, (0, n), layout, natural_order=False)
    assert torch.equal(blocks[:, :, layout.slot].reshape(natural.shape), natural)


def test_fast_paths_match_the_autograd_paths():
    """Factor assembly and the rows' term expansion write in place without autograd: the same values as with it."""
    gen = torch.Generator().manual_seed(5)
    S = torch.randn(4, 3, 5, 6, 7, generator=gen, dtype=torch.complex128)
    q = torch.randn(3, 5, 6, 7, generator=gen, dtype=torch.float64)
    fast = diffuse.assemble_factors(S, q)
    tracked = diffuse.assemble_factors(S.clone().requires_grad_(True), q)
    assert tracked.requires_grad and torch.equal(fast, tracked.detach())
    expected = torch.stack([S[0] * q[0], S[0] * q[1], S[0] * q[2],
                            S[2] * q[2] - S[3] * q[1], S[3] * q[0] - S[1] * q[2], S[1] * q[1] - S[2] * q[0]])
    torch.testing.assert_close(fast, expected, rtol=1e-15, atol=0)

    LX = torch.randn(2, 5, 3, 8, generator=gen, dtype=torch.complex128)  # (ncs, n_g, nbs, B)
    T = torch.randn(3, 8, 3, generator=gen, dtype=torch.float64)  # (nbs, B, M)
    counts = [5, 3, 1]
    fast = grid_factors._rows_by_term(LX, T, counts)
    tracked = grid_factors._rows_by_term(LX.clone().requires_grad_(True), T, counts)
    expected = torch.cat([LX[:, :n].transpose(1, 2) * T[None, :, None, :, m] for m, n in enumerate(counts)], dim=2)
    assert fast.shape == (2, 3, 9, 8) and fast.is_contiguous()
    torch.testing.assert_close(fast, expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(tracked.detach(), expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("row_block", [7, 16, 512])
def test_uncoupled_sums_in_padded_row_blocks_match_direct_sum(monkeypatch, row_block):
    """Uncoupled rows take their phases as an outer product of two axes, zero-padded in the last block: the sums
    match the direct sum whatever the blocks and batches (a hexagonal-like cell: rows coupled to each other only)."""
    monkeypatch.setattr(grid_factors, "_ROW_BLOCK_FREE", row_block)
    xyz, ff, U = _atoms(n_asu=3, n_atoms=8)
    A_inv = torch.tensor([[0.05, 0.0289, 0.0], [0.0, 0.0577, 0.0], [0.0, 0.0, 0.04]], dtype=torch.float64)
    axes = _axes((-2, 2, 3), (-1.5, 2, 4), (-1, 1, 3))
    weights = torch.cat([torch.ones_like(xyz[..., :1]), lever_arms(xyz, "centered")], -1)
    layout = grid_factors.plan_layout(axes, 4 * math.pi**2 * A_inv @ A_inv.T)
    assert not layout.coupled and layout.perm[2] == 2
    n_rows = axes[0].numel() * axes[1].numel()
    assert row_block > n_rows or n_rows % row_block  # a padded last block
    expected = _direct(axes, A_inv, xyz, weights, ff, U).transpose(4, 3, 0, 1, 2)
    for budget in (1, 256 << 20):  # one block per batch, or all at once
        S = grid_factors.grid_sums(axes, A_inv, xyz, weights, ff, U, (0, axes[2].numel()), layout, budget=budget)
        got = diffuse._to_hkl(S, layout.perm).numpy()
        assert np.abs(got - expected).max() <= 1e-13 * np.abs(expected).max()


@pytest.mark.parametrize("n", [(7, 5, 4), (6, 13, 11), (2, 9, 3), (7, 39, 10)])
def test_contraction_of_partial_periods_matches_point_by_point(n):
    """A box from class 0 whose axes end in partial periods (contracted with their classes only where padding
    would add a tenth, else padded): each point's sum_r w_r |F B_k[:, r]|^2 with its own class's B."""
    gen = torch.Generator().manual_seed(11)
    sampling, n_asu, R = (3, 4, 5), 2, 7
    S = torch.randn(4, n_asu, *n, generator=gen, dtype=torch.complex128)
    hkl = tuple(torch.arange(k, dtype=torch.float64) / s - 1 for k, s in zip(n, sampling))
    B = torch.randn(math.prod(sampling), 6 * n_asu, R, generator=gen, dtype=torch.complex128)
    weights = torch.rand(math.prod(sampling), R, generator=gen, dtype=torch.float64)
    got = diffuse._contract(S, hkl, A_INV, (0, 0, 0), sampling, B, weights)
    q = diffuse.grid_q(hkl, A_INV).movedim(-1, 0)
    F = diffuse.assemble_factors(S, q[:, None]).permute(2, 3, 4, 1, 0).reshape(-1, n_asu * 6)
    k = diffuse.class_index(n, sampling).reshape(-1)
    Y = torch.einsum("pn,pnr->pr", F, B[k])  # F's rows (copy, component) as B's
    expected = ((Y.abs() ** 2) * weights[k]).sum(-1).reshape(n)
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("coupled", [True, False])
def test_blocks_beyond_q_max_are_skipped_and_the_rest_unchanged(coupled, monkeypatch):
    """Sums with a resolution bound: every point with |q| <= q_max as without it (equal, not close: the same
    products), and the blocks wholly beyond it zero. Coupled (triclinic) and uncoupled (orthogonal) layouts."""
    xyz, ff, U = _atoms(U_range=(0.05, 1.0))
    A_inv = A_INV if coupled else torch.diag(torch.diagonal(A_INV))
    axes = _axes((-3, 3, 4), (-3, 3, 4), (-2, 2, 5))
    weights = torch.cat([torch.ones_like(xyz[..., :1]), lever_arms(xyz, "centered")], -1)
    monkeypatch.setattr(grid_factors, "_ROW_BLOCK_COUPLED", 16)  # many row blocks, so that some lie beyond q_max
    monkeypatch.setattr(grid_factors, "_ROW_BLOCK_FREE", 16)
    monkeypatch.setattr(grid_factors, "_COL_BLOCK_COUPLED", 4)
    G = 4 * math.pi**2 * A_inv @ A_inv.T
    layout = grid_factors.plan_layout(axes, G)
    assert layout.coupled == coupled and layout.blocks.shape[0] > 4
    f = layout.perm[2]
    hkl = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    q = (hkl @ G * hkl).sum(-1).sqrt()
    q_max = 0.5 * float(q.max())
    full = diffuse._to_hkl(grid_factors.grid_sums(axes, A_inv, xyz, weights, ff, U, (0, axes[f].numel()), layout), layout.perm)
    bounded = diffuse._to_hkl(grid_factors.grid_sums(axes, A_inv, xyz, weights, ff, U, (0, axes[f].numel()), layout,
                                                     q_max=q_max, budget=1), layout.perm)  # one row block per batch
    inside = q <= q_max
    assert 0.1 < float(inside.double().mean()) < 0.9
    assert torch.equal(bounded[..., inside], full[..., inside])
    skipped = (bounded == 0).all(0).all(0)  # points whose sums were not computed
    assert int(skipped.sum()) > 0.05 * skipped.numel() and not bool((skipped & inside).any())
    assert bool((full[..., skipped] != 0).all())  # zero only because they were skipped
    # a layout without the rows that have no point inside (coupled only: uncoupled blocks keep the rows in order)
    layout = grid_factors.plan_layout(axes, G, q_max=q_max)
    assert layout.left_out == int(coupled)
    if coupled:
        assert layout.blocks.numel() < math.prod(a.numel() for i, a in enumerate(axes) if i != f)
    trimmed = diffuse._to_hkl(grid_factors.grid_sums(axes, A_inv, xyz, weights, ff, U, (0, axes[f].numel()), layout,
                                                     q_max=q_max, budget=1), layout.perm)
    scale = float(full.abs().max())
    assert torch.allclose(trimmed[..., inside], full[..., inside], rtol=1e-12, atol=1e-13 * scale)
    assert int((trimmed == 0).all(0).all(0).sum()) >= int(skipped.sum())


def test_resolution_limit_skips_work_not_points(monkeypatch):
    """OnePhonon with res_limit passes the limit's |q| to the engine and the contraction, both skip work beyond
    it, and the map equals the one made without the bound, NaN at the same places."""
    model = OnePhonon(structure("6o2h_clean"), (-2, 2, 2), (-2, 2, 2), (-4, 4, 2), res_limit=10.0, progress=False)
    assert _coupled(model) and 0.4 < float(model.res_mask.double().mean()) < 0.7
    bounds, chunks = [], []
    sums, within, whole = diffuse.grid_sums, diffuse._holds_points_within, diffuse.onephonon_map

    def recorded_sums(*args, **kwargs):
        bounds.append(kwargs.get("q_max"))
        return sums(*args, **kwargs)

    def recorded_chunk(*args):
        chunks.append(within(*args))
        return chunks[-1]

    monkeypatch.setattr(grid_factors, "_ROW_BLOCK_COUPLED", 8)
    monkeypatch.setattr(diffuse, "grid_sums", recorded_sums)
    monkeypatch.setattr(diffuse, "_holds_points_within", recorded_chunk)
    small = 1 << 16  # contraction chunks of a few points: some lie beyond the limit
    skipped = model.apply_disorder(use_data_adp=True, max_memory=small)
    assert bounds and all(abs(c - 2 * math.pi / 10.0) < 1e-12 for c in bounds)
    assert True in chunks and False in chunks
    monkeypatch.setattr(diffuse, "onephonon_map", lambda *a, **k: whole(*a, **{**k, "q_max": None}))
    computed = model.apply_disorder(use_data_adp=True, max_memory=small)
    finite = ~computed.isnan()
    assert 0.1 * computed.numel() < int(finite.sum()) < 0.9 * computed.numel()
    assert torch.equal(skipped.isnan(), computed.isnan())
    assert torch.allclose(skipped[finite], computed[finite], rtol=1e-12, atol=0)