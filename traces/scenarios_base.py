# SPDX-License-Identifier: GPL-2.0-or-later
"""Recording scenarios of eryx.base, eryx.stats, eryx.reference and the leftover pdb/map_utils calls (s10..s19).

Loaded by ``traces/scenarios.py``. Conventions of these scenarios:

* a scenario that calls ``AtomicModel.extract_frame`` directly reads a single structure file in
  all of its ``AtomicModel`` constructions (the replay finds the file a recorded
  ``extract_frame`` call worked on through the scenario's constructor calls: gemmi's Structure
  itself is not stored);
* ``guinier_reconstruct`` reads an ensemble folder written here: file ``<i>.npy`` holds the
  complex values ``rng.normal(size=n) + 1j * rng.normal(size=n)`` drawn in order i = 0, 1, ...
  from ``numpy.random.default_rng(seed)``, n the number of points in ``res_mask``; the folder is
  named ``eryx-guinier-<seed>-<n_files>`` so that the replay writes the same files again;
* ``natural_sort`` is recorded from direct calls only: inside ``guinier_reconstruct`` it sorts
  existing files, which the recorder would store as file records that the replay cannot find in
  the structure folder;
* direct calls come before the calls that reach the same function nested (the recorder keeps
  the first three calls of a function per scenario).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from scenarios import _module, _pdb, _unrecorded


def _ensemble_folder(seed: int, n_files: int, n_values: int) -> str:
    folder = Path(tempfile.gettempdir()) / f"eryx-guinier-{seed}-{n_files}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.npy"):
        old.unlink()
    rng = np.random.default_rng(seed)
    for i in range(n_files):
        np.save(folder / f"{i}.npy", rng.normal(size=n_values) + 1j * rng.normal(size=n_values))
    return str(folder)


def _with_nan(arr, every):
    out = np.array(arr, dtype=float).reshape(-1)
    out[::every] = np.nan
    return out


def s_5zck_10(pkg, pdb_dir):
    """P 21 21 21: natural_sort, ASU conditions, extract_frame, Crystal, transforms with U, incoherent sums, statistics."""
    base, stats = _module(pkg, "base"), _module(pkg, "stats")
    mu, pdb = _module(pkg, "map_utils"), _module(pkg, "pdb")
    path = _pdb(pdb_dir, "5zck")
    base.natural_sort(["model10.npy", "model2.npy", "Model1.npy", "b1c10", "b1c9", "a"])
    base.natural_sort(["x/asu12_3.npy", "x/asu2_11.npy", "x/asu2_3.npy"])
    mu.parse_asu_condition("h>=0 and k>=0 and l>=0")
    mu.parse_asu_condition("l>0 or (l=0 and (h>0 or (h=0 and k>=0)))")

    model = pdb.AtomicModel(path, expand_p1=True)
    model.extract_frame(expand_p1=False, frame=0)
    model.extract_frame(expand_p1=True, frame=0)
    crystal = pdb.Crystal(model)
    crystal.supercell_extent(nx=2, ny=0, nz=1)
    crystal.supercell_extent()

    U = np.linspace(0.05, 0.4, model.xyz.shape[1])
    hkl, _ = mu.generate_grid(model.A_inv, (-1, 2, 2), (-1, 1, 1), (0, 2, 1), return_hkl=True)
    res_mask, _ = mu.get_resolution_mask(model.cell, hkl, 3.5)
    # an asymmetric grid: the symmetrised map is larger than the grid along h
    base.incoherent_sum_real(model, hkl, (2, 1, 1), U=U, mask=res_mask.copy(), batch_size=9, n_processes=1)
    base.incoherent_sum_reciprocal(model, hkl, (2, 1, 1), U=U, batch_size=9, n_processes=1)

    q, I1 = base.compute_molecular_transform(path, (-1, 2, 2), (-2, 1, 1), (0, 2, 1), U=U, expand_friedel=False,
                                             res_limit=3.0, batch_size=7, n_processes=1)
    _, I2 = base.compute_molecular_transform(path, (-1, 2, 2), (-2, 1, 1), (0, 2, 1), expand_friedel=False,
                                             res_limit=3.0, batch_size=7, n_processes=1)
    base.compute_crystal_transform(path, (-2, 2, 1), (-1, 1, 2), (-1, 1, 1), U=0.2, res_limit=4.0, n_processes=1)

    hkl2, _ = mu.generate_grid(model.A_inv, (-1, 2, 2), (-2, 1, 1), (0, 2, 1), return_hkl=True)
    keep, res_map = mu.get_resolution_mask(model.cell, hkl2, 3.0)
    dq = mu.get_dq_map(model.A_inv, hkl2)
    a = np.where(keep, I1.reshape(-1), np.nan)
    b = np.where(keep, I2.reshape(-1), np.nan)
    rows = np.stack([a, b, a * b])
    stats.compute_cc(rows, b[None, :])
    stats.compute_cc(rows, np.stack([b, a, b]), mask=(hkl2[:, 2] > 0))
    stats.compute_cc(a, b)
    stats.compute_cc_by_shell(a, b, res_map, n_shells=4)
    stats.compute_cc_by_dq(a, b, dq, mask=(hkl2[:, 0] >= 0))


def s_7n2h_11(pkg, pdb_dir):
    """P 31 from the 3-model P1 file (one file only): extract_frame both ways, Crystal, transforms on rotated indices, statistics."""
    base, stats = _module(pkg, "base"), _module(pkg, "stats")
    mu, pdb = _module(pkg, "map_utils"), _module(pkg, "pdb")
    path = _pdb(pdb_dir, "7n2h_p1")
    model = pdb.AtomicModel(path, expand_p1=False, frame=-1)
    model.extract_frame(expand_p1=True, frame=2)
    model.extract_frame(frame=1)
    crystal = pdb.Crystal(model)
    crystal.supercell_extent(nx=1, ny=2, nz=0)

    # P 31 rotations mix h and k: rotated indices fall outside the grid and are evaluated anew
    q, I1 = base.compute_molecular_transform(path, (-2, 1, 2), (-1, 1, 2), (-1, 1, 1), expand_friedel=False,
                                             res_limit=2.5, batch_size=11, n_processes=1)
    _, I2 = base.compute_molecular_transform(path, (-2, 1, 2), (-1, 1, 2), (-1, 1, 1), U=0.3, expand_friedel=False,
                                             res_limit=2.5, batch_size=11, n_processes=1)
    base.compute_crystal_transform(path, (-2, 2, 1), (-2, 2, 1), (-1, 1, 2), expand_p1=False, U=0.1, n_processes=1)

    hkl, _ = mu.generate_grid(model.A_inv, (-2, 1, 2), (-1, 1, 2), (-1, 1, 1), return_hkl=True)
    keep, res_map = mu.get_resolution_mask(model.cell, hkl, 2.5)
    a = np.where(keep, I1.reshape(-1), np.nan)
    b = np.where(keep, I2.reshape(-1), np.nan)
    stats.compute_cc(a, b, mask=hkl[:, 1] != 0)
    stats.compute_cc(np.stack([a, b]), np.stack([b, a ** 0.5]))
    stats.compute_cc_by_shell(a, b, res_map, mask=hkl[:, 0] <= 0, n_shells=3)
    stats.compute_cc_by_dq(a, b, mu.get_dq_map(model.A_inv, hkl))


def s_2ol9_12(pkg, pdb_dir):
    """Triclinic P 1: the direct ASU sum and the Friedel-expanded map, crystal transform, reference formulas, Guinier."""
    base, stats, ref = _module(pkg, "base"), _module(pkg, "stats"), _module(pkg, "reference")
    mu, pdb = _module(pkg, "map_utils"), _module(pkg, "pdb")
    path = _pdb(pdb_dir, "2ol9")
    model = pdb.AtomicModel(path, expand_p1=True)
    n_atoms = model.xyz.shape[1]
    U = np.linspace(0.1, 0.6, n_atoms)

    # reference formulas on a few q-points and atoms (eryx loops over every pair)
    q, _ = mu.generate_grid(model.A_inv, (-1, 1, 1), (0, 1, 1), (-1, 0, 1))
    xyz, elements = model.xyz[0][:9], model.elements[0][:9]
    rng = np.random.default_rng(12)
    L = 0.2 * rng.normal(size=(9, 3, 3))
    ref.structure_factors(q, xyz, elements, U=U[:9])
    ref.structure_factors(q, xyz, elements, U=np.einsum("nij,nkj->nik", L, L))
    W = 0.15 * rng.normal(size=(27, 27))
    V = (W @ W.T).reshape(9, 3, 9, 3).transpose(0, 2, 1, 3)
    ref.diffuse_covmat(q, xyz, elements, V)
    ref.diffuse_covmat(q, xyz, elements, np.einsum("jkii->jk", V) / 3)

    base.incoherent_sum_reciprocal(model, mu.generate_grid(model.A_inv, (-1, 1, 2), (0, 1, 1), (-1, 1, 1),
                                                           return_hkl=True)[0], (2, 1, 1), n_processes=1)
    _, I1 = base.compute_molecular_transform(path, (-2, 2, 2), (-1, 1, 2), (0, 1, 1), U=U, expand_friedel=False,
                                             res_limit=4.0, batch_size=13, n_processes=1)
    _, I2 = base.compute_molecular_transform(path, (-2, 2, 2), (-1, 1, 2), (0, 1, 1), expand_friedel=False,
                                             res_limit=4.0, batch_size=13, n_processes=1)
    # the grid is not symmetric in l: the Friedel-expanded map covers l = -1 .. 1
    base.compute_molecular_transform(path, (-2, 2, 2), (-1, 1, 2), (0, 1, 1), expand_friedel=True,
                                     res_limit=4.0, batch_size=13, n_processes=1)
    base.compute_crystal_transform(path, (-2, 2, 2), (-1, 1, 1), (-1, 1, 1), U=U, res_limit=5.0, n_processes=1)

    hkl, _ = mu.generate_grid(model.A_inv, (-2, 2, 2), (-1, 1, 2), (0, 1, 1), return_hkl=True)
    keep, res_map = mu.get_resolution_mask(model.cell, hkl, 4.0)
    a = np.where(keep, I1.reshape(-1), np.nan)
    b = _with_nan(I2, 5)
    stats.compute_cc(np.stack([a, b]), a[None, :], mask=keep)
    stats.compute_cc_by_dq(a, b, mu.get_dq_map(model.A_inv, hkl))
    stats.compute_cc_by_shell(a, b, res_map, n_shells=5)

    # Guinier: 12 members of one ASU, uniform weights (10.npy after 9.npy: natural order)
    n = int(keep.sum())
    base.natural_sort(["ens/conf10_asu1.npy", "ens/conf9_asu1.npy", "ens/conf10_asu0.npy", "ens/Conf2_asu0.npy"])
    with _unrecorded(base, "natural_sort"):
        base.guinier_reconstruct(_ensemble_folder(5, 12, n), keep.size, keep, 1)


def s_6o2h_13(pkg, pdb_dir):
    """Triclinic 6o2h: reference formulas on a subset of its atoms, Guinier with 2 ASUs and given weights, statistics."""
    base, stats, ref = _module(pkg, "base"), _module(pkg, "stats"), _module(pkg, "reference")
    mu, pdb = _module(pkg, "map_utils"), _module(pkg, "pdb")
    path = _pdb(pdb_dir, "6o2h_clean")
    model = pdb.AtomicModel(path, expand_p1=True)
    q, _ = mu.generate_grid(model.A_inv, (0, 1, 1), (-1, 1, 1), (0, 1, 1))
    pick = np.arange(0, 120, 10)  # 12 atoms spread over the chain
    xyz, elements = model.xyz[0][pick], [model.elements[0][i] for i in pick]
    U = model.adp[0][pick] / (8 * np.pi**2)
    ref.structure_factors(q, xyz, elements)
    ref.structure_factors(q, xyz, elements, U=U)
    rng = np.random.default_rng(13)
    W = 0.1 * rng.normal(size=(12, 12))
    ref.diffuse_covmat(q, xyz, elements, W @ W.T + np.diag(U))

    hkl, map_shape = mu.generate_grid(model.A_inv, (-1, 1, 2), (-1, 1, 1), (0, 1, 1), return_hkl=True)
    keep, res_map = mu.get_resolution_mask(model.cell, hkl, 6.0)
    n = int(keep.sum())
    # 7 conformations x 2 ASUs = 14 files (natural order interleaves the ASUs), given weights
    with _unrecorded(base, "natural_sort"):
        Id = base.guinier_reconstruct(_ensemble_folder(13, 14, n), keep.size, keep, 2,
                                      weights=np.array([0.3, 0.1, 0.2, 0.05, 0.15, 0.1, 0.1]))
        Id2 = base.guinier_reconstruct(_ensemble_folder(14, 14, n), keep.size, keep, 2)
    stats.compute_cc(Id, Id2)
    stats.compute_cc(np.stack([Id, Id2, Id + Id2]), Id2[None, :], mask=hkl[:, 0] != 0)
    stats.compute_cc_by_dq(Id, Id2, mu.get_dq_map(model.A_inv, hkl))
    stats.compute_cc_by_shell(Id, Id2, res_map, mask=np.ones(keep.size, dtype=bool), n_shells=2)


SCENARIOS = {
    "5zck-s10": s_5zck_10,
    "7n2h-s11": s_7n2h_11,
    "2ol9-s12": s_2ol9_12,
    "6o2h_clean-s13": s_6o2h_13,
}
