# SPDX-License-Identifier: GPL-2.0-or-later
"""NumPy eryx against eryx_port: molecular and crystal transforms (eryx.base), same inputs.

eryx runs in a subprocess with its own interpreter (``--eryx-python``), one process per case, and
saves its map (one run); the port computes the same map in this process (best of ``--repeat`` runs),
and the two are compared (largest difference over the largest value). On a machine shared with other
work, ``--threads 1`` avoids torch's threads waiting on each other (eryx's NumPy is single-threaded).

Usage::

    python benchmarks/bench_transforms.py --eryx /work/ref/eryx --eryx-python /work/ref/venv-eryx/bin/python
    python benchmarks/bench_transforms.py ... --cases molecular-6o2h

Cases: eryx's own test grids (``molecular-5zck``, ``molecular-7n2h``: tests/base.py; ``crystal-5zck``:
tests/test_models.py) and a larger triclinic one (``molecular-6o2h``, 1001 atoms, 25^3 points).
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
    "molecular-5zck": dict(fn="compute_molecular_transform", pdb="5zck.pdb",
                           sampling=((-5, 5, 3), (-13, 13, 2), (-20, 20, 2)), options={"expand_friedel": True}),
    "molecular-7n2h": dict(fn="compute_molecular_transform", pdb="7n2h.pdb",
                           sampling=((-18, 18, 2), (-18, 18, 2), (-5, 5, 3)), options={"expand_friedel": False}),
    "crystal-5zck": dict(fn="compute_crystal_transform", pdb="5zck.pdb",
                         sampling=((-4, 4, 1), (-17, 17, 1), (-29, 29, 1)), options={}),
    "molecular-6o2h": dict(fn="compute_molecular_transform", pdb="6o2h_clean.pdb",
                           sampling=((-6, 6, 2), (-6, 6, 2), (-6, 6, 2)), options={"expand_friedel": False}),
}

_ERYX = textwrap.dedent("""
    import json, sys, time, warnings
    import numpy as np
    warnings.filterwarnings("ignore")
    sys.path.insert(0, {eryx!r})
    from eryx import base
    case = json.loads({case!r})
    s = [tuple(x) for x in case["sampling"]]
    t0 = time.perf_counter()
    q, I = getattr(base, case["fn"])(case["path"], *s, n_processes=1, **case["options"])
    print(json.dumps({{"seconds": time.perf_counter() - t0}}))
    np.save(case["out"], I)
""")


def run(case_name: str, args) -> dict:
    from eryx_port import base

    case = dict(CASES[case_name])
    case["path"] = str(Path(args.pdb_dir) / case["pdb"])
    with tempfile.TemporaryDirectory() as tmp:
        case["out"] = str(Path(tmp) / "eryx.npy")
        code = _ERYX.format(eryx=str(args.eryx), case=json.dumps(case))
        done = subprocess.run([args.eryx_python, "-c", code], capture_output=True, text=True, check=True)
        eryx_seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        expected = np.load(case["out"])
    fn = getattr(base, case["fn"])
    s = [tuple(x) for x in case["sampling"]]
    times = []
    for _ in range(args.repeat):  # the best of a few runs: the first one pays imports and first kernels
        t0 = time.perf_counter()
        _, I = fn(case["path"], *s, **case["options"])
        times.append(time.perf_counter() - t0)
    port_seconds = min(times)
    I = I.detach().cpu().numpy()
    err = float(np.abs(I - expected).max() / np.abs(expected).max()) if I.shape == expected.shape else float("nan")
    return {"case": case_name, "shape": list(I.shape), "eryx_s": round(eryx_seconds, 3),
            "port_s": round(port_seconds, 3), "speedup": round(eryx_seconds / port_seconds, 1), "max_err_rel": err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eryx", type=Path, required=True, help="eryx checkout")
    parser.add_argument("--eryx-python", required=True, help="interpreter with eryx's dependencies")
    parser.add_argument("--pdb-dir", default=str(ROOT.parent / "shared" / "pdbs"))
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeat", type=int, default=3, help="port runs per case (the best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    for name in args.cases:
        print(json.dumps(run(name, args)), flush=True)


if __name__ == "__main__":
    main()
