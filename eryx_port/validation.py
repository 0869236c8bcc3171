"""Checks of structures that parse but describe something a diffuse map cannot be computed from.

A file can be read without error and still be wrong: a NaN B-factor, a cell of zero volume, only waters,
models that differ, an element nobody knows, a crystal whose molecules never touch. Without these checks
such input gives a map of NaN (or a map that grows with |q|) and no word about why. Here:

* :class:`StructureError` (a ``ValueError``) refuses what cannot give a meaningful map, naming the file,
  the record (``ATOM 12 A/ALA 3/CB``) and the problem: non-finite coordinates, B-factors or occupancies;
  a cell with non-positive edges or angles that do not form a cell; no atoms left after eryx's cleaning;
  models of a multi-model file that differ in their atoms; coordinates beyond +-1e5 Angstrom; a rigid body
  without rotational inertia; a Gaussian network that does not hold the crystal together.
* :class:`StructureWarning` (a ``UserWarning``) says what is suspicious but still gives a map: negative
  (or huge) B-factors, unknown elements, zero occupancies, alternative conformations dropped, duplicate
  atoms at one position, and (:class:`FloppyNetworkWarning`) zero-frequency modes at a few k-vectors.

:func:`check_read_structure` runs on every structure read by :class:`eryx_port.pdb.AtomicModel`;
:func:`check_rigid_bodies` and :func:`check_network` run while :class:`eryx_port.models.OnePhonon`
is set up, before the (expensive) map. Valid structures pass without a sound and unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "FloppyNetworkWarning",
    "MAX_COORDINATE",
    "StructureError",
    "StructureWarning",
    "check_network",
    "check_read_structure",
    "check_rigid_bodies",
    "survey_raw",
]

# Coordinates beyond this (Angstrom) are refused: PDB's own columns stop at 9999.999, the largest crystal
# cells are a few thousand Angstrom, and phases q.r lose every digit for |r| of this size.
MAX_COORDINATE = 1e5
# B-factors beyond +-this (Angstrom^2) are refused: exp(-B q^2 / (16 pi^2)) under- or overflows at any resolution.
MAX_B = 1e4
# B-factors above this (Angstrom^2) are warned about: exp(-B q^2 / (16 pi^2)) wipes out the map.
LARGE_B = 1000.0
# Atoms closer than this (Angstrom) count as one position (the PDB format's precision is 1e-3).
DUPLICATE_DISTANCE = 1e-3
# A cell whose volume is below this fraction of a*b*c has angles that (nearly) do not form a cell.
MIN_VOLUME_FRACTION = 1e-3
# How many examples a message names.
_EXAMPLES = 3


class StructureError(ValueError):
    """A structure that reads but cannot give a meaningful map; the message names the file, record and problem."""


class StructureWarning(UserWarning):
    """A structure that gives a map, but one to look at twice (the message says why)."""


class FloppyNetworkWarning(StructureWarning):
    """The network has zero-frequency modes at a few k-vectors: the map is NaN there (eryx's rule).

    The command line turns it into a refusal; the Python API keeps eryx's map.
    """


# --------------------------------------------------------------------------- describing atoms


def atom_label(chain, residue, atom) -> str:
    """``ATOM 12 A/ALA 3/CB`` (HETATM for hetero residues; the altloc letter after the name when there is one)."""
    record = "HETATM" if residue.het_flag == "H" else "ATOM"
    alt = f".{atom.altloc}" if atom.altloc not in ("\0", " ", "") else ""
    return f"{record} {atom.serial} {chain.name}/{residue.name} {residue.seqid}/{atom.name}{alt}"


def _iter_atoms(model):
    for chain in model:
        for residue in chain:
            for atom in residue:
                yield chain, residue, atom


def _examples(labels: Sequence[str]) -> str:
    shown = ", ".join(labels[:_EXAMPLES])
    return shown + (f" and {len(labels) - _EXAMPLES} more" if len(labels) > _EXAMPLES else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- before cleaning


@dataclass
class RawSurvey:
    """What the file held before eryx's cleaning (alternative conformations, waters, hydrogens, ligands)."""

    n_atoms: int = 0
    n_waters: int = 0
    n_hydrogens: int = 0
    n_hetero: int = 0  # HETATM atoms other than waters and hydrogens
    n_altloc: int = 0  # atoms with an altloc letter
    kept_letters: Counter = field(default_factory=Counter)  # altloc letter of the conformation kept, per atom
    n_dropped: int = 0  # atoms remove_alternative_conformations drops
    n_dropped_repeated: int = 0  # of those: repeated names in a residue without altloc letters
    dropped_examples: list = field(default_factory=list)


def survey_raw(st) -> RawSurvey:
    """Count what cleaning will remove, from the structure as gemmi read it (first model)."""
    s = RawSurvey()
    if len(st) == 0:
        return s
    for chain in st[0]:
        for residue in chain:
            water = residue.is_water()
            seen: dict[str, str] = {}
            for atom in residue:
                s.n_atoms += 1
                if water:
                    s.n_waters += 1
                elif atom.element.is_hydrogen:
                    s.n_hydrogens += 1
                elif residue.het_flag == "H":
                    s.n_hetero += 1
                letter = atom.altloc if atom.altloc not in ("\0", " ") else ""
                if letter:
                    s.n_altloc += 1
                # gemmi keeps the first conformation listed of each atom name in a residue
                if atom.name in seen:
                    s.n_dropped += 1
                    if not letter and not seen[atom.name]:
                        s.n_dropped_repeated += 1
                    if len(s.dropped_examples) < _EXAMPLES:
                        s.dropped_examples.append(atom_label(chain, residue, atom))
                else:
                    seen[atom.name] = letter
                    if letter:
                        s.kept_letters[letter] += 1
    return s


def no_atoms_error(path, raw: RawSurvey | None, clean: bool) -> StructureError:
    """'no atoms left', saying what the file held."""
    if raw is None or not clean:
        return StructureError(f"{path}: no atoms left" + (" after removing waters, hydrogens and ligands" if clean else ""))
    if raw.n_atoms == 0:
        what = "the file holds no atom records"
    else:
        parts = [
            _plural(n, word)
            for n, word in ((raw.n_waters, "water atom"), (raw.n_hydrogens, "hydrogen"), (raw.n_hetero, "ligand atom"))
            if n
        ]
        what = "the file holds only " + (", ".join(parts) if parts else f"{_plural(raw.n_atoms, 'atom')} that were removed")
    return StructureError(f"{path}: no atoms left after removing waters, hydrogens and ligands ({what})")


# --------------------------------------------------------------------------- text


_TEXT_RECORDS = ("ATOM  ", "HETATM", "CRYST1", "MODEL ", "REMARK 290")


def check_text(path, lines: Sequence[str]) -> None:
    """Refuse coordinate, cell and symmetry records holding bytes that are not text (not UTF-8): gemmi
    reads them, but its names could then not be decoded (``lines`` were read with errors='replace')."""
    for number, line in enumerate(lines, start=1):
        if "\ufffd" in line and line.startswith(_TEXT_RECORDS):
            raise StructureError(
                f"{path}: line {number} ({line[:6].strip()} record) holds bytes that are not text (not UTF-8): "
                "the file is damaged"
            )


# --------------------------------------------------------------------------- cell


_CRYST1_FIELDS = (("a", 6, 15), ("b", 15, 24), ("c", 24, 33), ("alpha", 33, 40), ("beta", 40, 47), ("gamma", 47, 54))


def cryst1_parameters(path, lines: Sequence[str]) -> list[float]:
    """The six numbers of the first CRYST1 record, as written (gemmi replaces a cell it finds invalid, e.g. an
    angle of 0, by a 1 Angstrom cube, so the check must see the record itself)."""
    line = next((ln for ln in lines if ln.startswith("CRYST1")), None)
    if line is None:
        raise StructureError(f"{path}: no CRYST1 record")
    out = []
    for name, start, stop in _CRYST1_FIELDS:
        text = line[start:stop].strip()
        try:
            out.append(float(text))
        except ValueError:
            raise StructureError(
                f"{path}: CRYST1 {name} (columns {start + 1}-{stop}) is not a number: {text!r}"
            ) from None
    return out


def check_cell(path, parameters: Sequence[float]) -> None:
    """Refuse non-finite or non-positive edges and angles that do not form a cell (zero or imaginary volume)."""
    a, b, c, alpha, beta, gamma = (float(p) for p in parameters)
    text = f"a={a:g} b={b:g} c={c:g} alpha={alpha:g} beta={beta:g} gamma={gamma:g}"
    if not all(math.isfinite(p) for p in (a, b, c, alpha, beta, gamma)):
        raise StructureError(f"{path}: CRYST1 cell has a non-finite parameter ({text})")
    if min(a, b, c) <= 0:
        raise StructureError(f"{path}: CRYST1 cell edges must be positive Angstrom ({text})")
    for name, angle in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not 0 < angle < 180:
            raise StructureError(f"{path}: CRYST1 cell angle {name}={angle:g} is not between 0 and 180 degrees ({text})")
    ca, cb, cg = (math.cos(math.radians(x)) for x in (alpha, beta, gamma))
    fraction_sq = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg  # (V / abc)^2
    if fraction_sq < MIN_VOLUME_FRACTION**2:
        kind = "imaginary" if fraction_sq < 0 else "(nearly) zero"
        raise StructureError(
            f"{path}: CRYST1 cell angles alpha={alpha:g} beta={beta:g} gamma={gamma:g} do not form a cell "
            f"(volume {kind}: no three vectors have these angles between them)"
        )


# --------------------------------------------------------------------------- symmetry operators


def check_operators(path, sym_ops: dict, transformations: dict) -> None:
    """Refuse REMARK 290 operators that cannot place the ASUs: missing or extra rows, non-finite numbers,
    operator lists that disagree, SMTRY rotations that are not rotations."""
    import torch

    if set(sym_ops) != set(transformations):
        raise StructureError(
            f"{path}: REMARK 290 lists {_plural(len(sym_ops), 'operator')} (NNNMMM lines) but "
            f"{_plural(len(transformations), 'SMTRY operator')}: the symmetry header is incomplete"
        )
    for k, op in transformations.items():
        op = torch.as_tensor(op)
        if tuple(op.shape) != (3, 4):
            rows = op.shape[0] if op.ndim == 2 else 1
            raise StructureError(
                f"{path}: REMARK 290 SMTRY operator {k + 1} has {_plural(rows, 'row')} of "
                f"{op.shape[-1] if op.ndim else 0} numbers; each operator needs SMTRY1-3 rows of 4 numbers"
            )
        if not bool(torch.isfinite(op).all()):
            raise StructureError(f"{path}: REMARK 290 SMTRY operator {k + 1} holds a non-finite number")
        if op is not sym_ops.get(k):  # from SMTRY records: a Cartesian rotation
            rot = op[:, :3].to(torch.float64)
            err = float((rot @ rot.T - torch.eye(3, dtype=torch.float64)).abs().max())
            if err > 1e-3:
                raise StructureError(
                    f"{path}: REMARK 290 SMTRY operator {k + 1} is not a rotation (R R^T differs from the identity "
                    f"by {err:.3g})"
                )
        if abs(float(torch.as_tensor(op)[:, 3].abs().max())) > MAX_COORDINATE:
            raise StructureError(f"{path}: REMARK 290 SMTRY operator {k + 1} translates by more than {MAX_COORDINATE:g} A")


# --------------------------------------------------------------------------- atoms


def _element_texts(lines: Sequence[str] | None) -> dict[int, str]:
    """serial -> element columns (77-78) of the ATOM/HETATM records of a PDB file, as written."""
    out: dict[int, str] = {}
    for line in lines or ():
        if line.startswith(("ATOM  ", "HETATM")):
            try:
                serial = int(line[6:11])
            except ValueError:
                continue
            out.setdefault(serial, line[76:78].strip())
    return out


def check_read_structure(path, st, raw: RawSurvey | None, *, clean: bool, lines: Sequence[str] | None = None) -> None:
    """Refuse (StructureError) or warn (StructureWarning) about the structure ``st`` as it will be used.

    Errors come first, so a refused structure is not also warned about. ``raw`` is :func:`survey_raw`
    of the file before cleaning (None without cleaning).
    """
    check_cell(path, cryst1_parameters(path, lines) if lines is not None else st.cell.parameters)
    if len(st) == 0 or all(sum(len(res) for ch in model for res in ch) == 0 for model in st):
        raise no_atoms_error(path, raw, clean)
    _check_models_agree(path, st)
    found = _scan_atoms(st)
    for key, what in (("xyz", "coordinate"), ("b", "B-factor"), ("occ", "occupancy")):
        bad = found[f"nonfinite_{key}"]
        if bad:
            label, value = bad[0]
            raise StructureError(
                f"{path}: {label} has a non-finite {what} ({value}); {_plural(len(bad), 'atom')} in all"
            )
    if found["far"]:
        label, value = found["far"][0]
        raise StructureError(
            f"{path}: {label} lies at {value} Angstrom, beyond +-{MAX_COORDINATE:g} Angstrom "
            f"({_plural(len(found['far']), 'atom')}): the coordinates are not in Angstrom or the file is damaged"
        )
    if found["far_b"]:
        label, value = found["far_b"][0]
        raise StructureError(
            f"{path}: {label} has a B-factor beyond +-{MAX_B:g} A^2 ({value}; {_plural(len(found['far_b']), 'atom')}): "
            "the Debye-Waller factor would under- or overflow"
        )
    for message in _warnings(path, st, raw, clean, found, lines):
        warnings.warn(message, StructureWarning, stacklevel=4)


def _check_models_agree(path, st) -> None:
    if len(st) < 2:
        return
    first = [(a.name, a.element.name) for _, _, a in _iter_atoms(st[0])]
    for m in range(1, len(st)):
        other = [(a.name, a.element.name) for _, _, a in _iter_atoms(st[m])]
        if len(other) != len(first):
            raise StructureError(
                f"{path}: model {st[m].num} has {len(other)} atoms but model {st[0].num} has {len(first)}: "
                "the models of a multi-model file must hold the same atoms"
            )
        for i, (x, y) in enumerate(zip(first, other)):
            if x != y:
                raise StructureError(
                    f"{path}: atom {i + 1} of model {st[m].num} is {y[0]} ({y[1]}) where model {st[0].num} has "
                    f"{x[0]} ({x[1]}): the models of a multi-model file must hold the same atoms in the same order"
                )


def _scan_atoms(st) -> dict[str, list]:
    found: dict[str, list] = {
        k: [] for k in ("nonfinite_xyz", "nonfinite_b", "nonfinite_occ", "far", "far_b", "negative_b", "large_b", "zero_occ",
                        "odd_occ", "unknown")
    }
    for model in st:
        for chain, residue, atom in _iter_atoms(model):
            xyz = atom.pos.tolist()
            b, occ = atom.b_iso, atom.occ
            if not all(math.isfinite(v) for v in xyz):
                found["nonfinite_xyz"].append((_label(model, st, chain, residue, atom), "x={:g} y={:g} z={:g}".format(*xyz)))
                continue
            if not math.isfinite(b):
                found["nonfinite_b"].append((_label(model, st, chain, residue, atom), f"B={b:g}"))
            if not math.isfinite(occ):
                found["nonfinite_occ"].append((_label(model, st, chain, residue, atom), f"occupancy={occ:g}"))
            if math.isfinite(b) and abs(b) > MAX_B:
                found["far_b"].append((_label(model, st, chain, residue, atom), f"B={b:g}"))
            far = max(abs(v) for v in xyz)
            if far > MAX_COORDINATE:
                found["far"].append((_label(model, st, chain, residue, atom), f"{far:g}"))
            if model is not st[0]:
                continue  # warnings: the first model stands for all (they hold the same atoms)
            if math.isfinite(b) and b < 0:
                found["negative_b"].append((b, atom_label(chain, residue, atom)))
            if math.isfinite(b) and b > LARGE_B:
                found["large_b"].append((b, atom_label(chain, residue, atom)))
            if occ == 0:
                found["zero_occ"].append(atom_label(chain, residue, atom))
            elif math.isfinite(occ) and not 0 <= occ <= 1:
                found["odd_occ"].append((occ, atom_label(chain, residue, atom)))
            if atom.element.atomic_number == 0:
                found["unknown"].append((atom.serial, atom_label(chain, residue, atom)))
    return found


def _label(model, st, chain, residue, atom) -> str:
    label = atom_label(chain, residue, atom)
    return label if len(st) == 1 else f"{label} (model {model.num})"


def _warnings(path, st, raw, clean, found, lines) -> list[str]:
    name = Path(str(path)).name
    out = []
    if found["negative_b"]:
        worst = min(found["negative_b"])
        out.append(
            f"{name}: {_plural(len(found['negative_b']), 'atom')} with a negative B-factor (most negative "
            f"{worst[0]:g} at {worst[1]}): with the file's B-factors the Debye-Waller factor grows with |q|"
        )
    if found["large_b"]:
        worst = max(found["large_b"])
        out.append(
            f"{name}: {_plural(len(found['large_b']), 'atom')} with a B-factor above {LARGE_B:g} A^2 (largest "
            f"{worst[0]:g} at {worst[1]}): the Debye-Waller factor wipes out the map beyond the lowest resolution"
        )
    if found["unknown"]:
        texts = _element_texts(lines)
        names = sorted({texts.get(serial) or "?" for serial, _ in found["unknown"]})
        labels = [label for _, label in found["unknown"]]
        x = _unknown_element_scattering()
        out.append(
            f"{name}: {_plural(len(labels), 'atom')} of unknown element {', '.join(repr(n) for n in names)} "
            f"({_examples(labels)}): {x}"
        )
    if found["zero_occ"]:
        out.append(
            f"{name}: {_plural(len(found['zero_occ']), 'atom')} with occupancy 0 ({_examples(found['zero_occ'])}): "
            "occupancies are not used (as in eryx), so these atoms count in full"
        )
    if found["odd_occ"]:
        labels = [f"{label} ({occ:g})" for occ, label in found["odd_occ"]]
        out.append(
            f"{name}: {_plural(len(labels), 'atom')} with an occupancy outside 0..1 ({_examples(labels)}): "
            "occupancies are not used (as in eryx)"
        )
    if raw is not None and raw.n_dropped:
        letters = ", ".join(f"{k} ({v})" for k, v in sorted(raw.kept_letters.items()))
        why = []
        if raw.n_dropped - raw.n_dropped_repeated:
            why.append(f"{raw.n_altloc} atoms carry altloc letters; kept: altloc {letters}" if letters else "")
        if raw.n_dropped_repeated:
            why.append(f"{raw.n_dropped_repeated} repeat an atom name within a residue, which counts as a conformation")
        out.append(
            f"{name}: {_plural(raw.n_dropped, 'atom')} dropped as alternative conformations "
            f"({_examples(raw.dropped_examples)}): eryx's reading keeps the first conformation listed of each atom "
            f"({'; '.join(w for w in why if w)})"
        )
    elif not clean and any(a.altloc not in ("\0", " ") for _, _, a in _iter_atoms(st[0])):
        out.append(f"{name}: alternative conformations are all kept (clean_pdb=False), so their atoms appear more than once")
    duplicates = _duplicates(st[0])
    if duplicates:
        out.append(
            f"{name}: {_plural(len(duplicates), 'pair')} of atoms at the same position ({_examples(duplicates)}): "
            "each copy scatters and carries mass"
        )
    return out


def _unknown_element_scattering() -> str:
    import gemmi

    x = gemmi.Element("X")
    coef = x.it92
    f0 = float(sum(coef.a) + coef.c) if coef is not None else 0.0
    if f0 == 0:
        return "they get no scattering; give the right element in columns 77-78"
    o = gemmi.Element("O").it92
    like = ", that of oxygen" if o is not None and list(o.a) == list(coef.a) and o.c == coef.c else ""
    return (
        f"gemmi reads them as element X, which gets a placeholder form factor (f(0) = {f0:.1f} electrons{like}) "
        f"and a mass of {x.weight:g} Da; give the right element in columns 77-78"
    )


def _duplicates(model) -> list[str]:
    atoms = [(c, r, a) for c, r, a in _iter_atoms(model)]
    if len(atoms) < 2:
        return []
    xyz = np.array([a.pos.tolist() for _, _, a in atoms], dtype=np.float64)
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        return []
    from scipy.spatial import cKDTree

    pairs = sorted(cKDTree(xyz).query_pairs(DUPLICATE_DISTANCE))
    return [f"{atom_label(*atoms[i])} and {atom_label(*atoms[j])}" for i, j in pairs]


# --------------------------------------------------------------------------- the one-phonon model


def check_rigid_bodies(model) -> None:
    """Refuse ASUs that cannot rotate as rigid bodies: a single atom, collinear atoms, no mass.

    ``model``: a :class:`eryx_port.models.OnePhonon` after its set-up (``model.model.xyz`` (n_asu, n_atoms, 3)).
    """
    atoms = model.model
    name = Path(str(getattr(atoms, "pdb_file", "structure"))).name
    xyz = atoms.xyz.detach().to("cpu", dtype=_float64()).numpy()
    n_atoms = xyz.shape[-2]
    head = f"{name}: the rigid-body mass matrix of ASU 0 is singular:"
    if n_atoms == 1:
        raise StructureError(
            f"{head} the ASU holds a single atom after cleaning, which has no rotational inertia "
            "(a rigid ASU needs at least three atoms off a line)"
        )
    centered = xyz[0] - xyz[0].mean(axis=0)
    s = np.linalg.svd(centered, compute_uv=False)
    if s[1] <= 1e-9 * max(s[0], 1.0):
        raise StructureError(
            f"{head} its {n_atoms} atoms lie on a line, so rotations about that line have no inertia "
            "(a rigid ASU needs atoms off a line)"
        )
    masses = atoms.masses.detach().to("cpu", dtype=_float64()).numpy().reshape(-1)
    if not masses.sum() > 0:
        raise StructureError(f"{head} its atoms have no mass")


def _float64():
    import torch

    return torch.float64


def check_network(model) -> None:
    """Refuse (or warn about) a Gaussian network that leaves the lattice floppy, before the map is computed.

    ``model``: a :class:`eryx_port.models.OnePhonon` whose GNM phonons are computed (``gnm``, ``Winv``,
    ``kvec``). A mode of zero frequency (eryx's rule: below 1e-6, NaN ``Winv``) besides the three
    acoustic modes at k = 0 makes the map NaN at every q-point of its k-vector. Refused
    (:class:`StructureError`) when there is no contact between different ASUs (or cells) at all, or when
    such modes sit at more than half of the k-vectors (the map would be NaN almost everywhere); at fewer
    k-vectors the map is eryx's, NaN there, and a :class:`FloppyNetworkWarning` says so (the command line
    refuses those too). The message gives the contacts found, the cutoff, the smallest distance between
    neighbouring ASUs and a cutoff that would connect the lattice.
    """
    import torch

    from .phonons import zero_k_mask

    gnm = model.gnm
    c = gnm.contacts
    inter = int((~((c.cell == gnm.id_cell_ref) & (c.asu_i == c.asu_j))).sum())
    n_dof = int(model.Winv.shape[-1])
    zeros = model.Winv.detach().reshape(-1, n_dof).isnan().sum(dim=-1)
    at_zero = zero_k_mask(model.kvec.detach()).to(zeros.device)
    extra = torch.where(at_zero, (zeros - 3).clamp(min=0), zeros)
    n_bad = int((extra > 0).sum())
    if inter > 0 and n_bad == 0:
        return
    name = Path(str(getattr(model.model, "pdb_file", "structure"))).name
    cutoff = float(gnm.enm_cutoff)
    smallest, connecting = neighbour_distances(gnm)
    n_k = int(zeros.numel())
    found = (
        f"with gnm_cutoff {cutoff:g} A the network has {_plural(c.n_contacts, 'contact')}, "
        f"{inter} of them between different ASUs or cells; the smallest distance between neighbouring ASUs "
        f"is {smallest:.2f} A"
    )
    if n_bad:
        effect = (
            f"the lattice has zero-frequency modes besides the 3 acoustic ones at k = 0 at {n_bad} of {n_k} "
            f"k-vectors, where the map is NaN ({100 * n_bad / n_k:.0f}% of the q-points)"
        )
    else:
        effect = "the ASUs move independently and the map would be NaN almost everywhere"
    if connecting is not None and connecting > cutoff:
        fix = (
            f"a cutoff of at least {math.ceil(connecting * 100) / 100:.2f} A (--cutoff / gnm_cutoff) connects "
            "every ASU to its neighbours in all three directions"
        )
        head = "the Gaussian network does not hold the crystal together"
    else:
        fix = (
            f"every ASU is connected within the cutoff, so the springs (gamma_intra={_value(gnm.gamma_intra)}, "
            f"gamma_inter={_value(gnm.gamma_inter)}) are too soft for eryx's zero-frequency threshold: "
            "use stiffer springs or a larger cutoff"
        )
        head = "the Gaussian network leaves the lattice floppy"
    message = f"{name}: {head}: {found}; {effect}; {fix}"
    if inter == 0 or 2 * n_bad > n_k:
        raise StructureError(message)
    warnings.warn(message, FloppyNetworkWarning, stacklevel=4)


def _value(x) -> str:
    try:
        return f"{float(x):g}"
    except (TypeError, ValueError):
        return str(x)


def neighbour_distances(gnm) -> tuple[float, float | None]:
    """(smallest atom distance between an ASU and any other ASU copy of the 3x3x3 supercell, the smallest
    cutoff at which contacts connect every ASU to all others and to its images along a, b and c), in Angstrom.

    The second is found like a minimum spanning tree of the periodic graph (nodes: the ASUs of the cell;
    edges: ASU pairs with their cell offset, by closest approach), adding edges until the graph is
    connected and the cell offsets of its cycles span the whole lattice; None when even the 3x3x3 supercell
    cannot do it.
    """
    import torch
    from scipy.spatial import cKDTree

    crystal = gnm.crystal
    with torch.no_grad():
        asus = crystal.asu_xyz_reference().to("cpu", torch.float64).numpy()
        origins = crystal.cell_origins().to("cpu", torch.float64).numpy()
        hkl = crystal.cell_indices().numpy()
    n_asu = asus.shape[0]
    trees = [cKDTree(a) for a in asus]
    edges = []
    for i in range(n_asu):
        for cell in range(origins.shape[0]):
            for j in range(n_asu):
                if cell == gnm.id_cell_ref and i == j:
                    continue
                d = float(trees[j].query(asus[i] - origins[cell], k=1)[0].min())
                edges.append((d, i, j, tuple(int(v) for v in hkl[cell])))
    edges.sort()
    smallest = edges[0][0] if edges else math.inf
    parent = list(range(n_asu))
    shift = [np.zeros(3, dtype=np.int64) for _ in range(n_asu)]  # node@v ~ parent@(v + shift)

    def find(x):
        total = np.zeros(3, dtype=np.int64)
        while parent[x] != x:
            total = total + shift[x]
            x = parent[x]
        return x, total

    cycles: list[np.ndarray] = []
    components = n_asu
    for d, i, j, cell in edges:
        ri, oi = find(i)
        rj, oj = find(j)
        c = np.array(cell, dtype=np.int64)
        # edge: i@0 ~ j@c, so root_i@oi ~ root_j@(c + oj)
        if ri == rj:
            v = c + oj - oi
            if v.any():
                cycles.append(v)
        else:
            parent[rj] = ri
            shift[rj] = oi - c - oj
            components -= 1
        if components == 1 and _spans_lattice(cycles):
            return smallest, d
    return smallest, None


def _spans_lattice(vectors: list[np.ndarray]) -> bool:
    """Whether integer 3-vectors generate all of Z^3 (gcd of their 3x3 minors is 1)."""
    if len(vectors) < 3:
        return False
    rows = [list(map(int, v)) for v in vectors]
    basis = _hermite(rows)
    return len(basis) == 3 and all(abs(basis[k][k]) == 1 for k in range(3))


def _hermite(rows: list[list[int]]) -> list[list[int]]:
    """Row echelon form over the integers (gcd steps), zero rows dropped."""
    rows = [r[:] for r in rows if any(r)]
    out = []
    for col in range(3):
        while True:
            live = [r for r in rows if r[col] != 0]
            if len(live) <= 1:
                break
            live.sort(key=lambda r: abs(r[col]))
            pivot = live[0]
            for r in live[1:]:
                q = r[col] // pivot[col]
                for k in range(3):
                    r[k] -= q * pivot[k]
            rows = [r for r in rows if any(r)]
        live = [r for r in rows if r[col] != 0]
        if live:
            out.append(live[0])
            rows = [r for r in rows if r is not live[0]]
    return out
