# SPDX-License-Identifier: GPL-2.0-or-later
"""Copies derived from copy 0 by symmetry (eryx_port.copy_symmetry) against every copy computed by the engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eryx_port import OnePhonon, copy_symmetry, diffuse

from structures import structure

GRIDS = {"5zck": ((-3, 3, 3), (-2, 2, 3), (-2, 2, 2)), "193l": ((-2, 2, 3), (-2, 2, 3), (-2, 2, 2)),
         "7n2h": ((-3, 3, 5), (-3, 3, 5), (-1, 1, 5))}


@pytest.fixture(scope="module", params=["5zck", "193l"])
def model(request):
    return OnePhonon(structure(request.param), *GRIDS[request.param], progress=False)


def _layout_and_copies(m, U=None):
    A_inv = m.model.A_inv.to(torch.float64)
    G = 4 * math.pi**2 * A_inv @ A_inv.T
    return diffuse._layout_and_copies(m._axes, G, A_inv, m.model.xyz, m._arms, m.ADP if U is None else U)


def _both(monkeypatch, fn):
    """``fn()`` with copies derived, then with every copy computed."""
    derived = fn()
    monkeypatch.setattr(copy_symmetry, "ENABLED", False)
    computed = fn()
    monkeypatch.setattr(copy_symmetry, "ENABLED", True)
    return derived, computed


def _assert_same_map(derived, computed, min_finite=0.5):
    derived, computed = (np.asarray(x.detach() if isinstance(x, torch.Tensor) else x) for x in (derived, computed))
    finite = ~np.isnan(computed)
    assert finite.sum() > min_finite * computed.size and np.abs(computed[finite]).max() > 0
    np.testing.assert_array_equal(np.isnan(derived), np.isnan(computed))
    # atol: a single mode's intensity vanishes at some points (to round-off of the map's scale, 1e-27 here)
    np.testing.assert_allclose(derived[finite], computed[finite], rtol=1e-11, atol=1e-14 * np.abs(computed[finite]).max())


@pytest.mark.parametrize("name, column, derived", [("5zck", 0, [1, 2, 3]), ("193l", 2, list(range(1, 8))), ("7n2h", 2, [])])
def test_which_copies_are_derived(name, column, derived):
    """P 21 21 21: every copy (2-fold axes along the grid axes); P 43 21 2: every copy with l as the column
    axis (the 4-fold axis swaps h and k, the same grid); P 31: none (its 3-fold axis mixes h and k)."""
    m = OnePhonon(structure(name), *GRIDS[name], progress=False)
    layout, copies = _layout_and_copies(m)
    assert layout.perm[2] == column and sorted(copies) == derived


def test_no_copy_derived_from_coordinates_that_carry_a_gradient_or_differ():
    m = OnePhonon(structure("5zck"), *GRIDS["5zck"], progress=False)
    xyz = m.model.xyz.detach().clone()
    A_inv = m.model.A_inv
    assert not copy_symmetry.copy_operations(A_inv, xyz.requires_grad_(True), m._arms, m.ADP)
    moved = xyz.detach().clone()
    moved[2, 5] += 0.01  # one atom of copy 2 off its symmetry position
    ops = copy_symmetry.copy_operations(A_inv, moved, m._arms, m.ADP)
    assert sorted(op.copy for op in ops) == [1, 3]
    per_copy = m.ADP.detach().expand(4, -1).clone().requires_grad_(True)  # one parameter per copy
    assert not copy_symmetry.copy_operations(A_inv, xyz.detach(), m._arms, per_copy)


@pytest.mark.parametrize("rank, use_data_adp", [(-1, False), (-1, True), (3, False)])
def test_derived_copies_give_the_same_map(model, monkeypatch, rank, use_data_adp):
    """All modes (the mirrored half reflected) and one mode (the mirrored half from conjugated sums)."""
    assert _layout_and_copies(model)[1]
    _assert_same_map(*_both(monkeypatch, lambda: model.apply_disorder(rank=rank, use_data_adp=use_data_adp)))


def test_derived_copies_in_slabs_and_boxes(model, monkeypatch):
    """Many slabs (a small budget) and boxes of one period: every band of rows derived from the slab's plane."""
    monkeypatch.setattr(diffuse, "_BOX_BYTES", 1)
    derived, computed = _both(monkeypatch, lambda: model.apply_disorder(max_memory=1 << 16))
    _assert_same_map(derived, computed)


def test_derived_copies_with_a_resolution_limit_into_a_memmap(monkeypatch, tmp_path):
    m = OnePhonon(structure("5zck"), *GRIDS["5zck"], res_limit=3.0, progress=False)

    def run():
        mm = np.lib.format.open_memmap(tmp_path / "map.npy", mode="w+", dtype=np.float64, shape=m.map_shape)
        m.apply_disorder(out=mm)
        return np.array(mm)

    derived, computed = _both(monkeypatch, run)
    assert np.isnan(computed).mean() > 0.4  # the limit masks the outer points (Bragg peaks alone: 1/18)
    _assert_same_map(derived, computed, min_finite=0.2)


def test_gradient_through_derived_copies(model, monkeypatch):
    """B-factors shared by the copies (one parameter per atom): the same gradient whether the other copies'
    sums are derived from copy 0's or computed; gradcheck of the derived path is in test_onephonon_grad."""
    adp0 = model.model.adp[0].detach().clone()
    proj = torch.rand(model.map_shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).reshape(-1)

    def grad():
        adp = adp0.clone().requires_grad_(True)
        model.update(adp=adp)
        I = model.apply_disorder(use_data_adp=True)
        keep = ~I.isnan()
        (proj[keep] * I[keep]).sum().backward()
        return adp.grad

    try:
        derived, computed = _both(monkeypatch, grad)
    finally:
        model.update(adp=adp0)
    assert computed.abs().max() > 0
    torch.testing.assert_close(derived, computed, rtol=1e-11, atol=0)


def test_float32_derives_copies_to_its_round_off(monkeypatch):
    """In float32 the symmetry holds to float32's round-off (coordinates, cell): copies are derived and the
    map agrees with every copy computed to that precision."""
    m = OnePhonon(structure("193l"), *GRIDS["193l"], dtype=torch.float32, progress=False)
    assert sorted(_layout_and_copies(m)[1]) == list(range(1, 8))
    derived, computed = (x.double().numpy() for x in _both(monkeypatch, m.apply_disorder))
    finite = ~np.isnan(computed)
    np.testing.assert_array_equal(np.isnan(derived), np.isnan(computed))
    assert np.abs(derived - computed)[finite].max() <= 1e-5 * np.abs(computed[finite]).max()


def test_copies_derived_only_where_at_least_half_are(monkeypatch):
    """With one of 5zck's three copies derivable the plane's narrow slabs would cost more than they save."""
    m = OnePhonon(structure("5zck"), *GRIDS["5zck"], progress=False)
    only_one = copy_symmetry.copy_maps
    monkeypatch.setattr(copy_symmetry, "copy_maps", lambda *a: {k: v for k, v in only_one(*a).items() if k == 1})
    assert _layout_and_copies(m)[1] == {}
    monkeypatch.setattr(copy_symmetry, "copy_maps", lambda *a: {k: v for k, v in only_one(*a).items() if k != 3})
    assert sorted(_layout_and_copies(m)[1]) == [1, 2]
