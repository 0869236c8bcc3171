# SPDX-License-Identifier: GPL-2.0-or-later
"""RigidBodyTranslations beyond the recorded calls: the gradient fit, the per-axis scan that eryx
crashes on (checked against a NumPy scan written here from the model's formula), input errors."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from eryx_port.models import RigidBodyTranslations  # noqa: E402
from structures import structure as pdb_path  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return RigidBodyTranslations(pdb_path("5zck"), (-2, 2, 2), (-2, 2, 2), (-1, 1, 1), res_limit=2.6)


def _numpy_maps(model, sigmas_xyz):
    """transform * (1 - exp(-sum_i q_i^2 s_i^2)) for each row of sigmas_xyz (n, 3), in NumPy."""
    T = model.transform.numpy().reshape(-1)
    q2 = model.q_grid.numpy() ** 2
    return T[None, :] * (1 - np.exp(-(np.asarray(sigmas_xyz) ** 2) @ q2.T))


def _numpy_cc(maps, target):
    keep = ~np.isnan(maps.sum(axis=0) + target)
    return np.array([np.corrcoef(m[keep], target[keep])[0, 1] for m in maps])


def test_map_is_nan_where_the_transform_is_zero_and_its_gradient_is_finite(model):
    sigma = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    I = model.apply_disorder(sigma)
    missing = torch.isnan(model.transform.reshape(-1))
    assert missing.any() and (~missing).any()  # res_limit 2.6 masks part of the grid
    assert torch.equal(torch.isnan(I[0]), missing)
    I[~torch.isnan(I)].sum().backward()
    assert torch.isfinite(sigma.grad).all() and sigma.grad.abs().item() > 0


def test_isotropic_and_per_axis_sigmas_agree_when_equal(model):
    iso = model.apply_disorder(np.array([0.3, 0.9]))
    xyz = model.apply_disorder(np.array([[0.3, 0.3, 0.3], [0.9, 0.9, 0.9]]))
    torch.testing.assert_close(iso, xyz, rtol=1e-13, atol=0, equal_nan=True)
    expected = _numpy_maps(model, [[0.3, 0.3, 0.3], [0.9, 0.9, 0.9]])
    np.testing.assert_allclose(iso.numpy(), expected, rtol=1e-12)


def test_per_axis_scan_is_the_product_grid_eryx_meant(model, capsys):
    """eryx's optimize with per-axis bounds stops on ``itertools`` (never imported); the port scans
    the product grid: a slowest, c fastest, as ``itertools.product`` orders it."""
    rng = np.random.default_rng(5)
    truth = np.array([[0.55, 0.35, 0.8]])
    target = _numpy_maps(model, truth)[0] * (1 + 0.02 * rng.standard_normal(model.q_mags.numel()))
    target = target.reshape(model.map_shape)
    lo, hi, n = (0.2, 0.2, 0.4), (0.8, 0.6, 1.0), 4
    grid = np.array(list(itertools.product(*[np.linspace(lo[i], hi[i], n) for i in range(3)])))

    fresh = RigidBodyTranslations.__new__(RigidBodyTranslations)
    fresh.__dict__.update(model.__dict__, scan_sigmas=[], scan_ccs=[])
    ccs, sigmas = fresh.optimize(target, lo, hi, n_search=n)

    expected_ccs = _numpy_cc(_numpy_maps(model, grid), target.reshape(-1))
    np.testing.assert_array_equal(sigmas.numpy(), grid)
    np.testing.assert_allclose(ccs.numpy(), expected_ccs, rtol=1e-12)
    best = int(np.argmax(expected_ccs))
    np.testing.assert_array_equal(fresh.opt_sigma.numpy(), grid[best])
    np.testing.assert_allclose(fresh.opt_map.numpy(), _numpy_maps(model, grid[best:best + 1])[0].reshape(model.map_shape),
                               rtol=1e-12)
    assert len(fresh.scan_sigmas) == len(fresh.scan_ccs) == n**3
    assert "Optimal sigma" in capsys.readouterr().out
    with pytest.raises(ValueError, match="per-axis"):  # as eryx: only isotropic scans are plotted
        fresh.plot_scan()
    plt.close("all")


def test_isotropic_scans_extend_the_record_and_plot(model, tmp_path):
    target = model.apply_disorder(0.45)[0].reshape(model.map_shape)
    fresh = RigidBodyTranslations.__new__(RigidBodyTranslations)
    fresh.__dict__.update(model.__dict__, scan_sigmas=[], scan_ccs=[])
    ccs, sigmas = fresh.optimize(target, 0.15, 0.75, n_search=5)  # 0.45 is on the grid
    assert float(fresh.opt_sigma) == pytest.approx(0.45, abs=1e-15)
    assert ccs.max().item() == pytest.approx(1.0, abs=1e-12)
    fresh.optimize(target.numpy(), np.float64(0.5), 1.0, n_search=3)  # NumPy scalars and arrays are accepted
    assert len(fresh.scan_sigmas) == 8
    out = tmp_path / "scan.png"
    plt.figure()
    fresh.plot_scan(output=str(out))
    plt.close("all")
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("truth,start", [(0.6, 1.2), ((0.5, 0.8, 0.4), (1.0, 1.6, 0.8))])
def test_fit_recovers_sigmas_from_a_start_twice_off(model, truth, start):
    sigmas = torch.tensor([truth] if isinstance(truth, tuple) else truth, dtype=torch.float64)
    target = model.apply_disorder(sigmas)[0].reshape(model.map_shape)
    fitted, I = model.fit(target, start)
    np.testing.assert_allclose(fitted.numpy(), np.asarray(truth), rtol=1e-2)
    assert I.shape == model.map_shape
    torch.testing.assert_close(I, target, rtol=1e-3, atol=0, equal_nan=True)


def test_friedel_expanded_map_on_an_asymmetric_grid_gets_its_own_q_grid():
    """eryx keeps the grid's q-vectors for the larger, Friedel-expanded map (its apply_disorder then
    fails on shapes); the port's map on l = 0..1 is the map on the symmetric grid l = -1..1."""
    half = RigidBodyTranslations(pdb_path("2ol9"), (-1, 1, 1), (-1, 1, 1), (0, 1, 1), expand_friedel=True)
    full = RigidBodyTranslations(pdb_path("2ol9"), (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), expand_friedel=True)
    assert half.map_shape == full.map_shape == (3, 3, 3)
    torch.testing.assert_close(half.q_grid, full.q_grid, rtol=1e-14, atol=0)
    torch.testing.assert_close(half.apply_disorder(0.5), full.apply_disorder(0.5), rtol=1e-13, atol=0, equal_nan=True)


def test_float32():
    m = RigidBodyTranslations(pdb_path("2ol9"), (-1, 1, 1), (-1, 1, 1), (0, 1, 1), dtype=torch.float32)
    I = m.apply_disorder(0.5)
    assert I.dtype == torch.float32 and m.q_grid.dtype == torch.float32
    assert torch.isfinite(I[~torch.isnan(I)]).all()


def test_bad_input(model):
    with pytest.raises(ValueError, match="shape"):
        model.apply_disorder(np.ones((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        model.apply_disorder(float("nan"))
    with pytest.raises(ValueError, match="target has shape") as info:
        model.optimize(np.ones((2, 2, 2)), 0.1, 0.5)
    assert isinstance(info.value, AssertionError)  # eryx asserts the shape
    target = np.ones(model.map_shape)
    with pytest.raises(ValueError, match="both"):
        model.optimize(target, 0.1, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="n_search"):
        model.optimize(target, 0.1, 0.5, n_search=0)
    with pytest.raises(ValueError, match="oversampling"):
        RigidBodyTranslations(pdb_path("5zck"), (-1, 1, 0), (-1, 1, 1), (-1, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        model.fit(target, -0.5)
