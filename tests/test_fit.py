# SPDX-License-Identifier: GPL-2.0-or-later
"""Fitting example: recover the GNM spring constants from a one-phonon map with torch.optim."""

from __future__ import annotations

import torch

from eryx_port import OnePhonon
from structures import structure

TRUE = (1.5, 0.4)  # gamma_intra, gamma_inter
START = (3.0, 0.2)  # 2x off, in opposite directions


def test_lbfgs_recovers_spring_constants():
    path = structure("5zck")
    sampling = ((-2, 2, 2), (-1, 1, 2), (-1, 1, 2))
    target = OnePhonon(str(path), *sampling, gamma_intra=TRUE[0], gamma_inter=TRUE[1], progress=False).apply_disorder()
    keep = ~target.isnan()

    model = OnePhonon(str(path), *sampling, progress=False)
    log_gamma = torch.tensor(START, dtype=torch.float64).log().requires_grad_(True)
    optimiser = torch.optim.LBFGS([log_gamma], lr=1.0, max_iter=60, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        gi, ge = log_gamma.exp()
        I = model.update(gamma_intra=gi, gamma_inter=ge).apply_disorder()
        loss = ((I[keep] / target[keep] - 1) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    fitted = log_gamma.detach().exp()
    assert torch.allclose(fitted, torch.tensor(TRUE, dtype=torch.float64), rtol=0.01), fitted


def test_lbfgs_recovers_spring_constants_of_a_brillouin_zone_map():
    """The same fit through OnePhononBrillouin (the map around one Miller index), from a 2x-off start."""
    from eryx_port.models import OnePhononBrillouin

    path = structure("5zck")
    target = OnePhononBrillouin(str(path), 1, 0, 1, 2, gamma_intra=TRUE[0], gamma_inter=TRUE[1]).Id
    keep = ~target.isnan()
    assert keep.sum() > 0 and target[keep].abs().max() > 0

    model = OnePhononBrillouin(str(path), 1, 0, 1, 2)
    log_gamma = torch.tensor(START, dtype=torch.float64).log().requires_grad_(True)
    optimiser = torch.optim.LBFGS([log_gamma], lr=1.0, max_iter=60, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        gi, ge = log_gamma.exp()
        I = model.update(gamma_intra=gi, gamma_inter=ge)
        loss = ((I[keep] / target[keep] - 1) ** 2).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    fitted = log_gamma.detach().exp()
    assert torch.allclose(fitted, torch.tensor(TRUE, dtype=torch.float64), rtol=0.01), fitted
