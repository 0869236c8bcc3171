# SPDX-License-Identifier: GPL-2.0-or-later
"""Recording scenarios of ``eryx.models.LiquidLikeMotions`` (s23..s25).

One model per scenario: apply_disorder with scalar, listed and per-axis sigmas over one or more
gammas, a direct ``fft_convolve``, grid scans (a second scan exercises eryx's rule for keeping
``opt_map``) and ``plot_scan``. Targets are eryx's own map for known parameters, cut to the
unpadded region, times seeded noise. Per-axis scans run with the ``itertools`` module that
``eryx/models.py`` uses but never imports (see scenarios_translations.py).
"""

from __future__ import annotations

import numpy as np

from scenarios import _module, _pdb
from scenarios_translations import _agg, _png, _with_itertools


def _kernel(model, gamma):
    """A liquid-like kernel on the padded grid, as a 3d array (input of the direct fft_convolve call)."""
    return (1.0 / np.square(1 + np.square(gamma * model.q_mags))).reshape(model.map_shape)


def _target(model, sigmas, gamma, seed):
    """eryx's map for one (sigma, gamma), unpadded, with 3 % seeded multiplicative noise (NaN kept)."""
    Id = model.apply_disorder(sigmas, gamma)[0]
    inner = Id[model.mask.flatten() == 1]
    rng = np.random.default_rng(seed)
    return (inner * (1 + 0.03 * rng.standard_normal(inner.shape))).reshape(model.map_shape_nopad)


def s_5zck_23(pkg, pdb_dir):
    """Crystal transform (P 21 21 21), border 1, res_limit 2.8; scalar/listed/per-axis maps, two isotropic scans."""
    plt = _agg()
    models = _module(pkg, "models")
    llm = models.LiquidLikeMotions(_pdb(pdb_dir, "5zck"), (-1, 1, 2), (-1, 1, 2), (-1, 1, 2), border=1,
                                   res_limit=2.8, batch_size=100, n_processes=1)
    llm.apply_disorder(0.4, 2.0)
    llm.apply_disorder(np.array([0.3, 0.6]), np.array([1.0, 3.0, 6.0]))
    llm.apply_disorder(np.array([[0.3, 0.5, 0.4], [0.6, 0.2, 0.4]]), np.array([2.0, 5.0]))
    llm.fft_convolve(llm.transform, _kernel(llm, 2.5))
    target = _target(llm, 0.45, 3.0, 23)
    llm.optimize(target, 0.2, 0.8, 1.0, 5.0, ns_search=4, ng_search=3)
    llm.optimize(target, 0.3, 0.6, 2.0, 4.0, ns_search=3, ng_search=3)
    llm.plot_scan(output=None)
    plt.close("all")


def s_2ol9_24(pkg, pdb_dir):
    """ASU-confined (molecular transform of triclinic P 1), border 1, res_limit 3; a better then a worse scan, plot."""
    plt = _agg()
    models = _module(pkg, "models")
    llm = models.LiquidLikeMotions(_pdb(pdb_dir, "2ol9"), (-1, 1, 2), (-1, 1, 2), (0, 1, 2), border=1,
                                   res_limit=3.0, batch_size=100, n_processes=1, asu_confined=True)
    llm.apply_disorder(0.5, 3)
    llm.apply_disorder(np.array([[0.6, 0.3, 0.5]]), np.array([1.5, 4.0]))
    llm.fft_convolve(llm.transform, _kernel(llm, 4.0))
    target = _target(llm, 0.55, 2.0, 24)
    llm.optimize(target, 0.3, 0.9, 1.0, 4.0, ns_search=4, ng_search=4)
    llm.optimize(target, 1.0, 1.5, 6.0, 9.0, ns_search=3, ng_search=2)
    with _png("llm_2ol9") as path:
        llm.plot_scan(output=path)
    plt.close("all")


def s_7n2h_25(pkg, pdb_dir):
    """ASU-confined on trigonal P 31 (reciprocal-space symmetrisation), border 2; isotropic scan, plot, per-axis scan.

    h and k share their oversampling: the rotations of P 31 mix h and k, and with unequal rates
    eryx's incoherent_sum_reciprocal pairs rotated indices that fall between grid points.
    """
    plt = _agg()
    models = _module(pkg, "models")
    llm = models.LiquidLikeMotions(_pdb(pdb_dir, "7n2h"), (-1, 1, 2), (-1, 1, 2), (0, 1, 1), border=2,
                                   batch_size=100, n_processes=1, asu_confined=True)
    llm.apply_disorder(np.array([0.2, 0.4]), 5.0)
    target = _target(llm, np.array([[0.3, 0.5, 0.4]]), 4.0, 25)
    llm.optimize(target, 0.1, 0.7, 2.0, 8.0, ns_search=4, ng_search=3)
    llm.plot_scan(output=None)
    plt.close("all")
    with _with_itertools(models):
        llm.optimize(target, (0.2, 0.3, 0.3), (0.4, 0.6, 0.5), 3.0, 5.0, ns_search=3, ng_search=2)


SCENARIOS = {
    "5zck-s23": s_5zck_23,
    "2ol9-s24": s_2ol9_24,
    "7n2h-s25": s_7n2h_25,
}
