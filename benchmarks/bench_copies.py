# SPDX-License-Identifier: GPL-2.0-or-later
"""The one-phonon map with the ASUs' structure factors derived from copy 0's (eryx_port.copy_symmetry) against
every ASU computed by the engine: same model, same process, runs interleaved, the fastest of ``--repeat`` counts.

Usage::

    python benchmarks/bench_copies.py [--repeat 5] [--out benchmarks/copies.json]

Cases: 5zck (P 21 21 21: 3 of 4 ASUs derived), 193l (lysozyme, P 43 21 2: 7 of 8) and 7n2h (P 31: its 3-fold
axis mixes h and k, nothing derived; a control). Each row gives both times, the ratio and the largest
difference of the maps over their largest value (NaN at the same places).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CASES = {
    "5zck (-12,12,3)x3": ("5zck.pdb", ((-12, 12, 3),) * 3),
    "193l (-8,8,3)x3": ("193l.pdb", ((-8, 8, 3),) * 3),
    "7n2h (-18,18,5)x2,(-5,5,5)": ("7n2h.pdb", ((-18, 18, 5), (-18, 18, 5), (-5, 5, 5))),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(HERE / "copies.json"))
    args = parser.parse_args(argv)

    import torch

    from bench_onephonon import cpu_name, torch_blas
    from eryx_port import copy_symmetry, diffuse
    from eryx_port.models import OnePhonon
    from trace_tools.paths import pdb_dir

    rows = []
    for name, (pdb, sampling) in CASES.items():
        model = OnePhonon(str(pdb_dir() / pdb), *sampling, progress=False)
        A_inv = model.model.A_inv.to(torch.float64)
        _, copies = diffuse._layout_and_copies(model._axes, 4 * math.pi**2 * A_inv @ A_inv.T, A_inv, model.model.xyz,
                                               model._arms, model.ADP)
        times, maps = {True: [], False: []}, {}
        for _ in range(args.repeat + 1):  # the first round warms up both
            for enabled in (True, False):
                copy_symmetry.ENABLED = enabled
                t = time.perf_counter()
                maps[enabled] = model.apply_disorder().numpy()
                times[enabled].append(time.perf_counter() - t)
        copy_symmetry.ENABLED = True
        a, b = maps[True], maps[False]
        finite = ~np.isnan(b)
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{name}: NaN at different places"
        err = float(np.abs(a - b)[finite].max() / np.abs(b[finite]).max())
        derived_s, computed_s = min(times[True][1:]), min(times[False][1:])
        rows.append({"case": name, "space_group": model.model.space_group, "n_asu": int(model.n_asu),
                     "derived_copies": len(copies), "voxels": int(a.size), "every_copy_s": computed_s,
                     "derived_s": derived_s, "ratio": computed_s / derived_s, "max_rel_diff": err})
        print(f"{name:30s} {model.model.space_group:10s} {len(copies)}/{model.n_asu - 1} derived  "
              f"every copy {computed_s:.3f} s  derived {derived_s:.3f} s  {computed_s / derived_s:.2f}x  map diff {err:.1e}")
    report = {"machine": cpu_name(), "blas": torch_blas(), "date": datetime.date.today().isoformat(),
              "command": "python benchmarks/bench_copies.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "dtype": "float64", "cases": rows}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
