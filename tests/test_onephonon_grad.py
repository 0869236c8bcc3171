# SPDX-License-Identifier: GPL-2.0-or-later
"""Gradients of the one-phonon map: spring constants, coordinates and B-factors (float64 gradcheck)."""

from __future__ import annotations

import pytest
import torch

from eryx_port import OnePhonon
from structures import structure

SMALL = ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2))
pytestmark = pytest.mark.gradcheck




@pytest.fixture(scope="module")
def setup():
    model = OnePhonon(structure("5zck"), *SMALL, gamma_intra=1.3, gamma_inter=0.7, progress=False)
    ref = model.apply_disorder().detach()
    keep = ~ref.isnan()
    proj = torch.rand(4, int(keep.sum()), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return model, keep, ref[keep].abs().max(), proj


def _projected(model, keep, scale, proj, use_data_adp=False):
    # a few fixed random projections of the (scaled) map: one backward pass each in gradcheck
    return proj @ (model.apply_disorder(use_data_adp=use_data_adp)[keep] / scale)


def test_gradcheck_spring_constants(setup):
    model, keep, scale, proj = setup

    def fn(gi, ge):
        return _projected(model.update(gamma_intra=gi, gamma_inter=ge), keep, scale, proj)

    gammas = (torch.tensor(1.3, dtype=torch.float64, requires_grad=True), torch.tensor(0.7, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(fn, gammas, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("use_data_adp", [False, True])
def test_gradcheck_coordinates(setup, use_data_adp):
    model, keep, scale, proj = setup
    xyz0 = model.model.xyz.detach().clone()

    def fn(part):  # three atoms of the second ASU
        xyz = torch.cat([xyz0[:1], torch.cat([part, xyz0[1, 3:]])[None], xyz0[2:]])
        return _projected(model.update(xyz=xyz, gamma_intra=1.3, gamma_inter=0.7), keep, scale, proj, use_data_adp)

    assert torch.autograd.gradcheck(fn, (xyz0[1, :3].clone().requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5)
    model.update(xyz=xyz0)


def test_gradcheck_b_factors(setup):
    model, keep, scale, proj = setup
    adp0 = model.model.adp[0].detach().clone()

    def fn(part):
        return _projected(model.update(adp=torch.cat([part, adp0[4:]])), keep, scale, proj, use_data_adp=True)

    assert torch.autograd.gradcheck(fn, (adp0[:4].clone().requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5)
    model.update(adp=adp0)


def test_constructor_tensors_give_finite_gradients_through_nan_masked_loss():
    gi = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    ge = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    base = OnePhonon(structure("5zck"), *SMALL, progress=False)
    xyz = base.model.xyz.detach().clone().requires_grad_(True)
    adp = base.model.adp[0].detach().clone().requires_grad_(True)
    model = OnePhonon(structure("5zck"), *SMALL, gamma_intra=gi, gamma_inter=ge, xyz=xyz, adp=adp, progress=False)
    I = model.apply_disorder()
    assert bool(I.isnan().any())  # the Bragg positions, as in eryx
    loss = torch.nansum(I) + torch.nansum(model.apply_disorder(use_data_adp=True))
    loss.backward()
    for name, t in (("gamma_intra", gi), ("gamma_inter", ge), ("xyz", xyz), ("adp", adp)):
        assert t.grad is not None, name
        assert bool(torch.isfinite(t.grad).all()), name
        assert float(t.grad.abs().max()) > 0, name
    # a stiffer network scatters less
    assert float(gi.grad) < 0 and float(ge.grad) < 0


def test_gradcheck_triclinic_within_a_resolution_limit(monkeypatch):
    """Triclinic 6o2h (every axis coupled) with res_limit: blocks beyond the limit are skipped and rows with no
    point inside left out of the layout; the B-factors' gradient through the series matches finite differences."""
    from eryx_port import grid_factors

    monkeypatch.setattr(grid_factors, "_ROW_BLOCK_COUPLED", 8)  # blocks small enough for some to lie beyond the limit
    monkeypatch.setattr(grid_factors, "_COL_BLOCK_COUPLED", 2)
    model = OnePhonon(structure("6o2h_clean"), (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), res_limit=9.0, progress=False)
    A_inv = model.model.A_inv.to(torch.float64)
    G = 4 * torch.pi**2 * A_inv @ A_inv.T
    layout = grid_factors.plan_layout(model._axes, G, q_max=2 * torch.pi / 9.0)
    assert layout.coupled and layout.left_out == 1
    ref = model.apply_disorder(use_data_adp=True).detach()
    keep = ~ref.isnan()
    assert 0.1 * ref.numel() < int(keep.sum()) < 0.9 * ref.numel()
    proj = torch.rand(3, int(keep.sum()), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    adp0 = model.model.adp[0].detach().clone()

    def fn(part):
        return _projected(model.update(adp=torch.cat([part, adp0[3:]])), keep, ref[keep].abs().max(), proj, use_data_adp=True)

    assert torch.autograd.gradcheck(fn, (adp0[:3].clone().requires_grad_(True),), eps=1e-6, atol=1e-7, rtol=1e-5)
