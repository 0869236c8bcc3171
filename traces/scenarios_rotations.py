# SPDX-License-Identifier: GPL-2.0-or-later
"""Recording scenarios of eryx's rigid-body rotation and ensemble models (scenario numbers 30-39).

Conventions of these scenarios, on top of those of ``scenarios.py``:

* **Random draws.** ``RigidBodyRotations`` draws its rotations from NumPy's global generator
  (``scipy.spatial.transform.Rotation.random`` takes ``normal(size=(n, 4))``, then
  ``np.random.randn(n)`` the angles). Every call that draws is preceded by
  ``np.random.seed(k)``, k the scenario's number (30 for ``5zck-s30``), and the first three
  recorded calls of each drawing function in a scenario (the recorder keeps three) are each the
  first draw after such a seed: direct calls are seeded one by one, and the first nested
  ``generate_rotations_around_axis`` of an ``apply_disorder`` follows its seed. The parity adapter
  (``eryx_port/parity/models/rotations.py``) replays NumPy's generator from the same seed.
* **Ensemble files.** The multi-model PDB files are made by
  :func:`eryx_port.multimodel.write_perturbed_models` from a shared structure (never a copied file),
  named ``<stem>_ens<n>_<first 12 hex digits of their sha256>.pdb``. A file that exists when a
  recorded call starts is stored as a reference to a data file of the PDB folder, which these never
  are (``trace-tools verify`` would refuse the trace, and replays would be skipped); so the file is
  written only while eryx's ``AtomicModel`` reads it and removed right after (:func:`_reading`),
  and the traces hold its path as text. The adapter writes the same bytes again from the name
  (and checks the hash). Nothing of ``eryx.pdb`` is recorded while eryx reads them (its adapters
  look files up in the PDB folder).
* one model object per scenario, as in ``scenarios.py``; ``n_processes=1``; small grids.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # the recording environment runs from the repository root; be sure
    sys.path.insert(0, str(_REPO))

from eryx_port.multimodel import write_perturbed_models  # noqa: E402  (torch-free)
from scenarios import _module, _pdb  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="eryx_rot_ens_"))
atexit.register(shutil.rmtree, _TMP, True)
ENSEMBLE_AMPLITUDE = 0.3


def ensemble_pdb(pdb_dir, stem: str, n_models: int) -> tuple[str, str, int]:
    """(path, source, n): where the ensemble of ``n_models`` displaced copies of the shared ``<stem>.pdb``
    will be written (named with its hash; not written yet, see :func:`_reading`)."""
    source = _pdb(pdb_dir, stem)
    staging = write_perturbed_models(source, _TMP / "staging.pdb", n_models, ENSEMBLE_AMPLITUDE)
    with open(staging, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    os.remove(staging)
    return str(_TMP / f"{stem}_ens{n_models}_{digest[:12]}.pdb"), source, n_models


_MARK = "_trace_tools_recorded"  # set by the recorder on its wrappers (trace_tools/record.py)


@contextlib.contextmanager
def _pdb_unrecorded(pkg):
    """Every recorded function and method of eryx.pdb set aside (originals called) inside the block."""
    pdb = _module(pkg, "pdb")
    saved = []
    owners = [pdb] + [v for v in vars(pdb).values() if isinstance(v, type) and v.__module__ == pdb.__name__]
    for owner in owners:
        for key, raw in list(vars(owner).items()):
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if getattr(func, _MARK, None) and hasattr(func, "__wrapped__"):
                plain = type(raw)(func.__wrapped__) if isinstance(raw, (staticmethod, classmethod)) else func.__wrapped__
                saved.append((owner, key, raw))
                setattr(owner, key, plain)
    try:
        yield
    finally:
        for owner, key, raw in saved:
            setattr(owner, key, raw)


@contextlib.contextmanager
def _reading(pkg, ensemble):
    """eryx.pdb unrecorded while eryx's AtomicModel reads the ensemble file, written just before and removed after."""
    path, source, n_models = ensemble
    owner = _module(pkg, "pdb").AtomicModel
    original = owner.__dict__["__init__"]

    def reading(self, pdb_file, *args, **kwargs):
        if str(pdb_file) != path:
            return original(self, pdb_file, *args, **kwargs)
        write_perturbed_models(source, path, n_models, ENSEMBLE_AMPLITUDE)
        try:
            with _pdb_unrecorded(pkg):
                return getattr(original, "__wrapped__", original)(self, pdb_file, *args, **kwargs)
        finally:
            os.remove(path)

    owner.__init__ = reading
    try:
        yield path
    finally:
        owner.__init__ = original


def _smooth_target(q_mags, map_shape, seed):
    """A positive target map: a falling q-profile with 10% multiplicative noise."""
    noise = np.random.default_rng(seed).uniform(0.9, 1.1, size=q_mags.shape)
    return (q_mags**2 * np.exp(-0.5 * q_mags**2) * noise + 1e-3).reshape(map_shape)


def _rotations(pkg, path, sampling, **kwargs):
    models = _module(pkg, "models")
    kwargs.setdefault("n_processes", 1)
    return models.RigidBodyRotations(path, *sampling, **kwargs)


def _ensemble(pkg, ensemble, sampling, **kwargs):
    models = _module(pkg, "models")
    kwargs.setdefault("n_processes", 1)
    with _reading(pkg, ensemble) as path:
        return models.Ensemble(path, *sampling, **kwargs)


def s_5zck_30(pkg, pdb_dir):
    """RigidBodyRotations on P 21 21 21 (4 ASUs): direct draws (default axis; integer sigma, another axis);
    apply_disorder with one float sigma and with an array of two; optimize over 3 sigmas."""
    seed = 30
    R = _module(pkg, "models").RigidBodyRotations
    np.random.seed(seed)
    R.generate_rotations_around_axis(2.0, 4)
    np.random.seed(seed)
    R.generate_rotations_around_axis(5, 3, axis=np.array([1.0, 2.0, 2.0]))
    model = _rotations(pkg, _pdb(pdb_dir, "5zck"), ((-2, 2, 2), (-1, 1, 2), (-1, 1, 2)), res_limit=4.6, batch_size=40)
    np.random.seed(seed)
    model.apply_disorder(2.0, num_rot=5)
    np.random.seed(seed)
    model.apply_disorder(np.array([1.0, 4.0]), num_rot=3)
    target = _smooth_target(model.q_mags, model.map_shape, seed)
    np.random.seed(seed)
    model.optimize(target, 1.0, 5.0, n_search=3, num_rot=3)


def s_2ol9_31(pkg, pdb_dir):
    """RigidBodyRotations on triclinic P 1 without expansion: a direct draw; apply_disorder with ensemble_dir
    (one member saved per ASU; the map is zero); a list of two sigmas; optimize over 4 sigmas."""
    seed = 31
    model = _rotations(pkg, _pdb(pdb_dir, "2ol9"), ((-1, 1, 2), (-1, 1, 1), (-1, 1, 2)), expand_p1=False,
                       res_limit=2.5, batch_size=25)
    np.random.seed(seed)
    model.generate_rotations_around_axis(1.5, 6)
    out = _TMP / "rot_members"
    out.mkdir(exist_ok=True)
    np.random.seed(seed)
    model.apply_disorder(3.0, num_rot=4, ensemble_dir=str(out))
    np.random.seed(seed)
    model.apply_disorder([1.0, 2.5], num_rot=4)
    target = _smooth_target(model.q_mags, model.map_shape, seed)
    np.random.seed(seed)
    model.optimize(target, 0.5, 3.0, n_search=4, num_rot=3)


def s_5zck_32(pkg, pdb_dir):
    """Ensemble of a 3-model 5zck file, expanded to P 1 (12 copies), all frames: default weights, one set, two sets."""
    model = _ensemble(pkg, ensemble_pdb(pdb_dir, "5zck", 3), ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2)), res_limit=4.6,
                      batch_size=30)
    model.apply_disorder()
    model.apply_disorder(weights=np.array([0.5, 0.3, 0.2]))
    model.apply_disorder(weights=np.array([[1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1]]))


def s_2ol9_33(pkg, pdb_dir):
    """Ensemble of a 4-model 2ol9 file (triclinic P 1, no expansion), res_limit: unnormalised weight sets,
    ensemble_dir (frame -1: one file per ASU, the last conformation's amplitudes), default weights."""
    model = _ensemble(pkg, ensemble_pdb(pdb_dir, "2ol9", 4), ((-1, 1, 2), (-1, 1, 1), (-1, 1, 2)), expand_p1=False,
                      res_limit=2.5, batch_size=20)
    model.apply_disorder(weights=np.array([[1.0, 2.0, 3.0, 4.0], [0.4, 0.1, 0.1, 0.4]]))
    out = _TMP / "ens_members"
    out.mkdir(exist_ok=True)
    model.apply_disorder(weights=np.array([0.1, 0.2, 0.3, 0.4]), ensemble_dir=str(out))
    model.apply_disorder()


def s_5zck_34(pkg, pdb_dir):
    """Ensemble of one frame (frame=1) of the 3-model 5zck file, expanded: one weight, two sets, ensemble_dir."""
    model = _ensemble(pkg, ensemble_pdb(pdb_dir, "5zck", 3), ((-1, 1, 2), (-1, 1, 1), (-1, 1, 2)), frame=1,
                      batch_size=50)
    out = _TMP / "frame_members"
    out.mkdir(exist_ok=True)
    model.apply_disorder(weights=np.array([0.7]), ensemble_dir=str(out))
    model.apply_disorder(weights=np.array([[0.5], [0.25]]))


def s_6o2h_35(pkg, pdb_dir):
    """RigidBodyRotations on eryx's paper structure (P 1, 1001 atoms) on a 3 x 3 x 2 grid: two direct draws
    (the recorder keeps 3 draws: the third is apply_disorder's first), apply_disorder with 2 sigmas of 3 rotations."""
    seed = 35
    model = _rotations(pkg, _pdb(pdb_dir, "6o2h_clean"), ((-1, 1, 1), (-1, 1, 1), (0, 1, 1)), batch_size=10)
    np.random.seed(seed)
    model.generate_rotations_around_axis(0.5, 3)
    np.random.seed(seed)
    model.generate_rotations_around_axis(10.0, 2, axis=np.array([0.0, 1.0, 0.0]))
    np.random.seed(seed)
    model.apply_disorder(np.array([0.5, 2.0]), num_rot=3)


def s_6o2h_36(pkg, pdb_dir):
    """Ensemble of 2 displaced copies of the paper structure (P 1) on a 3 x 3 x 2 grid: two weight sets."""
    model = _ensemble(pkg, ensemble_pdb(pdb_dir, "6o2h_clean", 2), ((-1, 1, 1), (-1, 1, 1), (0, 1, 1)), batch_size=10)
    model.apply_disorder(weights=np.array([[0.5, 0.5], [0.8, 0.2]]))


SCENARIOS = {
    "5zck-s30": s_5zck_30,
    "2ol9-s31": s_2ol9_31,
    "5zck-s32": s_5zck_32,
    "2ol9-s33": s_2ol9_33,
    "5zck-s34": s_5zck_34,
    "6o2h_clean-s35": s_6o2h_35,
    "6o2h_clean-s36": s_6o2h_36,
}
