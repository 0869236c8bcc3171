# SPDX-License-Identifier: GPL-2.0-or-later
"""NumPy eryx against eryx_port: OnePhonon per stage and end to end, on the same inputs, in one run.

eryx needs gemmi 0.6 and numpy < 2.4 while the port uses gemmi 0.7, so eryx runs in a subprocess
with its own interpreter (``--eryx-python``) and writes its timings and map to a temporary folder.

Usage (see benchmarks/README.md for setting up eryx)::

    python benchmarks/bench_onephonon.py --eryx /path/to/eryx --eryx-python /path/to/venv/bin/python
    python benchmarks/bench_onephonon.py --eryx ... --eryx-python ... --cases 6o2h-sub,paper

Stages: ``setup`` (model, grids, supercell), ``phonons`` (A and M matrices, k-vectors, network,
modes), ``covariance``, ``apply_disorder`` (the map, rank -1); ``total`` is their sum. Cases marked
fresh run eryx and the port each in a fresh process and also report ``process`` (interpreter start to
finished map) and each process's peak resident memory. The ``paper`` case (eryx's example job)
measures the port only; eryx's figures for it are extrapolated from its run of ``6o2h-sub`` in the
same invocation and labelled so. With ``--repeat`` / ``--eryx-repeat``, eryx's and the port's runs alternate
(a shared machine's speed drifts by 30% or more over minutes) and each side's fastest counts; every
run's total is kept in ``runs_total_s``. Results go to ``benchmarks/results.json`` (read by the progress
dashboard).
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
# 6o2h: eryx's examples/config.yaml as its OnePhonon task runs it (scripts/tasks.py): bounds made
# symmetric and rounded (expand_sampling(force_int=True)), gnm_cutoff 4, gamma_intra 2, gamma_inter 1,
# apply_disorder(use_data_adp=True); the task does not pass res_limit (so 0).
_PAPER = {"pdb": "6o2h_clean.pdb", "gnm": (4.0, 2.0, 1.0), "use_data_adp": True, "res_limit": 0.0, "fresh": True}
CASES = {  # short name: how the case runs; "name" is its name in results.json
    "5zck": {"name": "5zck (-4,4,3)x3", "pdb": "5zck.pdb", "sampling": ((-4, 4, 3), (-4, 4, 3), (-4, 4, 3))},
    "7n2h": {"name": "7n2h (-18,18,5)x2,(-5,5,5)", "pdb": "7n2h.pdb",
             "sampling": ((-18, 18, 5), (-18, 18, 5), (-5, 5, 5))},
    # the paper's oversampling (the same 1573 k-vectors) on 79 x 89 x 89 voxels
    "6o2h-sub": dict(_PAPER, name="6o2h (-3,3,13),(-4,4,11),(-4,4,11)",
                     sampling=((-3, 3, 13), (-4, 4, 11), (-4, 4, 11))),
    # the paper job: 573 x 595 x 661 = 2.25e8 voxels; eryx's figures extrapolated from its run of
    # 6o2h-sub and one on the small grid below (27 x 23 x 23, same oversampling), in the same invocation
    "paper": dict(_PAPER, name="6o2h paper (-22,22,13),(-27,27,11),(-30,30,11)",
                  sampling=((-22, 22, 13), (-27, 27, 11), (-30, 30, 11)), eryx_from="6o2h-sub", max_repeat=1,
                  eryx_small=((-1, 1, 13), (-1, 1, 11), (-1, 1, 11))),
}
DEFAULT_CASES = ("5zck", "7n2h", "6o2h-sub")  # "paper" takes minutes (port) and is opt-in
for _case in CASES.values():
    _case.setdefault("gnm", (4.0, 1.0, 1.0))  # cutoff, gamma_intra, gamma_inter
    _case.setdefault("use_data_adp", False)
    _case.setdefault("res_limit", 0.0)
    _case.setdefault("fresh", False)

EXTRAPOLATED = "extrapolated"


def n_voxels(sampling) -> int:
    """Grid points of eryx's generate_grid for (min, max, oversampling) per axis."""
    return int(np.prod([round((hi - lo) * n) + 1 for lo, hi, n in sampling]))


def n_kvecs(sampling) -> int:
    return int(np.prod([n for _, _, n in sampling]))


# Memory probes of both fresh-process drivers (Linux): the resident set now and its high-water mark,
# which writing "5" to /proc/self/clear_refs resets, so that each stage's own peak is seen; the
# process's peak is the largest of them and getrusage's ru_maxrss.
MEMORY_PROBES = textwrap.dedent(
    """
    import json, resource, sys, time

    def _status(key):
        try:
            with open('/proc/self/status') as f:
                for line in f:
                    if line.startswith(key + ':'):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def _reset_peak():
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            return True
        except OSError:
            return False

    class Stages:
        # times each stage; resident memory (MiB) at its start and end, and its peak
        def __init__(self, sync=lambda: None):
            self.times, self.memory, self.sync = {}, {}, sync

        def run(self, name, fn):
            reset = _reset_peak()
            start_rss = _status('VmRSS')
            t = time.perf_counter()
            out = fn()
            self.sync()
            self.times[name] = time.perf_counter() - t
            peak = _status('VmHWM') if reset else None
            self.memory[name] = {'start_mib': start_rss, 'end_mib': _status('VmRSS'), 'peak_mib': peak}
            return out

        def peak_mib(self):
            peaks = [m['peak_mib'] for m in self.memory.values() if m['peak_mib'] is not None]
            return max(peaks + [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0])
    """
)

# NumPy's BLAS (name and version), as the eryx interpreter reports it: the two sides' BLAS libraries set
# much of each ratio (OpenBLAS takes AVX-512 on AMD Zen 5 where MKL takes its AVX2 path).
NUMPY_BLAS = (
    "def numpy_blas():\n"
    "    try:\n"
    "        b = np.show_config(mode='dicts')['Build Dependencies']['blas']\n"
    "        return f\"{b.get('name')} {b.get('version')}\"\n"
    "    except Exception:\n"
    "        return 'unknown'\n"
)

# Runs inside eryx's interpreter: times eryx's own OnePhonon methods in the order its constructor
# calls them (group_by 'asu') with n_processes as given. spec: pdb, sampling, gnm, use_data_adp, res_limit.
ERYX_DRIVER = MEMORY_PROBES + NUMPY_BLAS + textwrap.dedent(
    """
    import numpy as np
    eryx_path, spec, n_processes, out, spawned = sys.argv[1:6]
    spec = json.loads(spec)
    sys.path.insert(0, eryx_path)
    from eryx.models import OnePhonon as NumpyOnePhonon
    h, k, l = spec['sampling']
    cutoff, gamma_intra, gamma_inter = spec['gnm']
    pdb = spec['pdb']
    st = Stages()
    m = NumpyOnePhonon.__new__(NumpyOnePhonon)
    m.hsampling, m.ksampling, m.lsampling = tuple(h), tuple(k), tuple(l)
    m.batch_size, m.n_processes = 10000, int(n_processes)
    st.run('setup', lambda: m._setup(pdb, True, spec['res_limit'], 'asu'))

    def phonons():
        m.kvec = np.zeros((m.hsampling[2], m.ksampling[2], m.lsampling[2], 3))
        m.kvec_norm = np.zeros(m.kvec.shape[:3] + (1,))
        n = m.n_asu * m.n_dof_per_asu
        m.V = np.zeros(m.kvec.shape[:3] + (n, n), dtype='complex')
        m.Winv = np.zeros(m.kvec.shape[:3] + (n,), dtype='complex')
        m._build_A(); m._build_M(); m._build_kvec_Brillouin()
        m._setup_gnm(pdb, cutoff, gamma_intra, gamma_inter)
        m.compute_gnm_phonons()

    st.run('phonons', phonons)
    st.run('covariance', m.compute_covariance_matrix)
    Id = st.run('apply_disorder', lambda: m.apply_disorder(use_data_adp=spec['use_data_adp']))
    process_s = time.time() - float(spawned)
    np.save(out + '/map.npy', Id)
    with open(out + '/times.json', 'w') as f:
        json.dump({'times': st.times, 'memory': st.memory, 'peak_rss_mib': st.peak_mib(),
                   'process_s': process_s, 'numpy': np.__version__, 'blas': numpy_blas()}, f)
    """
)

# Runs in a fresh interpreter of the port's environment (cases marked fresh): run_port with the
# same probes; writes times, memory and, unless the spec says not to, the map.
PORT_DRIVER = MEMORY_PROBES + textwrap.dedent(
    """
    root, spec, out, spawned = sys.argv[1:5]
    spec = json.loads(spec)
    sys.path.insert(0, root + '/benchmarks')
    import numpy as np
    import bench_onephonon as bench
    times, Id, memory, peak = bench.run_port(spec['pdb'], spec['sampling'], spec['dtype'], spec['device'],
                                             gnm=spec['gnm'], use_data_adp=spec['use_data_adp'],
                                             res_limit=spec['res_limit'], stages=Stages)
    process_s = time.time() - float(spawned)
    if spec['save_map']:
        np.save(out + '/map.npy', Id)
    with open(out + '/times.json', 'w') as f:
        json.dump({'times': times, 'memory': memory, 'peak_rss_mib': peak, 'process_s': process_s,
                   'nan_count': int(np.isnan(Id).sum()), 'voxels': int(Id.size)}, f)
    """
)


def _spec(case: dict, folder: Path) -> dict:
    return {"pdb": str(folder / case["pdb"]), "sampling": case["sampling"], "gnm": case["gnm"],
            "use_data_adp": case["use_data_adp"], "res_limit": case["res_limit"]}


def _run_child(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}, {' '.join(cmd[:2])} ...):\n{done.stderr[-3000:]}")


def run_eryx(eryx: str, python: str, spec: dict, n_processes: int) -> tuple[dict, np.ndarray]:
    """eryx in a fresh process: its report (times, memory, peak_rss_mib, process_s, numpy) and its map."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python, "-c", ERYX_DRIVER, eryx, json.dumps(spec), str(n_processes), tmp, repr(time.time())]
        _run_child(cmd, "eryx run")
        with open(os.path.join(tmp, "times.json")) as f:
            report = json.load(f)
        return report, np.load(os.path.join(tmp, "map.npy"))


def run_port_fresh(spec: dict, dtype: str, device: str, save_map: bool) -> tuple[dict, np.ndarray | None]:
    """The port in a fresh process of this interpreter: its report and, if save_map, its map."""
    spec = dict(spec, dtype=dtype, device=device, save_map=save_map)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", PORT_DRIVER, str(ROOT), json.dumps(spec), tmp, repr(time.time())]
        _run_child(cmd, "port run")
        with open(os.path.join(tmp, "times.json")) as f:
            report = json.load(f)
        return report, (np.load(os.path.join(tmp, "map.npy")) if save_map else None)


def run_port(pdb, sampling, dtype: str, device: str, gnm=(4.0, 1.0, 1.0), use_data_adp=False, res_limit=0.0,
             stages=None):
    """The port's OnePhonon stage by stage: ``(times, map)``; given ``stages`` (the fresh driver's
    probe class) ``(times, map, memory per stage, peak MiB)``."""
    import torch

    from eryx_port.models import OnePhonon

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class _Timed:  # times only, for runs in this process
        def __init__(self, sync):
            self.times, self.sync = {}, sync

        def run(self, name, fn):
            t = time.perf_counter()
            out = fn()
            self.sync()
            self.times[name] = time.perf_counter() - t
            return out

    st = (stages or _Timed)(sync)
    cutoff, gamma_intra, gamma_inter = gnm
    m = OnePhonon.__new__(OnePhonon)
    # the attributes OnePhonon.__init__ sets, then its stages one by one, timed
    m.hsampling, m.ksampling, m.lsampling = (tuple(s) for s in sampling)
    m._sampling = tuple(tuple(s) for s in sampling)
    m.batch_size, m.n_processes = 10000, 1
    m.dtype, m.device = getattr(torch, dtype), torch.device(device)
    m.lever_arms, m.progress = "eryx", False
    m._xyz_override = m._adp_override = None
    st.run("setup", lambda: m._setup(str(pdb), True, float(res_limit), "asu"))

    def phonons():
        m._build_A()
        m._build_M()
        m._build_kvec_Brillouin()
        m._setup_gnm(str(pdb), cutoff, gamma_intra, gamma_inter)
        m.compute_gnm_phonons()

    st.run("phonons", phonons)
    st.run("covariance", m.compute_covariance_matrix)
    Id = st.run("apply_disorder", lambda: m.apply_disorder(use_data_adp=use_data_adp))
    Id = Id.detach().cpu().double().numpy()
    if stages is None:
        return st.times, Id
    return st.times, Id, st.memory, st.peak_mib()


def extrapolate_eryx(small: dict, small_sampling, sub: dict, sub_sampling, target) -> dict:
    """eryx's stage times and peak memory on grid ``target``, from its runs on two smaller grids.

    All three grids have the same oversampling (k-vectors), so phonons and covariance cost the same
    on each (the values of ``sub`` are kept). setup and apply_disorder (a loop over the k-vectors,
    each with its share of the q-points), and the resident memory at each stage's start, end and
    peak, are taken as linear in the voxel count, through the two measured points: the fixed part
    (interpreter, model, the GNM's all-atom Hessian) is kept, the per-voxel part (grids, mask, map,
    per-k work) scaled.
    """
    if not n_kvecs(small_sampling) == n_kvecs(sub_sampling) == n_kvecs(target):
        raise ValueError("extrapolation needs the same k-vector grid (oversampling) on every grid")
    n0, n1, n = n_voxels(small_sampling), n_voxels(sub_sampling), n_voxels(target)

    def lin(v0, v1):
        return max(v1, v1 + (v1 - v0) * (n - n1) / (n1 - n0))

    times = dict(sub["times"])
    for s in ("setup", "apply_disorder"):
        times[s] = lin(small["times"][s], sub["times"][s])
    peaks = [lin(small["memory"][s]["peak_mib"], sub["memory"][s]["peak_mib"]) for s in STAGES
             if (small.get("memory") or {}).get(s, {}).get("peak_mib") is not None
             and (sub.get("memory") or {}).get(s, {}).get("peak_mib") is not None]
    return {"times": times, "voxel_ratio": n / n1, "peak_rss_mib": max(peaks) if len(peaks) == len(STAGES) else None}


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


def torch_blas() -> str:
    """The BLAS torch was built with (its first line in torch.__config__), and ATen's vector instruction set."""
    import torch

    lines = [ln.strip(" -") for ln in torch.__config__.show().splitlines()]
    blas = next((ln.split(" for ")[0] for ln in lines if "Math Kernel Library" in ln or "OpenBLAS" in ln), "unknown BLAS")
    capability = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("CPU capability usage")), "?")
    return f"{blas}; ATen CPU capability {capability}"


def _gib(mib) -> str:
    return "-" if mib is None else f"{mib / 1024:.2f} GiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eryx", required=True, help="path to an eryx checkout (git clone https://github.com/apeck12/eryx)")
    parser.add_argument("--eryx-python", default=sys.executable, help="interpreter with eryx's dependencies (numpy<2.4, gemmi 0.6.x)")
    parser.add_argument("--n-processes", type=int, default=1, help="eryx's n_processes (default 1)")
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated cases among {list(CASES)} (default: {','.join(DEFAULT_CASES)}; "
                             "'paper' is opt-in and brings in 6o2h-sub for eryx's extrapolation)")
    parser.add_argument("--repeat", type=int, default=1, help="port runs per case; the fastest counts (default 1)")
    parser.add_argument("--eryx-repeat", type=int, default=1,
                        help="eryx runs per case, each in a fresh process; the fastest counts, as for the port (default 1)")
    parser.add_argument("--fresh", action="store_true", help="run the port of every case in a fresh process (always so for 6o2h-sub and paper)")
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
    for key in list(names):  # the cases an extrapolation needs run first
        source = CASES[key].get("eryx_from")
        if source and source not in names[: names.index(key)]:
            if source in names:
                names.remove(source)
            names.insert(names.index(key), source)

    if not all(CASES[k]["fresh"] or args.fresh for k in names):
        # warm-up: first calls of torch's linear algebra and kernels, not part of any in-process case
        run_port(folder / "5zck.pdb", ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2)), args.dtype, args.device)

    rows, errors, eryx_numpy, eryx_blas, memory, process, eryx_reports, notes = [], {}, None, None, {}, {}, {}, {}
    runs = {}  # every run's total (s) per case and side, in the order they ran
    for key in names:
        case = CASES[key]
        name, spec = case["name"], _spec(case, folder)
        fresh = case["fresh"] or args.fresh
        source = case.get("eryx_from")
        if source:
            small, _ = run_eryx(args.eryx, args.eryx_python, dict(spec, sampling=case["eryx_small"]), args.n_processes)
            ext = extrapolate_eryx(small, case["eryx_small"], eryx_reports[source], CASES[source]["sampling"],
                                   case["sampling"])
            eryx_t, eryx_map, eryx_peak = ext["times"], None, ext["peak_rss_mib"]
            eryx_process = None
            notes[name] = (f"eryx {EXTRAPOLATED}: setup, apply_disorder and peak memory linear in the voxels "
                           f"through eryx's runs on {CASES[source]['name']} and on "
                           f"{','.join(str(tuple(x)) for x in case['eryx_small'])} in this run "
                           f"({ext['voxel_ratio']:.0f}x the voxels of the first); phonons and covariance as measured")
        n_port = max(1, min(args.repeat, case.get("max_repeat", args.repeat)))  # the paper grid: once
        n_eryx = 0 if source else max(1, args.eryx_repeat)
        best, port_map, port_report, report, eryx_map = None, None, None, None, None
        runs[name] = {"eryx_total_s": [], "port_total_s": []}
        # eryx and the port take turns, so that both meet the same state of the machine (runs minutes
        # apart differ by 30% or more on a shared VM); each side's fastest run counts
        for i in range(max(n_port, n_eryx)):
            if i < n_eryx:
                rep_e, map_e = run_eryx(args.eryx, args.eryx_python, spec, args.n_processes)
                runs[name]["eryx_total_s"].append(sum(rep_e["times"][s] for s in STAGES))
                if report is None or sum(rep_e["times"][s] for s in STAGES) < sum(report["times"][s] for s in STAGES):
                    report, eryx_map = rep_e, map_e
            if i >= n_port:
                continue
            if fresh:
                rep, pmap = run_port_fresh(spec, args.dtype, args.device, save_map=eryx_map is not None)
                t = dict(rep["times"])
            else:
                rep, (t, pmap) = None, run_port(folder / case["pdb"], case["sampling"], args.dtype, args.device,
                                                gnm=case["gnm"], use_data_adp=case["use_data_adp"],
                                                res_limit=case["res_limit"])
            runs[name]["port_total_s"].append(sum(t[s] for s in STAGES))
            if best is None or sum(t.values()) < sum(best.values()):
                best, port_map, port_report = t, pmap, rep
        if not source:
            eryx_reports[key], eryx_numpy, eryx_blas = report, report["numpy"], report.get("blas")
            eryx_t, eryx_peak, eryx_process = dict(report["times"]), report["peak_rss_mib"], report["process_s"]
        eryx_t["total"], best["total"] = sum(eryx_t[s] for s in STAGES), sum(best[s] for s in STAGES)
        stages = STAGES + ("total",)
        if port_report is not None:
            best["process"] = port_report["process_s"]
            eryx_t["process"] = eryx_process
            stages += ("process",)
            memory[name] = {"eryx": eryx_peak, "port": port_report["peak_rss_mib"],
                            "eryx_extrapolated": bool(source), "port_stages": port_report["memory"]}
            if not source:
                memory[name]["eryx_stages"] = eryx_reports[key]["memory"]
            process[name] = {"eryx": eryx_process, "port": port_report["process_s"]}
        if eryx_map is not None:
            errors[name] = max_rel_err(port_map, eryx_map)
            print(f"\n{name}: max rel err of the map {errors[name]:.2e}"
                  f" (NaN at the same places: {bool((np.isnan(port_map) == np.isnan(eryx_map)).all()) if port_map.shape == eryx_map.shape else False})")
        else:
            print(f"\n{name}: {notes[name]}; port map: {port_report['voxels'] if port_report else '?'} voxels, "
                  f"{port_report['nan_count'] if port_report else '?'} NaN")
        print(f"  {'stage':<15}{'eryx s':>12}{'port s':>10}{'ratio':>9}")
        for stage in stages:
            e, p = eryx_t.get(stage), best[stage]
            ratio = None if e is None else (e / p if p > 0 else float("inf"))
            row = {"case": name, "stage": stage, "eryx_s": e, "port_s": p, "ratio": ratio}
            if source and e is not None:
                row["eryx_extrapolated"] = True
            rows.append(row)
            mark = "~" if source and e is not None else ""
            print(f"  {stage:<15}{mark + ('-' if e is None else f'{e:.3f}'):>12}{p:>10.3f}"
                  f"{'-' if ratio is None else f'{ratio:.1f}x':>9}")
        if name in memory:
            m = memory[name]
            print(f"  peak RSS: eryx {_gib(m['eryx'])}{' (' + EXTRAPOLATED + ')' if source else ''}, port {_gib(m['port'])}")

    result = {
        "machine": cpu_name() + (f", {args.device}" if args.device != "cpu" else ""),
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_onephonon.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "torch_blas": torch_blas(),
        "numpy": np.__version__,
        "eryx_numpy": eryx_numpy,
        "eryx_blas": eryx_blas,
        "dtype": args.dtype,
        "eryx_n_processes": args.n_processes,
        "repeats": {"port": args.repeat, "eryx": args.eryx_repeat, "order": "eryx and port runs alternate"},
        "runs_total_s": runs,
        "torch_threads": torch.get_num_threads(),
        "cases": rows,
        "max_rel_err": errors,
        "peak_rss_mib": memory,
        "process_s": process,
        "notes": notes,
    }
    _keep_other_benchmarks(result, Path(args.out))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


def _keep_other_benchmarks(result: dict, path: Path) -> None:
    """Carry over the rows other scripts merged into ``path`` (bench_models.py: the other models' cases,
    their map agreement and note), so that this script rewrites only the one-phonon cases."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    ours = {c["name"] for c in CASES.values()}
    others = [r for r in old.get("cases", []) if r.get("case") not in ours]
    result["cases"] = result["cases"] + others
    labels = {r.get("case") for r in others}
    result["max_rel_err"].update({k: v for k, v in (old.get("max_rel_err") or {}).items() if k in labels})
    if "models" in (old.get("notes") or {}):
        result["notes"]["models"] = old["notes"]["models"]


if __name__ == "__main__":
    raise SystemExit(main())
