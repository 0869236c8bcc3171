# SPDX-License-Identifier: GPL-2.0-or-later
"""The CLI's memory estimate against the measured peak, at five grid sizes from 1e4 to 2e8 q-points.

Each size runs ``eryx-port run -c CONFIG -t OnePhonon`` on eryx's example job (6o2h_clean, the paper's
oversampling 13/11/11, gnm_cutoff 4, gamma 2/1) in a fresh process under ``/usr/bin/time -v``; the
estimate is the one the CLI prints ("estimated peak memory"), the peak is the process's maximum
resident set size. The last size is the paper job itself (minutes). Usage::

    python benchmarks/bench_memory.py [--sizes 1e4,1e5,1e6,1e7,2e8] [--out benchmarks/memory.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trace_tools.paths import pdb_dir  # noqa: E402

# h, k, l extents (Miller units) giving about 1e4 .. 2e8 points at oversampling (13, 11, 11)
SIZES = {
    "1e4": ((-1, 1), (-1, 1), (-1, 1)),
    "1e5": ((-2, 2), (-2, 2), (-2, 2)),
    "1e6": ((-4, 4), (-5, 5), (-5, 5)),
    "1e7": ((-8, 8), (-10, 10), (-10, 10)),
    "2e8": ((-22.46153846153846, 22.46153846153846), (-27.454545454545453, 27.454545454545453), (-0.45454545454545453, 30.454545454545453)),
}
OVERSAMPLING = (13, 11, 11)
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def _config(folder: Path, extents) -> Path:
    lines = ["setup:", f"  root_dir: '{folder / 'root'}'", f"  pdb_path: '{pdb_dir() / '6o2h_clean.pdb'}'"]
    for axis, (lo, hi), n in zip("hkl", extents, OVERSAMPLING):
        lines.append(f"  {axis}sampling: [{lo!r}, {hi!r}, {n}]")
    lines += ["OnePhonon:", "  gnm_cutoff: 4", "  gamma_intra: 2", "  gamma_inter: 1"]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(name: str, extents) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-memory-{name}-") as tmp:
        cfg = _config(Path(tmp), extents)
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-v", sys.executable, "-m", "eryx_port.cli", "run", "-c", str(cfg), "-t", "OnePhonon"],
            capture_output=True, text=True, cwd=tmp,
        )
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name}: eryx-port failed:\n{proc.stdout}\n{proc.stderr}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) * 1024
    value, unit = re.search(r"estimated peak memory ([\d.]+) (\w+)", proc.stdout).groups()
    estimate = float(value) * _UNITS[unit]
    points = int(re.search(r"= (\d+) points", proc.stdout).group(1))
    return {"size": name, "points": points, "estimate_bytes": int(estimate), "peak_rss_bytes": peak,
            "ratio": estimate / peak, "wall_s": round(wall, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of " + ",".join(SIZES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "memory.json"))
    args = parser.parse_args(argv)
    rows = []
    print(f"{'size':>5} {'points':>11} {'estimate GiB':>13} {'peak GiB':>9} {'estimate/peak':>14} {'wall s':>8}")
    for name in args.sizes.split(","):
        row = measure(name, SIZES[name])
        rows.append(row)
        print(f"{name:>5} {row['points']:>11} {row['estimate_bytes'] / 2**30:>13.2f} {row['peak_rss_bytes'] / 2**30:>9.2f} "
              f"{row['ratio']:>14.2f} {row['wall_s']:>8.1f}", flush=True)
    from bench_onephonon import cpu_name

    Path(args.out).write_text(json.dumps({"machine": cpu_name(), "cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
