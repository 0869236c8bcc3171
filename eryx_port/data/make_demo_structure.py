#!/usr/bin/env python
"""Build the small demo structure bundled with eryx-port (eryx_port/data/demo_peptide.pdb).

The structure is synthetic: a seven-residue peptide (Ala-Ser-Val-Thr-Ala-Val-Gly) built as
an ideal beta strand from standard bond lengths, bond angles and torsions, then packed in a
P 21 21 21 cell.  The short a axis (4.8 A) stacks the strands into a parallel sheet, as in
amyloid-like microcrystals; the b and c lengths and the strand's orientation and position
come from a small seeded search that keeps every symmetry copy at least 2.7 A away while
touching as many copies within 4 A (the default GNM cutoff) as possible, and checks that
the contacts join all molecules of a block of cells, so that the elastic network holds
the whole lattice together (no free rigid-body modes away from the Bragg peaks).  B-factors grow with the distance from the
backbone.  Nothing here is taken from a deposited entry.

Run from the repository root:  python eryx_port/data/make_demo_structure.py
(deterministic: the same file is written every time).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import gemmi
import numpy as np

OUT = Path(__file__).resolve().parent / "demo_peptide.pdb"
SPACE_GROUP = "P 21 21 21"
A_AXIS = 4.80  # inter-strand spacing in a beta sheet
MIN_CLASH = 2.7  # closest allowed approach between atoms of different copies (backbone N-H...O=C bonds are ~2.9 A)
CONTACT = 4.0  # eryx's default GNM cutoff

# Beta-strand backbone torsions (degrees) and ideal geometry (Angstrom, degrees).
PHI, PSI, OMEGA = -120.0, 130.0, 180.0
BOND = {"N-CA": 1.458, "CA-C": 1.525, "C-N": 1.329, "C-O": 1.231, "C-C": 1.530, "C-OG": 1.417}
ANGLE = {"N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "CA-C-O": 120.5, "X-CB-G": 110.5}

SEQUENCE = ["ALA", "SER", "VAL", "THR", "ALA", "VAL", "GLY"]
# gamma atoms: name, element, bond key, chi1 (degrees, N-CA-CB-G torsion)
SIDE_CHAINS = {
    "GLY": [],
    "ALA": [],
    "SER": [("OG", "O", "C-OG", 65.0)],
    "VAL": [("CG1", "C", "C-C", 175.0), ("CG2", "C", "C-C", -62.0)],
    "THR": [("OG1", "O", "C-OG", 60.0), ("CG2", "C", "C-C", -60.0)],
}


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """Position of atom d bonded to c, with angle b-c-d and torsion a-b-c-d (natural extension reference frame)."""
    ang, tor = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    local = bond * np.array([-np.cos(ang), np.sin(ang) * np.cos(tor), np.sin(ang) * np.sin(tor)])
    return c + local[0] * bc + local[1] * m + local[2] * n


def build_peptide() -> list[tuple[int, str, str, str, np.ndarray]]:
    """Atoms of the strand as (residue number, residue name, atom name, element, xyz)."""
    atoms = []
    n = np.array([0.0, 0.0, 0.0])
    ca = n + np.array([BOND["N-CA"], 0.0, 0.0])
    # any C that makes the right N-CA-C angle starts the chain
    t = np.radians(180.0 - ANGLE["N-CA-C"])
    c = ca + BOND["CA-C"] * np.array([np.cos(t), np.sin(t), 0.0])
    for i, name in enumerate(SEQUENCE):
        if i > 0:
            n = place(prev_n, prev_ca, prev_c, BOND["C-N"], ANGLE["CA-C-N"], PSI)
            ca = place(prev_ca, prev_c, n, BOND["N-CA"], ANGLE["C-N-CA"], OMEGA)
            c = place(prev_c, n, ca, BOND["CA-C"], ANGLE["N-CA-C"], PHI)
        res = [("N", "N", n), ("CA", "C", ca), ("C", "C", c)]
        # carbonyl O lies trans to the next N: torsion N-CA-C-O = psi + 180
        res.append(("O", "O", place(n, ca, c, BOND["C-O"], ANGLE["CA-C-O"], PSI + 180.0)))
        if name != "GLY":
            # L-chirality: CB on the side given by the N-C-CA-CB improper torsion
            cb = place(n, c, ca, BOND["C-C"], 110.1, 122.6)
            res.append(("CB", "C", cb))
            for gname, element, bond, chi1 in SIDE_CHAINS[name]:
                res.append((gname, element, place(n, ca, cb, BOND[bond], ANGLE["X-CB-G"], chi1)))
        if i == len(SEQUENCE) - 1:
            res.append(("OXT", "O", place(n, ca, c, BOND["C-O"], ANGLE["CA-C-O"], PSI)))
        atoms += [(i + 1, name, an, el, xyz) for an, el, xyz in res]
        prev_n, prev_ca, prev_c = n, ca, c
    return atoms


def check_chirality(atoms) -> None:
    by_res: dict[int, dict[str, np.ndarray]] = {}
    for resi, _, an, _, xyz in atoms:
        by_res.setdefault(resi, {})[an] = xyz
    for r in by_res.values():
        if "CB" in r:
            vol = np.dot(np.cross(r["N"] - r["CA"], r["C"] - r["CA"]), r["CB"] - r["CA"])
            assert vol > 2.0, "CB placed with D chirality"


def rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three Euler angles (z-y-x, radians)."""
    a, b, g = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(g), -np.sin(g)], [0, np.sin(g), np.cos(g)]])
    return rz @ ry @ rx


def symmetry_ops() -> list[tuple[np.ndarray, np.ndarray, str]]:
    """(rotation, fractional translation, triplet) of each operation of the space group."""
    ops = []
    for op in gemmi.SpaceGroup(SPACE_GROUP).operations():
        rot = np.array(op.rot, dtype=float) / op.DEN
        tran = np.array(op.tran, dtype=float) / op.DEN
        ops.append((rot, tran, op.triplet().upper()))
    return ops


def copies(frac: np.ndarray, ops) -> np.ndarray:
    """Fractional coordinates of every symmetry copy in the 27 cells around the origin, except the input itself:
    shape (n_copies, n_atoms, 3)."""
    shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=float)
    out = []
    for n_op, (rot, tran, _) in enumerate(ops):
        moved = frac @ rot.T + tran
        # bring the copy's centre into the cell [0, 1)
        moved -= np.floor(moved.mean(axis=0))
        for s in shifts:
            if n_op == 0 and not s.any():
                continue
            out.append(moved + s)
    return np.array(out)


def score(xyz: np.ndarray, cell: np.ndarray, ops) -> tuple[float, int, int]:
    """(closest approach, number of contacts, number of copies touched) for a placement."""
    uc = gemmi.UnitCell(*cell, 90, 90, 90)
    orth = np.array(uc.orth.mat.tolist())
    frac = xyz / cell
    others = copies(frac, ops) @ orth.T
    d = np.linalg.norm(xyz[None, :, None, :] - others[:, None, :, :], axis=-1)
    close = d < CONTACT
    return float(d.min()), int(close.sum()), int(close.any(axis=(1, 2)).sum())


def connected(xyz: np.ndarray, cell: np.ndarray, ops, n: int = 4) -> bool:
    """Whether the contacts (< CONTACT) join all molecules of an n x n x n block of cells into one network."""
    uc = gemmi.UnitCell(*cell, 90, 90, 90)
    orth = np.array(uc.orth.mat.tolist())
    frac = xyz / cell
    shifts = np.array([(i, j, k) for i in range(n) for j in range(n) for k in range(n)], dtype=float)
    mols = []
    for rot, tran, _ in ops:
        moved = frac @ rot.T + tran
        moved -= np.floor(moved.mean(axis=0))
        mols += [moved + s for s in shifts]
    mols = np.array(mols) @ orth.T  # (n_mol, n_atoms, 3)
    centres = mols.mean(axis=1)
    radius = np.linalg.norm(mols - centres[:, None], axis=-1).max()
    n_mol = len(mols)
    adjacency = np.zeros((n_mol, n_mol), dtype=bool)
    for i in range(n_mol):
        near = np.nonzero(np.linalg.norm(centres - centres[i], axis=1) < 2 * radius + CONTACT)[0]
        d = np.linalg.norm(mols[i][None, :, None] - mols[near][:, None], axis=-1)
        adjacency[i, near] = (d < CONTACT).any(axis=(1, 2))
    seen = np.zeros(n_mol, dtype=bool)
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adjacency[frontier].any(axis=0) & ~seen
        seen |= frontier
    return bool(seen.all())


def search(xyz0: np.ndarray, ops, n_trials: int, seed: int):
    """Seeded search: for random orientations about a, positions and b/c ratios, shrink the cell until the
    copies would clash; keep the densest connected packing."""
    rng = np.random.default_rng(seed)
    centred = xyz0 - xyz0.mean(axis=0)
    # principal axes: the thinnest direction of the strand (its N-H...O=C direction) goes along a
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    frame = axes[::-1]
    if np.linalg.det(frame) < 0:
        frame[0] *= -1  # a proper rotation: a mirror image would turn L into D residues
    centred = centred @ frame.T
    best = None
    for _ in range(n_trials):
        xyz = centred @ rotation(np.array([0.0, 0.0, rng.uniform(-np.pi, np.pi)])).T
        where = rng.uniform(0.0, 1.0, size=3)
        ratio = np.sqrt(rng.uniform(0.4, 2.5))
        found = None
        for size in np.arange(60.0, 10.0, -0.5):
            cell = np.array([A_AXIS, size * ratio, size / ratio])
            placed = xyz + where * cell
            closest, n_contacts, n_touched = score(placed, cell, ops)
            if closest < MIN_CLASH:
                break
            found = (placed, cell, closest, n_contacts, n_touched)
        if found is None:
            continue
        key = (found[4], found[3])
        if (best is None or key > best[0]) and connected(found[0], found[1], ops):
            best = (key, *found)
    if best is None:
        raise SystemExit("no clash-free connected packing found; raise --trials")
    return best[1:]


def smtry_safe(cell: np.ndarray, ops) -> np.ndarray:
    """Cell edges rounded to 0.01 A and nudged so that no SMTRY translation contains "555": eryx reads every
    REMARK 290 line holding "555" as a symmetry operator (the NNNMMM column), SMTRY lines included."""
    cell = np.round(cell, 2)
    while any("555" in f"{tran[row] * cell[row]:16.6f}" for _, tran, _ in ops for row in range(3)):
        cell = cell + np.array([0.0, 0.01, 0.01])
    return cell


def b_factors(atoms) -> np.ndarray:
    """Plausible isotropic B-factors: about 8 A^2 on the backbone, rising along each side chain."""
    extra = {"N": 0.0, "CA": 0.0, "C": 0.5, "O": 1.5, "OXT": 4.0, "CB": 2.5}
    b = [8.0 + extra.get(an, 5.0) + 0.4 * abs(resi - 4) for resi, _, an, _, _ in atoms]
    return np.round(np.array(b), 2)


def _triplet(rot: np.ndarray, tran: np.ndarray) -> str:
    parts = []
    for row in range(3):
        frac = Fraction(tran[row]).limit_denominator(12)
        text = f"{frac}" if frac else ""
        for axis, coef in zip("XYZ", rot[row]):
            if coef:
                text += ("-" if coef < 0 else ("+" if text else "")) + axis
        parts.append(text)
    return ",".join(parts)


def pdb_text(atoms, xyz: np.ndarray, cell: np.ndarray, bfac: np.ndarray, ops) -> str:
    lines = [
        "HEADER    SYNTHETIC PEPTIDE                                         XXXX",
        "TITLE     ERYX-PORT DEMO: IDEAL BETA STRAND ASVTAVG IN P 21 21 21",
        "REMARK   1 BUILT BY SCRIPTS/MAKE_DEMO_STRUCTURE.PY (ERYX-PORT), NOT AN",
        "REMARK   1 EXPERIMENTAL STRUCTURE.",
        "REMARK 290",
        f"REMARK 290 OPERATORS OF {SPACE_GROUP} (NNNMMM: OPERATOR NUMBER NNN, LATTICE SHIFT MMM)",
    ]
    # operators written translation first ('1/2-X'): same meaning, and eryx reads only the signs of X, Y, Z
    for i, (rot, tran, _) in enumerate(ops, start=1):
        lines.append(f"REMARK 290     {i:3d}555   {_triplet(rot, tran)}")
    lines += ["REMARK 290", "REMARK 290 THE SAME OPERATORS AS CARTESIAN MATRICES AND TRANSLATIONS (A)"]
    for i, (rot, tran, _) in enumerate(ops, start=1):
        for row in range(3):
            r = rot[row]
            # the cell is orthorhombic: fractional translations scale by the cell edges
            t = tran[row] * cell[row]
            lines.append(f"REMARK 290   SMTRY{row + 1} {i:3d}{r[0]:10.6f}{r[1]:10.6f}{r[2]:10.6f}{t:16.6f}")
    lines.append("REMARK 290")
    lines.append(
        f"CRYST1{cell[0]:9.3f}{cell[1]:9.3f}{cell[2]:9.3f}{90:7.2f}{90:7.2f}{90:7.2f} {SPACE_GROUP:<11s}{len(ops):4d}"
    )
    for row in range(3):
        s = [0.0, 0.0, 0.0]
        s[row] = 1.0 / cell[row]
        lines.append(f"SCALE{row + 1}    {s[0]:10.6f}{s[1]:10.6f}{s[2]:10.6f}     {0:10.5f}")
    for serial, ((resi, resn, an, el, _), pos, b) in enumerate(zip(atoms, xyz, bfac), start=1):
        name = f" {an:<3s}" if len(an) < 4 else an
        lines.append(
            f"ATOM  {serial:5d} {name} {resn:3s} A{resi:4d}    {pos[0]:8.3f}{pos[1]:8.3f}{pos[2]:8.3f}"
            f"{1.0:6.2f}{b:6.2f}          {el:>2s}"
        )
    last = atoms[-1]
    lines.append(f"TER   {len(atoms) + 1:5d}      {last[1]:3s} A{last[0]:4d}")
    lines.append("END")
    # eryx takes every REMARK 290 line holding "555" for an operator: only the operator lines may
    assert sum("555" in line for line in lines) == len(ops)
    return "\n".join(line.ljust(80) for line in lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help=f"file to write (default {OUT})")
    parser.add_argument("--trials", type=int, default=120, help="placements tried by the packing search")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    atoms = build_peptide()
    check_chirality(atoms)
    ops = symmetry_ops()
    xyz, cell, closest, n_contacts, n_touched = search(np.array([a[4] for a in atoms]), ops, args.trials, args.seed)
    cell = smtry_safe(cell, ops)
    closest, n_contacts, n_touched = score(xyz, cell, ops)
    assert closest >= MIN_CLASH - 0.05 and connected(xyz, cell, ops)
    text = pdb_text(atoms, xyz, cell, b_factors(atoms), ops)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)

    st = gemmi.read_structure(str(args.out))  # the file must read back
    assert st.cell.is_crystal() and st[0].count_atom_sites() == len(atoms)
    print(
        f"wrote {args.out}: {len(atoms)} atoms, cell {cell[0]:.3f} {cell[1]:.3f} {cell[2]:.3f} {SPACE_GROUP}, "
        f"closest approach {closest:.2f} A, {n_contacts} contacts < {CONTACT} A with {n_touched} copies"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
