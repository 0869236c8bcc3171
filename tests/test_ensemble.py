# SPDX-License-Identifier: GPL-2.0-or-later
"""Ensemble beyond the recorded calls, on multi-model files written from a shared structure: maps
against a direct sum over conformations with eryx_port.scatter, weights (eryx's refusal of the wrong
number), identical conformations, one frame, ensemble_dir, the gradient fit of the weights, and the
file writer itself."""

from __future__ import annotations

import hashlib
import math

import gemmi
import numpy as np
import pytest
import torch

from eryx_port import scatter
from eryx_port.models import Ensemble
from eryx_port.multimodel import write_perturbed_models
from structures import structure as pdb_path

SAMPLING = ((-1, 1, 2), (-1, 1, 1), (-1, 1, 2))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ensembles")
    return {
        "5zck": write_perturbed_models(pdb_path("5zck"), folder / "5zck_ens3.pdb", 3),
        "2ol9": write_perturbed_models(pdb_path("2ol9"), folder / "2ol9_ens4.pdb", 4),
        "rigid": write_perturbed_models(pdb_path("2ol9"), folder / "2ol9_same3.pdb", 3, amplitude=0.0),
    }


@pytest.fixture(scope="module")
def model(files):
    return Ensemble(files["5zck"], *SAMPLING, res_limit=4.6)


def _direct_maps(model, weights):
    """sum_asu [sum_c w_c |A_c|^2 - |sum_c w_c A_c|^2] from eryx_port.scatter, one copy at a time."""
    m = model.model
    q = model.q_grid[model.mask]
    w = torch.as_tensor(np.atleast_2d(weights), dtype=torch.float64)
    out = torch.zeros(w.shape[0], model.q_grid.shape[0], dtype=torch.float64)
    for asu in range(m.n_asu):
        A = torch.stack([scatter.structure_factors(q, m.xyz[c * m.n_asu + asu], m.ff_a[c * m.n_asu + asu],
                                                   m.ff_b[c * m.n_asu + asu], m.ff_c[c * m.n_asu + asu],
                                                   U=m.adp[c * m.n_asu + asu] / (8 * math.pi**2))
                         for c in range(m.n_conf)])
        out[:, model.mask] += w @ (A.abs() ** 2) - (w.to(A.dtype) @ A).abs() ** 2
    out[:, ~model.mask] = float("nan")
    return out


def test_writer_is_deterministic_and_keeps_model_one(files, tmp_path):
    again = write_perturbed_models(pdb_path("5zck"), tmp_path / "again.pdb", 3)
    digest = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in (files["5zck"], again)]
    assert digest[0] == digest[1]
    st, ref = gemmi.read_pdb(files["5zck"]), gemmi.read_pdb(pdb_path("5zck"))
    assert len(st) == 3 and st.cell.parameters == ref.cell.parameters
    def xyz(model):
        return np.array([a.pos.tolist() for ch in model for res in ch for a in res])

    first = xyz(st[0])
    np.testing.assert_array_equal(first, xyz(ref[0]))
    moved = xyz(st[2]) - first
    assert 0 < np.abs(moved).max() <= 0.3 + 1e-9
    with pytest.raises(ValueError, match="n_models"):
        write_perturbed_models(pdb_path("5zck"), tmp_path / "x.pdb", 0)


def test_maps_match_a_direct_sum_over_conformations(model):
    weights = np.array([[0.5, 0.3, 0.2], [1.0, 2.0, 0.5]])  # the second set unnormalised, as eryx allows
    I = model.apply_disorder(weights)
    expected = _direct_maps(model, weights)
    assert I.shape == (2, model.q_grid.shape[0]) and (~model.mask).any()
    keep = ~torch.isnan(expected)
    assert torch.equal(torch.isnan(I), ~keep) and expected[keep].abs().max() > 0
    torch.testing.assert_close(I[keep], expected[keep], rtol=1e-9, atol=1e-11 * float(expected[keep].abs().max()))


def test_triclinic_ensemble_without_expansion(files):
    e = Ensemble(files["2ol9"], (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), expand_p1=False)
    assert e.model.n_conf == 4 and e.model.n_asu == 1
    I = e.apply_disorder()  # equal weights 1/4
    expected = _direct_maps(e, np.full(4, 0.25))
    torch.testing.assert_close(I, expected, rtol=1e-9, atol=1e-11 * float(expected.abs().max()), equal_nan=True)


def test_weights_of_the_wrong_length_raise_as_in_eryx(model):
    with pytest.raises(ValueError, match="Second dimension of weights must match number of conformations"):
        model.apply_disorder(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="weights"):
        model.apply_disorder(np.ones((2, 3, 1)))


def test_identical_conformations_scatter_no_diffuse_intensity(files):
    e = Ensemble(files["rigid"], (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), expand_p1=False)
    I = e.apply_disorder(np.array([0.2, 0.3, 0.5]))
    scale = e._maps(torch.tensor([[0.2, 0.3, 0.5]], dtype=torch.float64), incoherent_only=True).max()
    assert I.abs().max() <= 1e-13 * scale


def test_one_frame_and_ensemble_dir(files, model, tmp_path):
    e = Ensemble(files["5zck"], *SAMPLING, res_limit=4.6, frame=2)
    assert e.model.n_conf == 1 and e.frame == 2
    torch.testing.assert_close(e.model.xyz, model.model.xyz[2 * e.model.n_asu : 3 * e.model.n_asu], rtol=0, atol=0)
    # one conformation: w |A|^2 - |w A|^2 = w (1 - w) |A|^2
    I = e.apply_disorder(np.array([0.7]), ensemble_dir=str(tmp_path))
    power = e._maps(torch.tensor([[1.0]], dtype=torch.float64), incoherent_only=True).reshape(1, -1)
    torch.testing.assert_close(I[:, e.mask], 0.21 * power[:, e.mask], rtol=1e-12, atol=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"conf00002_asu{a}.npy" for a in range(e.model.n_asu)]
    m = e.model
    for a in range(m.n_asu):
        A = scatter.structure_factors(e.q_grid[e.mask], m.xyz[a], m.ff_a[a], m.ff_b[a], m.ff_c[a],
                                      U=m.adp[a] / (8 * math.pi**2)).numpy()
        np.testing.assert_allclose(np.load(tmp_path / f"conf00002_asu{a}.npy"), A, rtol=1e-10, atol=1e-12 * np.abs(A).max())


def test_all_frames_ensemble_dir_keeps_the_last_conformation(model, tmp_path):
    model.apply_disorder(ensemble_dir=str(tmp_path))
    m = model.model
    last = (m.n_conf - 1) * m.n_asu
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"conf-0001_asu{a}.npy" for a in range(m.n_asu)]
    A = scatter.structure_factors(model.q_grid[model.mask], m.xyz[last + 1], m.ff_a[last + 1], m.ff_b[last + 1],
                                  m.ff_c[last + 1], U=m.adp[last + 1] / (8 * math.pi**2)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "conf-0001_asu1.npy"), A, rtol=1e-10, atol=1e-12 * np.abs(A).max())


def test_weights_carry_gradients(model):
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64, requires_grad=True)
    I = model.apply_disorder(w)[0]
    I[~torch.isnan(I)].sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().min() > 0


def test_fit_recovers_weights_from_twice_off(files):
    """Probabilities of 4 conformations, fitted as softmax logits from weights 2x / 0.5x off."""
    e = Ensemble(files["2ol9"], (-1, 1, 1), (-1, 1, 1), (-1, 1, 2), expand_p1=False)
    true = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    target = e.apply_disorder(true)[0]
    w, fitted = e.fit(target, true * torch.tensor([0.5, 2.0, 0.5, 2.0], dtype=torch.float64))
    assert torch.allclose(w, true, rtol=0.01, atol=0)
    keep = ~torch.isnan(target)
    torch.testing.assert_close(fitted[keep], target[keep], rtol=1e-4, atol=1e-8 * float(target[keep].abs().max()))


def test_bad_inputs_raise_clear_errors(files, model):
    with pytest.raises(ValueError, match="expand_p1=True"):  # eryx: IndexError (copies indexed conf * n_asu + asu)
        Ensemble(files["5zck"], *SAMPLING, expand_p1=False)
    with pytest.raises(ValueError, match="frame"):
        Ensemble(files["5zck"], *SAMPLING, frame=5)
    with pytest.raises(ValueError, match="res_limit"):
        Ensemble(files["5zck"], *SAMPLING, res_limit=-1)
    with pytest.raises(ValueError, match="hsampling"):
        Ensemble(files["5zck"], (1, -1, 2), SAMPLING[1], SAMPLING[2])
    with pytest.raises(ValueError, match="ensemble_dir"):
        model.apply_disorder(ensemble_dir="/nonexistent/folder")


def test_a_small_memory_budget_changes_nothing_but_the_chunks(files, model, tmp_path):
    """max_memory small enough to compute one ASU group and a few grid planes at a time."""
    small = Ensemble(files["5zck"], *SAMPLING, res_limit=4.6, max_memory=20_000)
    weights = np.array([[0.5, 0.3, 0.2], [1.0, 2.0, 0.5]])
    expected = model.apply_disorder(weights)
    scale = float(expected[~torch.isnan(expected)].abs().max())
    torch.testing.assert_close(small.apply_disorder(weights, ensemble_dir=str(tmp_path)), expected,
                               rtol=1e-10, atol=1e-12 * scale, equal_nan=True)
    whole = tmp_path / "whole"
    whole.mkdir()
    model.apply_disorder(weights, ensemble_dir=str(whole))
    for a in range(model.model.n_asu):
        saved = np.load(whole / f"conf-0001_asu{a}.npy")  # the engine rounds slabs a little differently
        np.testing.assert_allclose(np.load(tmp_path / f"conf-0001_asu{a}.npy"), saved, rtol=0, atol=1e-13 * np.abs(saved).max())
