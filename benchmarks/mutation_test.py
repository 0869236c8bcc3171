# SPDX-License-Identifier: GPL-2.0-or-later
"""Mutation test of the parity harness: plant known faults in a copy of the port, one at a time,
and check that the parity suite catches every one.

    python benchmarks/mutation_test.py              # every fault (about 6 minutes each on 2 cores)
    python benchmarks/mutation_test.py --list       # the faults, and whether each snippet is found
    python benchmarks/mutation_test.py -k rb        # faults whose name contains "rb"

Each fault is a text substitution (file, exact old snippet, new snippet). The repository is copied
to a temporary folder, the fault is planted there and ``pytest tests/test_parity.py -x -q -n 2`` runs
in the copy (imported first through PYTHONPATH; traces copied, test structures read in place). The
table says whether the suite failed (caught) and by which test. A snippet that is not found is reported loudly
and counts as a failure of this script: the faults must follow the code they target.
Not run by CI (slow); exit status 1 when a fault is not caught or not planted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Copied without these (generated); the test structures are read in place ($ERYX_PORT_PDB_DIR).
_SKIP = {".git", "build", "progress", "__pycache__", ".pytest_cache", "eryx_port.egg-info"}


@dataclass(frozen=True)
class Fault:
    name: str
    file: str
    old: str
    new: str
    description: str


FAULTS = (
    Fault(
        "form-factor sign, shortcut path", "eryx_port/scatter.py",
        "return _gaussian_sum(s2, distinct[:, :n], distinct[:, n : 2 * n], distinct[:, 2 * n])[:, inverse]",
        "return -_gaussian_sum(s2, distinct[:, :n], distinct[:, n : 2 * n], distinct[:, 2 * n])[:, inverse]",
        "sign flip in the no-grad form-factor shortcut (torch.unique)",
    ),
    Fault(
        "form-factor sign, gradient path", "eryx_port/scatter.py",
        "    return _gaussian_sum(s2, a, b, c)\n",
        "    return (-1 if a.requires_grad else 1) * _gaussian_sum(s2, a, b, c)\n",
        "sign flip in the form factors only when coefficients require grad",
    ),
    Fault(
        "structure-factor Debye-Waller", "eryx_port/scatter.py",
        "amp = amp * torch.exp(-0.5 * (q * q).sum(dim=1, keepdim=True) * u)",
        "amp = amp * torch.exp(-0.5 * 1.001 * (q * q).sum(dim=1, keepdim=True) * u)",
        "Debye-Waller exponent of structure_factors scaled by 1.001",
    ),
    Fault(
        "map Debye-Waller, GNM ADP", "eryx_port/models/onephonon.py",
        "            U = self.ADP\n",
        "            U = 1.001 * self.ADP\n",
        "Debye-Waller factor of the diffuse map (GNM ADP) scaled by 1.001",
    ),
    Fault(
        "map Debye-Waller, data ADP", "eryx_port/models/onephonon.py",
        "U = self.model.adp[0] / (8 * math.pi**2)",
        "U = 1.001 * self.model.adp[0] / (8 * math.pi**2)",
        "Debye-Waller factor of the diffuse map (data B-factors) scaled by 1.001",
    ),
    Fault(
        "dropped GNM contact", "eryx_port/gnm.py",
        "    i, j = i[keep], j[keep]\n",
        "    i, j = i[keep][:-1], j[keep][:-1]\n",
        "the last atom pair of the GNM contact list is dropped",
    ),
    Fault(
        "rotated GNM modes", "eryx_port/models/onephonon.py",
        "        V, Winv = phonons.phonon_modes(self._K, self._Linv64)\n",
        "        V, Winv = phonons.phonon_modes(self._K, self._Linv64)\n"
        "        V = V.clone()\n"
        "        V[..., [3, 4]] = torch.stack([V[..., 3] + V[..., 4], V[..., 4] - V[..., 3]], dim=-1) / 2**0.5\n",
        "GNM modes 3 and 4 (distinct) rotated into each other by 45 degrees",
    ),
    Fault(
        "swapped adjacent GNM modes", "eryx_port/models/onephonon.py",
        "        V, Winv = phonons.phonon_modes(self._K, self._Linv64)\n",
        "        V, Winv = phonons.phonon_modes(self._K, self._Linv64)\n"
        "        V = V[..., [0, 2, 1] + list(range(3, V.shape[-1]))]\n",
        "GNM modes 1 and 2 swapped (the 7n2h acoustic pair 1.4% apart at k != 0)",
    ),
    Fault(
        "rotated rb identity", "eryx_port/models/onephonon.py",
        "        self.V = eye.expand(weight.shape + (n, n)).clone()\n",
        "        eye = eye.clone()\n"
        "        eye[:2, :2] = torch.tensor([[1.0, -1.0], [1.0, 1.0]], dtype=eye.dtype) / 2**0.5\n"
        "        self.V = eye.expand(weight.shape + (n, n)).clone()\n",
        "'rb' modes: the identity rotated by 45 degrees in its first two columns",
    ),
    Fault(
        "covariance scale", "eryx_port/models/onephonon.py",
        "self.covar = (covar.real * scale).reshape(",
        "self.covar = (covar.real * scale * 1.0001).reshape(",
        "stored covariance scaled by 1.0001 after the ADP is taken from it (scaling before would cancel)",
    ),
    Fault(
        "full-rank map sign", "eryx_port/models/onephonon.py",
        "        B = torch.linalg.solve_triangular(L, eye.expand(K.shape), upper=False).mH\n",
        "        B = torch.linalg.solve_triangular(L, eye.expand(K.shape), upper=False).mH\n"
        "        B = torch.cat([B[..., :1] * 1.001, B[..., 1:]], dim=-1)\n",
        "full-rank GNM map (Cholesky path): first contraction column scaled by 1.001",
    ),
    Fault(
        "engine cross-term series", "eryx_port/grid_factors.py",
        "shared = torch.exp(-U_mid * dg[sel][:, :, None] * dh)",
        "shared = torch.exp(-1.001 * U_mid * dg[sel][:, :, None] * dh)",
        "structure-factor engine: the metric's cross term (coupled cells) scaled by 1.001 in its centred factor",
    ),
    Fault(
        "engine row coupling", "eryx_port/grid_factors.py",
        "q_rows = G[a1, a1] * h1**2 + G[a2, a2] * h2**2 + 2 * G[a1, a2] * h1 * h2",
        "q_rows = G[a1, a1] * h1**2 + G[a2, a2] * h2**2 + 2 * 1.001 * G[a1, a2] * h1 * h2",
        "structure-factor engine: the cross term between the two row axes scaled by 1.001",
    ),
    Fault(
        "Friedel mirror", "eryx_port/diffuse.py",
        "Sm = S.flip(2, 3, 4).conj()",
        "Sm = S.flip(2, 3, 4)",
        "mirrored half of a symmetric grid read without the complex conjugate (Friedel's law broken)",
    ),
    Fault(
        "intensity mirror", "eryx_port/diffuse.py",
        "Im = I.flip(0, 1, 2).narrow(",
        "Im = I.flip(0, 1).narrow(",
        "all-mode map: the mirrored half reflected on two axes of three",
    ),
    Fault(
        "centrosymmetry check", "eryx_port/models/onephonon.py",
        "if not torch.equal(nan_class, nan_class[partner]):\n            return False",
        "if True:\n            return True",
        "the check that k and -k have conjugate operators always passes (eryx's 'rb' map is not symmetric)",
    ),
    Fault(
        "k-vector class offset", "eryx_port/diffuse.py",
        "pre = tuple(o % s for o, s in zip(offsets, sampling))",
        "pre = tuple((o + (o > 0)) % s for o, s in zip(offsets, sampling))",
        "contraction: boxes after the first paired with the next k-vector class",
    ),
    Fault(
        "class-major partial period", "eryx_port/diffuse.py",
        "pieces.append((slice(whole * period, n), slice(whole, whole + 1), slice(0, rest), (1, rest)))",
        "pieces.append((slice(whole * period, n), slice(whole, whole + 1), slice(period - rest, period), (1, rest)))",
        "class-major contraction: an axis's partial last period put in its last classes instead of its first",
    ),
    Fault(
        "resolution skip: bound too tight", "eryx_port/grid_factors.py",
        "q_max**2 * (1 + 1e-6)",
        "q_max**2 * 0.8",
        "blocks and rows within a resolution limit taken as beyond it (their sums left zero)",
    ),
    Fault(
        "resolution skip: block test", "eryx_port/grid_factors.py",
        "((lo_need[sel] <= vf.max()) & (hi_need[sel] >= vf.min())).any()",
        "((lo_need[sel] <= vf.min()) & (hi_need[sel] >= vf.max())).any()",
        "a column block computed only when wholly within the limit: partly covered blocks left zero",
    ),
    Fault(
        "Gauss product: imaginary part", "eryx_port/grid_factors.py",
        "    im = t3.sub_(t1).sub_(t2)  # in place",
        "    im = t3.sub_(t1).add_(t2)  # in place",
        "coupled cells' products per term as three real products: the imaginary part with a wrong sign of one product",
    ),
    Fault(
        "copy symmetry: column phase", "eryx_port/copy_symmetry.py",
        "[:, :, None] + tf * cols)",
        "[:, :, None] - tf * cols)",
        "derived copies: the translation's phase along the column axis with the wrong sign",
    ),
    Fault(
        "copy symmetry: reversed column", "eryx_port/copy_symmetry.py",
        "    if cmap.conj:\n        src = src.conj()",
        "    if False:\n        src = src.conj()",
        "derived copies: an operation that reverses the column axis read without the conjugate",
    ),
)


def _copy_repo(dest: Path) -> None:
    def ignore(folder, names):
        return {n for n in names if n in _SKIP or n.endswith(".pyc")}

    shutil.copytree(REPO, dest, ignore=ignore, dirs_exist_ok=True)


def plant(root: Path, fault: Fault) -> bool:
    """Apply ``fault`` under ``root``; False when its snippet is not found exactly once."""
    path = root / fault.file
    text = path.read_text(encoding="utf-8")
    if text.count(fault.old) != 1:
        return False
    path.write_text(text.replace(fault.old, fault.new), encoding="utf-8")
    return True


def _env(root: Path) -> dict:
    from trace_tools.paths import pdb_dir  # the original's test structures, read in place

    env = dict(os.environ)
    env.update(ERYX_PORT_PDB_DIR=str(pdb_dir()), PYTHONPATH=str(root))
    return env


def run_suite(root: Path, timeout: int) -> tuple[bool, str]:
    """(caught, by which test) for the parity suite run in ``root``."""
    cmd = [sys.executable, "-m", "pytest", "tests/test_parity.py", "-x", "-q", "-n", "2", "-p", "no:randomly",
           "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(cmd, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout} s"
    failed = re.findall(r"^FAILED (\S+)", done.stdout, flags=re.MULTILINE)
    if done.returncode == 0:
        return False, "all passed"
    return True, failed[0] if failed else f"pytest exit {done.returncode}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the faults and check their snippets")
    parser.add_argument("-k", default="", help="only faults whose name contains this")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per parity run")
    args = parser.parse_args(argv)
    faults = [f for f in FAULTS if args.k in f.name]
    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="eryx-mutation-") as tmp:
        for fault in faults:
            root = Path(tmp) / re.sub(r"\W+", "-", fault.name)
            _copy_repo(root)
            if not plant(root, fault):
                print(f"!!! SNIPPET NOT FOUND (exactly once) in {fault.file} for fault {fault.name!r}", file=sys.stderr)
                rows.append((fault, "NOT PLANTED", "snippet not found"))
                bad += 1
                continue
            if args.list:
                rows.append((fault, "planted", ""))
                continue
            caught, by = run_suite(root, args.timeout)
            rows.append((fault, "caught" if caught else "NOT CAUGHT", by))
            bad += not caught
            print(f"{fault.name}: {rows[-1][1]} ({by})", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    print("\n| Fault | File | Outcome | First failing test |\n|---|---|---|---|")
    for fault, outcome, by in rows:
        print(f"| {fault.description} | {fault.file} | {outcome} | {by} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
