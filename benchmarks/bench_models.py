# SPDX-License-Identifier: GPL-2.0-or-later
"""eryx against eryx-port for every disorder model and the transforms, on the sizes of eryx's own tests.

Each case is a few lines of eryx-API code. It runs twice, each time in a fresh process: in eryx's own
environment (``--eryx-python``, NumPy, ``n_processes=1``) and in this one through
:mod:`eryx_port.compat` (the same code; the torch port underneath). The time is that of the case's
lines (model set-up and map), not the interpreter's start or imports; the best of ``--repeat`` runs.
The two maps are compared (largest difference over the largest value; not for the rotations, whose
random draws differ). With ``--out`` the rows are merged into a results file (the dashboard's
benchmarks/results.json): each case one row with stage ``total``.

    python benchmarks/bench_models.py --eryx-python ../venv-eryx/bin/python --repeat 3
    python benchmarks/bench_models.py ... --cases translations,liquid --out benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_onephonon import cpu_name, torch_blas  # noqa: E402

# name -> (label, set-up and map lines; P(name) is a test structure's path, ENS a 10-model ensemble file)
CASES = {
    "translations": ("RigidBodyTranslations 5zck (-4,4,1),(-17,17,1),(-29,29,1), 30 sigmas", """
        m = models.RigidBodyTranslations(P("5zck"), (-4, 4, 1), (-17, 17, 1), (-29, 29, 1), n_processes=1)
        I = m.apply_disorder(np.linspace(0.01, 0.99, 30))
    """),
    "liquid": ("LiquidLikeMotions 5zck (-5,5,2),(-13,13,2),(-20,20,2), 6x6 sigma, gamma", """
        m = models.LiquidLikeMotions(P("5zck"), (-5, 5, 2), (-13, 13, 2), (-20, 20, 2), n_processes=1)
        I = m.apply_disorder(np.linspace(0.05, 0.45, 6), np.linspace(0.5, 3.5, 6))
    """),
    "rotations": ("RigidBodyRotations 2ol9 (-14,14,1),(-5,5,1),(-15,15,1), 3 sigmas x 100 rotations", """
        m = models.RigidBodyRotations(P("2ol9"), (-14, 14, 1), (-5, 5, 1), (-15, 15, 1), n_processes=1)
        I = m.apply_disorder(np.linspace(1.0, 5.0, 3))
    """),
    "ensemble": ("Ensemble 5zck x 10 models (-5,5,3),(-13,13,2),(-20,20,2)", """
        m = models.Ensemble(ENS, (-5, 5, 3), (-13, 13, 2), (-20, 20, 2), n_processes=1)
        I = m.apply_disorder()
    """),
    "deformable": ("NonInteractingDeformableMolecules 7n2h (-3,3,3)^3, exact and scl maps", """
        m = models.NonInteractingDeformableMolecules(P("7n2h"), (-3, 3, 3), (-3, 3, 3), (-3, 3, 3), n_processes=1)
        I = np.stack([m.apply_disorder(scl=False).ravel(), m.apply_disorder(scl=True).ravel()])
    """),
    "brillouin": ("OnePhononBrillouin 5zck (1,2,3), N=4", """
        m = models.OnePhononBrillouin(P("5zck"), 1, 2, 3, 4, n_processes=1)
        I = m.Id
    """),
    "molecular": ("compute_molecular_transform 5zck (-5,5,3),(-13,13,2),(-20,20,2)", """
        q, I = base.compute_molecular_transform(P("5zck"), (-5, 5, 3), (-13, 13, 2), (-20, 20, 2), n_processes=1)
    """),
    "crystal": ("compute_crystal_transform 5zck (-4,4,1),(-17,17,1),(-29,29,1)", """
        q, I = base.compute_crystal_transform(P("5zck"), (-4, 4, 1), (-17, 17, 1), (-29, 29, 1), n_processes=1)
    """),
}

_RUNNER = """
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
if {port}:
    import eryx_port.compat
    eryx_port.compat.install()
from eryx import base, models
P = lambda name: os.path.join({pdb_dir!r}, name + ".pdb")
ENS = {ensemble!r}
t0 = time.perf_counter()
{body}
seconds = time.perf_counter() - t0
np.save({out!r}, np.asarray(I, dtype=np.float64))
print(json.dumps({{"seconds": seconds}}))
"""


def run_once(python: str, body: str, port: bool, out: Path, pdb_dir: Path, ensemble: str) -> float:
    script = _RUNNER.format(port=port, pdb_dir=str(pdb_dir), ensemble=ensemble, body=textwrap.dedent(body),
                            out=str(out))
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{'port' if port else 'eryx'} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def compare(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    finite = np.isfinite(b)
    scale = np.abs(b[finite]).max() if finite.any() else 0.0
    return float(np.abs(a[finite] - b[finite]).max() / scale) if scale > 0 else 0.0


def main() -> int:
    from trace_tools.paths import pdb_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eryx-python", required=True, help="interpreter of eryx's environment (eryx importable)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", help="merge the rows into this results file (e.g. benchmarks/results.json)")
    args = parser.parse_args()

    from eryx_port.multimodel import write_perturbed_models

    names = [c for c in args.cases.split(",") if c]
    rows, errors = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ensemble = write_perturbed_models(str(pdb_dir() / "5zck.pdb"), folder / "ensemble.pdb", 10)
        print(f"{'case':<78} {'eryx s':>8} {'port s':>8} {'speed-up':>9} {'max err':>9}")
        for name in names:
            label, body = CASES[name]
            t_eryx = min(run_once(args.eryx_python, body, False, folder / "e.npy", pdb_dir(), ensemble)
                         for _ in range(args.repeat))
            t_port = min(run_once(sys.executable, body, True, folder / "p.npy", pdb_dir(), ensemble)
                         for _ in range(args.repeat))
            err = None if name == "rotations" else compare(np.load(folder / "p.npy"), np.load(folder / "e.npy"))
            rows.append(dict(case=label, stage="total", eryx_s=t_eryx, port_s=t_port, ratio=t_eryx / t_port))
            if err is not None:
                errors[label] = err
            shown = "draws differ" if err is None else f"{err:.1e}"
            print(f"{label:<78} {t_eryx:8.3f} {t_port:8.3f} {t_eryx / t_port:8.1f}x {shown:>9}")
    if args.out:
        path = Path(args.out)
        results = json.loads(path.read_text()) if path.is_file() else {"cases": []}
        labels = {r["case"] for r in rows}
        results["cases"] = [c for c in results.get("cases", []) if c.get("case") not in labels] + rows
        results.setdefault("max_rel_err", {}).update(errors)
        results.setdefault("notes", {})["models"] = (
            f"bench_models.py ({date.today()}, {cpu_name()}; port: {torch_blas()}, eryx: NumPy's own BLAS): eryx-API code of each "
            "case in fresh processes, eryx (n_processes=1) against the port through eryx_port.compat; best of "
            f"{args.repeat}; set-up and map, not the interpreter's start or imports"
        )
        path.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
