# SPDX-License-Identifier: GPL-2.0-or-later
"""Recording scenarios: small, deterministic runs of the NumPy eryx package.

``trace-tools record`` calls every entry of :data:`SCENARIOS` as
``func(pkg, pdb_dir)``, where ``pkg`` is the imported (already instrumented)
eryx package and ``pdb_dir`` the folder holding the test structures. Whatever
listed function such a run reaches, directly or nested, ends up in the traces.

Conventions kept by every scenario (see traces/README.md for the catalogue):

* at most one ``OnePhonon`` per scenario, so each recorded method call pairs
  with the one constructor call of its scenario; standalone
  ``GaussianNetworkModel`` objects live in scenarios without a ``OnePhonon``;
* ``n_processes=1`` everywhere (a process pool would run calls in workers,
  out of the recorder's sight);
* direct calls of helpers come *before* any pipeline in the same scenario:
  the recorder keeps only the first few calls of a function per scenario,
  and the direct calls are the cases chosen on purpose;
* grids stay small, so that every array stays below the recorder's size limit
  and can be replayed in full.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import numpy as np


def _module(pkg, name):
    """``pkg.<name>``, importing the submodule when the package does not expose it."""
    mod = getattr(pkg, name, None)
    if mod is None:
        mod = importlib.import_module(f"{pkg.__name__}.{name}")
    return mod


def _pdb(pdb_dir: Path, stem: str) -> str:
    path = Path(pdb_dir) / f"{stem}.pdb"
    if not path.is_file():
        raise FileNotFoundError(f"test structure {path} is missing")
    return str(path)


def _rng_map(shape, seed):
    """A deterministic, non-trivial 3-d map (positive values, no zeros)."""
    return np.random.default_rng(seed).uniform(0.5, 2.0, size=shape)


# --- shared building blocks ---------------------------------------------------------


def _map_utils_direct(pkg, model, space_group, sampling, resolution, oversampling, res_limit):
    """Direct calls of the map helpers on one structure, chosen case by case."""
    mu = _module(pkg, "map_utils")
    hs, ks, ls = sampling

    # extents of a resolution sphere, scalar and per-axis oversampling
    mu.get_hkl_extents(model.cell, resolution, oversampling=oversampling)

    hkl, map_shape = mu.generate_grid(model.A_inv, hs, ks, ls, return_hkl=True)
    q, _ = mu.generate_grid(model.A_inv, hs, ks, ls)
    mu.compute_resolution(model.cell, hkl)
    mu.get_resolution_mask(model.cell, hkl, res_limit)
    mu.get_dq_map(model.A_inv, hkl)
    mu.get_asu_mask(space_group, hkl)

    # symmetry expansion including Friedel mates, then raveling of the equivalents
    ops = mu.expand_sym_ops(model.sym_ops)
    sym = mu.get_symmetry_equivalents(hkl, ops)
    ravel, shape_ravel = mu.get_ravel_indices(sym, (hs[2], ks[2], ls[2]))
    centered = mu.get_centered_sampling(shape_ravel, (hs[2], ks[2], ls[2]))
    mu.compute_multiplicity(model, hs, ks, ls)
    return centered


def _scatter_direct(pkg, model, sampling, batch_size):
    """Direct calls of the scattering functions, with and without ADPs."""
    mu = _module(pkg, "map_utils")
    sc = _module(pkg, "scatter")
    q, _ = mu.generate_grid(model.A_inv, *sampling)
    xyz, a, b, c = model.xyz[0], model.ff_a[0], model.ff_b[0], model.ff_c[0]
    n_atoms = xyz.shape[0]
    U = model.adp[0] / (8 * np.pi**2)
    rng = np.random.default_rng(7)

    sc.compute_form_factors(q, a, b, c)
    # plain structure factors, no displacement parameters
    sc.structure_factors_batch(q, xyz, a, b, c)
    # per-atom factors projected on a few components (with U)
    proj = rng.normal(size=(n_atoms, 4))
    sc.structure_factors_batch(q, xyz, a, b, c, U=U, project_on_components=proj, sum_over_atoms=False)
    # q-weighted factors projected on rigid-body-like components, batched
    proj_qf = rng.normal(size=(3 * n_atoms, 6))
    sc.structure_factors(q, xyz, a, b, c, U=U, batch_size=batch_size, n_processes=1,
                         compute_qF=True, project_on_components=proj_qf, sum_over_atoms=False)
    # summed structure factors, batched, with U
    sc.structure_factors(q, xyz, a, b, c, U=U, batch_size=batch_size, n_processes=1)
    # per-atom factors without projection, batched
    sc.structure_factors(q, xyz, a, b, c, batch_size=batch_size, n_processes=1, sum_over_atoms=False)


def _pdb_helpers_direct(pkg, pdb_path, op_strings):
    pdb = _module(pkg, "pdb")
    for s in op_strings:
        pdb.sym_str_as_matrix(s)
    pdb.extract_sym_ops(pdb_path)
    pdb.extract_transformations(pdb_path)


def _crystal_direct(pkg, model):
    """Supercell index helpers and ASU placement on a standalone Crystal."""
    pdb = _module(pkg, "pdb")
    crystal = pdb.Crystal(model)
    crystal.supercell_extent(nx=1, ny=1, nz=1)
    crystal.get_unitcell_origin([1, -1, 0])
    crystal.get_unitcell_origin()
    crystal.hkl_to_id([1, 0, -1])
    crystal.hkl_to_id()
    crystal.id_to_hkl(5)
    crystal.get_asu_xyz(model.n_asu - 1, [0, 1, -1])
    crystal.get_asu_xyz()
    return crystal


def _gnm_direct(pkg, pdb_path, cutoff, gamma_intra, gamma_inter, kvec):
    """A standalone all-atom GNM: Hessian, then K and its inverse at a nonzero k."""
    pdb = _module(pkg, "pdb")
    gnm = pdb.GaussianNetworkModel(pdb_path, enm_cutoff=cutoff, gamma_intra=gamma_intra, gamma_inter=gamma_inter)
    hessian = gnm.compute_hessian()
    kvec = np.asarray(kvec, dtype=float)
    gnm.compute_K(hessian, kvec=kvec)
    gnm.compute_K(hessian)
    gnm.compute_Kinv(hessian, kvec=kvec)
    gnm.compute_Kinv(hessian, kvec=0.5 * kvec, reshape=False)
    return gnm


@contextlib.contextmanager
def _unrecorded(owner, *names):
    """Run the block with the recorder's wrappers of ``owner.<name>`` set aside (originals called).

    For the all-atom arrays of a large structure (the 1001-atom mass matrix, 9e6 values, and GNM
    Hessian, 2.7e7 values) that would exceed the recorder's array limit and be stored truncated;
    these functions are recorded in full in the scenarios of the smaller structures. Outside the
    recorder (no ``__wrapped__``) nothing changes.
    """
    saved = {name: owner.__dict__[name] for name in names}
    try:
        for name, wrapper in saved.items():
            setattr(owner, name, getattr(wrapper, "__wrapped__", wrapper))
        yield
    finally:
        for name, wrapper in saved.items():
            setattr(owner, name, wrapper)


def _one_phonon(pkg, pdb_path, sampling, **kwargs):
    models = _module(pkg, "models")
    kwargs.setdefault("n_processes", 1)
    return models.OnePhonon(pdb_path, *sampling, **kwargs)


# --- 5zck: orthorhombic P 21 21 21, 4 ASUs ----------------------------------------------


def s_5zck_1(pkg, pdb_dir):
    """OnePhonon GNM, default springs, oversampling 2 on every axis; both ADP sources."""
    op = _one_phonon(pkg, _pdb(pdb_dir, "5zck"), ((-2, 2, 2), (-2, 2, 2), (-2, 2, 2)),
                     gnm_cutoff=4.0, gamma_intra=1.0, gamma_inter=1.0)
    op.apply_disorder(rank=-1, use_data_adp=False)
    op.apply_disorder(rank=-1, use_data_adp=True)


def s_5zck_2(pkg, pdb_dir):
    """OnePhonon GNM, gamma_intra != gamma_inter, cutoff 5, mixed oversampling (2,3,2), res_limit > 0."""
    op = _one_phonon(pkg, _pdb(pdb_dir, "5zck"), ((-1, 1, 2), (-1, 1, 3), (-1, 1, 2)),
                     res_limit=4.6, gnm_cutoff=5.0, gamma_intra=1.5, gamma_inter=0.4, batch_size=7)
    op.apply_disorder(rank=4, use_data_adp=True)
    op.apply_disorder(rank=-1, use_data_adp=False)


def s_5zck_3(pkg, pdb_dir):
    """map_utils direct calls, molecular transform (symmetrisation) and crystal transform of a multi-model file."""
    pdb = _module(pkg, "pdb")
    mu = _module(pkg, "map_utils")
    base = _module(pkg, "base")
    path = _pdb(pdb_dir, "5zck")
    model = pdb.AtomicModel(path, expand_p1=True)
    # resize_map where both h and l are cropped
    mu.resize_map(_rng_map((9, 5, 7), 1), ((-1, 1, 2), (-2, 2, 1), (-1, 1, 2)), ((-2, 2, 2), (-2, 2, 1), (-1.5, 1.5, 2)))
    _map_utils_direct(pkg, model, model.space_group, ((-1, 2, 2), (-2, 1, 1), (-2, 2, 1)), 3.0, 2, 4.0)
    # symmetric grid: the symmetrised map keeps the grid's extents (resize_map crops nothing)
    base.compute_molecular_transform(path, (-1, 1, 2), (-2, 2, 1), (-2, 2, 1), expand_friedel=True,
                                     batch_size=10, n_processes=1)
    # the P1 file holds the 4 ASUs as models: frame=-1 without expansion, then flatten_model
    base.compute_crystal_transform(_pdb(pdb_dir, "5zck_p1"), (-2, 2, 2), (-2, 2, 1), (-2, 2, 1), expand_p1=False,
                                   res_limit=3.0, batch_size=20, n_processes=1)


def s_5zck_4(pkg, pdb_dir):
    """pdb helpers, AtomicModel without P1 expansion, standalone Crystal and GNM (cutoff 3.5) at a nonzero k."""
    pdb = _module(pkg, "pdb")
    path = _pdb(pdb_dir, "5zck")
    _pdb_helpers_direct(pkg, path, ["-X+1/2,-Y,Z+1/2", "X,Y,Z", "-X,Y+1/2,-Z+1/2"])
    pdb.get_unit_cell_axes(np.array([4.813, 17.151, 29.564, 90.0, 90.0, 90.0]))
    pdb.AtomicModel(path, expand_p1=False)
    model = pdb.AtomicModel(path, expand_p1=True)
    _crystal_direct(pkg, model)
    _gnm_direct(pkg, path, 3.5, 1.0, 0.3, [0.3, -0.1, 0.05])


# --- 7n2h: trigonal P 31 (non-orthogonal cell), 3 ASUs ----------------------------------


def s_7n2h_1(pkg, pdb_dir):
    """OnePhonon GNM on a non-orthogonal cell: cutoff 3.5, gamma_intra != gamma_inter, oversampling 3/3/2."""
    op = _one_phonon(pkg, _pdb(pdb_dir, "7n2h"), ((-1, 1, 3), (-1, 1, 3), (-1, 1, 2)),
                     gnm_cutoff=3.5, gamma_intra=1.0, gamma_inter=0.25)
    op.apply_disorder(rank=-1, use_data_adp=False)
    op.apply_disorder(rank=5, use_data_adp=False)


def s_7n2h_2(pkg, pdb_dir):
    """OnePhonon with model='rb' (needs h oversampling >= 4), data ADPs, res_limit > 0."""
    op = _one_phonon(pkg, _pdb(pdb_dir, "7n2h"), ((-1, 1, 4), (-1, 1, 2), (-1, 1, 2)),
                     model="rb", res_limit=3.0)
    op.apply_disorder(rank=-1, use_data_adp=True)
    op.apply_disorder(rank=2, use_data_adp=True)


def s_7n2h_3(pkg, pdb_dir):
    """map_utils and scatter direct calls on P 31; molecular transform (cropped by resize_map); crystal transform."""
    pdb = _module(pkg, "pdb")
    mu = _module(pkg, "map_utils")
    base = _module(pkg, "base")
    path = _pdb(pdb_dir, "7n2h")
    _pdb_helpers_direct(pkg, path, ["-Y,X-Y,Z+1/3", "-X+Y,-X,Z+2/3"])
    model = pdb.AtomicModel(path, expand_p1=True)
    mu.resize_map(_rng_map((5, 9, 3), 2), ((-1, 1, 2), (-1, 1, 2), (-1, 1, 1)), ((-1, 1, 2), (-2, 2, 2), (-1, 1, 1)))
    _map_utils_direct(pkg, model, "P 31", ((-2, 2, 1), (-1, 1, 2), (-1, 1, 1)), 2.0, (1, 2, 3), 6.0)
    _scatter_direct(pkg, model, ((-1, 1, 2), (-1, 1, 1), (-1, 1, 1)), batch_size=8)
    # rotations of P 31 mix h and k: the symmetrised map is wider than the grid and is cropped
    # (eryx crops 2 * (extent difference) voxels per side, right only for oversampling 2)
    base.compute_molecular_transform(path, (-2, 2, 2), (-1, 1, 2), (-1, 1, 1), expand_friedel=True,
                                     batch_size=10, n_processes=1)
    base.compute_crystal_transform(_pdb(pdb_dir, "7n2h_p1"), (-1, 1, 2), (-1, 1, 2), (-1, 1, 1), expand_p1=False,
                                   batch_size=10, n_processes=1)


def s_7n2h_4(pkg, pdb_dir):
    """Standalone Crystal and GNM on the trigonal cell, cutoff 5, nonzero k."""
    pdb = _module(pkg, "pdb")
    path = _pdb(pdb_dir, "7n2h")
    pdb.AtomicModel(_pdb(pdb_dir, "7n2h_p1"), expand_p1=False, frame=-1)
    model = pdb.AtomicModel(path, expand_p1=True)
    _crystal_direct(pkg, model)
    _gnm_direct(pkg, path, 5.0, 2.0, 0.5, [0.1, 0.2, -0.4])


# --- 2ol9: triclinic P 1, 1 ASU --------------------------------------------------------


def s_2ol9_1(pkg, pdb_dir):
    """OnePhonon GNM on P 1: cutoff 5, gamma_intra != gamma_inter, oversampling 3/2/2, res_limit > 0."""
    op = _one_phonon(pkg, _pdb(pdb_dir, "2ol9"), ((-1, 1, 3), (-2, 2, 2), (-1, 1, 2)),
                     res_limit=2.5, gnm_cutoff=5.0, gamma_intra=1.0, gamma_inter=0.5, batch_size=5)
    op.apply_disorder(rank=-1, use_data_adp=True)
    op.apply_disorder(rank=3, use_data_adp=False)


def s_2ol9_2(pkg, pdb_dir):
    """OnePhonon with model='rb' on P 1 (h oversampling 4)."""
    op = _one_phonon(pkg, _pdb(pdb_dir, "2ol9"), ((-1, 1, 4), (-1, 1, 3), (-1, 1, 2)), model="rb")
    op.apply_disorder(rank=-1, use_data_adp=True)
    op.apply_disorder(rank=0, use_data_adp=True)


def s_2ol9_3(pkg, pdb_dir):
    """Direct calls on P 1: pdb helpers, AtomicModel both ways + flatten_model, map_utils, scatter, Crystal, GNM."""
    pdb = _module(pkg, "pdb")
    path = _pdb(pdb_dir, "2ol9")
    _pdb_helpers_direct(pkg, path, ["X,Y,Z", "-X,-Y,-Z"])
    pdb.get_unit_cell_axes(np.array([14.002, 4.879, 15.100, 75.23, 75.88, 78.89]))
    flat = pdb.AtomicModel(path, expand_p1=False)
    flat.flatten_model()
    model = pdb.AtomicModel(path, expand_p1=True)
    _map_utils_direct(pkg, model, "P 1", ((-1, 1, 2), (-1, 1, 3), (0, 2, 2)), 4.0, 3, 5.0)
    _scatter_direct(pkg, model, ((-1, 1, 3), (-1, 1, 2), (-1, 1, 1)), batch_size=10)
    _crystal_direct(pkg, model)
    _gnm_direct(pkg, path, 4.5, 1.0, 0.2, [-0.2, 0.15, 0.3])


# --- 6o2h_clean: larger P 1 structure (eryx's paper example) ---------------------------


def s_6o2h_1(pkg, pdb_dir):
    """A 1001-atom P 1 model on a 27-point grid: molecular and crystal transforms."""
    base = _module(pkg, "base")
    path = _pdb(pdb_dir, "6o2h_clean")
    base.compute_molecular_transform(path, (-1, 1, 1), (-1, 1, 1), (-1, 1, 1), expand_friedel=True,
                                     batch_size=10, n_processes=1)
    base.compute_crystal_transform(path, (-1, 1, 1), (-1, 1, 1), (0, 1, 1), batch_size=10, n_processes=1)


def s_6o2h_2(pkg, pdb_dir):
    """OnePhonon GNM on the triclinic 6o2h (paper springs: cutoff 4, gamma 2 / 1), oversampling (7,7,8), res_limit 22.

    392 k-vectors on a 15 x 15 x 9 grid, about a fifth of the points masked; apply_disorder with
    GNM ADPs and data ADPs (rank -1) and one mode (rank 0).
    """
    models, pdb = _module(pkg, "models"), _module(pkg, "pdb")
    with _unrecorded(models.OnePhonon, "_build_M_allatoms", "_project_M"), \
            _unrecorded(pdb.GaussianNetworkModel, "compute_hessian"):
        op = _one_phonon(pkg, _pdb(pdb_dir, "6o2h_clean"), ((-1, 1, 7), (-1, 1, 7), (0, 1, 8)),
                         res_limit=22.0, gnm_cutoff=4.0, gamma_intra=2.0, gamma_inter=1.0)
    op.apply_disorder(rank=-1, use_data_adp=False)
    op.apply_disorder(rank=-1, use_data_adp=True)
    op.apply_disorder(rank=0, use_data_adp=False)


def s_6o2h_3(pkg, pdb_dir):
    """OnePhonon model='rb' on 6o2h with the paper's oversampling (13,11,11): 1573 k-vectors, data ADPs."""
    models = _module(pkg, "models")
    with _unrecorded(models.OnePhonon, "_build_M_allatoms", "_project_M"):
        op = _one_phonon(pkg, _pdb(pdb_dir, "6o2h_clean"), ((-1, 1, 13), (-1, 1, 11), (0, 1, 11)),
                         model="rb", res_limit=19.0)
    op.apply_disorder(rank=-1, use_data_adp=True)
    op.apply_disorder(rank=5, use_data_adp=True)


def s_6o2h_4(pkg, pdb_dir):
    """OnePhonon GNM on the triclinic 6o2h within a resolution limit on a grid of several row blocks.

    43 x 43 x 17 points, res_limit 11 (about half the points masked): the port's engine leaves out the
    rows with no point inside and skips blocks beyond the limit; data ADPs, rank -1.
    """
    models, pdb = _module(pkg, "models"), _module(pkg, "pdb")
    with _unrecorded(models.OnePhonon, "_build_M_allatoms", "_project_M"), \
            _unrecorded(pdb.GaussianNetworkModel, "compute_hessian"):
        op = _one_phonon(pkg, _pdb(pdb_dir, "6o2h_clean"), ((-3, 3, 7), (-3, 3, 7), (-1, 1, 8)),
                         res_limit=11.0, gnm_cutoff=4.0, gamma_intra=2.0, gamma_inter=1.0)
    op.apply_disorder(rank=-1, use_data_adp=True)


SCENARIOS = {
    "5zck-s1": s_5zck_1,
    "5zck-s2": s_5zck_2,
    "5zck-s3": s_5zck_3,
    "5zck-s4": s_5zck_4,
    "7n2h-s1": s_7n2h_1,
    "7n2h-s2": s_7n2h_2,
    "7n2h-s3": s_7n2h_3,
    "7n2h-s4": s_7n2h_4,
    "2ol9-s1": s_2ol9_1,
    "2ol9-s2": s_2ol9_2,
    "2ol9-s3": s_2ol9_3,
    "6o2h_clean-s1": s_6o2h_1,
    "6o2h_clean-s2": s_6o2h_2,
    "6o2h_clean-s3": s_6o2h_3,
    "6o2h_clean-s4": s_6o2h_4,
}


def _family_scenarios() -> dict:
    """Scenarios of the other model families, one file each (``scenarios_<family>.py`` beside this one).

    Each such file defines its own ``SCENARIOS`` and may use this module's helpers
    (``from scenarios import _pdb, _module``): this folder is put on ``sys.path``.
    Keeping a file per family lets the families grow without touching each other.
    """
    import importlib.util
    import sys

    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    found = {}
    for path in sorted(here.glob("scenarios_*.py")):
        spec = importlib.util.spec_from_file_location(f"_eryx_scenarios_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        clash = set(found) & set(module.SCENARIOS) | set(SCENARIOS) & set(module.SCENARIOS)
        if clash:
            raise ValueError(f"{path.name}: scenario names already used: {sorted(clash)}")
        found.update(module.SCENARIOS)
    return found


SCENARIOS.update(_family_scenarios())
