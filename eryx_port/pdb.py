"""Atomic models and crystals read from PDB files, as torch tensors.

Same public names, signatures and attribute meanings as ``eryx.pdb``:

* :class:`AtomicModel` reads a structure with gemmi, cleans it like eryx (no
  alternative conformations, hydrogens, waters, ligands or empty chains) and
  holds coordinates, B factors and IT92 form-factor coefficients as tensors,
  plus the symmetry operations of the header (REMARK 290) as dicts
  ``int -> tensor`` (3x3 rotations in ``sym_ops``, 3x4 ``[R | t]`` in Angstrom
  in ``transformations``).
* :class:`Crystal` places copies of the unit cell on a (2nx+1)(2ny+1)(2nz+1)
  supercell; cells are numbered like eryx (h slowest, l fastest).
* :class:`GaussianNetworkModel` lives in :mod:`eryx_port.gnm` and is re-exported here.

Tensors are float64 on the CPU unless ``dtype=`` / ``device=`` say otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import gemmi
import numpy as np
import torch

from . import validation
from .tensors import as_real, resolve_device, resolve_dtype
from .validation import StructureError, StructureWarning

__all__ = [
    "AtomicModel",
    "Crystal",
    "GaussianNetworkModel",  # noqa: F822  (lazy re-export, see __getattr__ below)
    "StructureError",
    "StructureWarning",
    "extract_sym_ops",
    "extract_transformations",
    "get_unit_cell_axes",
    "sym_str_as_matrix",
]

_AXES = ("X", "Y", "Z")


# ---------------------------------------------------------------------------
# header parsing
# ---------------------------------------------------------------------------


def sym_str_as_matrix(sym_str: str, *, dtype=None, device=None) -> torch.Tensor:
    """The rotation part (3x3) of a symmetry operator written like ``'-Y,X-Y,Z+1/3'``.

    Translations are dropped: entry (row, col) is -1 when the row's expression
    contains the axis with a minus sign, +1 when it contains it otherwise.
    """
    if not isinstance(sym_str, str):
        raise TypeError(f"sym_str must be a string like '-Y,X-Y,Z+1/3', not {type(sym_str).__name__}")
    items = sym_str.upper().split(",")
    if len(items) != 3:
        raise ValueError(f"symmetry operator {sym_str!r} must have three comma-separated parts")
    rows = [[(-1.0 if f"-{ax}" in item else 1.0) if ax in item else 0.0 for ax in _AXES] for item in items]
    return torch.tensor(rows, dtype=resolve_dtype(dtype), device=resolve_device(device))


def _read_lines(pdb_file) -> list[str]:
    path = _check_path(pdb_file)
    with open(path, "r", errors="replace") as fh:
        return fh.readlines()


def _header_lines(lines: Sequence[str]) -> list[str]:
    """The REMARK 290 lines, up to the first REMARK 300 (where eryx stops reading)."""
    out = []
    for line in lines:
        if "REMARK 290" in line:
            out.append(line)
        if "REMARK 300" in line:
            break
    return out


def _sym_ops_from_lines(lines, dtype, device) -> dict[int, torch.Tensor]:
    ops = [line.split()[-1] for line in _header_lines(lines) if "555" in line]
    return {i: sym_str_as_matrix(op, dtype=dtype, device=device) for i, op in enumerate(ops)}


def _transformations_from_lines(lines, dtype, device) -> dict[int, torch.Tensor]:
    rows: dict[int, list[list[float]]] = {}
    for line in _header_lines(lines):
        if "SMTRY" not in line:
            continue
        fields = line.split()[3:]
        try:
            values = [float(v) for v in fields[1:]]
            if len(values) != 4:
                raise ValueError(f"{len(values)} numbers")
            rows.setdefault(int(fields[0]) - 1, []).append(values)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"malformed REMARK 290 SMTRY line {line.rstrip()!r} (expected: SMTRYn, operator number, 4 numbers)") from exc
    dtype, device = resolve_dtype(dtype), resolve_device(device)
    # A single row stays 1-D, as in eryx (only three-row operators are meaningful).
    return {k: torch.tensor(v if len(v) > 1 else v[0], dtype=dtype, device=device) for k, v in rows.items()}


def extract_sym_ops(pdb_file, *, dtype=None, device=None) -> dict[int, torch.Tensor]:
    """Rotation parts of the symmetry operators listed in the REMARK 290 header, numbered from 0."""
    return _sym_ops_from_lines(_read_lines(pdb_file), dtype, device)


def extract_transformations(pdb_file, *, dtype=None, device=None) -> dict[int, torch.Tensor]:
    """The REMARK 290 SMTRY operators as 3x4 ``[R | t]`` tensors (t in Angstrom), numbered from 0."""
    return _transformations_from_lines(_read_lines(pdb_file), dtype, device)


def get_unit_cell_axes(cell, *, dtype=None, device=None) -> torch.Tensor:
    """Rows a, b, c of the unit cell in Cartesian Angstrom (a along x, b in the xy plane).

    ``cell`` is (a, b, c, alpha, beta, gamma) in Angstrom / degrees; differentiable in ``cell``.
    """
    cell = as_real(cell, dtype, device)
    if cell.shape != (6,):
        raise ValueError(f"cell must hold 6 parameters (a, b, c, alpha, beta, gamma), got shape {tuple(cell.shape)}")
    a, b, c = cell[0], cell[1], cell[2]
    alpha, beta, gamma = torch.deg2rad(cell[3:]).unbind()
    cos_a, cos_b, cos_g, sin_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma), torch.sin(gamma)
    # c's components: along x from beta, along y so that the b-c angle is alpha, the rest along z.
    cy = (cos_a - cos_b * cos_g) / sin_g
    cz = torch.sqrt(1 - cos_b**2 - cy**2)
    zero = torch.zeros_like(a)
    return torch.stack(
        [
            torch.stack([a, zero, zero]),
            torch.stack([b * cos_g, b * sin_g, zero]),
            torch.stack([c * cos_b, c * cy, c * cz]),
        ]
    )


# ---------------------------------------------------------------------------
# symmetry expansion (pure function over tensors)
# ---------------------------------------------------------------------------


def pack_asus(xyz, rotations, translations, shifts, cell_lengths) -> torch.Tensor:
    """Copies of one ASU under each operator, moved by one cell step where their centre falls outside.

    xyz (n_atoms, 3); rotations (n_ops, 3, 3); translations (n_ops, 3) in Angstrom;
    shifts (n_ops, 3): the step applied per axis (eryx's choice: the row sums of
    ``axes.T @ sym_op``, taken in absolute value); cell_lengths (3,).
    A copy whose centre of mass has a negative coordinate is moved up by the
    step along that axis, one beyond the cell length is moved down.
    Returns (n_ops, n_atoms, 3); differentiable in every tensor input.
    """
    copies = torch.einsum("oij,nj->oni", rotations, xyz) + translations[:, None, :]
    com = copies.mean(dim=1)  # (n_ops, 3)
    step = shifts.abs()
    move = step * (com < 0).to(step.dtype) - step * (com > cell_lengths).to(step.dtype)
    return copies + move[:, None, :]


# ---------------------------------------------------------------------------
# AtomicModel
# ---------------------------------------------------------------------------


def _check_path(pdb_file) -> Path:
    if not isinstance(pdb_file, (str, os.PathLike)):
        raise TypeError(f"pdb_file must be a path, not {type(pdb_file).__name__}")
    path = Path(pdb_file)
    if not path.exists():
        raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"structure file {str(path)!r} is not a regular file")
    return path


def _is_cif(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith((".cif", ".mmcif"))


def _has_cell(path: Path, lines: Sequence[str]) -> bool:
    if _is_cif(path):
        return any(line.lstrip().startswith("_cell.length_a") for line in lines)
    return any(line.startswith("CRYST1") for line in lines)


class AtomicModel:
    """Atoms of a PDB/mmCIF structure, optionally expanded to every ASU of the unit cell.

    Attributes (as in eryx): ``structure`` (gemmi.Structure), ``cell`` (6,),
    ``A_inv`` (3, 3) fractionalisation matrix, ``space_group`` (str),
    ``unit_cell_axes`` (3, 3) rows a, b, c, ``sym_ops`` / ``transformations``
    (dict int -> tensor), ``n_asu``, ``n_conf``, ``xyz`` (n, n_atoms, 3),
    ``adp`` (n, n_atoms), ``ff_a`` / ``ff_b`` (n, n_atoms, 4), ``ff_c`` (n, n_atoms),
    ``elements`` (n lists of gemmi.Element), where n is the number of frames, or
    frames x ASUs with ``expand_p1``. ``masses`` holds the element weights
    shaped like ``elements``.
    """

    def __init__(self, pdb_file, expand_p1=False, frame=0, clean_pdb=True, *, device=None, dtype=None):
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        path = _check_path(pdb_file)
        lines = _read_lines(path)
        self._get_gemmi_structure(path, clean_pdb, lines)
        self._extract_cell()
        self.sym_ops, self.transformations = self._get_sym_ops(lines)
        self.extract_frame(expand_p1=expand_p1, frame=frame)

    # -- construction steps -------------------------------------------------

    def _tensor(self, value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.dtype, device=self.device)

    def _get_gemmi_structure(self, path: Path, clean_pdb: bool, lines: Sequence[str]) -> None:
        if not _has_cell(path, lines):
            kind = "_cell.length_a" if _is_cif(path) else "CRYST1 record"
            raise StructureError(f"{path}: no unit cell ({kind}) found; is this a crystal structure in PDB/mmCIF format?")
        if not _is_cif(path):
            validation.check_text(path, lines)
        try:
            st = gemmi.read_structure(str(path)) if _is_cif(path) else gemmi.read_pdb(str(path))
        except (RuntimeError, ValueError) as exc:  # UnicodeDecodeError included (bytes that are no text)
            reason = " ".join(str(exc).split())  # gemmi's messages span lines
            raise StructureError(f"{path}: could not be read as a PDB/mmCIF structure ({reason})") from exc
        raw = validation.survey_raw(st) if clean_pdb else None
        if clean_pdb:
            st.remove_alternative_conformations()
            st.remove_hydrogens()
            st.remove_waters()
            try:
                st.remove_ligands_and_waters()
            except RuntimeError:
                # gemmi refuses when chains have no entity type (e.g. HETATM-only
                # small molecules); eryx then keeps those residues, and so do we.
                pass
            st.remove_empty_chains()
        # refuses (StructureError, a ValueError) or warns (StructureWarning) by name: see eryx_port.validation
        validation.check_read_structure(path, st, raw, clean=clean_pdb, lines=None if _is_cif(path) else lines)
        self.structure = st
        self.pdb_file = str(path)

    def _extract_cell(self) -> None:
        st = self.structure
        params = self._tensor(st.cell.parameters)
        self.cell = params
        self.A_inv = self._tensor(st.cell.frac.mat.tolist())  # gemmi >= 0.7 spelling
        try:
            self.space_group = st.spacegroup_hm
        except UnicodeDecodeError as exc:  # bytes that are no text in CRYST1's space-group columns
            raise StructureError(f"{self.pdb_file}: the CRYST1 space group (columns 56-66) is not text") from exc
        self.unit_cell_axes = get_unit_cell_axes(params)

    def _get_sym_ops(self, lines):
        """Operators from the REMARK 290 header, else from gemmi's space-group table.

        For a PDB file without REMARK 290 eryx takes gemmi's fractional
        operators as they are (3x4 ``[R | t]``, t in cell fractions, used as if
        in Angstrom): kept for parity. mmCIF files, which eryx cannot read,
        get what a REMARK 290 header would hold: fractional rotations in
        ``sym_ops`` and Cartesian ``[R | t]`` in ``transformations``.
        """
        try:
            sym_ops = _sym_ops_from_lines(lines, self.dtype, self.device)
            transformations = _transformations_from_lines(lines, self.dtype, self.device)
        except ValueError as exc:
            raise StructureError(f"{self.pdb_file}: {exc}") from exc
        from_header = bool(sym_ops or transformations)
        if not sym_ops:
            sg = gemmi.find_spacegroup_by_name(self.space_group)
            if sg is None:
                raise StructureError(
                    f"{self.pdb_file}: no REMARK 290 symmetry operators and unknown space group {self.space_group!r}"
                )
            ops = [(np.array(op.rot) / op.DEN, np.array(op.tran) / op.DEN) for op in sg.operations()]
            if _is_cif(Path(self.pdb_file)):
                orth = np.array(self.structure.cell.orth.mat.tolist())
                frac = np.linalg.inv(orth)
                sym_ops = {i: self._tensor(rot) for i, (rot, _) in enumerate(ops)}
                transformations = {
                    i: self._tensor(np.hstack([orth @ rot @ frac, (orth @ t)[:, None]])) for i, (rot, t) in enumerate(ops)
                }
            else:
                sym_ops = {i: self._tensor(np.hstack([rot, t[:, None]])) for i, (rot, t) in enumerate(ops)}
        if not transformations:
            transformations = sym_ops
        if from_header:
            validation.check_operators(self.pdb_file, sym_ops, transformations)
        self.n_asu = len(transformations.keys())
        return sym_ops, transformations

    def extract_frame(self, expand_p1=False, frame=0) -> None:
        """Fill xyz, adp, form factors and elements for one model (``frame``) or all of them (-1)."""
        n_models = len(self.structure)
        if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool):
            raise TypeError(f"frame must be an integer, not {type(frame).__name__}")
        if frame != -1 and not 0 <= frame < n_models:
            raise ValueError(f"frame {frame} is out of range: the structure has {n_models} model(s) (use -1 for all)")
        frames = range(n_models) if frame == -1 else [int(frame)]
        self.n_conf = len(frames)
        per_frame = [self._read_model(self.structure[f]) for f in frames]
        sizes = {len(p[0]) for p in per_frame}
        if len(sizes) != 1:
            raise StructureError(f"{self.pdb_file}: models have different numbers of atoms {sorted(sizes)}")

        xyz = torch.stack([self._tensor(p[0]) for p in per_frame])  # (n_frames, n_atoms, 3)
        # With expand_p1 eryx keeps the B factors and form factors of the last frame
        # only, and repeats them for every (frame, ASU) copy.
        kept = per_frame[-1:] if expand_p1 else per_frame
        self.xyz = torch.cat([self._get_xyz_asus(x) for x in xyz]) if expand_p1 else xyz
        self.adp = torch.stack([self._tensor(p[1]) for p in kept])
        self.ff_a = torch.stack([self._tensor(p[2]) for p in kept])
        self.ff_b = torch.stack([self._tensor(p[3]) for p in kept])
        self.ff_c = torch.stack([self._tensor(p[4]) for p in kept])
        self.elements = [p[5] for p in kept]
        if expand_p1:
            self.adp = self.adp.repeat(self.xyz.shape[0], 1)
            self._tile_form_factors()

    @staticmethod
    def _read_model(model):
        atoms = [atom for chain in model for res in chain for atom in res]
        xyz = np.array([atom.pos.tolist() for atom in atoms], dtype=np.float64).reshape(-1, 3)
        adp = np.array([atom.b_iso for atom in atoms], dtype=np.float64)
        elements = [atom.element for atom in atoms]
        it92 = [el.it92 for el in elements]
        ff_a = np.array([c.a for c in it92], dtype=np.float64).reshape(-1, 4)
        ff_b = np.array([c.b for c in it92], dtype=np.float64).reshape(-1, 4)
        ff_c = np.array([c.c for c in it92], dtype=np.float64)
        return xyz, adp, ff_a, ff_b, ff_c, elements

    # -- symmetry ---------------------------------------------------------------

    def _stacked_ops(self):
        keys = list(self.transformations)
        ops = torch.stack([as_real(self.transformations[k], self.dtype, self.device) for k in keys])
        sym = torch.stack([as_real(self.sym_ops[k], self.dtype, self.device) for k in keys])
        axes = as_real(self.unit_cell_axes, self.dtype, self.device)
        shifts = torch.einsum("ji,ojk->oi", axes, sym)  # row sums of axes.T @ sym_op
        return ops[:, :3, :3], ops[:, :, 3], shifts

    def _get_xyz_asus(self, xyz) -> torch.Tensor:
        """(n_asu, n_atoms, 3): one ASU's coordinates under every operator, packed into the cell."""
        xyz = as_real(xyz, self.dtype, self.device)
        if xyz.ndim != 2 or xyz.shape[-1] != 3:
            raise ValueError(f"xyz must have shape (n_atoms, 3), got {tuple(xyz.shape)}")
        rot, trans, shifts = self._stacked_ops()
        return pack_asus(xyz, rot, trans, shifts, as_real(self.cell, self.dtype, self.device)[:3])

    # -- reshaping ------------------------------------------------------------

    def flatten_model(self) -> None:
        """Merge the leading (frame / ASU) axis into the atom axis, as eryx does (adp is left alone)."""
        self.xyz = self.xyz.flatten(0, -2)
        self.ff_a = self.ff_a.flatten(0, -2)
        self.ff_b = self.ff_b.flatten(0, -2)
        self.ff_c = self.ff_c.reshape(-1)
        self.elements = [el for group in self.elements for el in group]

    def _tile_form_factors(self) -> None:
        """Repeat form factors and elements once per row of ``xyz`` (eryx repeats the whole stack)."""
        n = self.xyz.shape[0]
        self.ff_a = self.ff_a.repeat(n, 1, 1)
        self.ff_b = self.ff_b.repeat(n, 1, 1)
        self.ff_c = self.ff_c.repeat(n, 1)
        self.elements = n * self.elements

    # -- convenience tensors --------------------------------------------------

    @property
    def masses(self) -> torch.Tensor:
        """Element weights (Dalton) shaped like ``elements``: (n, n_atoms), or (n_atoms,) after flatten_model."""
        if self.elements and isinstance(self.elements[0], list):
            weights = [[el.weight for el in group] for group in self.elements]
        else:
            weights = [el.weight for el in self.elements]
        return self._tensor(weights)

    @classmethod
    def from_arrays(cls, *, cell, sym_ops, transformations, unit_cell_axes=None, xyz=None, dtype=None, device=None):
        """A model holding only the given cell and operators (and optionally xyz), without reading a file.

        Enough for :meth:`_get_xyz_asus` and :class:`Crystal`; meant for replaying recorded calls.
        """
        self = cls.__new__(cls)
        self.dtype, self.device = resolve_dtype(dtype), resolve_device(device)
        self.cell = as_real(cell, self.dtype, self.device)
        self.unit_cell_axes = (
            get_unit_cell_axes(self.cell) if unit_cell_axes is None else as_real(unit_cell_axes, self.dtype, self.device)
        )
        conv = lambda d: {int(k): as_real(v, self.dtype, self.device) for k, v in d.items()}
        self.sym_ops = conv(sym_ops)
        self.transformations = conv(transformations)
        self.n_asu = len(self.transformations)
        if xyz is not None:
            self.xyz = as_real(xyz, self.dtype, self.device)
        return self


# ---------------------------------------------------------------------------
# Crystal
# ---------------------------------------------------------------------------


class Crystal:
    """A supercell of copies of the unit cell of ``atomic_model``.

    Cells are numbered by ``(h + nx) * (2ny+1)(2nz+1) + (k + ny) * (2nz+1) + (l + nz)``,
    the order of eryx's nested loops (h slowest).
    """

    def __init__(self, atomic_model: AtomicModel):
        self.model = atomic_model
        self.supercell_extent()

    @property
    def _dims(self) -> tuple[int, int, int]:
        return 2 * self.nx + 1, 2 * self.ny + 1, 2 * self.nz + 1

    def supercell_extent(self, nx=0, ny=0, nz=0) -> None:
        """nx, ny, nz cells on each side of the reference cell along a, b, c."""
        for name, n in (("nx", nx), ("ny", ny), ("nz", nz)):
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
        self.nx, self.ny, self.nz = int(nx), int(ny), int(nz)
        self.xrange = torch.arange(-self.nx, self.nx + 1)
        self.yrange = torch.arange(-self.ny, self.ny + 1)
        self.zrange = torch.arange(-self.nz, self.nz + 1)
        self.n_cell = self._dims[0] * self._dims[1] * self._dims[2]

    # -- index arithmetic -----------------------------------------------------

    def _as_hkl(self, unit_cell) -> tuple[int, int, int]:
        if unit_cell is None:
            return 0, 0, 0
        values = unit_cell.reshape(-1).tolist() if isinstance(unit_cell, torch.Tensor) else np.asarray(unit_cell).reshape(-1).tolist()
        hkl = [int(v) for v in values]
        if len(hkl) != 3:
            raise ValueError(f"unit_cell must hold 3 integer indices, got {unit_cell!r}")
        return hkl[0], hkl[1], hkl[2]

    def hkl_to_id(self, unit_cell=None) -> int:
        """The number of cell ``unit_cell`` = (h, k, l) in the supercell."""
        h, k, l = self._as_hkl(unit_cell)
        if abs(h) > self.nx or abs(k) > self.ny or abs(l) > self.nz:
            raise ValueError(f"unit cell {[h, k, l]} lies outside the supercell (+-{self.nx}, +-{self.ny}, +-{self.nz})")
        _, dy, dz = self._dims
        return ((h + self.nx) * dy + (k + self.ny)) * dz + (l + self.nz)

    def id_to_hkl(self, cell_id=0) -> list[int]:
        """The indices (h, k, l) of cell number ``cell_id``."""
        cell_id = int(cell_id)
        if not 0 <= cell_id < self.n_cell:
            raise ValueError(f"cell_id {cell_id} is out of range: the supercell has {self.n_cell} cells")
        _, dy, dz = self._dims
        hk, l = divmod(cell_id, dz)
        h, k = divmod(hk, dy)
        return [h - self.nx, k - self.ny, l - self.nz]

    def cell_indices(self) -> torch.Tensor:
        """(n_cell, 3) int64: (h, k, l) of every cell, in cell-number order."""
        grids = torch.meshgrid(self.xrange, self.yrange, self.zrange, indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=1)

    # -- positions -------------------------------------------------------------

    def _axes(self) -> torch.Tensor:
        return self.model.unit_cell_axes

    def get_unitcell_origin(self, unit_cell=None) -> torch.Tensor:
        """Cartesian origin (3,) of cell (h, k, l): h a + k b + l c."""
        axes = self._axes()
        h, k, l = self._as_hkl(unit_cell)
        return h * axes[0] + k * axes[1] + l * axes[2]

    def cell_origins(self) -> torch.Tensor:
        """(n_cell, 3): origins of every cell, in cell-number order."""
        axes = self._axes()
        hkl = self.cell_indices().to(device=axes.device, dtype=axes.dtype)
        # elementwise, in eryx's order, so the origins are bit-identical to get_unitcell_origin's
        return hkl[:, :1] * axes[0] + hkl[:, 1:2] * axes[1] + hkl[:, 2:] * axes[2]

    def asu_xyz_reference(self) -> torch.Tensor:
        """(n_asu, n_atoms, 3): every ASU in the reference cell, built from ``model.xyz[0]`` as eryx does."""
        return self.model._get_xyz_asus(self.model.xyz[0])

    def get_asu_xyz(self, asu_id=0, unit_cell=None) -> torch.Tensor:
        """(n_atoms, 3): coordinates of ASU ``asu_id`` in cell ``unit_cell`` (default the reference cell)."""
        n_asu = len(self.model.transformations)
        if not 0 <= int(asu_id) < n_asu:
            raise ValueError(f"asu_id {asu_id} is out of range: the unit cell has {n_asu} ASUs")
        return self.asu_xyz_reference()[int(asu_id)] + self.get_unitcell_origin(unit_cell)


def __getattr__(name):
    # GaussianNetworkModel lives in eryx_port.gnm (which imports this module); re-exported lazily.
    if name == "GaussianNetworkModel":
        from .gnm import GaussianNetworkModel

        return GaussianNetworkModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
