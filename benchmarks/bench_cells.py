# SPDX-License-Identifier: GPL-2.0-or-later
"""Per-voxel cost of the one-phonon map on a triclinic cell against an orthogonal one, same atoms and grid.

The structure file is read twice: as it is (6o2h_clean: P 1, alpha/beta/gamma 88.66/108.46/111.88 degrees,
every pair of axes coupled in the metric) and with its CRYST1 angles set to 90 degrees (written to a
temporary copy without its SCALE records; the atoms' Cartesian coordinates are unchanged). Both models run
``apply_disorder(use_data_adp=True)`` on the same Miller-index grid; the ratio of the times is the price
of the metric's cross terms. Best of ``--repeat`` runs in this process.

    python benchmarks/bench_cells.py                  # 6o2h-sub grid and a 1e7-voxel grid
    python benchmarks/bench_cells.py --out benchmarks/cells.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GRIDS = {
    "6o2h-sub": ((-3, 3, 13), (-4, 4, 11), (-4, 4, 11)),
    "1e7": ((-8, 8, 13), (-10, 10, 11), (-11, 11, 11)),
}


def orthogonal_copy(pdb: Path, folder: str) -> Path:
    """The file with its CRYST1 angles set to 90 degrees (columns 34-54 of the record) and no SCALE records
    (gemmi would take the triclinic fractionalisation from them)."""
    lines = pdb.read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        if line.startswith("SCALE"):
            continue
        if line.startswith("CRYST1"):
            line = line[:33] + f"{90.0:7.2f}{90.0:7.2f}{90.0:7.2f}" + line[54:]
        out.append(line)
    path = Path(folder) / pdb.name
    path.write_text("".join(out))
    return path


def best_time(model, repeat: int) -> float:
    model.apply_disorder(use_data_adp=True)  # first call: lazy set-up, not the per-voxel cost
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        model.apply_disorder(use_data_adp=True)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdb-dir", default=os.environ.get("ERYX_PORT_PDB_DIR", str(ROOT.parent / "shared" / "pdbs")))
    parser.add_argument("--grids", default=",".join(GRIDS), help=f"comma-separated, of {', '.join(GRIDS)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()

    import torch

    from eryx_port.models import OnePhonon

    pdb = Path(args.pdb_dir) / "6o2h_clean.pdb"
    if not pdb.exists():
        print(f"{pdb} not found (set ERYX_PORT_PDB_DIR)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ortho = orthogonal_copy(pdb, tmp)
        for name in args.grids.split(","):
            sampling = GRIDS[name]
            times = {}
            for cell, path in (("triclinic", pdb), ("orthogonal", ortho)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = OnePhonon(str(path), *sampling, gnm_cutoff=4.0, gamma_intra=2.0, gamma_inter=1.0,
                                      progress=False)
                times[cell] = best_time(model, args.repeat)
                voxels = model.map_shape[0] * model.map_shape[1] * model.map_shape[2]
            row = {"grid": name, "voxels": voxels, "triclinic_s": times["triclinic"], "orthogonal_s": times["orthogonal"],
                   "ratio": times["triclinic"] / times["orthogonal"],
                   "triclinic_ns_per_voxel": 1e9 * times["triclinic"] / voxels,
                   "orthogonal_ns_per_voxel": 1e9 * times["orthogonal"] / voxels}
            rows.append(row)
            print(f"{name:>9} {voxels:>10} voxels  triclinic {row['triclinic_s']:.3f} s  orthogonal "
                  f"{row['orthogonal_s']:.3f} s  ratio {row['ratio']:.2f}", flush=True)
    if args.out:
        from bench_onephonon import cpu_name, torch_blas

        report = {"machine": cpu_name(), "blas": torch_blas(), "cpus": os.cpu_count(),
                  "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
                  "command": "python benchmarks/bench_cells.py" + (f" --grids {args.grids}" if args.grids != ",".join(GRIDS) else ""),
                  "rows": rows}
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
