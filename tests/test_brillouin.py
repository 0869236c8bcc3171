"""OnePhononBrillouin: eryx's crop around the peak, the 'rb' model eryx cannot run, springs with gradients."""

import pytest
import torch

from eryx_port.models import OnePhonon, OnePhononBrillouin
from structures import structure


@pytest.mark.parametrize("N, kept", [(2, [2, 3]), (3, [2, 3, 4])])
def test_zone_is_eryx_crop_around_the_peak(N, kept):
    """The (2N+1)^3 box around (1, 0, 1) keeps grid indices N//2+1 .. 2N - ceil(N/2) on each axis."""
    b = OnePhononBrillouin(structure("5zck"), 1, 0, 1, N, gamma_intra=1.5, gamma_inter=0.5)
    full = OnePhonon(structure("5zck"), (0, 2, N), (-1, 1, N), (0, 2, N), gamma_intra=1.5, gamma_inter=0.5,
                     progress=False).apply_disorder().reshape(2 * N + 1, 2 * N + 1, 2 * N + 1)
    idx = torch.tensor(kept)
    torch.testing.assert_close(b.Id, full[idx][:, idx][:, :, idx], equal_nan=True)
    # the Bragg peak (grid index N on each axis) is eryx's NaN; everything else is a positive intensity
    centre = kept.index(N)
    nan = b.Id.isnan()
    assert nan.sum() == 1 and nan[centre, centre, centre]
    assert (b.Id[~nan] > 0).all()


def test_rigid_body_model_uses_the_data_b_factors():
    """eryx fails for model='rb' (IndexError for N < 4, no ADP otherwise); the port maps it with data ADPs."""
    b = OnePhononBrillouin(structure("2ol9"), 0, 1, -1, 4, model="rb")
    full = OnePhonon(structure("2ol9"), (-1, 1, 4), (0, 2, 4), (-2, 0, 4), model="rb", progress=False)
    expected = full.apply_disorder(use_data_adp=True).reshape(9, 9, 9)[3:7, 3:7, 3:7]
    torch.testing.assert_close(b.Id, expected)
    assert b.Id.shape == (4, 4, 4) and torch.isfinite(b.Id).all() and (b.Id > 0).all()
    with pytest.raises(ValueError, match="N >= 4"):
        OnePhononBrillouin(structure("2ol9"), 0, 1, -1, 3, model="rb")


def test_springs_have_gradients():
    b = OnePhononBrillouin(structure("5zck"), 1, 0, 1, 2)
    g = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    Id = b.update(gamma_inter=g)
    keep = ~Id.isnan()
    Id[keep].sum().backward()
    # a softer lattice scatters more: the intensity falls as gamma_inter grows
    assert torch.isfinite(g.grad) and g.grad < 0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="N must be"):
        OnePhononBrillouin(structure("5zck"), 1, 0, 1, 0)
    with pytest.raises(ValueError, match="h must be"):
        OnePhononBrillouin(structure("5zck"), float("nan"), 0, 1, 2)
    with pytest.raises(ValueError, match="model"):
        OnePhononBrillouin(structure("5zck"), 1, 0, 1, 2, model="elastic")
