# SPDX-License-Identifier: GPL-2.0-or-later
"""LiquidLikeMotions beyond the recorded calls: the gradient fit, the per-axis scan that eryx
crashes on and border=0 (checked against NumPy/SciPy computations written here from the model's
formula), the circular convolution eryx uses for large maps, the opt_map rule, input errors."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

from eryx_port.models import LiquidLikeMotions  # noqa: E402
from structures import structure as pdb_path  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return LiquidLikeMotions(pdb_path("5zck"), (-1, 1, 2), (-1, 1, 2), (-1, 1, 2), border=1, res_limit=2.8)


def _fresh(model):
    """A copy of the model with an empty scan record."""
    m = LiquidLikeMotions.__new__(LiquidLikeMotions)
    m.__dict__.update(model.__dict__, scan_sigmas=[], scan_gammas=[], scan_ccs=[], opt_map=None)
    return m


def _numpy_maps(model, sigmas_xyz, gammas):
    """The model's maps in NumPy/SciPy: linear 'same' convolution with the normalised kernel, then
    q2s2 exp(-q2s2) per sigma triple, sigma-major; NaN beyond the resolution limit."""
    q = model.q_grid.numpy()
    qm = np.linalg.norm(q, axis=1)
    T = model.transform.numpy()
    conv = []
    for g in gammas:
        k = (8 * np.pi * g**3 / (1 + (g * qm) ** 2) ** 2).reshape(model.map_shape)
        conv.append(scipy.signal.fftconvolve(T, k / k.sum(), mode="same").reshape(-1))
    out = []
    for s in np.asarray(sigmas_xyz, dtype=float):
        q2s2 = (q**2) @ (s**2)
        for c in conv:
            out.append(np.where(model.res_mask.numpy(), c * q2s2 * np.exp(-q2s2), np.nan))
    return np.array(out)


def _inside(model, maps):
    return maps[:, model.mask.numpy().reshape(-1) == 1]


def _numpy_cc(maps, target):
    keep = ~np.isnan(maps.sum(axis=0) + target)
    return np.array([np.corrcoef(m[keep], target[keep])[0, 1] for m in maps])


def test_maps_match_scipy_and_their_gradients_are_finite(model):
    sigma = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor([2.0, 5.0], dtype=torch.float64, requires_grad=True)
    I = model.apply_disorder(sigma, gamma)
    expected = _numpy_maps(model, [[0.4, 0.4, 0.4]], [2.0, 5.0])
    np.testing.assert_allclose(I.detach().numpy(), expected, rtol=1e-9, atol=1e-13 * np.nanmax(expected))
    assert torch.isnan(I).any()  # res_limit 2.8 masks the corners
    I[~torch.isnan(I)].sum().backward()
    assert torch.isfinite(sigma.grad).all() and torch.isfinite(gamma.grad).all() and gamma.grad.abs().min() > 0


def test_per_axis_scan_is_the_product_grid_eryx_meant(model):
    """eryx's optimize with per-axis sigma bounds stops on ``itertools`` (never imported)."""
    target = _inside(model, _numpy_maps(model, [[0.35, 0.5, 0.45]], [3.0]))[0]
    target = (target * (1 + 0.02 * np.random.default_rng(3).standard_normal(target.shape))).reshape(model.map_shape_nopad)
    lo, hi, gammas = (0.2, 0.3, 0.3), (0.5, 0.6, 0.6), (2.0, 4.0)
    triples = np.array(list(itertools.product(*[np.linspace(lo[i], hi[i], 3) for i in range(3)])))
    m = _fresh(model)
    ccs, sigmas, gam = m.optimize(target, lo, hi, 2.0, 4.0, ns_search=3, ng_search=2)

    maps = _inside(model, _numpy_maps(model, triples, gammas))
    expected = _numpy_cc(maps, target.reshape(-1))
    np.testing.assert_allclose(ccs.numpy(), expected, rtol=1e-9)
    np.testing.assert_array_equal(sigmas.numpy(), np.repeat(triples, 2, axis=0))
    np.testing.assert_array_equal(gam.numpy(), np.tile(gammas, 27))
    best = int(np.argmax(expected))
    np.testing.assert_array_equal(m.opt_sigma.numpy(), np.repeat(triples, 2, axis=0)[best])
    assert float(m.opt_gamma) == np.tile(gammas, 27)[best]
    np.testing.assert_allclose(m.opt_map.numpy().reshape(-1), maps[best], rtol=1e-9, atol=1e-13 * np.nanmax(maps))


def test_opt_map_is_kept_unless_a_later_scan_beats_every_earlier_one(model):
    target = model._inside(model.apply_disorder(0.45, 3.0))[0].reshape(model.map_shape_nopad)
    m = _fresh(model)
    m.optimize(target, 1.0, 1.4, 8.0, 9.0, ns_search=2, ng_search=2)  # far from the truth
    first = m.opt_map.clone()
    m.optimize(target, 1.2, 1.5, 9.0, 10.0, ns_search=2, ng_search=2)  # worse still: opt_map kept
    assert torch.equal(m.opt_map, first) and float(m.opt_sigma) >= 1.2  # opt_sigma follows the last scan
    m.optimize(target, 0.45, 0.6, 3.0, 4.0, ns_search=2, ng_search=2)  # holds the truth: replaced
    assert float(m.opt_sigma) == 0.45 and float(m.opt_gamma) == 3.0
    torch.testing.assert_close(m.opt_map, target, rtol=1e-12, atol=0, equal_nan=True)
    assert len(m.scan_ccs) == len(m.scan_sigmas) == len(m.scan_gammas) == 12
    plt.figure()
    m.plot_scan()
    plt.close("all")


def test_large_maps_use_eryxs_circular_convolution(model):
    """From 1e7 points on eryx convolves with its own fft_convolve (circular, ifftshift-ed)."""
    m = _fresh(model)
    m.circular_above = 0
    I = m.apply_disorder(0.5, np.array([2.0, 4.0]))
    qm = model.q_mags.numpy()
    T = model.transform.numpy()
    for row, g in zip(I.numpy(), (2.0, 4.0)):
        k = (1 / (1 + (g * qm) ** 2) ** 2).reshape(model.map_shape)
        circ = np.fft.ifftshift(np.fft.ifftn(np.fft.fftn(T) * np.fft.fftn(k / k.sum())).real).reshape(-1)
        q2s2 = qm**2 * 0.25
        expected = np.where(model.res_mask.numpy(), circ * q2s2 * np.exp(-q2s2), np.nan)
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-13 * np.nanmax(expected))
    # batched kernels give each kernel's map
    kernels = np.random.default_rng(0).uniform(0.1, 1.0, (2, *model.map_shape))
    both = model.fft_convolve(model.transform, kernels)
    for k, out in zip(kernels, both):
        torch.testing.assert_close(out, model.fft_convolve(model.transform, k), rtol=1e-12, atol=1e-12 * float(out.abs().max()))


def test_border_zero_keeps_the_whole_map():
    """eryx's mask slice [0:-0] is empty, so border=0 leaves it nothing to scan; the port keeps every point."""
    m = LiquidLikeMotions(pdb_path("2ol9"), (-1, 1, 2), (-1, 1, 1), (0, 1, 1), border=0, asu_confined=True)
    assert m.map_shape_nopad == m.map_shape == (5, 3, 2)
    assert bool((m.mask == 1).all())
    target = _numpy_maps(m, [[0.5, 0.5, 0.5]], [3.0])[0].reshape(m.map_shape)
    ccs, sigmas, gammas = m.optimize(target, 0.3, 0.7, 2.0, 4.0, ns_search=3, ng_search=3)
    assert float(m.opt_sigma) == 0.5 and float(m.opt_gamma) == 3.0
    expected = _numpy_cc(_numpy_maps(m, np.repeat(np.linspace(0.3, 0.7, 3)[:, None], 3, axis=1), [2.0, 3.0, 4.0]),
                         target.reshape(-1))
    np.testing.assert_allclose(ccs.numpy(), expected, rtol=1e-9)


@pytest.mark.parametrize("truth,start", [((0.45, 3.0), (0.9, 6.0)), ((0.45, 3.0), (0.225, 1.5)),
                                         (((0.4, 0.5, 0.3), 3.0), ((0.8, 1.0, 0.6), 6.0))])
def test_fit_recovers_sigma_and_gamma_from_a_start_twice_off(model, truth, start):
    sigma, gamma = truth
    s = torch.tensor([sigma], dtype=torch.float64) if isinstance(sigma, tuple) else sigma
    target = model._inside(model.apply_disorder(s, gamma))[0].reshape(model.map_shape_nopad)
    fitted_sigma, fitted_gamma, I = model.fit(target, *start)
    np.testing.assert_allclose(fitted_sigma.numpy(), np.asarray(sigma), rtol=1e-2)
    assert float(fitted_gamma) == pytest.approx(gamma, rel=1e-2)
    assert I.shape == model.map_shape_nopad


def test_bad_input(model):
    with pytest.raises(ValueError, match="border"):
        LiquidLikeMotions(pdb_path("5zck"), (-1, 1, 2), (-1, 1, 2), (-1, 1, 2), border=-1)
    with pytest.raises(ValueError, match="gammas"):
        model.apply_disorder(0.5, np.ones((2, 2)))
    with pytest.raises(ValueError, match="target has shape") as info:
        model.optimize(np.ones(model.map_shape), 0.1, 0.5, 1.0, 2.0)  # the padded shape: wrong
    assert isinstance(info.value, AssertionError)
    with pytest.raises(ValueError, match="ng_search"):
        model.optimize(np.ones(model.map_shape_nopad), 0.1, 0.5, 1.0, 2.0, ng_search=0)
    with pytest.raises(ValueError, match="kernel"):
        model.fft_convolve(model.transform, np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="one gamma"):
        model.fit(np.ones(model.map_shape_nopad), 0.5, [1.0, 2.0])


@pytest.mark.parametrize("name,sampling", [
    ("5zck", ((-2, 2, 2), (-3, 3, 2), (-4, 4, 1))),  # orthorhombic, centred grid: the even-kernel route
    ("7n2h", ((-2, 2, 2), (-2, 2, 2), (-1, 1, 2))),  # hexagonal metric: the kernel's own FFT
    ("5zck", ((-2, 1, 2), (-3, 3, 2), (-4, 4, 1))),  # grid not centred: the kernel's own FFT
])
def test_maps_without_gradients_equal_scipy(name, sampling):
    # the no-gradient route (buffers, cosine transforms of an even kernel, cropped inverse) against SciPy
    m = LiquidLikeMotions(pdb_path(name), *sampling, res_limit=3.0)
    I = m.apply_disorder(torch.tensor([0.2, 0.5], dtype=torch.float64), [0.8, 2.5, 4.0])
    expected = _numpy_maps(m, [[0.2] * 3, [0.5] * 3], [0.8, 2.5, 4.0])
    np.testing.assert_allclose(I.numpy(), expected, rtol=1e-9, atol=1e-13 * np.nanmax(expected))
    assert m._even_kernel() == (name == "5zck" and sampling[0][0] == -2 and sampling[0][1] == 2)
