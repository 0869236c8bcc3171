"""apply_disorder(rank=r, degenerate="cluster"): the rank map summed over the modes degenerate with mode r.

eryx's rank-resolved map at a k-vector where mode r shares its eigenvalue with another mode is
whichever vector of that eigenspace the eigensolver returned; the cluster map is the same for any
basis of the eigenspace. Checked on 5zck (-2,2,2)^3, where mode 3 is degenerate at 7 of 8 k-vectors.
"""

import math

import pytest
import torch

from eryx_port.models import OnePhonon
from eryx_port.models.onephonon import DEGENERATE_RTOL

from structures import structure

RANK = 3


@pytest.fixture(scope="module")
def model():
    return OnePhonon(structure("5zck"), (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), gnm_cutoff=4.0, gamma_intra=1.0, gamma_inter=1.0)


def _clusters(model, rank):
    n = model.n_dof_per_cell
    Winv = model.Winv.reshape(-1, n)
    w = Winv[:, rank : rank + 1]
    return (Winv - w).abs() <= DEGENERATE_RTOL * torch.maximum(Winv.abs(), w.abs())  # (n_k, n)


def _k_of_points(model):
    """Index of the k-vector class of each q-point of the flattened map."""
    from eryx_port.diffuse import class_index

    sampling = tuple(int(s[2]) for s in model._sampling)
    return class_index(tuple(model.map_shape), sampling).reshape(-1)


def test_cluster_map_equals_mode_map_where_the_mode_is_alone(model):
    same = _clusters(model, RANK)
    alone = same.sum(dim=1) == 1
    assert alone.any() and (~alone).any(), "the case must have both kinds of k-vectors"
    a = model.apply_disorder(rank=RANK, use_data_adp=True)
    b = model.apply_disorder(rank=RANK, use_data_adp=True, degenerate="cluster")
    k = _k_of_points(model)
    at_alone = alone[k] & torch.isfinite(a)
    assert at_alone.sum() > 0 and a[at_alone].abs().max() > 0
    torch.testing.assert_close(b[at_alone], a[at_alone], rtol=1e-12, atol=1e-13 * float(a[at_alone].abs().max()))
    at_degenerate = ~alone[k] & torch.isfinite(a)
    assert (b[at_degenerate] - a[at_degenerate]).abs().max() > 1e-3 * a[at_degenerate].abs().max()


def test_cluster_map_does_not_depend_on_the_basis_of_the_eigenspace(model):
    same = _clusters(model, RANK)
    n = model.n_dof_per_cell
    before_mode = model.apply_disorder(rank=RANK, use_data_adp=True)
    before_cluster = model.apply_disorder(rank=RANK, use_data_adp=True, degenerate="cluster")
    V0 = model.V.clone()
    try:
        V = model.V.reshape(-1, n, n).clone()
        c, s = math.cos(0.7), math.sin(0.7)
        rotated = 0
        for kk in range(V.shape[0]):
            partners = [j for j in torch.nonzero(same[kk]).flatten().tolist() if j != RANK]
            if partners:
                j = partners[0]
                a, b = V[kk, :, RANK].clone(), V[kk, :, j].clone()
                V[kk, :, RANK], V[kk, :, j] = c * a + s * b, -s * a + c * b
                rotated += 1
        assert rotated > 0
        model.V = V.reshape(V0.shape)
        after_mode = model.apply_disorder(rank=RANK, use_data_adp=True)
        after_cluster = model.apply_disorder(rank=RANK, use_data_adp=True, degenerate="cluster")
    finally:
        model.V = V0
    finite = torch.isfinite(before_cluster)
    scale = before_cluster[finite].abs().max()
    assert (after_cluster - before_cluster)[finite].abs().max() <= 1e-12 * scale
    assert (after_mode - before_mode)[finite].abs().max() > 1e-3 * scale  # eryx's per-mode map does change


def test_degenerate_option_is_checked(model):
    with pytest.raises(ValueError, match="degenerate must be 'mode' or 'cluster'"):
        model.apply_disorder(rank=RANK, degenerate="sum")
