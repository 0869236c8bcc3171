# SPDX-License-Identifier: GPL-2.0-or-later
"""NumPy eryx against eryx_port: RigidBodyRotations and Ensemble maps, same inputs, same draws.

eryx runs in a subprocess with its own interpreter (``--eryx-python``; see benchmarks/README.md),
seeded with NumPy's global generator; the port replays that stream
(:func:`eryx_port.models.rotations.numpy_legacy_draws`), so the two maps are the same and are
compared. Ensemble files are written from the shared structures
(:func:`eryx_port.multimodel.write_perturbed_models`) into a temporary folder.

Usage::

    python benchmarks/bench_rotations_ensemble.py --eryx /work/ref/eryx --eryx-python /work/ref/venv-eryx/bin/python
    python benchmarks/bench_rotations_ensemble.py ... --cases rotations-2ol9

Cases: ``rotations-2ol9`` (eryx's own test: 2ol9, grid (-14,14,1),(-5,5,1),(-15,15,1), 100 rotations),
``rotations-5zck`` (orthorhombic, 4 ASUs, 25 rotations), ``ensemble-5zck`` (10 displaced models,
expanded to P 1). Prints eryx's and the port's time of ``apply_disorder`` and the largest difference
of the maps relative to their largest value.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {
    "rotations-2ol9": dict(kind="rotations", pdb="2ol9.pdb", sampling=((-14, 14, 1), (-5, 5, 1), (-15, 15, 1)),
                           sigma=3.0, num_rot=100, expand_p1=True),
    "rotations-5zck": dict(kind="rotations", pdb="5zck.pdb", sampling=((-4, 4, 2), (-8, 8, 1), (-12, 12, 1)),
                           sigma=3.0, num_rot=25, expand_p1=True),
    "ensemble-5zck": dict(kind="ensemble", pdb="5zck.pdb", sampling=((-4, 4, 2), (-8, 8, 1), (-12, 12, 1)),
                          n_models=10, expand_p1=True),
}

_ERYX = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {eryx!r})
    from eryx.models import Ensemble, RigidBodyRotations
    case = json.loads({case!r})
    s = [tuple(x) for x in case["sampling"]]
    if case["kind"] == "rotations":
        model = RigidBodyRotations(case["path"], *s, expand_p1=case["expand_p1"], n_processes=1)
        np.random.seed(0)
        t0 = time.perf_counter()
        I = model.apply_disorder(case["sigma"], num_rot=case["num_rot"])
    else:
        model = Ensemble(case["path"], *s, expand_p1=case["expand_p1"], n_processes=1)
        t0 = time.perf_counter()
        I = model.apply_disorder()
    seconds = time.perf_counter() - t0
    np.save({out!r}, I)
    print(json.dumps({{"seconds": seconds}}))
""")


def run_case(name: str, case: dict, pdb_dir: Path, eryx: str, eryx_python: str, folder: Path) -> dict:
    import torch

    from eryx_port.models import Ensemble, RigidBodyRotations
    from eryx_port.models.rotations import numpy_legacy_draws
    from eryx_port.multimodel import write_perturbed_models

    path = str(pdb_dir / case["pdb"])
    if case["kind"] == "ensemble":
        path = write_perturbed_models(path, folder / f"{name}.pdb", case["n_models"])
    spec = dict(case, path=path)
    out = folder / f"{name}.npy"
    script = _ERYX.format(eryx=eryx, case=json.dumps(spec), out=str(out))
    done = subprocess.run([eryx_python, "-c", script], capture_output=True, text=True, check=True)
    eryx_seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]

    s = case["sampling"]
    if case["kind"] == "rotations":
        model = RigidBodyRotations(path, *s, expand_p1=case["expand_p1"])
        draws = numpy_legacy_draws(np.random.RandomState(0), (1, model.model.n_asu, case["num_rot"]))
        t0 = time.perf_counter()
        with torch.no_grad():
            I = model.apply_disorder(case["sigma"], case["num_rot"], draws=draws)
    else:
        model = Ensemble(path, *s, expand_p1=case["expand_p1"])
        t0 = time.perf_counter()
        with torch.no_grad():
            I = model.apply_disorder()
    port_seconds = time.perf_counter() - t0
    ref = np.load(out)
    finite = np.isfinite(ref)
    err = float(np.abs(I.numpy() - ref)[finite].max() / np.abs(ref[finite]).max())
    same_nan = bool((np.isnan(I.numpy()) == ~finite).all())
    return {"case": name, "points": int(ref.shape[-1]), "eryx_s": eryx_seconds, "port_s": port_seconds,
            "speedup": eryx_seconds / port_seconds, "max_err_over_max": err, "same_nan": same_nan}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eryx", required=True, help="eryx checkout (its package folder's parent)")
    parser.add_argument("--eryx-python", required=True, help="interpreter of eryx's environment")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--pdb-dir", type=Path, default=None, help="test structures (default: trace_tools.paths.pdb_dir())")
    args = parser.parse_args(argv)
    from trace_tools.paths import pdb_dir

    folder = Path(tempfile.mkdtemp(prefix="bench_rot_ens_"))
    pdbs = args.pdb_dir or pdb_dir()
    for name in args.cases.split(","):
        r = run_case(name, CASES[name], pdbs, args.eryx, args.eryx_python, folder)
        print(f"{r['case']:16s} {r['points']:7d} points  eryx {r['eryx_s']:7.2f} s  port {r['port_s']:6.2f} s  "
              f"x{r['speedup']:5.1f}  max err/max {r['max_err_over_max']:.1e}  NaN at the same points: {r['same_nan']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
