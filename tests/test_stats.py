# SPDX-License-Identifier: GPL-2.0-or-later
"""Checks of eryx_port.stats against NumPy's own correlation (numpy.corrcoef), by hand where eryx has quirks."""

import numpy as np
import pytest
import torch

from eryx_port import stats


def _maps(n=300, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = 0.7 * a + rng.normal(size=n)
    return a, b


def _cc(x, y):
    return np.corrcoef(x, y)[0, 1]


def test_cc_equals_corrcoef_and_ignores_nan_and_masked_voxels():
    a, b = _maps()
    assert stats.compute_cc(a, b).shape == (1,)
    np.testing.assert_allclose(stats.compute_cc(a, b)[0], _cc(a, b), rtol=1e-13)
    a2, b2 = a.copy(), b.copy()
    a2[::7] = np.nan
    b2[3::11] = np.nan
    keep = ~np.isnan(a2) & ~np.isnan(b2)
    np.testing.assert_allclose(stats.compute_cc(a2, b2)[0], _cc(a[keep], b[keep]), rtol=1e-13)
    mask = (np.arange(a.size) % 3) != 0
    np.testing.assert_allclose(stats.compute_cc(a2, b2, mask=mask)[0], _cc(a[keep & mask], b[keep & mask]), rtol=1e-13)
    # a mask shaped like a map is flattened
    np.testing.assert_allclose(stats.compute_cc(a2, b2, mask=mask.reshape(10, 30))[0],
                               _cc(a[keep & mask], b[keep & mask]), rtol=1e-13)


def test_cc_rows_and_broadcast_and_nan_of_any_row():
    a, b = _maps()
    rows = np.stack([a, b, a + b])
    rows[2, 5] = np.nan  # a NaN in any row drops that voxel for every row (eryx's rule)
    keep = np.ones(a.size, dtype=bool)
    keep[5] = False
    got = stats.compute_cc(rows, b[None, :]).numpy()
    np.testing.assert_allclose(got, [_cc(r[keep], b[keep]) for r in rows], rtol=1e-13)
    paired = stats.compute_cc(rows, np.stack([b, a, a])).numpy()
    np.testing.assert_allclose(paired, [_cc(rows[0][keep], b[keep]), _cc(rows[1][keep], a[keep]),
                                        _cc(rows[2][keep], a[keep])], rtol=1e-13)


def test_cc_undefined_is_nan_and_errors():
    assert torch.isnan(stats.compute_cc(np.ones(10), np.arange(10.0)))[0]
    assert torch.isnan(stats.compute_cc(np.array([1.0, np.nan]), np.array([2.0, 3.0])))[0]
    with pytest.raises(ValueError, match="same n_points"):
        stats.compute_cc(np.ones(5), np.ones(6))
    with pytest.raises(ValueError, match="one value per map point"):
        stats.compute_cc(np.arange(5.0), np.arange(5.0) ** 2, mask=np.ones(4, dtype=bool))


def test_cc_gradient():
    a, b = _maps(n=12)
    x = torch.tensor(a, requires_grad=True)
    y = torch.tensor(b, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v: stats.compute_cc(u, v), (x, y))
    # NaN voxels stay out of the gradient
    a[3] = np.nan
    x = torch.tensor(a, requires_grad=True)
    stats.compute_cc(x, torch.tensor(b)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[3] == 0


def test_cc_by_shell_by_hand():
    rng = np.random.default_rng(4)
    n = 400
    a, b = _maps(n, seed=4)
    res = rng.uniform(2.0, 20.0, size=n)
    a[::13] = np.nan
    got_res, got_cc = (t.numpy() for t in stats.compute_cc_by_shell(a, b, res, n_shells=5))
    valid = ~np.isnan(a + b)
    finest = res[valid].min()
    x = 1.0 / res**3
    edges = np.histogram_bin_edges(x[res > finest], bins=5)
    shell = np.digitize(x, edges)  # 1..5 inside, 6 on/after the last edge, 0 before the first
    for i in range(1, 6):
        sel = shell == i
        np.testing.assert_allclose(got_res[i - 1], np.median(res[sel]), rtol=1e-14)
        np.testing.assert_allclose(got_cc[i - 1], _cc(a[sel & valid], b[sel & valid]), rtol=1e-12)
    assert (shell == 6).sum() >= 1  # the last edge's voxel falls in no shell, as in eryx


def test_cc_by_dq_by_hand_and_gradient():
    rng = np.random.default_rng(5)
    a, b = _maps(200, seed=5)
    dq = rng.choice([0.0, 0.05, 0.1, 0.2], size=200)
    mask = rng.uniform(size=200) > 0.3
    vals, cc = stats.compute_cc_by_dq(a, b, dq, mask=mask)
    np.testing.assert_array_equal(vals.numpy(), [0.0, 0.05, 0.1, 0.2])
    for v, c in zip(vals.numpy(), cc.numpy()):
        sel = (dq == v) & mask
        np.testing.assert_allclose(c, _cc(a[sel], b[sel]), rtol=1e-12)
    x = torch.tensor(a[:40], requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: stats.compute_cc_by_dq(u, b[:40], dq[:40])[1], (x,))
