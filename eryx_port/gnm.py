"""Gaussian network model (GNM) of a crystal, built on a list of atom contacts.

Atoms of the reference unit cell are joined by springs to every atom, of any
ASU in the reference cell or its 26 neighbours, that lies within
``enm_cutoff`` Angstrom. The spring constant is ``gamma_intra`` inside one ASU
of the reference cell and ``gamma_inter`` otherwise (``gamma``, shape
(n_cell, n_asu, n_asu)).

The internal form is the contact list :class:`Contacts` (one entry per ordered
atom pair), so big structures never need the dense Hessian
(n_asu, n_atoms, n_cell, n_asu, n_atoms); eryx's nested neighbour lists and the
dense Hessian are derived from it on request. Everything that depends on the
spring constants is differentiable in ``gamma_intra`` / ``gamma_inter`` when
they are tensors with ``requires_grad``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree

from .pdb import AtomicModel, Crystal
from .tensors import as_real, complex_dtype

__all__ = ["Contacts", "GaussianNetworkModel", "contacts_from_neighbor_lists"]

# numpy.linalg.pinv's default relative cutoff (eryx calls it with defaults)
PINV_RCOND = 1e-15


class Contacts(NamedTuple):
    """Every ordered atom pair closer than the cutoff, as parallel 1-D int64 tensors.

    Entry n says: atom ``atom_i[n]`` of ASU ``asu_i[n]`` in the reference cell is
    within the cutoff (distance <= cutoff) of atom ``atom_j[n]`` of ASU
    ``asu_j[n]`` in cell number ``cell[n]`` (numbered as
    :meth:`Crystal.hkl_to_id`). An atom is never paired with itself; every pair
    appears in both directions (the reverse pair lives in the opposite cell).
    Sorted by (asu_i, atom_i, cell, asu_j, atom_j).
    """

    asu_i: torch.Tensor
    atom_i: torch.Tensor
    cell: torch.Tensor
    asu_j: torch.Tensor
    atom_j: torch.Tensor

    @property
    def n_contacts(self) -> int:  # len() stays the tuple's (5 fields)
        return int(self.asu_i.numel())

    def to(self, device) -> Contacts:
        return Contacts(*(t.to(device) for t in self))


def _find_contacts(asus: np.ndarray, origins: np.ndarray, cutoff: float, id_cell_ref: int) -> Contacts:
    """Contacts of the reference cell's atoms with all atoms of all cells (k-d tree, no pair loops).

    asus (n_asu, n_atoms, 3) reference-cell coordinates; origins (n_cell, 3).
    """
    n_asu, n_atoms, _ = asus.shape
    per_cell = n_asu * n_atoms
    everything = (origins[:, None, None, :] + asus[None]).reshape(-1, 3)  # (n_cell * per_cell, 3)
    reference = everything[id_cell_ref * per_cell : (id_cell_ref + 1) * per_cell]
    # query_ball_point keeps points at distance <= r, like eryx's query_ball_tree
    found = cKDTree(everything).query_ball_point(reference, r=cutoff)
    counts = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    j = np.concatenate([np.asarray(f, dtype=np.int64) for f in found]) if counts.sum() else np.zeros(0, np.int64)
    i = np.repeat(np.arange(per_cell, dtype=np.int64), counts)
    keep = j != i + id_cell_ref * per_cell  # drop each atom's pair with itself
    i, j = i[keep], j[keep]
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    cell, rest = np.divmod(j, per_cell)
    asu_j, atom_j = np.divmod(rest, n_atoms)
    asu_i, atom_i = np.divmod(i, n_atoms)
    return Contacts(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (asu_i, atom_i, cell, asu_j, atom_j)))


def contacts_from_neighbor_lists(asu_neighbors, id_cell_ref: int) -> Contacts:
    """The contact list equivalent to eryx's ``asu_neighbors[i_asu][i_cell][j_asu][i_atom]`` lists."""
    rows = [
        (ia, ic, ja, iat, jat)
        for ia, by_cell in enumerate(asu_neighbors)
        for ic, by_asu in enumerate(by_cell)
        for ja, by_atom in enumerate(by_asu)
        for iat, neighbours in enumerate(by_atom)
        for jat in neighbours
        if not (ic == id_cell_ref and ja == ia and int(jat) == iat)
    ]
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    order = np.lexsort((arr[:, 4], arr[:, 2], arr[:, 1], arr[:, 3], arr[:, 0]))
    arr = arr[order]
    return Contacts(*(torch.from_numpy(np.ascontiguousarray(arr[:, c])) for c in (0, 3, 1, 2, 4)))


def _kvec_phases(kvec, origins: torch.Tensor) -> torch.Tensor:
    """exp(i k . r_cell) for kvec (..., 3): (..., n_cell) complex."""
    phase = kvec @ origins.T
    return torch.polar(torch.ones_like(phase), phase)


class GaussianNetworkModel:
    """Isotropic elastic network over the atoms of a crystal's 3x3x3 supercell.

    ``GaussianNetworkModel(pdb_path, enm_cutoff, gamma_intra, gamma_inter)`` reads
    ``pdb_path`` like eryx (``AtomicModel(pdb_path, expand_p1=True)``);
    :meth:`from_model` reuses an AtomicModel or Crystal already in memory.
    Attributes as in eryx (``crystal``, ``id_cell_ref``, ``n_cell``, ``n_asu``,
    ``n_atoms_per_asu``, ``n_dof_per_asu_actual``, ``enm_cutoff``,
    ``gamma_intra``, ``gamma_inter``, ``gamma``, ``asu_neighbors``) plus
    ``contacts`` (:class:`Contacts`).
    """

    def __init__(self, pdb_path, enm_cutoff, gamma_intra, gamma_inter, *, device=None, dtype=None):
        model = AtomicModel(pdb_path, expand_p1=True, device=device, dtype=dtype)
        self._setup(model, enm_cutoff, gamma_intra, gamma_inter)

    @classmethod
    def from_model(cls, model, enm_cutoff, gamma_intra, gamma_inter) -> GaussianNetworkModel:
        """Build from an AtomicModel (eryx uses one read with ``expand_p1=True``) or a Crystal's model.

        Only ``model.xyz[0]``, the cell and the operators are used, as in eryx.
        """
        if isinstance(model, Crystal):
            model = model.model
        if not isinstance(model, AtomicModel):
            raise TypeError(f"expected an AtomicModel or Crystal, not {type(model).__name__}")
        self = cls.__new__(cls)
        self._setup(model, enm_cutoff, gamma_intra, gamma_inter)
        return self

    def _setup(self, model, enm_cutoff, gamma_intra, gamma_inter) -> None:
        if isinstance(enm_cutoff, torch.Tensor):
            if enm_cutoff.requires_grad:
                raise ValueError("enm_cutoff selects atom pairs and cannot carry a gradient; pass a plain number")
            enm_cutoff = enm_cutoff.item()
        if isinstance(enm_cutoff, bool) or not isinstance(enm_cutoff, (int, float, np.number)):
            raise TypeError(f"enm_cutoff must be a number (Angstrom), not {type(enm_cutoff).__name__}")
        if not (math.isfinite(enm_cutoff) and enm_cutoff > 0):
            raise ValueError(f"enm_cutoff must be a positive finite distance in Angstrom, got {enm_cutoff}")
        self.dtype = model.xyz.dtype
        self.device = model.xyz.device
        crystal = Crystal(model)
        crystal.supercell_extent(1, 1, 1)  # the reference cell and its 26 neighbours
        self.crystal = crystal
        self.id_cell_ref = crystal.hkl_to_id((0, 0, 0))
        self.n_cell = crystal.n_cell
        self.n_asu = model.n_asu
        self.n_atoms_per_asu = int(model.xyz.shape[-2])
        self.n_dof_per_asu_actual = 3 * self.n_atoms_per_asu
        self.enm_cutoff = enm_cutoff
        self.gamma_inter = gamma_inter
        self.gamma_intra = gamma_intra
        self.build_gamma()
        self.build_neighbor_list()

    # -- spring constants --------------------------------------------------------

    def _gamma_tensor(self, value, name) -> torch.Tensor:
        t = as_real(value, self.dtype, self.device)
        if t.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(t.shape)}")
        return t

    def build_gamma(self) -> torch.Tensor:
        """gamma (n_cell, n_asu, n_asu): gamma_intra within each ASU of the reference cell, gamma_inter elsewhere."""
        intra = self._gamma_tensor(self.gamma_intra, "gamma_intra")
        inter = self._gamma_tensor(self.gamma_inter, "gamma_inter")
        cell = torch.arange(self.n_cell, device=self.device)[:, None, None]
        same = torch.eye(self.n_asu, dtype=torch.bool, device=self.device)[None]
        self.gamma = torch.where((cell == self.id_cell_ref) & same, intra, inter)
        return self.gamma

    # -- neighbours --------------------------------------------------------------

    def build_neighbor_list(self) -> Contacts:
        """Find all contacts within ``enm_cutoff`` (see :class:`Contacts`); eryx's nested lists follow on request."""
        with torch.no_grad():  # positions only select pairs here; the pair set carries no gradient
            asus = self.crystal.asu_xyz_reference().to(device="cpu", dtype=torch.float64).numpy()
            origins = self.crystal.cell_origins().to(device="cpu", dtype=torch.float64).numpy()
        self.contacts = _find_contacts(asus, origins, float(self.enm_cutoff), self.id_cell_ref).to(self.device)
        self._asu_neighbors = None
        return self.contacts

    @property
    def asu_neighbors(self) -> list:
        """eryx's ``asu_neighbors[i_asu][i_cell][j_asu][i_atom]``: sorted list of neighbour atom numbers.

        As in eryx each atom also lists itself (reference cell, own ASU). Built
        from ``contacts`` on first use: a Python structure of
        n_asu * n_cell * n_asu * n_atoms lists, meant for small structures.
        """
        if self._asu_neighbors is None:
            self._asu_neighbors = self._nested_neighbours()
        return self._asu_neighbors

    def _nested_neighbours(self) -> list:
        n_asu, n_cell, n_at = self.n_asu, self.n_cell, self.n_atoms_per_asu
        c = [t.cpu().numpy() for t in self.contacts]
        own = np.arange(n_asu * n_at)
        asu_i = np.concatenate([c[0], own // n_at])
        atom_i = np.concatenate([c[1], own % n_at])
        cell = np.concatenate([c[2], np.full(own.size, self.id_cell_ref)])
        asu_j = np.concatenate([c[3], own // n_at])
        atom_j = np.concatenate([c[4], own % n_at])
        # one flat slot per (i_asu, i_cell, j_asu, i_atom) list, in nesting order
        slot = ((asu_i * n_cell + cell) * n_asu + asu_j) * n_at + atom_i
        order = np.lexsort((atom_j, slot))
        slot, atom_j = slot[order], atom_j[order]
        bounds = np.searchsorted(slot, np.arange(n_asu * n_cell * n_asu * n_at + 1))
        flat_j = atom_j.tolist()
        lists = [flat_j[bounds[s] : bounds[s + 1]] for s in range(bounds.size - 1)]
        it = iter(lists)
        return [[[[next(it) for _ in range(n_at)] for _ in range(n_asu)] for _ in range(n_cell)] for _ in range(n_asu)]

    # -- Hessian -----------------------------------------------------------------

    def contact_gamma(self) -> torch.Tensor:
        """Spring constant of every contact, (n_contacts,), differentiable in the gammas."""
        c = self.contacts
        return self.gamma[c.cell, c.asu_i, c.asu_j]

    def hessian_contacts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The Hessian in contact form: (off-diagonal value per contact (n_contacts,), diagonal (n_asu, n_atoms)).

        Off-diagonal entry of a contact is -gamma; an atom's diagonal entry is
        the sum of the gammas of its contacts, so each row sums to zero over all cells.
        """
        g = self.contact_gamma()
        c = self.contacts
        diag = torch.zeros(self.n_asu * self.n_atoms_per_asu, dtype=g.dtype, device=g.device)
        diag = diag.index_add(0, c.asu_i * self.n_atoms_per_asu + c.atom_i, g)
        return -g, diag.reshape(self.n_asu, self.n_atoms_per_asu)

    def compute_hessian(self, *, max_gib: float = 8.0) -> torch.Tensor:
        """Dense complex Hessian (n_asu, n_atoms, n_cell, n_asu, n_atoms).

        Mostly zeros: for big structures use :meth:`hessian_contacts` or
        ``compute_K(None, kvec)``. Refuses (MemoryError) when the dense array
        would exceed ``max_gib`` GiB (193l: 27.7 GB).
        """
        n_asu, n_at = self.n_asu, self.n_atoms_per_asu
        need = (n_asu * n_at) ** 2 * self.n_cell * 2 * torch.empty((), dtype=self.dtype).element_size() / 2**30
        if need > max_gib:
            raise MemoryError(
                f"the dense GNM Hessian would take {need:.1f} GiB (limit max_gib={max_gib}); "
                "use hessian_contacts() or compute_K(None, kvec) instead"
            )
        off, diag = self.hessian_contacts()
        c = self.contacts
        dense = torch.zeros((n_asu, n_at, self.n_cell, n_asu, n_at), dtype=off.dtype, device=off.device)
        dense = dense.index_put((c.asu_i, c.atom_i, c.cell, c.asu_j, c.atom_j), off)
        a = torch.arange(n_asu, device=off.device)[:, None].expand(n_asu, n_at)
        t = torch.arange(n_at, device=off.device)[None, :].expand(n_asu, n_at)
        dense = dense.index_put((a, t, torch.full_like(a, self.id_cell_ref), a, t), diag)
        return dense.to(complex_dtype(off.dtype))

    # -- dynamical matrix --------------------------------------------------------

    def _kvec(self, kvec) -> torch.Tensor:
        if kvec is None:
            return torch.zeros(3, dtype=self.dtype, device=self.device)
        k = as_real(kvec, self.dtype, self.device)
        if k.ndim == 0 or k.shape[-1] != 3:
            raise ValueError(f"kvec must have shape (3,) or (..., 3), got {tuple(k.shape)}")
        return k

    def compute_K(self, hessian=None, kvec=None) -> torch.Tensor:
        """K(k) = sum over cells of H(cell) exp(i k . r_cell), shape (..., n_asu, n_dof, n_asu, n_dof).

        ``hessian`` is (n_asu, n_dof, n_cell, n_asu, n_dof): the atomic one
        (n_dof = n_atoms) or any other, e.g. a rigid-body Hessian.

        ``kvec`` is (3,) (default zero) or batched (..., 3). With ``hessian=None``
        K is assembled straight from the contacts (no dense Hessian).
        """
        k = self._kvec(kvec)
        eikr = _kvec_phases(k, self.crystal.cell_origins().to(k))  # (..., n_cell)
        n_asu, n_at = self.n_asu, self.n_atoms_per_asu
        if hessian is not None:
            # any number of degrees of freedom per ASU: OnePhonon passes its rigid-body Hessian here
            if not isinstance(hessian, torch.Tensor):  # copy: arrays may be read-only (e.g. from a trace)
                hessian = torch.as_tensor(np.array(hessian))
            hessian = hessian.to(eikr.device)
            shape = tuple(hessian.shape)
            if len(shape) != 5 or shape[0] != n_asu or shape[3] != n_asu or shape[2] != self.n_cell or shape[1] != shape[4]:
                raise ValueError(
                    f"hessian must have shape (n_asu={n_asu}, n_dof, n_cell={self.n_cell}, n_asu={n_asu}, n_dof), got {shape}"
                )
            return torch.einsum("...c,iacjb->...iajb", eikr, hessian.to(eikr.dtype))
        off, diag = self.hessian_contacts()
        c = self.contacts
        n = n_asu * n_at
        rows = c.asu_i * n_at + c.atom_i
        flat = rows * n + c.asu_j * n_at + c.atom_j
        values = off.to(eikr.dtype) * eikr[..., c.cell]  # (..., n_contacts)
        K = torch.zeros(eikr.shape[:-1] + (n * n,), dtype=eikr.dtype, device=eikr.device)
        K = K.index_add(-1, flat, values)
        own = torch.arange(n, device=eikr.device)
        K = K.index_add(-1, own * n + own, diag.reshape(-1).to(eikr.dtype).expand(eikr.shape[:-1] + (n,)))
        return K.reshape(eikr.shape[:-1] + (n_asu, n_at, n_asu, n_at))

    def compute_Kinv(self, hessian=None, kvec=None, reshape=True) -> torch.Tensor:
        """Pseudo-inverse of K(k) (numpy's default cutoff: singular values below 1e-15 * largest are dropped).

        Shape (..., n_asu, n_dof, n_asu, n_dof), or (..., n_asu*n_dof, n_asu*n_dof) with ``reshape=False``.
        """
        K = self.compute_K(hessian, kvec=kvec)
        n = K.shape[-4] * K.shape[-3]
        Kinv = torch.linalg.pinv(K.reshape(K.shape[:-4] + (n, n)), rtol=PINV_RCOND)
        return Kinv.reshape(K.shape) if reshape else Kinv
