"""One-phonon diffuse intensity on a regular hkl grid: fast rigid-body structure factors and their contraction.

Structure factors. For ASU ``m`` and q-point q, with ``A_j(q) = f_j(|q|) exp(-|q|^2 U_j / 2) exp(i q . r_j)``,
the projection of ``q A_j`` on the six rigid-body components only needs four sums:
``S0 = sum_j A_j`` and ``S1 = sum_j A_j s_j`` (``s_j`` the lever arm): translation ``q S0``,
rotation ``S1 x q`` (that is ``q^T`` times the rotational block of the A matrix).

The q-points form a regular grid in hkl, so in fractional coordinates ``x_j``
``q . r_j = 2 pi (h x_j + k y_j + l z_j)`` and ``|q|^2 = hkl^T G hkl`` (``G = 4 pi^2 A_inv A_inv^T``).
When one axis ("free" axis) has no cross term with the other two in G (orthogonal cells,
hexagonal/trigonal l, monoclinic b), ``exp(i q.r_j - |q|^2 U_j/2)`` is the product of a table over
the two other axes and a table over the free axis, and the sum over atoms becomes a matrix
product (BLAS) per element: form factors depend only on the element and |q|. Only small
tables need transcendental functions. Triclinic cells fall back to the direct sum.

Intensity. The q-points that share a k-vector (a class of grid indices modulo the
oversampling) are contracted with that k-vector's matrix in one batched product.
"""

from __future__ import annotations

import math

import torch

# Relative size below which a cross term of the metric is treated as zero (orthogonal axes
# carry round-off of order 1e-17 there).
_CROSS_TERM_TOL = 1e-14


def element_groups(ff_a: torch.Tensor, ff_b: torch.Tensor, ff_c: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Group the atoms of one ASU by identical form-factor coefficients.

    ``ff_a``/``ff_b``: (n_atoms, 4), ``ff_c``: (n_atoms,). Returns (list of atom-index tensors,
    coefficients (n_groups, 9) as ``a1..a4, b1..b4, c``).
    """
    coefs = torch.cat([ff_a, ff_b, ff_c[:, None]], dim=1)
    unique, inverse = torch.unique(coefs.detach().cpu(), dim=0, return_inverse=True)
    groups = [torch.nonzero(inverse == g).reshape(-1).to(ff_a.device) for g in range(unique.shape[0])]
    return groups, unique.to(device=ff_a.device, dtype=ff_a.dtype)


def _gaussian_sum(coef: torch.Tensor, qsq: torch.Tensor) -> torch.Tensor:
    """Form factor ``sum_i a_i exp(-b_i |q|^2 / (16 pi^2)) + c`` at |q|^2 values ``qsq``."""
    s = qsq / (16 * math.pi**2)
    a, b, c = coef[:4], coef[4:8], coef[8]
    return (a * torch.exp(-b * s[..., None])).sum(-1) + c


def _cis(real_part: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``exp(real_part + i phase)`` built from real functions (keeps autograd simple on every device)."""
    mag = torch.exp(real_part)
    return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))


def free_axis(G: torch.Tensor) -> int | None:
    """An axis with no cross term with the two others in the metric G (prefers l, then k, then h), or None."""
    scale = G.detach().abs().max()
    for ax in (2, 1, 0):
        others = [o for o in range(3) if o != ax]
        if all(abs(float(G[ax, o])) <= _CROSS_TERM_TOL * float(scale) for o in others):
            return ax
    return None


def rigid_body_structure_factors(
    axes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    A_inv: torch.Tensor,
    xyz: torch.Tensor,
    arms: torch.Tensor,
    ff: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    U: torch.Tensor,
) -> torch.Tensor:
    """Rigid-body structure factors on the grid ``axes`` = (h values, k values, l values).

    ``xyz``/``arms``: (n_asu, n_atoms, 3); ``ff`` = (ff_a (n_atoms, 4), ff_b (n_atoms, 4), ff_c (n_atoms,))
    shared by all ASUs; ``U``: (n_atoms,) or (n_asu, n_atoms). Returns F (n_h, n_k, n_l, n_asu, 6), complex,
    the components ordered like eryx's A matrix (translation x, y, z, then rotation).
    """
    S = rigid_body_sums(axes, A_inv, xyz, arms, ff, U)
    q = grid_q(axes, A_inv.to(xyz.dtype))
    F = torch.empty(S.shape[:-1] + (6,), dtype=S.dtype, device=S.device)
    assemble_factors(S, q, F)
    return F


def grid_q(axes, A_inv: torch.Tensor) -> torch.Tensor:
    """q-vectors ``2 pi A_inv^T hkl`` on the grid, (n_h, n_k, n_l, 3)."""
    hkl = torch.stack(torch.meshgrid(*[a.to(A_inv.dtype) for a in axes], indexing="ij"), dim=-1)
    return 2 * math.pi * (hkl @ A_inv)


def assemble_factors(S: torch.Tensor, q: torch.Tensor, out: torch.Tensor) -> None:
    """Write ``[q S0, S1 x q]`` for sums S (..., n_asu, 4) and real q (..., 3) into ``out`` (..., n_asu, 6)."""
    q = q[..., None, :]  # against the ASU axis
    s0, s1x, s1y, s1z = S.unbind(-1)
    qx, qy, qz = q.unbind(-1)
    if S.requires_grad or q.requires_grad:  # autograd: plain assignments
        out[..., :3] = S[..., :1] * q
        out[..., 3] = s1y * qz - s1z * qy
        out[..., 4] = s1z * qx - s1x * qz
        out[..., 5] = s1x * qy - s1y * qx
        return
    torch.mul(S[..., :1], q, out=out[..., :3])
    for c, (a, qa, b, qb) in enumerate(((s1y, qz, s1z, qy), (s1z, qx, s1x, qz), (s1x, qy, s1y, qx)), start=3):
        torch.mul(a, qa, out=out[..., c])
        out[..., c].sub_(b * qb)


def rigid_body_sums(axes, A_inv, xyz, arms, ff, U) -> torch.Tensor:
    """``S0 = sum_j A_j`` and ``S1 = sum_j A_j s_j`` on the grid: (n_h, n_k, n_l, n_asu, 4), complex.

    Arguments as :func:`rigid_body_structure_factors`.
    """
    dtype = xyz.dtype
    n_asu, n_atoms = xyz.shape[:2]
    U = U.to(dtype).expand(n_asu, n_atoms)
    A_inv = A_inv.to(dtype)
    G = 4 * math.pi**2 * (A_inv @ A_inv.T)
    frac = xyz @ A_inv.T  # fractional coordinates, (n_asu, n_atoms, 3)
    weights = torch.cat([torch.ones_like(arms[..., :1]), arms], dim=-1)  # (n_asu, n_atoms, 4)
    groups, coefs = element_groups(*ff)
    f_ax = free_axis(G)
    if f_ax is None:
        return _sums_direct(axes, G, frac, weights, U, groups, coefs)
    return _sums_factorised(axes, G, frac, weights, U, groups, coefs, f_ax)


def _sums_factorised(axes, G, frac, weights, U, groups, coefs, f_ax):
    """S (n_h, n_k, n_l, n_asu, 4) with the free axis split off as a matrix product."""
    a1, a2 = [a for a in range(3) if a != f_ax]
    v1, v2, vf = (axes[a].to(frac.dtype) for a in (a1, a2, f_ax))
    n1, n2, nf = v1.numel(), v2.numel(), vf.numel()
    n_asu = frac.shape[0]
    # |q|^2 = Q12(i1, i2) + Qf(if)
    Q12 = G[a1, a1] * v1[:, None] ** 2 + G[a2, a2] * v2[None, :] ** 2 + 2 * G[a1, a2] * v1[:, None] * v2[None, :]
    Qf = G[f_ax, f_ax] * vf**2
    total = None
    for atoms, coef in zip(groups, coefs):  # a handful of elements, not atoms
        x = frac[:, atoms]  # (n_asu, n_g, 3)
        u = U[:, atoms]  # (n_asu, n_g)
        # T over the two other axes, built as (n_asu, n1, n2, n_g) products of per-axis tables
        h1 = _cis(-0.5 * u[:, None, :] * (G[a1, a1] * v1**2)[None, :, None], 2 * math.pi * v1[None, :, None] * x[:, None, :, a1])
        h2 = _cis(-0.5 * u[:, None, :] * (G[a2, a2] * v2**2)[None, :, None], 2 * math.pi * v2[None, :, None] * x[:, None, :, a2])
        T = h1[:, :, None, :] * h2[:, None, :, :]
        if bool(G[a1, a2] != 0):  # cross term of the Debye-Waller factor (oblique axes a1, a2)
            cross = torch.exp(-u[:, None, None, :] * (G[a1, a2] * v1[:, None] * v2[None, :])[None, :, :, None])
            T = torch.view_as_complex(torch.view_as_real(T) * cross[..., None])
        Lf = _cis(-0.5 * u[None] * Qf[:, None, None], 2 * math.pi * vf[:, None, None] * x[None, :, :, f_ax])  # (nf, n_asu, n_g)
        M = Lf[..., None] * weights[None, :, atoms].to(Lf.dtype)  # (nf, n_asu, n_g, 4)
        M = M.permute(1, 2, 0, 3).reshape(n_asu, atoms.numel(), nf * 4)
        Tm = T.reshape(n_asu, n1 * n2, atoms.numel())
        part = torch.bmm(Tm, M).reshape(n_asu, n1, n2, nf, 4)
        # the element's form factor, separable in the same way: a_i exp(-b_i Q12/16pi^2) exp(-b_i Qf/16pi^2)
        s12 = Q12 / (16 * math.pi**2)
        sf = Qf / (16 * math.pi**2)
        a, b, c = coef[:4], coef[4:8], coef[8]
        ffac = torch.einsum("i,xyi,zi->xyz", a, torch.exp(-b * s12[..., None]), torch.exp(-b * sf[..., None])) + c
        # real form factor times complex sums, accumulated in place on the real views
        if total is None:  # the bmm output is ours to scale in place
            total = part
            torch.view_as_real(total).mul_(ffac[None, ..., None, None])
        else:
            torch.view_as_real(total).addcmul_(torch.view_as_real(part), ffac[None, ..., None, None])
    # back to (h, k, l) order, ASU after the grid axes
    order = [0, 0, 0]
    order[a1], order[a2], order[f_ax] = 1, 2, 3
    return total.permute(*order, 0, 4)


def _sums_direct(axes, G, frac, weights, U, groups, coefs):
    """S (n_h, n_k, n_l, n_asu, 4) by the direct sum over atoms (any cell)."""
    hkl = torch.stack(torch.meshgrid(*[a.to(frac.dtype) for a in axes], indexing="ij"), dim=-1)
    qsq = torch.einsum("...a,ab,...b->...", hkl, G, hkl)
    total = None
    for atoms, coef in zip(groups, coefs):
        x = frac[:, atoms]
        phase = 2 * math.pi * torch.einsum("...a,mja->...mj", hkl, x)
        E = _cis(-0.5 * U[:, atoms] * qsq[..., None, None], phase)  # (..., n_asu, n_g)
        part = torch.einsum("...mj,mjc->...mc", E, weights[:, atoms].to(E.dtype))
        part = part * _gaussian_sum(coef, qsq).to(part.dtype)[..., None, None]
        total = part if total is None else total + part
    return total


def _padded_axis(values: torch.Tensor, n: int) -> torch.Tensor:
    """Axis values extended to length n by continuing the even spacing (the extra points are discarded)."""
    extra = n - values.numel()
    if extra == 0:
        return values
    step = values[1] - values[0] if values.numel() > 1 else torch.ones((), dtype=values.dtype, device=values.device)
    tail = values[-1] + step * torch.arange(1, extra + 1, dtype=values.dtype, device=values.device)
    return torch.cat([values, tail])


def onephonon_grid(
    axes, sampling, A_inv, xyz, arms, ff, U, B, weights=None, *, chunk_elements=300_000, progress=False
) -> torch.Tensor:
    """``sum_r w_r |F(q) B_k[:, r]|^2`` on the whole grid ``axes``, each q-point with the B of its k-vector class.

    A grid point (i, j, l) has class (i mod N_h, j mod N_k, l mod N_l) (C order, like the flattened
    k-vector grid). ``B``: (n_class, n_asu*6, R); ``weights``: (n_class, R) or None (ones).
    Rows of h are processed in chunks of whole multiples of N_h (about ``chunk_elements`` sums held
    at once); the structure factors of a chunk are written straight into a class-major buffer so
    that one batched product per chunk serves every class. Returns (n_h, n_k, n_l), real.
    """
    from tqdm.auto import tqdm

    Nh, Nk, Nl = sampling
    nh, nk, nl = (a.numel() for a in axes)
    mk, ml = -(-nk // Nk), -(-nl // Nl)
    kv, lv = _padded_axis(axes[1], mk * Nk), _padded_axis(axes[2], ml * Nl)
    n_asu = xyz.shape[0]
    N = B.shape[1]
    rows = max(1, chunk_elements // max(1, mk * Nk * ml * Nl * n_asu * 4))
    mh_chunk = -(-rows // Nh)
    hv_all = _padded_axis(axes[0], -(-nh // Nh) * Nh)
    out = []
    starts = range(0, nh, mh_chunk * Nh)
    for start in tqdm(starts, desc="one-phonon map", disable=not progress or len(starts) < 2, leave=False):
        hv = hv_all[start : start + mh_chunk * Nh]
        mh = hv.numel() // Nh
        S = rigid_body_sums((hv, kv, lv), A_inv, xyz, arms, ff, U)
        q = grid_q((hv, kv, lv), A_inv.to(xyz.dtype))
        F = torch.empty(S.shape[:-1] + (6,), dtype=S.dtype, device=S.device)
        assemble_factors(S, q, F)
        # one copy into class-major order: (Nh, Nk, Nl, mh, mk, ml, n_asu*6)
        buf = F.view(mh, Nh, mk, Nk, ml, Nl, N).permute(1, 3, 5, 0, 2, 4, 6).contiguous()
        Y = torch.bmm(buf.view(Nh * Nk * Nl, mh * mk * ml, N), B.to(buf.dtype))
        Yr = torch.view_as_real(Y)  # (n_class, m, R, 2)
        if weights is None:  # sum of squares over modes and real/imaginary parts as one batched dot
            flat = Yr.reshape(Yr.shape[0], Yr.shape[1], -1)
            P = torch.einsum("cmr,cmr->cm", flat, flat)
        else:
            P = (Yr.square().sum(-1) * weights[:, None, :]).sum(-1)
        out.append(P.view(Nh, Nk, Nl, mh, mk, ml).permute(3, 0, 4, 1, 5, 2).reshape(mh * Nh, mk * Nk, ml * Nl))
    return torch.cat(out, dim=0)[:nh, :nk, :nl]


def class_index(shape: tuple[int, int, int], sampling: tuple[int, int, int], device=None) -> torch.Tensor:
    """k-vector class of every grid point, (n_h, n_k, n_l) int64, in (dh, dk, dl) C order."""
    idx = [torch.arange(n, device=device) % s for n, s in zip(shape, sampling)]
    return (idx[0][:, None, None] * sampling[1] + idx[1][None, :, None]) * sampling[2] + idx[2][None, None, :]
