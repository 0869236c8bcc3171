# SPDX-License-Identifier: GPL-2.0-or-later
"""Recording scenarios of ``eryx.models.RigidBodyTranslations`` (s20..s22).

Each scenario builds one model and calls its methods directly (apply_disorder with isotropic and
per-axis sigmas, the grid scan ``optimize`` and ``plot_scan``). Targets of the scans are eryx's own
formula on the model's transform times a seeded noise factor, computed here with NumPy so that the
direct ``apply_disorder`` calls are the recorded ones.

eryx's ``optimize`` with per-axis bounds uses ``itertools.product`` but ``eryx/models.py`` never
imports itertools (NameError). The per-axis scans below run with the missing module put into
``eryx.models``' namespace (:func:`_with_itertools`): the recorded calls are eryx's scan as its
code evidently means it; the port does the same (traces/functions.toml notes it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile

import numpy as np

from scenarios import _module, _pdb


@contextlib.contextmanager
def _with_itertools(models):
    """eryx.models with the ``itertools`` module its per-axis scans use but do not import."""
    had = hasattr(models, "itertools")
    models.itertools = itertools
    try:
        yield
    finally:
        if not had:
            del models.itertools


@contextlib.contextmanager
def _png(name: str):
    """A fixed path in the temporary folder for a plot, absent before and removed after the block.

    An existing file named by a string argument is recorded as a file input (name and sha256), also
    when a later ``--only`` recording re-encodes the kept calls; a path that never outlives its
    scenario stays a plain string.
    """
    path = os.path.join(tempfile.gettempdir(), f"eryx_port_scan_{name}.png")
    if os.path.exists(path):
        os.remove(path)
    try:
        yield path
    finally:
        if os.path.exists(path):
            os.remove(path)


def _agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _target(model, sigmas, seed):
    """eryx's translational map for ``sigmas`` (scalar or per-axis) with 3 % seeded multiplicative noise."""
    s2 = np.square(np.broadcast_to(np.asarray(sigmas, dtype=float), (3,)))
    wilson = np.square(model.q_grid) @ s2
    rng = np.random.default_rng(seed)
    noisy = model.transform.flatten() * (1 - np.exp(-wilson)) * (1 + 0.03 * rng.standard_normal(wilson.shape))
    return noisy.reshape(model.map_shape)


def s_5zck_20(pkg, pdb_dir):
    """P 21 21 21, Friedel-expanded symmetric grid, res_limit 3; isotropic scans (two, extending the lists), plots."""
    plt = _agg()
    models = _module(pkg, "models")
    rbt = models.RigidBodyTranslations(_pdb(pdb_dir, "5zck"), (-2, 2, 2), (-2, 2, 2), (-2, 2, 1),
                                       expand_friedel=True, res_limit=3.0, batch_size=50, n_processes=1)
    rbt.apply_disorder(0.4)
    rbt.apply_disorder(np.array([0.2, 0.5, 0.9]))
    rbt.apply_disorder(np.array([[0.3, 0.5, 0.8], [0.6, 0.2, 0.4]]))
    target = _target(rbt, 0.55, 20)
    rbt.optimize(target, 0.1, 1.0, n_search=10)
    rbt.plot_scan(output=None)
    rbt.optimize(target, 0.3, 0.7, n_search=5)
    with _png("rbt_5zck") as path:
        rbt.plot_scan(output=path)
    plt.close("all")


def s_2ol9_21(pkg, pdb_dir):
    """Triclinic P 1 without Friedel expansion, asymmetric grid, res_limit 3.5; isotropic and per-axis scans."""
    plt = _agg()
    models = _module(pkg, "models")
    rbt = models.RigidBodyTranslations(_pdb(pdb_dir, "2ol9"), (-1, 1, 2), (0, 2, 2), (-1, 1, 2),
                                       expand_friedel=False, res_limit=3.5, batch_size=40, n_processes=1)
    rbt.apply_disorder(np.array([0.7]))
    rbt.apply_disorder(np.array([[0.9, 0.4, 0.6]]))
    target = _target(rbt, (0.8, 0.45, 0.6), 21)
    rbt.optimize(target, 0.2, 1.2, n_search=6)
    with _png("rbt_2ol9") as path:
        rbt.plot_scan(output=path)
    plt.close("all")
    with _with_itertools(models):
        rbt.optimize(target, (0.3, 0.3, 0.3), (1.0, 0.9, 0.8), n_search=4)


def s_7n2h_22(pkg, pdb_dir):
    """Trigonal P 31, reciprocal-space incoherent sum (expand_friedel False); isotropic scan and plot, then per-axis."""
    plt = _agg()
    models = _module(pkg, "models")
    rbt = models.RigidBodyTranslations(_pdb(pdb_dir, "7n2h"), (-1, 1, 2), (-1, 1, 2), (0, 1, 2),
                                       expand_friedel=False, batch_size=60, n_processes=1)
    rbt.apply_disorder(0.3)
    target = _target(rbt, (0.25, 0.4, 0.5), 22)
    rbt.optimize(target, 0.1, 0.9, n_search=9)
    rbt.plot_scan(output=None)
    plt.close("all")
    with _with_itertools(models):
        rbt.optimize(target, (0.1, 0.2, 0.3), (0.5, 0.6, 0.7), n_search=3)


SCENARIOS = {
    "5zck-s20": s_5zck_20,
    "2ol9-s21": s_2ol9_21,
    "7n2h-s22": s_7n2h_22,
}
