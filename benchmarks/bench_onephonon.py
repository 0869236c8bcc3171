# SPDX-License-Identifier: GPL-2.0-or-later
"""NumPy eryx against eryx_port: OnePhonon per stage and end to end, on the same inputs, in one run.

eryx needs gemmi 0.6 and numpy < 2.4 while the port uses gemmi 0.7, so eryx runs in a subprocess
with its own interpreter (``--eryx-python``) and writes its timings and map to a temporary folder.

Usage (see benchmarks/README.md for setting up eryx)::

    python benchmarks/bench_onephonon.py --eryx /path/to/eryx --eryx-python /path/to/venv/bin/python

Stages: ``setup`` (model, grids, supercell), ``phonons`` (A and M matrices, k-vectors, network,
modes), ``covariance``, ``apply_disorder`` (the map, rank -1, GNM ADPs); ``total`` is their sum.
Results go to ``benchmarks/results.json`` (read by the progress dashboard).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

STAGES = ("setup", "phonons", "covariance", "apply_disorder")
CASES = {  # short name: (name in results.json, file, (hsampling, ksampling, lsampling))
    "5zck": ("5zck (-4,4,3)x3", "5zck.pdb", ((-4, 4, 3), (-4, 4, 3), (-4, 4, 3))),
    "7n2h": ("7n2h (-18,18,5)x2,(-5,5,5)", "7n2h.pdb", ((-18, 18, 5), (-18, 18, 5), (-5, 5, 5))),
}

# Runs inside eryx's interpreter: times eryx's own OnePhonon methods in the order its constructor
# calls them (defaults: gnm, cutoff 4, gammas 1, group_by 'asu') with n_processes as given.
ERYX_DRIVER = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    eryx_path, pdb, sampling, n_processes, out = sys.argv[1:6]
    sys.path.insert(0, eryx_path)
    from eryx.models import OnePhonon as NumpyOnePhonon
    h, k, l = json.loads(sampling)
    times = {}
    m = NumpyOnePhonon.__new__(NumpyOnePhonon)
    m.hsampling, m.ksampling, m.lsampling = tuple(h), tuple(k), tuple(l)
    m.batch_size, m.n_processes = 10000, int(n_processes)
    t = time.perf_counter()
    m._setup(pdb, True, 0.0, 'asu')
    times['setup'] = time.perf_counter() - t
    t = time.perf_counter()
    m.kvec = np.zeros((m.hsampling[2], m.ksampling[2], m.lsampling[2], 3))
    m.kvec_norm = np.zeros(m.kvec.shape[:3] + (1,))
    n = m.n_asu * m.n_dof_per_asu
    m.V = np.zeros(m.kvec.shape[:3] + (n, n), dtype='complex')
    m.Winv = np.zeros(m.kvec.shape[:3] + (n,), dtype='complex')
    m._build_A(); m._build_M(); m._build_kvec_Brillouin()
    m._setup_gnm(pdb, 4.0, 1.0, 1.0)
    m.compute_gnm_phonons()
    times['phonons'] = time.perf_counter() - t
    t = time.perf_counter()
    m.compute_covariance_matrix()
    times['covariance'] = time.perf_counter() - t
    t = time.perf_counter()
    Id = m.apply_disorder()
    times['apply_disorder'] = time.perf_counter() - t
    np.save(out + '/map.npy', Id)
    with open(out + '/times.json', 'w') as f:
        json.dump({'times': times, 'numpy': np.__version__}, f)
    """
)


def run_eryx(eryx: str, python: str, pdb: Path, sampling, n_processes: int) -> tuple[dict, str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python, "-c", ERYX_DRIVER, eryx, str(pdb), json.dumps(sampling), str(n_processes), tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"eryx run failed ({' '.join(cmd[:2])} ...):\n{done.stderr[-3000:]}")
        with open(os.path.join(tmp, "times.json")) as f:
            report = json.load(f)
        return report["times"], report["numpy"], np.load(os.path.join(tmp, "map.npy"))


def run_port(pdb: Path, sampling, dtype: str, device: str) -> tuple[dict, np.ndarray]:
    import torch

    from eryx_port.models import OnePhonon

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = {}
    m = OnePhonon.__new__(OnePhonon)
    # the attributes OnePhonon.__init__ sets, then its stages one by one, timed
    m.hsampling, m.ksampling, m.lsampling = sampling
    m._sampling = tuple(tuple(s) for s in sampling)
    m.batch_size, m.n_processes = 10000, 1
    m.dtype, m.device = getattr(torch, dtype), torch.device(device)
    m.lever_arms, m.progress = "eryx", False
    m._xyz_override = m._adp_override = None
    t = time.perf_counter()
    m._setup(str(pdb), True, 0.0, "asu")
    sync()
    times["setup"] = time.perf_counter() - t
    t = time.perf_counter()
    m._build_A()
    m._build_M()
    m._build_kvec_Brillouin()
    m._setup_gnm(str(pdb), 4.0, 1.0, 1.0)
    m.compute_gnm_phonons()
    sync()
    times["phonons"] = time.perf_counter() - t
    t = time.perf_counter()
    m.compute_covariance_matrix()
    sync()
    times["covariance"] = time.perf_counter() - t
    t = time.perf_counter()
    Id = m.apply_disorder()
    sync()
    times["apply_disorder"] = time.perf_counter() - t
    return times, Id.detach().cpu().double().numpy()


def max_rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    if actual.shape != expected.shape or (np.isnan(actual) != np.isnan(expected)).any():
        return float("inf")
    finite = ~np.isnan(expected)
    return float(np.abs(actual[finite] - expected[finite]).max() / np.abs(expected[finite]).max())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eryx", required=True, help="path to an eryx checkout (git clone https://github.com/apeck12/eryx)")
    parser.add_argument("--eryx-python", default=sys.executable, help="interpreter with eryx's dependencies (numpy<2.4, gemmi 0.6.x)")
    parser.add_argument("--n-processes", type=int, default=1, help="eryx's n_processes (default 1)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated cases among {list(CASES)} (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="port runs per case; the fastest counts (default 1)")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pdb-dir", default=None, help="folder of the PDB files (default: trace_tools.paths.pdb_dir())")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args(argv)

    import torch

    from trace_tools.paths import pdb_dir

    folder = Path(args.pdb_dir) if args.pdb_dir else pdb_dir()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {list(CASES)}")

    # warm-up: first calls of torch's linear algebra and kernels, not part of any case
    run_port(folder / "5zck.pdb", ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2)), args.dtype, args.device)

    rows, errors, eryx_numpy = [], {}, None
    for key in names:
        name, file, sampling = CASES[key]
        pdb = folder / file
        eryx_t, eryx_numpy, eryx_map = run_eryx(args.eryx, args.eryx_python, pdb, sampling, args.n_processes)
        best, port_map = None, None
        for _ in range(max(1, args.repeat)):
            t, port_map = run_port(pdb, sampling, args.dtype, args.device)
            best = t if best is None or sum(t.values()) < sum(best.values()) else best
        eryx_t["total"], best["total"] = sum(eryx_t[s] for s in STAGES), sum(best[s] for s in STAGES)
        errors[name] = max_rel_err(port_map, eryx_map)
        print(f"\n{name}: max rel err of the map {errors[name]:.2e}")
        print(f"  {'stage':<15}{'eryx s':>10}{'port s':>10}{'ratio':>9}")
        for stage in STAGES + ("total",):
            ratio = eryx_t[stage] / best[stage] if best[stage] > 0 else float("inf")
            rows.append({"case": name, "stage": stage, "eryx_s": eryx_t[stage], "port_s": best[stage], "ratio": ratio})
            print(f"  {stage:<15}{eryx_t[stage]:>10.3f}{best[stage]:>10.3f}{ratio:>8.1f}x")

    result = {
        "machine": cpu_name() + (f", {args.device}" if args.device != "cpu" else ""),
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_onephonon.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "eryx_numpy": eryx_numpy,
        "dtype": args.dtype,
        "eryx_n_processes": args.n_processes,
        "torch_threads": torch.get_num_threads(),
        "cases": rows,
        "max_rel_err": errors,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
