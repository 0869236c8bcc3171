# SPDX-License-Identifier: GPL-2.0-or-later
"""Recording scenarios of eryx's NonInteractingDeformableMolecules and OnePhononBrillouin (s40..s49).

Loaded by ``traces/scenarios.py``. Grids stay tiny: the deformable model builds an all-atom
covariance per ASU and every map point loops in eryx's naive intensity. Calls with
``n_processes=2`` are made only where eryx's single-process path fails (one component of the
soft-coupling intensity: eryx sizes its output from ``project_on_components.shape[1]`` of a
1-d vector); the process pool then runs only the innermost structure-factor batches.
"""

from __future__ import annotations

from scenarios import _module, _pdb, _unrecorded


def _deformable(pkg, pdb_path, sampling, **kwargs):
    models = _module(pkg, "models")
    kwargs.setdefault("n_processes", 1)
    return models.NonInteractingDeformableMolecules(pdb_path, *sampling, **kwargs)


def s_5zck_40(pkg, pdb_dir):
    """Deformable molecules on P 21 21 21 (4 ASUs), cutoff 4: truncation by rank and by error; scl and naive maps."""
    m = _deformable(pkg, _pdb(pdb_dir, "5zck"), ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2)), gnm_cutoff=4.0)
    m._low_rank_truncation(m.covar, rank=5)
    m._low_rank_truncation(m.covar, rec_error_threshold=0.05)
    m.compute_covariance_matrix()
    m.apply_disorder(scl=True)
    m.apply_disorder(scl=False)


def s_2ol9_41(pkg, pdb_dir):
    """Deformable molecules on triclinic P 1, cutoff 5, res_limit 2.5 (points masked), batch_size 20; one-component maps."""
    m = _deformable(pkg, _pdb(pdb_dir, "2ol9"), ((-1, 1, 2), (-2, 2, 2), (-1, 1, 2)),
                    res_limit=2.5, gnm_cutoff=5.0, batch_size=20)
    m._low_rank_truncation(m.covar, rank=3)
    m.compute_intensity_naive()
    m.apply_disorder(scl=True)
    m.apply_disorder(scl=False)
    m.n_processes = 2  # eryx's rank >= 0 path works only through its process pool
    m.compute_scl_intensity(rank=0)
    m.compute_scl_intensity(rank=2)


def s_5zck_42(pkg, pdb_dir):
    """Deformable molecules on 5zck, cutoff 5, oversampling (2,1,3), res_limit 4.6; one-component maps."""
    m = _deformable(pkg, _pdb(pdb_dir, "5zck"), ((-1, 1, 2), (-2, 2, 1), (-1, 1, 3)), res_limit=4.6, gnm_cutoff=5.0)
    m._low_rank_truncation(m.covar, rec_error_threshold=0.2)
    m.n_processes = 2
    m.compute_scl_intensity(rank=0)
    m.compute_scl_intensity(rank=4)
    m.n_processes = 1
    m.apply_disorder(scl=True)


def s_7n2h_45(pkg, pdb_dir):
    """Deformable molecules on trigonal P 31 (3 ASUs), cutoff 3.5; the all-atom GNM arrays are left unrecorded."""
    pdb = _module(pkg, "pdb")
    with _unrecorded(pdb.GaussianNetworkModel, "compute_hessian", "compute_K", "compute_Kinv"):
        m = _deformable(pkg, _pdb(pdb_dir, "7n2h"), ((-1, 1, 2), (-1, 1, 1), (-1, 1, 2)), gnm_cutoff=3.5)
        m.apply_disorder(scl=True)
        m.apply_disorder(scl=False)


def s_5zck_43(pkg, pdb_dir):
    """OnePhononBrillouin around (1, 0, 1) with N = 3 (odd), GNM cutoff 4, gamma 1.5 / 0.5."""
    models = _module(pkg, "models")
    models.OnePhononBrillouin(_pdb(pdb_dir, "5zck"), 1, 0, 1, 3, gnm_cutoff=4.0, gamma_intra=1.5, gamma_inter=0.5,
                              n_processes=1)


def s_2ol9_44(pkg, pdb_dir):
    """OnePhononBrillouin on triclinic P 1 around (0, 1, -1) with N = 2 (even: eryx's crop is one-sided), cutoff 5."""
    models = _module(pkg, "models")
    models.OnePhononBrillouin(_pdb(pdb_dir, "2ol9"), 0, 1, -1, 2, gnm_cutoff=5.0, gamma_intra=1.0, gamma_inter=0.3,
                              batch_size=50, n_processes=1)


SCENARIOS = {
    "5zck-s40": s_5zck_40,
    "2ol9-s41": s_2ol9_41,
    "5zck-s42": s_5zck_42,
    "5zck-s43": s_5zck_43,
    "2ol9-s44": s_2ol9_44,
    "7n2h-s45": s_7n2h_45,
}
