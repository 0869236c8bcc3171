"""NonInteractingDeformableMolecules: what the parity traces cannot show.

* one component's soft-coupling map with ``n_processes=1`` (eryx raises IndexError there):
  the components' maps add up to the full map;
* the exact ("naive") intensity against a direct NumPy evaluation of its formula;
* the soft-coupling limit as the small-displacement limit of the exact intensity;
* ``_low_rank_truncation`` on a matrix with known singular values;
* the spring constant cancels in the ADP-scaled covariance;
* ``fit`` recovers a known B-factor and scale from a 2x-off start; clear errors for bad input.
"""

import math

import numpy as np
import pytest
import torch

from eryx_port.models import NonInteractingDeformableMolecules
from structures import structure

GRID = ((-1, 1, 1), (-1, 1, 1), (-1, 1, 1))


@pytest.fixture(scope="module")
def model():
    return NonInteractingDeformableMolecules(structure("5zck"), *GRID, gnm_cutoff=4.0, n_processes=1)


def test_component_maps_add_up_with_one_process(model):
    full = model.compute_scl_intensity(rank=-1)
    parts = torch.stack([model.compute_scl_intensity(rank=r) for r in range(model.s.shape[0])])
    assert model.n_processes == 1
    assert (parts >= 0).all() and parts[0].max() > 0
    torch.testing.assert_close(parts.sum(0), full, rtol=1e-12, atol=1e-12 * float(full.max()))
    # component 0 alone: q2 s_0 sum_asu |F_asu u_0|^2, written out for one q-point
    i = int(torch.argmax(parts[0]))
    q = model.q_grid[i].numpy()
    m = model.model
    U = model.ADP.numpy()
    s2 = (q @ q) / (4 * math.pi) ** 2
    total = 0.0
    for asu in range(m.n_asu):
        f = (m.ff_a[asu].numpy() * np.exp(-m.ff_b[asu].numpy() * s2)).sum(1) + m.ff_c[asu].numpy()
        F = f * np.exp(-0.5 * (q @ q) * U) * np.exp(1j * (m.xyz[asu].numpy() @ q))
        total += abs(F @ model.u[:, 0].numpy()) ** 2
    q2 = round(float(q @ q), 3)
    assert float(parts[0, i]) == pytest.approx(q2 * float(model.s[0]) * total, rel=1e-12)


def test_naive_intensity_against_its_formula(model):
    Id = model.compute_intensity_naive()
    m = model.model
    C = model.covar.numpy()
    U = np.diag(C)
    for i in (0, 5, 13, 26):
        q = model.q_grid[i].numpy()
        q2 = round(float(q @ q), 3)
        s2 = (q @ q) / (4 * math.pi) ** 2
        expected = 0.0
        for asu in range(m.n_asu):
            f = (m.ff_a[asu].numpy() * np.exp(-m.ff_b[asu].numpy() * s2)).sum(1) + m.ff_c[asu].numpy()
            F = f * np.exp(-0.5 * (q @ q) * U) * np.exp(1j * (m.xyz[asu].numpy() @ q))
            expected += np.real(F @ (np.exp(q2 * C) - 1.0) @ F.conj())
        assert float(Id[i]) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert float(Id[13]) == 0.0  # q = 0: no diffuse scattering
    assert float(Id.max()) > 0


def test_soft_coupling_is_the_small_displacement_limit():
    """With tiny B-factors exp(q2 C) - 1 ~ q2 C: the scl map (all components) matches the exact one."""
    path = structure("5zck")
    probe = NonInteractingDeformableMolecules(path, *GRID, gnm_cutoff=4.0)
    adp = probe.model.adp * 1e-3
    m = NonInteractingDeformableMolecules(path, *GRID, gnm_cutoff=4.0, adp=adp)
    m.u, m.s = m._low_rank_truncation(m.covar, rank=m.covar.shape[0])
    scl, exact = m.apply_disorder(scl=True), m.apply_disorder(scl=False)
    keep = exact > 0
    assert keep.sum() == 26
    ratio = scl[keep] / exact[keep]
    assert float((ratio - 1).abs().max()) < 2e-3


def test_low_rank_truncation_known_values(model):
    Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    C = Q @ torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)) @ Q.T
    # reconstruction errors 1 - sqrt(sum_{i<r} s_i^2) / sqrt(30): r = 1: 0.27, 2: 0.087, 3: 0.017
    for threshold, rank in ((0.5, 1), (0.1, 2), (0.02, 3), (0.01, 3)):  # none below 0.01: n - 1, as eryx
        u, s = model._low_rank_truncation(C, rec_error_threshold=threshold)
        assert tuple(u.shape) == (4, rank)
        torch.testing.assert_close(s, torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)[:rank])
        torch.testing.assert_close(u.T @ u, torch.eye(rank, dtype=torch.float64))
    u, s = model._low_rank_truncation(C, rank=4)
    torch.testing.assert_close((u * s) @ u.T, C)
    with pytest.raises(ValueError, match="rank"):
        model._low_rank_truncation(C, rank=5)
    with pytest.raises(ValueError, match="square"):
        model._low_rank_truncation(torch.ones(3, 4))


def test_spring_constant_cancels(model):
    """eryx scales the covariance to the data's mean B-factor: a stiffer network gives the same covar."""
    stiff = NonInteractingDeformableMolecules(structure("5zck"), *GRID, gnm_cutoff=4.0)
    stiff.gnm.gamma_intra = 7.5
    stiff.gnm.build_gamma()
    stiff._kinv = None
    stiff.compute_covariance_matrix()
    assert float(stiff._kinv.abs().max()) < float(model._kinv.abs().max()) / 7
    torch.testing.assert_close(stiff.covar, model.covar, rtol=1e-12, atol=1e-15)
    mean_b = float(model.model.adp[0].mean())
    assert float(model.ADP.mean()) == pytest.approx(mean_b / (8 * math.pi**2), rel=1e-12)


def test_fit_recovers_b_factor_and_scale():
    m = NonInteractingDeformableMolecules(structure("5zck"), *GRID, gnm_cutoff=4.0)
    adp0 = m.model.adp.clone()
    b_true = 1.3 * float(adp0[0].mean())
    target = 2.0 * m.update(adp=adp0 * 1.3).apply_disorder().detach()
    m.update(adp=adp0)
    params, fitted = m.fit(target, b_factor=2 * b_true, scale=4.0)
    assert params["b_factor"] == pytest.approx(b_true, rel=0.01)
    assert params["scale"] == pytest.approx(2.0, rel=0.01)
    keep = ~target.isnan()
    torch.testing.assert_close(params["scale"] * fitted[keep], target[keep], rtol=1e-3, atol=1e-3 * float(target[keep].max()))


def test_bad_input_is_refused(model):
    with pytest.raises(ValueError, match="rank"):
        model.compute_scl_intensity(rank=model.s.shape[0])
    with pytest.raises(ValueError, match="scl"):
        model.apply_disorder(scl="yes")
    with pytest.raises(ValueError, match="hsampling"):
        NonInteractingDeformableMolecules(structure("5zck"), (-1, 1), (-1, 1, 1), (-1, 1, 1))
    with pytest.raises(ValueError, match="gnm_cutoff"):
        NonInteractingDeformableMolecules(structure("5zck"), *GRID, gnm_cutoff=-1.0)
    with pytest.raises(ValueError, match="target"):
        model.fit(torch.ones(5))


def test_maps_follow_new_b_factors_after_a_map_was_computed():
    """The grid factors kept between maps are recomputed when the B-factors (hence ADP) change."""
    from eryx_port.models import NonInteractingDeformableMolecules

    path = str(structure("5zck"))
    m = NonInteractingDeformableMolecules(path, (-2, 2, 2), (-2, 2, 2), (-2, 2, 2))
    first = m.apply_disorder(scl=True)
    adp = m.model.adp.detach().clone() * 1.7
    m.update(adp=adp)
    fresh = NonInteractingDeformableMolecules(path, (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), adp=adp)
    for scl in (True, False):
        torch.testing.assert_close(m.apply_disorder(scl=scl), fresh.apply_disorder(scl=scl), rtol=1e-13, atol=0, equal_nan=True)
    assert not torch.allclose(first, m.apply_disorder(scl=True), equal_nan=True)
