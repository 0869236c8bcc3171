"""Lattice dynamics of rigid asymmetric units: pure tensor functions used by :class:`eryx_port.models.OnePhonon`.

Conventions (same meaning as eryx):

* Each asymmetric unit (ASU) moves as a rigid body with 6 degrees of freedom
  ``w = (t, l)``; atom ``a`` moves by ``u_a = A_a w`` with ``A_a = [I3 | -[s_a]x]`` and
  ``s_a`` the atom's lever arm (see :func:`lever_arms` for eryx's convention).
* The projected Hessian has shape ``(n_asu, 6, n_cell, n_asu, 6)``: block
  ``[i, :, c, j, :]`` couples ASU ``i`` of the reference cell with ASU ``j`` of cell ``c``.
* ``K(k) = sum_c H(c) exp(i k . r_c)``; ``D(k) = Linv K(k) Linv^T`` with ``M = L L^T``.

Everything is vectorised over k-vectors, cells, ASUs and atoms, and differentiable
with respect to the coordinates, masses and spring constants.
"""

from __future__ import annotations

import math

import torch

# eryx turns a mode into NaN when its frequency sqrt(|eigenvalue|) is below this.
FREQUENCY_CUTOFF = 1e-6


def centered_k_fraction(n: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Fractions ``i/n`` folded into ``[-1/2, 1/2)`` for ``i = 0..n-1`` (the Brillouin-zone sampling)."""
    i = torch.arange(n, device=device)
    folded = torch.where(2 * i >= n, i - n, i)
    return folded.to(dtype) / n


def kvec_grid(A_inv: torch.Tensor, n_h: int, n_k: int, n_l: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-vectors ``2 pi A_inv^T (dh, dk, dl)`` on the Brillouin-zone grid, shape (n_h, n_k, n_l, 3), and their norms (..., 1)."""
    dtype, device = A_inv.dtype, A_inv.device
    fh, fk, fl = (centered_k_fraction(n, dtype=dtype, device=device) for n in (n_h, n_k, n_l))
    frac = torch.stack(torch.meshgrid(fh, fk, fl, indexing="ij"), dim=-1)
    kvec = 2 * math.pi * (frac @ A_inv)
    return kvec, torch.linalg.vector_norm(kvec, dim=-1, keepdim=True)


def lever_arms(xyz: torch.Tensor, convention: str = "eryx") -> torch.Tensor:
    """Lever arms of the atoms for the rigid-body rotations, (n_asu, n_atoms, 3) from xyz of the same shape.

    ``"centered"``: each atom relative to the unweighted mean of its ASU (the textbook choice).
    ``"eryx"``: what eryx's A matrix actually holds. eryx builds the antisymmetric block in a
    scratch matrix that it never resets, so each atom receives the running sum of the centered
    coordinates of all atoms before it, ASU after ASU. Parity with eryx needs this convention.
    """
    centered = xyz - xyz.mean(dim=-2, keepdim=True)
    if convention == "centered":
        return centered
    if convention == "eryx":
        return torch.cumsum(centered.reshape(-1, 3), dim=0).reshape(centered.shape)
    raise ValueError(f"lever-arm convention must be 'eryx' or 'centered', not {convention!r}")


def rigid_body_projection(arms: torch.Tensor) -> torch.Tensor:
    """Matrices mapping rigid-body displacements (t, l) to atomic displacements.

    ``arms``: lever arms (n_asu, n_atoms, 3) (see :func:`lever_arms`). Returns (n_asu, n_atoms, 3, 6);
    the rotational block of an atom with arm (x, y, z) is ``[[0, z, -y], [-z, 0, x], [y, -x, 0]]``.
    """
    x, y, z = arms.unbind(-1)
    zero = torch.zeros_like(x)
    rot = torch.stack(
        [
            torch.stack([zero, z, -y], dim=-1),
            torch.stack([-z, zero, x], dim=-1),
            torch.stack([y, -x, zero], dim=-1),
        ],
        dim=-2,
    )
    eye = torch.eye(3, dtype=arms.dtype, device=arms.device).expand(rot.shape)
    return torch.cat([eye, rot], dim=-1)


def projected_mass(A: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Rigid-body mass matrix of each ASU, ``sum_a m_a A_a^T A_a``: (n_asu, 6, 6) from A (n_asu, n_atoms, 3, 6)."""
    return torch.einsum("ia,iaxp,iaxq->ipq", masses.to(A.dtype), A, A)


def block_diagonal(blocks: torch.Tensor) -> torch.Tensor:
    """(n, d, d) blocks as one (n*d, n*d) block-diagonal matrix."""
    n, d, _ = blocks.shape
    eye = torch.eye(n, dtype=blocks.dtype, device=blocks.device)
    return torch.einsum("ij,iab->iajb", eye, blocks).reshape(n * d, n * d)


def mass_whitening(M_blocks: torch.Tensor) -> torch.Tensor:
    """``Linv = L^-1`` with ``M = L L^T`` (Cholesky) for the block-diagonal mass matrix; (n_asu*6, n_asu*6)."""
    L, info = torch.linalg.cholesky_ex(M_blocks)
    if bool((info != 0).any()):
        bad = torch.nonzero(info).reshape(-1).tolist()
        raise ValueError(
            f"the rigid-body mass matrix of ASU(s) {bad} is not positive definite: the atoms' lever arms "
            "do not span the rotations (a single atom, collinear atoms or zero masses; eryx fails here as well)"
        )
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand(L.shape)
    return block_diagonal(torch.linalg.solve_triangular(L, eye, upper=False))


def projected_hessian(
    A: torch.Tensor,
    contacts: tuple[torch.Tensor, ...],
    gamma: torch.Tensor,
    id_cell_ref: int,
) -> torch.Tensor:
    """Hessian of the Gaussian network projected on the rigid-body motions, shape (n_asu, 6, n_cell, n_asu, 6).

    ``contacts = (asu_i, atom_i, cell, asu_j, atom_j)``: every ordered atom pair within the cutoff
    (atom_i in the reference cell), the self pair excluded. The all-atom Hessian block of a pair is
    ``-gamma * I3``, and the diagonal carries the sum of the spring constants of the atom's
    contacts, so each contact contributes ``-gamma A_i^T A_j`` to its (asu_i, cell, asu_j) block
    and ``gamma A_i^T A_i`` to the reference-cell diagonal block of asu_i.
    """
    asu_i, atom_i, cell, asu_j, atom_j = contacts
    n_asu, n_atoms = A.shape[:2]
    n_cell = gamma.shape[0]
    g = gamma.to(A.dtype)[cell, asu_i, asu_j]
    Ai = A[asu_i, atom_i]
    Aj = A[asu_j, atom_j]
    off = torch.einsum("n,nxp,nxq->npq", g, Ai, Aj)
    pair = (asu_i * n_cell + cell) * n_asu + asu_j
    H = torch.zeros(n_asu * n_cell * n_asu, 6, 6, dtype=A.dtype, device=A.device).index_add(0, pair, -off)
    # Sum of spring constants per atom, then its rigid-body projection on the diagonal blocks.
    degree = torch.zeros(n_asu * n_atoms, dtype=A.dtype, device=A.device).index_add(0, asu_i * n_atoms + atom_i, g)
    diag = torch.einsum("ia,iaxp,iaxq->ipq", degree.view(n_asu, n_atoms), A, A)
    diag_pos = (torch.arange(n_asu, device=A.device) * n_cell + id_cell_ref) * n_asu + torch.arange(n_asu, device=A.device)
    H = H.index_add(0, diag_pos, diag)
    return H.view(n_asu, n_cell, n_asu, 6, 6).permute(0, 3, 1, 2, 4)


def cell_phases(kvec: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """``exp(i k . r_c)`` for every k-vector (..., 3) and cell origin (n_cell, 3): shape (..., n_cell)."""
    phase = kvec @ origins.to(kvec.dtype).T
    return torch.polar(torch.ones_like(phase), phase)


def dynamical_matrices(hessian: torch.Tensor, kvec: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """``K(k) = sum_c H(c) exp(i k . r_c)`` for all k at once: (n_k, n_dof, n_dof), k flattened in C order."""
    n_asu, d, n_cell = hessian.shape[:3]
    n = n_asu * d
    H = hessian.reshape(n, n_cell, n).to(torch.promote_types(hessian.dtype, torch.complex64))
    phases = cell_phases(kvec.reshape(-1, 3), origins).to(H.dtype)
    return torch.einsum("kc,icj->kij", phases, H)


def phonon_modes(K: torch.Tensor, Linv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Modes of ``D = Linv K Linv^T`` for a batch of K (..., n, n).

    Returns ``V = Linv^T v`` (..., n, n) with modes in columns, and ``Winv = 1/|lambda|`` (..., n)
    (real), ordered by increasing ``|lambda|``, NaN where ``sqrt(|lambda|) < 1e-6`` (eryx's rule).
    """
    Lc = Linv.to(K.dtype)
    D = Lc @ K @ Lc.mT
    evals, vecs = torch.linalg.eigh(D)
    s = evals.abs()
    order = torch.argsort(s.detach(), dim=-1)
    s = torch.gather(s, -1, order)
    vecs = torch.gather(vecs, -1, order.unsqueeze(-2).expand(vecs.shape))
    w = torch.sqrt(s)
    nan = torch.full_like(w, float("nan"))
    safe_w = torch.where(w < FREQUENCY_CUTOFF, torch.ones_like(w), w)
    Winv = torch.where(w < FREQUENCY_CUTOFF, nan, 1.0 / safe_w**2)
    return Lc.mT @ vecs, Winv


def translation_projector(n_asu: int, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Orthogonal projector on uniform translations of all ASUs (the null space of K(0)), (n_asu*6, n_asu*6)."""
    basis = torch.zeros(n_asu, 6, 3, dtype=dtype, device=device)
    basis[:, :3, :] = torch.eye(3, dtype=dtype, device=device) / math.sqrt(n_asu)
    basis = basis.reshape(n_asu * 6, 3)
    return basis @ basis.T


def zero_k_mask(kvec: torch.Tensor) -> torch.Tensor:
    """True for k-vectors (flattened) that are exactly zero."""
    return (kvec.reshape(-1, 3) == 0).all(dim=-1)


# numpy.linalg.pinv's default cutoff (what eryx uses): eigenvalues at most this times the largest are dropped
PINV_RCOND = 1e-15


def inverse_dynamical(K: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of K(k) for all k (n_k, n, n), with numpy.linalg.pinv's default cutoff.

    The null space of each K (uniform translations at k = 0, and any other mode of zero stiffness,
    e.g. along a direction with no contact between cells) is found from a detached eigen-decomposition;
    with P its projector, ``(K + P)^-1 - P`` is the pseudo-inverse and has clean derivatives
    (an SVD-based pinv has none through degenerate zero modes). For positive definite K it is the inverse.
    """
    with torch.no_grad():
        evals, vecs = torch.linalg.eigh(K)
        null = evals.abs() <= PINV_RCOND * evals.abs().amax(dim=-1, keepdim=True)
        P = (vecs * null[..., None, :].to(vecs.dtype)) @ vecs.mH
    return torch.linalg.inv(K + P) - P


def lattice_covariance(Kinv: torch.Tensor, kvec: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """``sum_k Kinv(k) exp(i k . r_c)`` for every cell c: (n, n_cell, n), complex."""
    phases = cell_phases(kvec.reshape(-1, 3), origins).to(Kinv.dtype)
    return torch.einsum("kij,kc->icj", Kinv, phases)


def adp_from_covariance(covar_ref_diag: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """eryx's per-atom displacement figure: ``sum_{asu, x} (A_asu diag(C_asu))`` for the reference-cell
    covariance diagonal (n_asu*6,) and A (n_asu, n_atoms, 3, 6); shape (n_atoms,)."""
    n_asu = A.shape[0]
    return torch.einsum("iaxp,ip->a", A, covar_ref_diag.reshape(n_asu, 6))


def rb_mode_weight(kvec: torch.Tensor) -> torch.Tensor:
    """eryx's experimental 'rb' model: a diagonal K with the Gaussian ``exp(-|k|^2 / (2 |k_300|^2))``.

    ``kvec`` has shape (n_h, n_k, n_l, 3) with n_h >= 4 (the reference is ``kvec[3, 0, 0]``).
    Returns ``(V, Winv)`` for the n_dof modes as the SVD of that diagonal matrix gives them:
    identity modes, and the Gaussian repeated on every mode.
    """
    if kvec.shape[0] < 4:
        raise ValueError(f"model='rb' needs an h oversampling of at least 4 (it scales k by kvec[3,0,0]); got {kvec.shape[0]}")
    scale = torch.linalg.vector_norm(kvec[3, 0, 0])
    return torch.exp(-0.5 * (torch.linalg.vector_norm(kvec, dim=-1) / scale) ** 2)
