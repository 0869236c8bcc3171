# SPDX-License-Identifier: GPL-2.0-or-later
"""The one-phonon map within a resolution limit: the engine's work beyond the limit skipped, or not.

With ``res_limit`` > 0 the points beyond the limit are NaN in the map (as in eryx). The engine skips the
(row block, column block) pairs with no point inside and, on a coupled (triclinic) cell, leaves the rows
with no point inside out of its blocks. This script times ``apply_disorder`` on the same model both ways
(the other way by calling the map without the bound, as before the change) and checks that the maps are
the same. Best of ``--repeat`` runs in this process, after one call of each.

    python benchmarks/bench_resolution.py
    python benchmarks/bench_resolution.py --out benchmarks/resolution.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CASES = {  # name: (structure, grid, res_limit, use_data_adp)
    "6o2h triclinic": ("6o2h_clean.pdb", ((-6, 6, 13), (-7, 7, 11), (-8, 8, 11)), 4.6, True),
    "7n2h hexagonal": ("7n2h.pdb", ((-18, 18, 5), (-18, 18, 5), (-5, 5, 5)), 1.6, False),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    from bench_onephonon import cpu_name, torch_blas
    from eryx_port import diffuse
    from eryx_port.models import OnePhonon
    from trace_tools.paths import pdb_dir

    whole = diffuse.onephonon_map

    def without_bound(*a, **k):  # the map as before: every block computed, then masked
        return whole(*a, **{**k, "q_max": None})

    rows = []
    for name, (pdb, grid, res_limit, adp) in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = OnePhonon(str(pdb_dir() / pdb), *grid, res_limit=res_limit, progress=False)
        inside = float(model.res_mask.double().mean())
        times, maps = {}, {}
        for way, fn in (("skipped", whole), ("computed", without_bound)):
            diffuse.onephonon_map = fn
            try:
                maps[way] = model.apply_disorder(use_data_adp=adp)
                best = float("inf")
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    model.apply_disorder(use_data_adp=adp)
                    best = min(best, time.perf_counter() - t)
                times[way] = best
            finally:
                diffuse.onephonon_map = whole
        a, b = maps["skipped"], maps["computed"]
        finite = ~b.isnan()
        row = {"case": name, "voxels": int(b.numel()), "res_limit": res_limit, "inside": inside,
               "skipped_s": times["skipped"], "computed_s": times["computed"],
               "speedup": times["computed"] / times["skipped"],
               "same_nan": bool(torch.equal(a.isnan(), b.isnan())),
               "max_rel_diff": float(((a[finite] - b[finite]).abs() / b[finite].abs()).max())}
        rows.append(row)
        print(f"{name}: {row['voxels']} voxels, {100 * inside:.1f}% within {res_limit} A: skipped {row['skipped_s']:.2f} s, "
              f"computed {row['computed_s']:.2f} s ({row['speedup']:.2f}x); NaN same: {row['same_nan']}, "
              f"max rel diff {row['max_rel_diff']:.1e}", flush=True)
    if args.out:
        result = {"machine": cpu_name(), "blas": torch_blas(), "torch_threads": torch.get_num_threads(),
                  "date": time.strftime("%Y-%m-%d"), "command": "python benchmarks/bench_resolution.py "
                  + " ".join(argv if argv is not None else sys.argv[1:]), "rows": rows}
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
