# SPDX-License-Identifier: GPL-2.0-or-later
"""Structure-factor sums on a regular hkl grid, exact for every unit cell: the engine the models use.

For the atoms j of each ASU, with fractional coordinates ``x_j``, isotropic displacement ``U_j``,
real weights ``w_jc`` and one element's form factor ``f(|q|)``, the sums on a grid of Miller
indices ``hkl`` are::

    S_c(hkl) = f(|q|) sum_j w_jc exp(2 pi i hkl . x_j) exp(-U_j |q|^2 / 2),   |q|^2 = hkl^T G hkl.

The phase factorises along h, k and l for any cell; the Debye-Waller factor does too, except for
the cross terms of the metric ``G``. Split the axes into a column axis ``f`` and two row axes
(a1, a2). Then ``|q|^2 / 2 = row part + G_ff h_f^2 / 2 + h_f g`` with ``g = G_1f h_1 + G_2f h_2``,
and only ``h_f g`` ties a row to a column. Rows are sorted by ``g`` and cut into blocks, columns
into narrow blocks, and around a block's centre ``(g0, hf0)``::

    h_f g = h_f g0 + hf0 (g - g0) + (h_f - hf0) (g - g0).

The first term joins the column table and the second the row table, exactly. The small bilinear
rest ``exp(-U_j dh dg)`` is a short Chebyshev series in ``dg`` whose coefficients are modified
Bessel functions of ``U_j dh eps`` (``eps`` the block's half width in g); it is truncated where
its error bound drops below the working precision, so the sums are exact to round-off. A cell
with an axis free of cross terms (orthogonal, hexagonal l, monoclinic b) needs a single term.
Every (row block, column block) pair is then one batched complex matrix product over the atoms:
no transcendental function is evaluated per (atom, q-point) pair.

Why this and not a non-uniform FFT: the Debye-Waller factor would still need an expansion (one
transform per element, weight and term), and at 1e-12 the transforms cost more than the matrix
products on grids of 1e8 points (and do not give gradients in torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._alloc import keep_freed_memory

# Relative size below which a cross term of the metric is round-off (orthogonal axes carry ~1e-17).
_CROSS_TERM_TOL = 1e-14
# Rows per block when rows are coupled to the column axis: smaller blocks are narrower in g
# (fewer Chebyshev terms) but give smaller matrix products. The terms fall only with the log of the
# series' argument: on 6o2h-sub (data B-factors) 512 x 48 blocks need 4.11 terms per atom and 0.67 s,
# 128 x 24 3.47 and 0.89 s, 64 x 24 3.22 and 1.08 s, 32 x 32 3.11 and 1.69 s (2026-12-03). Atoms in
# four groups of U with a centre each would need 3.76, a tolerance of 1e-10 instead of ~1e-14 3.12.
_ROW_BLOCK_COUPLED = 512
_ROW_BLOCK_FREE = 512
# Columns per block when coupled: the Chebyshev argument grows with the block's width.
_COL_BLOCK_COUPLED = 48
# Inner sizes from which the engine's complex products are done as three real ones (:func:`_gauss_bmm`).
_GAUSS_MIN_INNER = 128
_DEBUG = False
# Tests only: take the other of the two contraction orders of coupled cells (both are exact).
_FLIP_ORDER = False


def element_groups(ff_a: torch.Tensor, ff_b: torch.Tensor, ff_c: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Group the atoms of one ASU by identical form-factor coefficients.

    ``ff_a``/``ff_b``: (n_atoms, n_gauss), ``ff_c``: (n_atoms,). Returns (list of atom-index tensors,
    coefficients (n_groups, 2 n_gauss + 1) as ``a..., b..., c``).
    """
    coefs = torch.cat([ff_a, ff_b, ff_c[:, None]], dim=1)
    unique, inverse = torch.unique(coefs.detach().cpu(), dim=0, return_inverse=True)
    groups = [torch.nonzero(inverse == g).reshape(-1).to(ff_a.device) for g in range(unique.shape[0])]
    return groups, unique.to(device=ff_a.device, dtype=ff_a.dtype)


def form_factor(coef: torch.Tensor, qsq: torch.Tensor) -> torch.Tensor:
    """One element's form factor ``sum_i a_i exp(-b_i |q|^2 / (16 pi^2)) + c`` at |q|^2 values ``qsq``."""
    n = (coef.numel() - 1) // 2
    s = qsq / (16 * math.pi**2)
    total = torch.full_like(s, float(coef[2 * n])) if not coef.requires_grad else coef[2 * n].expand_as(s)
    for i in range(n):
        total = total + coef[i] * torch.exp(-coef[n + i] * s)
    return total


def separable_form_factor(coef: torch.Tensor, s_rows: torch.Tensor, s_cols: torch.Tensor) -> torch.Tensor:
    """One element's form factor at ``|q|^2 / (16 pi^2) = s_rows + s_cols`` (an outer sum), each value
    twice: (..., n_cols, 2), to scale the (re, im) pairs of complex values.

    Each Gaussian ``a exp(-b (s_r + s_c)) = exp(-b s_r) a exp(-b s_c)`` is an outer product, so the
    form factor is one small matrix product of row and column tables (no exponential per point).
    """
    n = (coef.numel() - 1) // 2
    a, b, c = coef[:n], coef[n : 2 * n], coef[2 * n :]
    rows = torch.cat([torch.exp(-b[:, None] * s_rows.reshape(1, -1)), torch.ones_like(s_rows).reshape(1, -1)])
    cols = torch.cat([a[:, None] * torch.exp(-b[:, None] * s_cols[None, :]), c[:, None].expand(1, s_cols.numel())])
    out = rows.T @ cols.repeat_interleave(2, dim=1)  # (n_rows, 2 n_cols): the column values doubled
    return out.view(*s_rows.shape, s_cols.numel(), 2)


def chebyshev_terms(eps_times_range, tol: float):
    """Terms of the series of exp(-z y), |y| <= 1, |z| <= ``eps_times_range``, for error below ``tol``.

    A number gives an int; a tensor of ranges gives a tensor of counts (int64, same shape): the
    fewest M >= 1 with 2 (z/2)^M / M! exp(z^2 / 4) <= ``tol`` (which bounds the dropped tail), at most 64.
    """
    z = torch.as_tensor(eps_times_range, dtype=torch.float64).abs()
    half = z[..., None] / 2
    # 2 (z/2)^M / M! for M = 1..64, accumulated factor by factor
    steps = torch.cat([2 * half, half / torch.arange(2, 65, dtype=torch.float64)], dim=-1)
    ok = torch.cumprod(steps, dim=-1) * torch.exp(z * z / 4)[..., None] <= tol
    terms = torch.where(ok.any(dim=-1), ok.to(torch.int8).argmax(dim=-1) + 1, 64)
    terms = torch.where(z == 0, 1, terms)
    return int(terms) if terms.ndim == 0 else terms


def bessel_coefficients(z: torch.Tensor, n_terms: int) -> torch.Tensor:
    """Chebyshev coefficients of ``exp(-z y)`` in y: ``(2 - [m = 0]) (-1)^m I_m(z)``, stacked on a new last axis.

    Power series ``I_m(z) = (z/2)^m sum_k (z/2)^(2k) / (k! (k+m)!)`` (differentiable in z): the powers
    once, then one small matrix product with the coefficients for every m. All terms are positive, so
    the sum is exact to round-off for the small |z| the engine uses (the number of series terms follows
    from the largest |z|).
    """
    h = z / 2
    h2 = h * h
    hmax = float(h.detach().abs().max()) if h.numel() else 0.0
    n_series = 0
    while hmax > 0 and hmax ** (2 * (n_series + 1)) / math.factorial(n_series + 1) ** 2 > 1e-18 and n_series < 40:
        n_series += 1
    powers = [torch.ones_like(h2)]
    for _ in range(n_series):
        powers.append(powers[-1] * h2)
    coef = torch.tensor([[1.0 / (math.factorial(k) * math.factorial(k + m)) for m in range(n_terms)]
                         for k in range(n_series + 1)], dtype=z.dtype, device=z.device)
    series = torch.stack(powers, dim=-1) @ coef  # (..., n_terms)
    h_m = [torch.ones_like(h)]
    for _ in range(n_terms - 1):
        h_m.append(h_m[-1] * h)
    sign = torch.tensor([1.0] + [2.0 * (-1) ** m for m in range(1, n_terms)], dtype=z.dtype, device=z.device)
    return series * torch.stack(h_m, dim=-1) * sign


def chebyshev_polynomials(y: torch.Tensor, n_terms: int) -> torch.Tensor:
    """T_0(y) .. T_{n-1}(y) stacked on a new last axis."""
    T = [torch.ones_like(y), y]
    while len(T) < n_terms:
        T.append(2 * y * T[-1] - T[-2])
    return torch.stack(T[:n_terms], dim=-1)


@dataclass(frozen=True)
class GridLayout:
    """How the grid is cut: the column axis, and the rows in blocks of similar coupling g.

    ``blocks`` (n_blocks, B) holds flat row indices ``i1 * n2 + i2``; a block shorter than B is
    padded with its first row (computed twice, read once). ``slot`` (n_rows,) is each row's
    position in ``blocks.reshape(-1)``; a row in no block (``left_out``) has slot ``blocks.numel()``.
    """

    perm: tuple[int, int, int]  # (a1, a2, f): row axes, then the column axis
    blocks: torch.Tensor
    slot: torch.Tensor
    col_block: int
    coupled: bool  # False: g is identically zero (one Chebyshev term, any block width)
    left_out: int = 0  # 1 when some rows are in no block (beyond a resolution limit), else 0


def _cross_free(G: torch.Tensor, ax: int) -> bool:
    scale = float(G.detach().abs().max())
    return all(abs(float(G[ax, o])) <= _CROSS_TERM_TOL * scale for o in range(3) if o != ax)


def _coupling_blocks(g_sorted: torch.Tensor, B: int) -> list[tuple[int, int]]:
    """Runs of at most B sorted rows whose g spans at most twice the median span of B-row runs.

    The cap keeps the sparse tails of the g distribution from widening every block's series.
    """
    n = g_sorted.numel()
    starts = torch.arange(0, n, B)
    ends = torch.clamp(starts + B, max=n) - 1
    cap = 2 * float((g_sorted[ends] - g_sorted[starts]).median())
    g = g_sorted.cpu().numpy()
    import numpy as np

    runs, s = [], 0
    while s < n:
        e = min(s + B, int(np.searchsorted(g, g[s] + cap, side="right")))
        e = max(e, s + 1)
        runs.append((s, e))
        s = e
    return runs


def plan_layout(axes, G: torch.Tensor, column_axis: int | None = None, q_max: float | None = None) -> GridLayout:
    """Choose the column axis (one free of cross terms if any, else the one with the narrowest coupling).

    ``column_axis``: take that axis when it is free of cross terms (a caller's preference among equals).
    ``q_max``: only points with |q| <= q_max are needed; with coupling, rows with none are left out of
    the blocks (sorted by g, blocks mix rows of every |q|: leaving rows out saves more than skipping blocks).
    """
    sizes = [a.numel() for a in axes]
    best = None
    choices = (column_axis,) if column_axis is not None and _cross_free(G, column_axis) else (0, 1, 2)
    for f in choices:
        a1, a2 = (a for a in range(3) if a != f)
        if _cross_free(G, f):
            score = 0.0
        else:
            step = float(axes[f][1] - axes[f][0]) if sizes[f] > 1 else 1.0
            g_range = sum(abs(float(G[a, f])) * float(axes[a].abs().max()) for a in (a1, a2)) * 2
            score = step * g_range / max(1, sizes[a1] * sizes[a2])
        key = (score, f != 0)  # ties: h as column axis, so slabs are contiguous in the C-ordered map
        if best is None or key < best[0]:
            best = (key, f)
    f = best[1]
    a1, a2 = (a for a in range(3) if a != f)
    device = axes[0].device
    n_rows = sizes[a1] * sizes[a2]
    coupled = not _cross_free(G, f)
    left_out = 0
    if coupled:
        Gd = G.detach()
        g, q_rows = (t.reshape(-1) for t in row_parts(Gd, (a1, a2, f), axes[a1][:, None], axes[a2][None, :]))
        rows = torch.arange(n_rows, device=g.device)
        if q_max is not None:
            lo, hi = needed_columns(g, q_rows, float(Gd[f, f]), float(q_max))
            needed = reaches(lo, hi, axes[f])
            if bool(needed.any()) and not bool(needed.all()):
                rows, left_out = rows[needed], 1
        order = rows[torch.argsort(g[rows], stable=True)]
        runs = _coupling_blocks(g[order], _ROW_BLOCK_COUPLED)
        B = max(e - s for s, e in runs)
        starts = torch.tensor([s for s, _ in runs])
        lengths = torch.tensor([e - s for s, e in runs])
        pos = torch.arange(B)[None, :]
        src = starts[:, None] + torch.where(pos < lengths[:, None], pos, torch.zeros_like(pos))
        blocks = order[src.to(order.device)]
        slot_sorted = (torch.repeat_interleave(torch.arange(len(runs)), lengths) * B
                       + torch.arange(order.numel()) - torch.repeat_interleave(starts, lengths))
        slot = torch.full((n_rows,), len(runs) * B, dtype=torch.long)  # rows left out: the zero row after the blocks
        slot[order.cpu()] = slot_sorted
    else:
        B = min(_ROW_BLOCK_FREE, max(1, n_rows))
        n_blocks = -(-n_rows // B)
        flat = torch.arange(n_blocks * B)
        blocks = torch.where(flat < n_rows, flat, (flat // B) * B).reshape(n_blocks, B)
        slot = torch.arange(n_rows)
    col_block = _COL_BLOCK_COUPLED if coupled else max(1, sizes[f])
    return GridLayout((a1, a2, f), blocks.to(device), slot.to(device), col_block, coupled, left_out)


def _series_centre(U: torch.Tensor, scale: float, tol: float) -> tuple[float, torch.Tensor]:
    """A centre U_mid and each atom's number of series terms (for |U - U_mid| * scale), fewest in total."""
    u = U.detach().reshape(-1, U.shape[-1])  # every row of U (copies may differ): each atom's extremes count
    u_lo, u_hi = u.min(dim=0).values, u.max(dim=0).values
    lo, hi = float(u_lo.min()), float(u_hi.max())
    if scale == 0.0:  # no coupling: one term for every atom
        return lo, torch.ones(u.shape[-1], dtype=torch.long)
    centres = torch.linspace(lo, hi, 33, dtype=torch.float64)  # the B-factor distribution is skewed: search
    u_lo, u_hi = u_lo.to(torch.float64).cpu(), u_hi.to(torch.float64).cpu()
    far = torch.maximum((u_lo[None] - centres[:, None]).abs(), (u_hi[None] - centres[:, None]).abs())
    terms = chebyshev_terms(far * scale, tol)  # (33, n_atoms)
    best = int(terms.sum(dim=1).argmin())  # the first of equal totals
    return float(centres[best]), terms[best]


def _distinct_rows(U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows of U (n_asu, n_atoms) that differ, and each row's index among them (None: every row its own).

    Copies of one molecule (rotated, or in other conformations) share their displacements: every
    factor that depends only on U is computed once per distinct row. Rows that carry a gradient are
    kept apart (a shared row would pool the gradients of distinct parameters).
    """
    if U.shape[0] == 1 or U.requires_grad:
        return U, None
    _, inverse = torch.unique(U, dim=0, return_inverse=True)
    n = int(inverse.max()) + 1
    if n == U.shape[0]:
        return U, None
    first = torch.full((n,), U.shape[0], dtype=torch.long, device=U.device)
    first = first.scatter_reduce(0, inverse, torch.arange(U.shape[0], device=U.device), "amin")
    return U[first], inverse


def row_parts(G: torch.Tensor, perm, h1: torch.Tensor, h2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g, q_rows)`` of rows with row-axis values h1, h2 (broadcasting), the column axis ``perm[2]``:
    ``|q|^2 = q_rows + G_ff h_f^2 + 2 h_f g``."""
    a1, a2, f = perm
    g = G[a1, f] * h1 + G[a2, f] * h2
    return g, G[a1, a1] * h1**2 + G[a2, a2] * h2**2 + 2 * G[a1, a2] * h1 * h2


def needed_columns(g: torch.Tensor, q_rows: torch.Tensor, G_ff: float, q_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the lowest and highest column value h_f of a point with ``|q| <= q_max``, where
    ``|q|^2 = q_rows + G_ff h_f^2 + 2 h_f g`` (+inf, -inf: none). The bound is widened by a millionth so
    that round-off never drops a point the resolution mask keeps.
    """
    disc = g * g - G_ff * (q_rows - q_max**2 * (1 + 1e-6))
    root = disc.clamp(min=0).sqrt()
    some = disc >= 0
    lo = torch.where(some, (-g - root) / G_ff, torch.full_like(g, math.inf))
    hi = torch.where(some, (-g + root) / G_ff, torch.full_like(g, -math.inf))
    return lo, hi


def reaches(lo: torch.Tensor, hi: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Where the intervals ``[lo, hi]`` of :func:`needed_columns` meet the range of the column values ``cols``."""
    return (lo <= cols.max()) & (hi >= cols.min())


def _phase_times_real(z: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Complex ``z`` times real ``r`` (broadcasting) in real arithmetic, without casting ``r`` to complex."""
    return torch.view_as_complex(torch.view_as_real(z) * r[..., None])


def _row_phases(p1: torch.Tensor, p2: torch.Tensor, layout: GridLayout, sel: slice) -> torch.Tensor:
    """The rows' phases ``p1[..., i1] * p2[..., i2]`` of row blocks ``sel``: (ncs, n_g, nbs, B).

    Uncoupled blocks hold the rows in order, so their phases are one outer product of the two axes'
    tables, sliced and zero-padded (the padding is never read): no gather. Coupled blocks are sorted by
    g, so their rows are gathered.
    """
    blocks = layout.blocks[sel]
    nbs, B = blocks.shape
    n2 = p2.shape[-1]
    if layout.coupled:
        return p1[..., blocks // n2] * p2[..., blocks % n2]
    n_rows = p1.shape[-1] * n2
    r0, r1 = sel.start * B, min(sel.stop * B, n_rows)
    lo, hi = r0 // n2, -(-r1 // n2)
    off, n_prod = r0 - lo * n2, (hi - lo) * n2
    a, b = p1[..., lo:hi, None], p2[..., None, :]
    # the outer product written into a buffer long enough for the padded blocks (no copy to pad them)
    buf = p1.new_empty((*p1.shape[:-1], max(n_prod, off + nbs * B)))
    buf[..., n_prod:] = 0
    prod = buf[..., :n_prod].view(*p1.shape[:-1], hi - lo, n2)
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        prod.copy_(a * b)  # out= has no autograd; an in-place copy keeps the graph
    else:
        torch.mul(a, b, out=prod)
    return buf[..., off : off + nbs * B].unflatten(-1, (nbs, B))


def _rows_by_term(LX: torch.Tensor, T: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Left factor over (term m, atom j < counts[m]): rows ``LX`` (ncs, n_g, nbs, B) times ``T[..., m]`` (nbs, B, M).

    Atoms are sorted by their number of terms, so term m takes a prefix of them: one slice per term,
    no gather. Returns (ncs, nbs, n_k, B), contiguous.
    """
    ncs, _, nbs, B = LX.shape
    src = torch.view_as_real(LX).transpose(1, 2)  # (ncs, nbs, n_g, B, 2)
    if torch.is_grad_enabled() and (LX.requires_grad or T.requires_grad):  # out= has no autograd
        parts = [src[:, :, :n] * T[None, :, None, :, m, None] for m, n in enumerate(counts)]
        return torch.view_as_complex(torch.cat(parts, dim=2))
    out = torch.empty((ncs, nbs, sum(counts), B, 2), dtype=src.dtype, device=src.device)
    start = 0
    for m, n in enumerate(counts):
        torch.mul(src[:, :, :n], T[None, :, None, :, m, None], out=out[:, :, start : start + n])
        start += n
    return torch.view_as_complex(out)


def _planes(z: torch.Tensor, r: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(re, im, re + im)`` of complex ``z`` (times real ``r``, broadcasting), contiguous: an operand of :func:`_gauss_bmm`."""
    re, im = z.real, z.imag
    if r is not None:
        re, im = re * r, im * r
    re, im = re.contiguous(), im.contiguous()
    return re, im, re + im


def _gauss_bmm(a, b) -> torch.Tensor:
    """Complex ``a @ b`` (batched) from the planes of both (:func:`_planes`, any real views ``bmm`` takes) in
    three real products instead of the four of a complex one (Gauss): re = a_re b_re - a_im b_im,
    im = (a_re + a_im)(b_re + b_im) - a_re b_re - a_im b_im. The round-off of im is that of the sums' sizes,
    as for the complex product. Measured on 2 cores, blocks of 512 rows, (512 x 4114)(4114 x 192): 26.3 against 33.2 ms;
    (512 x 1001)(1001 x 316): 10.5 against 13.4 ms; with 35 inner terms no faster (0.84 against 0.82 ms).
    """
    t1, t2, t3 = (torch.bmm(x, y) for x, y in zip(a, b))
    if torch.is_grad_enabled() and any(t.requires_grad for t in (t1, t2, t3)):
        return torch.complex(t1 - t2, t3 - t1 - t2)
    im = t3.sub_(t1).sub_(t2)  # in place: the products' results are not needed otherwise
    return torch.complex(t1.sub_(t2), im)


def _product(a: torch.Tensor, b: torch.Tensor, shape) -> torch.Tensor:
    """``a * b`` (broadcast to ``shape``) written contiguously in ``shape``'s order."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):  # out= has no autograd
        return (a * b).contiguous()
    return torch.mul(a, b, out=torch.empty(shape, dtype=torch.result_type(a, b), device=a.device))


def _cached(tables: dict, key, make):
    """``tables[key]``, made by ``make()`` on first use."""
    if key not in tables:
        tables[key] = make()
    return tables[key]


def _phases(frac: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``exp(2 pi i h x)`` of fractional coordinates ``frac`` (n_asu, n_g) at every value h of ``values``: (n_asu, n_g, n_values)."""
    p = (2 * math.pi) * frac[:, :, None] * values.to(frac.dtype)[None, None, :]
    return torch.complex(torch.cos(p), torch.sin(p))


def grid_sums(axes, A_inv, xyz, weights, ff, U, f_range, layout: GridLayout, *, budget: int = 256 << 20,
              natural_order: bool = True, q_max: float | None = None, rows: tuple[int, int] | None = None,
              tables: dict | None = None):
    """Weighted structure-factor sums on all grid rows x the column indices ``f_range = (start, stop)``.

    ``axes``: the (h, k, l) values; ``xyz`` (n_asu, n_atoms, 3) Cartesian; ``weights``
    (n_asu, n_atoms, W) real; ``ff`` = (ff_a, ff_b, ff_c) of one ASU; ``U`` (n_atoms,) or
    (n_asu, n_atoms). Returns S (W, n_asu, n1, n2, stop - start) complex, the grid axes in the layout's
    order (a1, a2, f); ``budget`` bounds the bytes of the temporaries of one batch of row blocks.
    ``natural_order=False``: S (W, n_asu, n_rows_padded, stop - start) with the rows in the layout's
    block order (``S[..., layout.slot, :]`` gives the rows i1 * n2 + i2), for consumers that reduce
    over copies first and reorder the smaller result. ``q_max``: only points with |q| <= q_max are
    needed (a resolution limit); a (row block, column block) pair without such a point is not
    computed and its sums are zero. ``rows = (r0, r1)``: only the first row axis's values ``r0:r1``
    (a box of the grid, ``layout`` planned on it). ``tables``: a dict that calls on the same atoms and
    grid share (the caller makes one per map), so that the atoms' phase tables along whole axes, their
    element groups and distinct displacements are made once, not per box.

    Each (row block, column block) pair is one batched product per element whose inner axis runs over
    (series term, atom): the left factor is the copy's row phases times the real row factors and
    Chebyshev polynomial of the term, the right factor the copy's column phases times the real
    column factors and Bessel coefficient of the term. The real factors depend on U only and are
    computed once per distinct row of U.
    """
    keep_freed_memory()  # the temporaries below are reused, not page-faulted in again
    dtype = xyz.dtype
    n_asu, n_atoms = xyz.shape[:2]
    W = weights.shape[-1]
    A_inv = A_inv.to(dtype)
    G = 4 * math.pi**2 * (A_inv @ A_inv.T)
    a1, a2, f = layout.perm
    r0, r1 = rows if rows is not None else (0, axes[a1].numel())
    v1, v2 = axes[a1].to(dtype)[r0:r1], axes[a2].to(dtype)
    vf_all = axes[f].to(dtype)[f_range[0] : f_range[1]]
    n1, n2, w_total = v1.numel(), v2.numel(), vf_all.numel()
    if not layout.coupled:  # exact zeros instead of round-off
        G = G.clone()
        G[f, a1] = G[a1, f] = G[f, a2] = G[a2, f] = 0.0
    U = U.to(dtype).expand(n_asu, n_atoms)
    tables = {} if tables is None else tables
    U_rows, u_index = _cached(tables, "U", lambda: _distinct_rows(U))  # (n_u, n_atoms); copy c uses row u_index[c]
    n_u = U_rows.shape[0]
    # several copies per U row (rotated copies of one molecule): factors that depend on U only are
    # expanded once and shared, rather than per copy
    shared_rows = n_u < n_asu
    frac = _cached(tables, "frac", lambda: xyz @ A_inv.T)

    # rows in blocks: coupling g, its block centre g0 and half width eps, the row part of |q|^2
    blocks = layout.blocks
    n_blocks, B = blocks.shape
    i1, i2 = blocks // n2, blocks % n2
    g_rows, q_rows = row_parts(G, layout.perm, v1[i1], v2[i2])  # (n_blocks, B)
    g_det = g_rows.detach()
    if q_max is not None:  # each block's hull of the columns with |q| <= q_max: |q|^2 is quadratic in h_f
        lo_need, hi_need = needed_columns(g_det, q_rows.detach(), float(G[f, f]), float(q_max))
        lo_need, hi_need = lo_need.min(dim=1).values, hi_need.max(dim=1).values
    g0 = (g_det.max(dim=1).values + g_det.min(dim=1).values) / 2
    eps = (g_det.max(dim=1).values - g_det.min(dim=1).values) / 2
    dg = g_rows - g0[:, None]
    y = dg / torch.where(eps > 0, eps, torch.ones_like(eps))[:, None]  # in [-1, 1]
    col_starts = list(range(0, w_total, layout.col_block))
    col_vals = [vf_all[c : c + layout.col_block] for c in col_starts]
    hf0s = [(float(v.max()) + float(v.min())) / 2 for v in col_vals]
    dh_max = max((float((v - h0).abs().max()) for v, h0 in zip(col_vals, hf0s)), default=0.0)

    # exp(-U t) = exp(-U_mid t) exp(-(U - U_mid) t) for any constant U_mid; the series in the second
    # factor needs few terms for atoms near U_mid, so each atom gets only the terms it needs (atoms
    # sorted by need within an element: term m uses a prefix). The phases 2 pi h x carry a relative
    # round-off of ~1e-14 at |h| ~ 30: the series stops below it.
    tol = 64 * torch.finfo(dtype).eps
    scale = dh_max * float(eps.max()) if layout.coupled else 0.0
    U_mid, terms = _series_centre(U_rows, scale, tol)
    if U.requires_grad and layout.coupled:
        # the tail's derivative in U is the size of the tail one term shorter: one more term keeps the
        # gradient exact too (an atom with U = U_mid needs one term for its value, two for its gradient)
        terms = terms + 1
    M = int(terms.max())
    T_rows = chebyshev_polynomials(y, M)  # (n_blocks, B, M)

    # per element, atoms sorted by their number of terms; the inner axis of its products runs over
    # (term m, atom j < n_m): ``atom`` and ``term`` index it. Phase tables exp(2 pi i h x) per copy
    # (n_asu, n_g, n_v) and the column axis's Debye-Waller table exp(-U G_ff h_f^2 / 2) per distinct U (n_u, n_g, n_f).
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    groups, coefs = _cached(tables, "groups", lambda: element_groups(*ff))
    plain = W == 1 and not weights.requires_grad and bool((weights == 1).all())  # no weights to apply
    elements = []
    for g, a in enumerate(groups):
        order = torch.argsort(terms[a.cpu()], descending=True, stable=True)
        a = a[order.to(a.device)]
        n_m = [n for n in (int((terms[a.cpu()] > m).sum()) for m in range(M)) if n > 0]
        atom = torch.cat([torch.arange(n) for n in n_m]).to(xyz.device)
        term = torch.cat([torch.full((n,), m) for m, n in enumerate(n_m)]).to(xyz.device)
        u = U_rows[:, a]
        phases = []  # along whole axes (shared through ``tables``), the atoms in this call's order, then cut
        for ax, cut in ((a1, slice(r0, r1)), (a2, slice(None)), (f, slice(*f_range))):
            table = _cached(tables, ("phases", g, ax), lambda: _phases(frac[:, groups[g], ax], axes[ax]))
            phases.append(table[:, order.to(table.device), cut])
        df = torch.exp(-0.5 * u[:, :, None] * (G[f, f] * vf_all**2)[None, None, :])  # the columns' Debye-Waller factor
        elements.append((phases, df, u, weights[:, a], n_m, atom, term))
    if _DEBUG:
        print(f"grid_sums: perm {layout.perm} blocks {tuple(blocks.shape)} col_block {layout.col_block} M {M} "
              f"terms per atom {float(terms.float().mean()):.2f} U_mid {U_mid:.3f} distinct U rows {n_u}")

    def of_copies(t, c0, c1):  # a factor per distinct U row, for copies c0:c1
        if u_index is None:
            return t[c0:c1] if n_u > 1 else t
        return t[:1] if n_u == 1 else t[u_index[c0:c1]]

    K_max = max((e[5].numel() for e in elements), default=1)
    w_blk = min(layout.col_block, max(1, w_total))
    # bytes per row block: U-only factors (n_u copies), then per copy the complex temporaries
    shared_per_block = 16 * n_u * (B * K_max * 3 + K_max * w_blk * 3) + 16 * B * w_blk * 4
    copy_per_block = 16 * (B * K_max * 2 + B * n_atoms * 3 + K_max * w_blk * W * 3 + B * w_blk * W * 3)
    nb = max(1, min(n_blocks, (budget // 2) // max(1, shared_per_block + copy_per_block)))
    # weight-major (the consumers read it plane by plane), written below through a view (every value, when there
    # are atoms); rows left out of the layout read the zero row after the blocks
    S = (torch.empty if elements else torch.zeros)((W, n_asu, n_blocks * B + layout.left_out, w_total), dtype=cdtype,
                                                   device=xyz.device)
    S[:, :, n_blocks * B :] = 0
    p_buf = None  # the uncoupled products' output, reused
    S_view = torch.view_as_real(S[:, :, : n_blocks * B].unflatten(2, (n_blocks, B)).permute(1, 2, 3, 0, 4))  # (n_asu, n_blocks, B, W, w_total, 2)
    for b0 in range(0, n_blocks, nb):
        sel = slice(b0, min(n_blocks, b0 + nb))
        nbs = sel.stop - sel.start
        nc = max(1, min(n_asu, (budget // 2) // max(1, copy_per_block * nbs)))
        half_q = 0.5 * q_rows[sel]  # the rows' share of |q|^2 / 2: exp(-U half_q) is their Debye-Waller factor
        row_phases = {}  # per element, kept across column blocks when every copy is in one chunk
        for c0, vf, hf0 in zip(col_starts, col_vals, hf0s):
            w, dh = vf.numel(), vf - hf0
            if q_max is not None and not bool(reaches(lo_need[sel], hi_need[sel], vf).any()):
                S_view[:, sel, :, :, c0 : c0 + w] = 0  # beyond q_max: never read
                continue
            if layout.coupled:
                qsq = q_rows[sel][:, :, None] + G[f, f] * vf**2 + 2 * vf * g_rows[sel][:, :, None]  # (nbs, B, w)
                shared = torch.exp(-U_mid * dg[sel][:, :, None] * dh)  # the centred part of exp(-U dh dg)
            else:  # |q|^2 is a row part plus a column part: the form factor needs no exponential per point
                s_rows, s_cols = q_rows[sel] / (16 * math.pi**2), G[f, f] * vf**2 / (16 * math.pi**2)
            factors = []
            for (_, df, u, _, n_m, atom, term), coef in zip(elements, coefs):
                n_terms = len(n_m)
                # real, each value twice: it scales the (re, im) pairs of the products (a third of a complex product)
                if layout.coupled:
                    scale_out = form_factor(coef, qsq) * shared
                    scale_out = torch.stack([scale_out, scale_out], dim=-1)
                else:
                    scale_out = separable_form_factor(coef, s_rows, s_cols)
                scale_out = scale_out[None, :, :, None]  # (1, nbs, B, 1, w, 2)
                if not layout.coupled:  # no coupling: one column factor serves every block
                    Dr = torch.exp(-u[:, :, None, None] * half_q[None, None])  # (n_u, n_g, nbs, B)
                    factors.append((Dr, df[:, :, c0 : c0 + w], scale_out))
                    continue
                # rows: their Debye-Waller factor and the block's share hf0 (g - g0) of the coupling; columns:
                # exp(-U h_f g0) per block times the terms' Bessel coefficients (n_u, nbs, n_terms, n_g, w)
                Xr = torch.exp(-u[:, :, None, None] * (half_q + hf0 * dg[sel])[None, None])  # (n_u, n_g, nbs, B)
                Kc = torch.exp(-u[:, None, :, None] * (g0[sel][:, None] * vf[None, :])[None, :, None, :])  # (n_u, nbs, n_g, w)
                z = (u[:, None, :, None] - U_mid) * (eps[sel][:, None] * dh[None, :])[None, :, None, :]
                Kc = (Kc[..., None] * bessel_coefficients(z, n_terms)).permute(0, 1, 4, 2, 3) * df[:, None, None, :, c0 : c0 + w]
                if (atom.numel() <= w * W * n_terms) != _FLIP_ORDER:  # one product over (term, atom): polynomials on the rows
                    if shared_rows:  # expanded over the terms once, for every copy that shares the U row
                        Xr = Xr[:, atom] * T_rows[sel].permute(2, 0, 1)[term][None]  # (n_u, n_k, nbs, B)
                    factors.append((Xr, Kc[:, :, term, atom].to(cdtype), scale_out))  # Y: (n_u, nbs, n_k, w)
                else:  # one product per term on a prefix of the atoms, its polynomial on the output
                    factors.append((Xr, Kc.to(cdtype), scale_out))
            for s0 in range(0, n_asu, nc):
                s1 = min(n_asu, s0 + nc)
                ncs = s1 - s0
                acc = None
                for e, ((phases, _, _, wts, n_m, atom, term), (Xr, Yr, scale_out)) in enumerate(zip(elements, factors)):
                    p1, p2, pf = (p[s0:s1] for p in phases)
                    Xr, Yr = of_copies(Xr, s0, s1), of_copies(Yr, s0, s1)
                    Lg = row_phases.get(e)
                    if Lg is None:  # the rows' phases (ncs, n_g, nbs, B), the same for every column block
                        Lg = _row_phases(p1, p2, layout, sel)
                        if nc == n_asu and len(col_starts) > 1:
                            row_phases[e] = Lg
                    expanded = layout.coupled and Yr.ndim == 4 and shared_rows  # Xr already over (term, atom)
                    # term by term with long inner sums: three real products (Gauss) on the planes of the rows'
                    # factors (on whole slabs of rows, as without coupling, no faster: 7921 x 600 x 160, 75 against 64 ms)
                    gauss = layout.coupled and Yr.ndim == 5 and n_m[0] >= _GAUSS_MIN_INNER
                    if gauss:
                        LX = _planes(Lg, Xr)
                    elif not expanded:  # the rows' real factors per atom: the phases times them once
                        LX = _phase_times_real(Lg, Xr)
                    if not layout.coupled:
                        X = LX.reshape(ncs, -1, nbs * B).transpose(1, 2)  # (ncs, rows, n_g)
                        Y = pf[:, :, c0 : c0 + w] * Yr  # (ncs, n_g, w)
                        if not plain:
                            Y = Y[:, :, None, :] * wts[s0:s1, :, :, None]  # (ncs, n_g, W, w)
                        Y = Y.reshape(ncs, -1, w * W)
                        if torch.is_grad_enabled() and (X.requires_grad or Y.requires_grad):  # out= has no autograd
                            P = torch.bmm(X, Y)
                        else:  # every element's product in one buffer: fresh memory would be page-faulted in
                            need = ncs * nbs * B * w * W
                            if p_buf is None or p_buf.numel() < need:
                                p_buf = S.new_empty(need)
                            P = torch.bmm(X, Y, out=p_buf[:need].view(ncs, nbs * B, w * W))
                    elif Yr.ndim == 5:  # term by term: (B, n) x (n, w W) products, rows scaled by T_m
                        P = None
                        X0 = [x.transpose(1, 2).reshape(ncs * nbs, -1, B) for x in (LX if gauss else [LX])]  # (ncs nbs, n_g, B)
                        for m in range(Yr.shape[2]):
                            n = n_m[m]
                            Y = pf[:, None, :n, c0 : c0 + w] * Yr[:, :, m, :n]  # (ncs, nbs, n, w)
                            if not plain:
                                Y = Y[..., None, :] * wts[s0:s1, None, :n, :, None]
                            Y = Y.reshape(ncs * nbs, n, w * W)
                            if gauss:  # short tails too: as fast as a complex product there
                                Pm = _gauss_bmm([x[:, :n].transpose(1, 2) for x in X0], _planes(Y))
                            else:
                                Pm = torch.bmm(X0[0][:, :n].transpose(1, 2), Y)
                            Pm = Pm.view(ncs, nbs, B, w * W)
                            Pm = torch.view_as_complex(torch.view_as_real(Pm) * T_rows[sel][None, :, :, m, None, None])
                            P = Pm if P is None else P.add_(Pm)
                    else:
                        n_k = atom.numel()
                        if expanded:
                            X = torch.view_as_complex(_product(torch.view_as_real(Lg)[:, atom].transpose(1, 2),
                                                               Xr.transpose(1, 2)[..., None], (ncs, nbs, n_k, B, 2)))
                        else:
                            X = _rows_by_term(LX, T_rows[sel], n_m)  # (ncs, nbs, n_k, B)
                        Y = _product(pf[:, None, atom, c0 : c0 + w], Yr, (ncs, nbs, n_k, w))
                        if not plain:
                            Y = Y[..., None, :] * wts[s0:s1, None, atom, :, None]
                        P = torch.bmm(X.view(ncs * nbs, n_k, B).transpose(1, 2), Y.reshape(ncs * nbs, n_k, w * W))
                    P = torch.view_as_real(P.view(ncs, nbs, B, W, w))  # columns weight-major, as in S
                    if acc is None:
                        if torch.is_grad_enabled() and (P.requires_grad or scale_out.requires_grad):
                            acc = P * scale_out
                        else:  # straight into the result
                            acc = torch.mul(P, scale_out, out=S_view[s0:s1, sel, :, :, c0 : c0 + w])
                    else:
                        acc = acc.addcmul_(P, scale_out)
                if acc.data_ptr() != S_view[s0:s1, sel, :, :, c0 : c0 + w].data_ptr():
                    S_view[s0:s1, sel, :, :, c0 : c0 + w] = acc
    if not natural_order:
        return S
    if layout.coupled:  # one gather back to (i1, i2) order
        S = S[:, :, layout.slot]
    else:  # blocks hold the rows in order, padded at the end
        S = S[:, :, : n1 * n2]
    return S.reshape(W, n_asu, n1, n2, w_total)
