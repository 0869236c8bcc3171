# SPDX-License-Identifier: GPL-2.0-or-later
"""One-phonon diffuse intensity on a regular hkl grid, slab by slab in bounded memory.

Structure factors. For ASU ``m`` and q-point q, with ``A_j(q) = f_j(|q|) exp(-|q|^2 U_j / 2) exp(i q . r_j)``,
the projection of ``q A_j`` on the six rigid-body components only needs four sums (computed by
:mod:`eryx_port.grid_factors` for any cell): ``S0 = sum_j A_j`` and ``S1 = sum_j A_j s_j`` (``s_j``
the lever arm): translation ``q S0``, rotation ``S1 x q``.

Intensity. The q-points that share a k-vector (a class of grid indices modulo the oversampling)
are contracted with that k-vector's matrix in one batched product. The grid is cut into slabs
along the engine's column axis (on a cell without coupling, each slab into boxes of whole periods
along a row axis); each slab's or box's sums are contracted in chunks and written into the output
(a tensor, or a NumPy array such as a memmap of an ``.npy`` file), so the working memory is bounded
by a budget whatever the grid size. A chunk that starts at class 0 is put in class-major order by
a strided copy (grid index ``p N + d`` is period p of class d); any other is gathered.

Copies. ASUs whose symmetry operation maps the grid onto itself without mixing the column axis
with the rows get their sums from copy 0's (:mod:`eryx_port.copy_symmetry`): per slab the engine
computes copy 0 and the copies it cannot derive on every row of the slab (at most 24 MB of sums),
and each box takes the derived copies from that plane.

Friedel mates. On a grid symmetric under hkl -> -hkl only half of the grid is computed. The sums
obey S(-q) = conj S(q) (every weight, form factor and Debye-Waller factor is real), so
F(-q) = conj F(q); the force constants are real, so the covariance of k-vector -k is the complex
conjugate of that of k (and the k-vector of -q is -k up to a reciprocal-lattice vector, under which
the covariance is periodic). Hence I(-q) = F(-q)^H C(-k) F(-q) = conj(F^H C F) = I(q): for the full
map (``symmetric=True``) the mirrored half is the computed intensity reflected. A map of selected
modes need not be symmetric (inside a degenerate eigenspace the eigensolver picks the vectors at k
and -k independently): there the mirrored half is contracted with its own k-vector's matrix from
the conjugated sums.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from . import copy_symmetry
from . import grid_factors
from .grid_factors import grid_sums, plan_layout


def default_max_memory(device=None) -> int:
    """A quarter of the memory available now (GPU memory on CUDA), between 256 MiB and 4 GiB."""
    avail = None
    if device is not None and torch.device(device).type == "cuda":
        avail = torch.cuda.mem_get_info(torch.device(device))[0]
    else:
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
        except OSError:
            pass
    if avail is None:
        avail = 8 << 30
    return int(min(4 << 30, max(256 << 20, avail // 4)))


# Sums of one box of an uncoupled slab: below glibc's 32 MB threshold, so boxes reuse memory (see _alloc).
_BOX_BYTES = 24 << 20


@dataclass(frozen=True)
class MemoryPlan:
    """How a map is cut to fit a working-memory budget, and the bytes that takes (besides the map)."""

    slab_width: int  # columns of the engine's column axis per slab
    chunk_points: int  # q-points contracted at once
    engine_budget: int  # bytes of one batch of the engine's blocks
    working_bytes: int  # expected peak of all three together


def plan_memory(shape, column_axis: int, n_asu: int, n_atoms: int, friedel: bool, max_memory: int, itemsize: int = 8,
                *, coupled: bool = True, symmetric: bool = True) -> MemoryPlan:
    """Slab width, contraction chunk and engine batch for a grid ``shape`` within ``max_memory`` bytes.

    Half of the budget holds a slab's sums (with, on a coupled cell, their copy in grid order, and
    the reflected sums when the mirrored half is contracted on its own: ``friedel`` and not
    ``symmetric``), a quarter the contraction, at most a quarter the engine's blocks. Measured on 7n2h
    (2 cores): engine batches of 64 MiB beat 16 MiB (0.66-0.74 s against 0.84-0.92 s: fewer, larger
    operations) and larger ones buy nothing; contraction chunks of 2**15 q-points (their factors, about
    10 MB, stay in cache) beat 2**16 by 5-10% and 2**14 by about as much.
    """
    c = 2 * itemsize  # bytes of a complex value
    rows = math.prod(shape) // shape[column_axis]
    copies = 1 + int(coupled) + int(friedel and not symmetric)
    per_column = rows * n_asu * 4 * c * copies
    n_cols = shape[column_axis] - shape[column_axis] // 2 if friedel else shape[column_axis]  # columns computed
    width = max(1, min(n_cols, (max_memory // 2) // per_column))
    per_point = 6 * c * 4 * n_asu + 16 * itemsize
    chunk = max(1, min(1 << 15, (max_memory // 4) // per_point, math.prod(shape)))
    engine = min(max_memory // 4, 64 << 20)
    tables = 3 * max(shape) * n_asu * n_atoms * c
    held = width * per_column if coupled else min(width * per_column, _BOX_BYTES)  # uncoupled: a box of the slab at a time
    working = held + chunk * per_point + min(engine, held) + tables
    return MemoryPlan(width, chunk, engine, working)


def grid_q(axes, A_inv: torch.Tensor) -> torch.Tensor:
    """q-vectors ``2 pi A_inv^T hkl`` on the grid, (n_h, n_k, n_l, 3)."""
    hkl = torch.stack(torch.meshgrid(*[a.to(A_inv.dtype) for a in axes], indexing="ij"), dim=-1)
    return 2 * math.pi * (hkl @ A_inv)


def assemble_factors(S: torch.Tensor, q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[q S0, S1 x q]``, component first: sums S (4, ...), real q (3, ...) broadcasting against them, F (6, ...).

    Written into ``out`` (a new tensor when None) plane by plane; slice assignments keep the autograd
    graph, so one path serves every use.
    """
    shape = np.broadcast_shapes(tuple(S.shape[1:]), tuple(q.shape[1:]))  # torch's version imports sympy (0.6 s)
    if out is None:
        out = S.new_empty((6, *shape))
    pairs = ((1, 2), (2, 0), (0, 1))  # (S1 x q)_c = S1_a q_b - S1_b q_a
    if torch.is_grad_enabled() and (S.requires_grad or q.requires_grad):
        for c in range(3):
            out[c] = S[0] * q[c]
        for c, (a, b) in enumerate(pairs, start=3):
            out[c] = S[1 + a] * q[b] - S[1 + b] * q[a]
        return out
    # without autograd: straight into the planes, no temporaries (three times faster on large grids)
    for c in range(3):
        torch.mul(S[0], q[c], out=out[c])
    for c, (a, b) in enumerate(pairs, start=3):
        torch.mul(S[1 + a], q[b], out=out[c]).addcmul_(S[1 + b], q[a], value=-1)
    return out


def _rb_weights(arms: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones_like(arms[..., :1]), arms], dim=-1)  # (n_asu, n_atoms, 4)


def _to_hkl(S: torch.Tensor, perm) -> torch.Tensor:
    """Sums (W, n_asu, ...) with the grid axes in the engine's order (a1, a2, f) as a view in (h, k, l) order."""
    order = [0, 0, 0]
    for i, ax in enumerate(perm):
        order[ax] = i + 2
    return S.permute(0, 1, *order)


def rigid_body_structure_factors(axes, A_inv, xyz, arms, ff, U) -> torch.Tensor:
    """Rigid-body structure factors on the grid ``axes`` = (h values, k values, l values).

    ``xyz``/``arms``: (n_asu, n_atoms, 3); ``ff`` = (ff_a (n_atoms, 4), ff_b (n_atoms, 4), ff_c (n_atoms,))
    shared by all ASUs; ``U``: (n_atoms,) or (n_asu, n_atoms). Returns F (n_h, n_k, n_l, n_asu, 6), complex,
    the components ordered like eryx's A matrix (translation x, y, z, then rotation).
    """
    A_inv = A_inv.to(xyz.dtype)
    layout = plan_layout(axes, 4 * math.pi**2 * (A_inv @ A_inv.T))
    f = layout.perm[2]
    S = _to_hkl(grid_sums(axes, A_inv, xyz, _rb_weights(arms), ff, U, (0, axes[f].numel()), layout), layout.perm)
    F = assemble_factors(S, grid_q(axes, A_inv).movedim(-1, 0)[:, None])  # (6, n_asu, n_h, n_k, n_l)
    return F.permute(2, 3, 4, 1, 0)


def class_index(shape: tuple[int, int, int], sampling: tuple[int, int, int], device=None, offset=(0, 0, 0)) -> torch.Tensor:
    """k-vector class of every point of a box of the grid (first point at grid index ``offset``), int64, in (dh, dk, dl) C order."""
    idx = [(torch.arange(n, device=device) + o) % s for n, s, o in zip(shape, sampling, offset)]
    return (idx[0][:, None, None] * sampling[1] + idx[1][None, :, None]) * sampling[2] + idx[2][None, None, :]


def mirror_classes(sampling: tuple[int, int, int], device=None) -> torch.Tensor:
    """For each k-vector class (C order), the class of the reflected k-vector: (-d) mod N per axis."""
    d = [(-torch.arange(n, device=device)) % n for n in sampling]
    return ((d[0][:, None, None] * sampling[1] + d[1][None, :, None]) * sampling[2] + d[2][None, None, :]).reshape(-1)


@functools.lru_cache(maxsize=8)  # a slab has few distinct box shapes; each entry is a chunk of indices
def _class_order(n: tuple[int, int, int], pre: tuple[int, int, int], sampling: tuple[int, int, int], device) -> torch.Tensor:
    """Flat indices of a box's points (shape ``n``, its first point in class ``pre``) in class-major order.

    The box is padded to whole periods of the oversampling, ``m_a`` periods on axis a; the result has
    shape (n_class, m0 m1 m2), classes in C order, and maps padding to ``prod(n)`` (a zero column).
    """
    m = [-(-(p + k) // s) for p, k, s in zip(pre, n, sampling)]
    parts = []
    for p, k, s, ma in zip(pre, n, sampling, m):  # per axis: (class d, period i) -> box index or -1
        b = torch.arange(s)[:, None] + s * torch.arange(ma)[None, :] - p
        parts.append(torch.where((b >= 0) & (b < k), b, -1))
    b0, b1, b2 = (x.reshape(*([1] * (2 * a)), *x.shape, *([1] * (4 - 2 * a))) for a, x in enumerate(parts))
    flat = (b0 * n[1] + b1) * n[2] + b2
    flat = torch.where((b0 < 0) | (b1 < 0) | (b2 < 0), math.prod(n), flat)  # (N0, m0, N1, m1, N2, m2)
    n_class = math.prod(sampling)
    return flat.permute(0, 2, 4, 1, 3, 5).reshape(n_class, -1).to(device)


def _period_pieces(n: int, period: int):
    """A box axis of ``n`` points starting at class 0, as (box slice, period slice, class slice, (periods, classes)):
    the whole periods, then the partial last one."""
    whole, rest = divmod(n, period)
    pieces = []
    if whole:
        pieces.append((slice(0, whole * period), slice(0, whole), slice(0, period), (whole, period)))
    if rest:
        pieces.append((slice(whole * period, n), slice(whole, whole + 1), slice(0, rest), (1, rest)))
    return pieces


def _to_class_major(X: torch.Tensor, sampling) -> torch.Tensor:
    """A box's values X (C, n0, n1, n2), the box starting at class 0 on every axis, in class-major order:
    (N0, N1, N2, C, m0, m1, m2), zero-padded to m_a whole periods of the oversampling per axis.

    Grid index ``p N + d`` of an axis is period p of class d, so class-major order is a permutation of
    the axes split into (period, class): one strided copy per piece (the whole periods of each axis,
    then its partial last one), no gather.
    """
    n = tuple(X.shape[1:])
    periods = [-(-k // s) for k, s in zip(n, sampling)]
    out = X.new_empty((*sampling, X.shape[0], *periods))
    for a, (k, s) in enumerate(zip(n, sampling)):
        if k % s:  # the last period is partial: zero it whole (the copy below fills its real points)
            out.narrow(4 + a, periods[a] - 1, 1).zero_()
    view = out.permute(3, 4, 0, 5, 1, 6, 2)  # (C, m0, N0, m1, N1, m2, N2)
    for a0 in _period_pieces(n[0], sampling[0]):
        for a1 in _period_pieces(n[1], sampling[1]):
            for a2 in _period_pieces(n[2], sampling[2]):
                part = X[:, a0[0], a1[0], a2[0]].reshape(X.shape[0], *a0[3], *a1[3], *a2[3])
                view[:, a0[1], a0[2], a1[1], a1[2], a2[1], a2[2]].copy_(part)
    return out


def _class_major_q(hkl_axes, A_inv: torch.Tensor, sampling) -> torch.Tensor:
    """q = 2 pi A_inv^T hkl of a box that starts at class 0 (h, k, l values ``hkl_axes``), in the class-major
    order of :func:`_to_class_major`: (N0, N1, N2, 3, m0, m1, m2), the padding's q finite (its sums are zero).

    q is linear in hkl and each axis's value depends only on its own (class, period), so q is a sum of one
    broadcast term per axis (a third of the time of the grid's q put in that order).
    """
    periods = [-(-v.numel() // s) for v, s in zip(hkl_axes, sampling)]
    terms = []
    for a, (v, s, m) in enumerate(zip(hkl_axes, sampling, periods)):
        values = torch.cat([v.to(A_inv.dtype), v.new_zeros(m * s - v.numel(), dtype=A_inv.dtype)]).view(m, s).T  # (N_a, m_a)
        shape = [1, 1, 1, 3, 1, 1, 1]
        shape[a], shape[4 + a] = s, m
        terms.append(((2 * math.pi) * A_inv[a][None, :, None] * values[:, None, :]).reshape(shape))
    full = (*sampling, 3, *periods)
    if torch.is_grad_enabled() and A_inv.requires_grad:  # out= has no autograd
        return (terms[0] + terms[1] + terms[2]).contiguous()
    return torch.add(terms[0].expand(full), terms[1], out=A_inv.new_empty(full)).add_(terms[2])


def _class_major_factors(S: torch.Tensor, hkl_axes, A_inv: torch.Tensor, sampling) -> torch.Tensor:
    """F of a box that starts at class 0 on every axis, in class-major order: (n_class, n_asu, 6, M),
    the box padded with zeros to M = m0 m1 m2 whole periods; ``hkl_axes``: its h, k, l values.

    The sums are put in that order (:func:`_to_class_major`) and q made in it (:func:`_class_major_q`),
    then F is assembled with every operand contiguous along the points of a class.
    """
    n_asu, n_class = S.shape[1], math.prod(sampling)
    Sc = _to_class_major(S.reshape(-1, *S.shape[2:]), sampling).view(n_class, 4, n_asu, -1)
    qc = _class_major_q(hkl_axes, A_inv, sampling).view(n_class, 3, -1)
    F = S.new_empty((n_class, n_asu, 6, Sc.shape[-1]))
    assemble_factors(Sc.permute(1, 2, 0, 3), qc.permute(1, 0, 2)[:, None], out=F.permute(2, 1, 0, 3))
    return F


def _pads_much(k: int, s: int) -> bool:
    """Whether padding ``k`` points to whole periods of ``s`` adds more than a tenth."""
    return 10 * (-k % s) > k + (-k % s)


def _contract_in_pieces(S: torch.Tensor, hkl_axes, A_inv: torch.Tensor, sampling, B: torch.Tensor, weights) -> torch.Tensor:
    """:func:`_contract` of a box that starts at class 0, cut on each axis into its whole periods and its
    partial last period. The partial period of r < N points holds classes 0..r-1 of that axis once each,
    so it is contracted with those classes only: no zero padding to a whole period (7n2h's slabs of 26
    l-planes would pad to 30).
    """
    n = tuple(S.shape[2:])
    R = B.shape[-1]
    Bg = B.view(*sampling, *B.shape[1:])
    Wg = None if weights is None else weights.view(*sampling, R)
    cuts = []
    for k, s in zip(n, sampling):
        whole = k - k % s if _pads_much(k, s) else k
        cuts.append([(a, b, min(s, b - a)) for a, b in ((0, whole), (whole, k)) if b > a])
    I = None
    for a0, b0, s0 in cuts[0]:
        for a1, b1, s1 in cuts[1]:
            for a2, b2, s2 in cuts[2]:
                sub = (s0, s1, s2)
                box = (slice(a0, b0), slice(a1, b1), slice(a2, b2))
                Bs = Bg[:s0, :s1, :s2].reshape(-1, *B.shape[1:])
                Ws = None if Wg is None else Wg[:s0, :s1, :s2].reshape(-1, R)
                part = _contract(S[(slice(None), slice(None)) + box], tuple(h[c] for h, c in zip(hkl_axes, box)),
                                 A_inv, (0, 0, 0), sub, Bs, Ws)
                if I is None:
                    I = part.new_empty(n)
                I[box] = part
    return I


def _contract(S: torch.Tensor, hkl_axes, A_inv: torch.Tensor, offsets, sampling, B: torch.Tensor, weights) -> torch.Tensor:
    """``sum_r w_r |F B_k[:, r]|^2`` for a box of the grid starting at ``offsets``, F assembled from the sums
    S (4, n_asu, n0, n1, n2) and the box's h, k, l values ``hkl_axes``: returns (n0, n1, n2).

    The points are put in class-major order (the box padded to whole periods of the oversampling;
    partial periods that would pad by more than a tenth are contracted on their own,
    :func:`_contract_in_pieces`) so that one batched product ``B_k^T F_k`` serves every k-vector class. A box that starts at class
    0 is assembled straight into that order; another is assembled plane by plane beside a zero
    column, then gathered once (padding read from the zero column).
    """
    n, n_asu = tuple(S.shape[2:]), S.shape[1]
    N, P = 6 * n_asu, math.prod(S.shape[2:])
    pre = tuple(o % s for o, s in zip(offsets, sampling))
    if not any(pre) and any(_pads_much(k, s) for k, s in zip(n, sampling)):
        return _contract_in_pieces(S, hkl_axes, A_inv, sampling, B, weights)
    n_class = math.prod(sampling)
    if not any(pre):
        F = _class_major_factors(S, hkl_axes, A_inv, sampling).view(n_class, N, -1)
    else:
        Fp = S.new_empty((n_asu, 6, P + 1))
        Fp[..., P] = 0
        q = grid_q(hkl_axes, A_inv).movedim(-1, 0).contiguous()  # (3, n0, n1, n2)
        assemble_factors(S, q, out=Fp[..., :P].view(n_asu, 6, *n).transpose(0, 1))
        order = _class_order(n, pre, tuple(sampling), S.device)  # (n_class, M)
        F = Fp.view(N, P + 1).index_select(1, order.reshape(-1)).view(N, n_class, -1).transpose(0, 1)
    # F^T B rather than B^T F: the sum over the modes is then over contiguous values (7n2h: 7-15% faster)
    Y = torch.bmm(F.transpose(1, 2), B.to(F.dtype))  # (n_class, M, R)
    Y2 = torch.view_as_real(Y)  # (n_class, M, R, 2); squared in place unless it carries a gradient
    Y2 = Y2.square() if Y2.requires_grad else Y2.square_()
    if weights is not None:
        Y2 = Y2 * weights.to(Y2.dtype)[:, None, :, None]
    I = Y2.flatten(-2).sum(-1)
    periods = [-(-(p + k) // s) for p, k, s in zip(pre, n, sampling)]
    Nh, Nk, Nl = sampling
    I = I.view(Nh, Nk, Nl, *periods).permute(3, 0, 4, 1, 5, 2).reshape(periods[0] * Nh, periods[1] * Nk, periods[2] * Nl)
    return I[pre[0] : pre[0] + n[0], pre[1] : pre[1] + n[1], pre[2] : pre[2] + n[2]]


def _holds_points_within(axes, G: torch.Tensor, q_max: float) -> bool:
    """Whether the grid box of Miller indices ``axes`` (h, k, l values) holds a point with |q| <= q_max."""
    h, k, l = (a.detach().to(G.dtype) for a in axes)
    G = G.detach()
    g, q_rows = grid_factors.row_parts(G, (0, 1, 2), h[:, None], k[None, :])
    lo, hi = grid_factors.needed_columns(g, q_rows, float(G[2, 2]), float(q_max))
    return bool(grid_factors.reaches(lo, hi, l).any())


def _symmetric(values: torch.Tensor) -> bool:
    scale = float(values.abs().max()) if values.numel() else 0.0
    return bool((values + values.flip(0)).abs().max() <= 1e-12 * max(scale, 1.0)) if values.numel() else True


def _aligned_cuts(start: int, n: int, period: int, step: int) -> list[tuple[int, int]]:
    """Cut ``[0, n)`` (grid indices ``start + i``) into runs of about ``step`` (at least ``period``) whose
    inner edges fall on grid indices divisible by ``period``, so that a run pads to whole periods."""
    step = max(period, step // period * period)
    first = (-start) % period  # the first aligned index; a shorter lead-in joins the first run
    edges = [0, *range(first + step, n, step), n]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _slabs(n: int, width: int, friedel: bool):
    """(start, stop, mirror) column ranges; ``mirror`` = (start, stop) of the range read as the conjugate, or None."""
    if not friedel:
        return [(s, min(n, s + width), None) for s in range(0, n, width)]
    out = []
    for s in range(n // 2, n, width):
        e = min(n, s + width)
        mirror = (n - e, min(n - s, s))  # [n - e, n - s) reflected, less the self-mirrored centre
        out.append((s, e, mirror if mirror[1] > mirror[0] else None))
    return out


def _layout_and_copies(axes, G, A_inv, xyz, arms, U, q_max=None):
    """The engine's layout and the copies derived from copy 0 (:mod:`eryx_port.copy_symmetry`) on it.

    Without coupling any axis free of cross terms may be the column axis: the one that lets the
    most copies be derived (a tetragonal grid: l, the 4-fold axis), else the default. Copies are
    derived only where at least half of them are: the slab's plane of computed copies narrows the
    slabs, and with few copies derived that costs more than it saves (5zck on 181^3 points with one
    of three copies derived: 1.44 s against 1.31 s; all three: 1.2 s against 1.4 s).
    """
    layout = plan_layout(axes, G, q_max=q_max)
    if not copy_symmetry.ENABLED or layout.coupled or xyz.shape[0] < 2:
        return layout, {}
    ops = copy_symmetry.copy_operations(A_inv, xyz, arms, U)
    if not ops:
        return layout, {}
    best = (layout, copy_symmetry.copy_maps(ops, axes, layout.perm))
    for f in range(3):
        if f != layout.perm[2]:
            other = plan_layout(axes, G, column_axis=f)
            if other.perm[2] == f and not other.coupled:
                maps = copy_symmetry.copy_maps(ops, axes, other.perm)
                if len(maps) > len(best[1]):
                    best = (other, maps)
    n_computed = xyz.shape[0] - len(best[1])
    return best if n_computed <= xyz.shape[0] // 2 else (layout, {})


def onephonon_map(
    axes, sampling, A_inv, xyz, arms, ff, U, B, weights=None, *, nan_class, keep=None, q_max=None, out=None,
    max_memory=None, progress=False, symmetric=False,
):
    """``sum_r w_r |F(q) B_k[:, r]|^2`` on the grid ``axes``, each q-point with the B of its k-vector class.

    A grid point (i, j, l) has class (i mod N_h, j mod N_k, l mod N_l) (C order, like the flattened
    k-vector grid). ``B``: (n_class, n_asu*6, R); ``weights``: (n_class, R) or None (ones);
    ``nan_class`` (n_class,) bool: classes set to NaN; ``keep(hkl)``: bool mask of the (..., 3) Miller
    indices to keep (others NaN), or None; ``q_max``: a bound on the |q| that ``keep`` keeps (a
    resolution limit), so that the engine skips the blocks of points beyond it, or None. ``out``:
    None (a new tensor), a tensor or a NumPy array of shape (n_h, n_k, n_l) to write into.
    ``max_memory``: bytes of working memory besides the output (default :func:`default_max_memory`). ``symmetric``: the operators make a centrosymmetric map
    (all modes: ``B_k B_k^H`` is the covariance), so on a symmetric grid the mirrored half is the
    computed half reflected. Returns the map (n_h, n_k, n_l): ``out`` when given.
    """
    from tqdm.auto import tqdm

    dtype, device = xyz.dtype, xyz.device
    shape = tuple(a.numel() for a in axes)
    if keep is None:  # points beyond q_max are skipped only where the mask sets them to NaN
        q_max = None
    budget = int(max_memory) if max_memory is not None else default_max_memory(device)
    A_inv = A_inv.to(dtype)
    G = 4 * math.pi**2 * (A_inv @ A_inv.T)
    n_asu = xyz.shape[0]
    layout, copies = _layout_and_copies(axes, G, A_inv, xyz, arms, U, q_max)
    a1, a2, f = layout.perm
    sources = [c for c in range(n_asu) if c not in copies]  # copies the engine computes
    friedel = all(_symmetric(a) for a in axes)
    # the reflected intensity stands for the mirrored half only where the mirror of a point of class d
    # has class -d, that is where the grid spans whole periods of the oversampling on every axis
    reflect = symmetric and friedel and all((n - 1) % s == 0 for n, s in zip(shape, sampling))
    plan = plan_memory(shape, f, n_asu, xyz.shape[1], friedel, budget, xyz.element_size(), coupled=layout.coupled,
                       symmetric=reflect)
    width, chunk_points = plan.slab_width, plan.chunk_points
    n_cols = shape[f] - shape[f] // 2 if friedel else shape[f]  # columns computed
    if copies:  # the computed copies' sums on a slab's whole plane of rows stay below glibc's threshold (see _alloc)
        width = min(width, max(1, _BOX_BYTES // (shape[a1] * shape[a2] * len(sources) * 4 * 2 * xyz.element_size())))
    if sampling[f] <= width < n_cols:  # slabs of whole periods (they start at a multiple of one): boxes pad less
        width -= width % sampling[f]
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=device)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out must have shape {shape} (n_h, n_k, n_l), got {tuple(out.shape)}")
    weights_rb = _rb_weights(arms)
    slabs = _slabs(shape[f], width, friedel)

    def hkl_of(lo, size):
        sub = tuple(a[o : o + k] for a, o, k in zip(axes, lo, size))
        return torch.stack(torch.meshgrid(*[a.to(dtype) for a in sub], indexing="ij"), dim=-1)

    nan_classes = [tuple(int(v) for v in np.unravel_index(int(c), sampling)) for c in nan_class.nonzero().reshape(-1)]

    def store(I, lo):
        """Write intensities I of the box whose first point is at grid index ``lo``, NaN where masked."""
        if keep is not None:
            I = torch.where(keep(hkl_of(lo, I.shape)), I, torch.full_like(I, float("nan")))
        elif nan_classes:
            I = I.clone() if I.requires_grad else I  # an in-place write on a leaf's graph input would fail
        for d in nan_classes:  # a class is a lattice of points: one strided slice each (usually k = 0 only)
            I[tuple(slice((c - o) % s, None, s) for c, o, s in zip(d, lo, sampling))] = float("nan")
        box = tuple(slice(o, o + k) for o, k in zip(lo, I.shape))
        if isinstance(out, np.ndarray):
            out[box] = I.detach().cpu().numpy()
        else:
            out[box] = I

    def intensities(S_hkl, starts):
        """Unmasked intensities of a box of sums (4, n_asu, h, k, l) whose first point is at grid index ``starts``.

        Contracted in boxes of about ``chunk_points`` points cut on whole periods of the oversampling
        along h (and k when one period of h-planes is more than that): a box pads to whole periods.
        """
        n0, n1, n2 = S_hkl.shape[2:]
        Nh, Nk = sampling[0], sampling[1]
        if chunk_points >= Nh * n1 * n2:
            cuts0 = _aligned_cuts(starts[0], n0, Nh, chunk_points // (n1 * n2))
            cuts1 = [(0, n1)]
        else:
            cuts0 = _aligned_cuts(starts[0], n0, Nh, Nh)
            cuts1 = _aligned_cuts(starts[1], n1, Nk, chunk_points // (Nh * n2))
        I = torch.empty((n0, n1, n2), dtype=dtype, device=device)
        for a0, b0 in cuts0:
            for a1, b1 in cuts1:
                S = S_hkl[:, :, a0:b0, a1:b1]
                lo = (starts[0] + a0, starts[1] + a1, starts[2])
                sub = tuple(a[o : o + k] for a, o, k in zip(axes, lo, S.shape[2:]))
                if q_max is not None and not _holds_points_within(sub, G, q_max):
                    I[a0:b0, a1:b1] = 0  # masked by store
                    continue
                I[a0:b0, a1:b1] = _contract(S, sub, A_inv, lo, sampling, B, weights)
        return I

    def write(S_hkl, starts):
        store(intensities(S_hkl, starts), starts)

    # Without coupling the engine takes any subset of rows: the slab is made in boxes of whole periods
    # along a1 whose sums stay below glibc's 32 MB threshold (see _alloc), so every box reuses the
    # same memory instead of page-faulting a whole slab of sums in (7n2h: 163 MB per map).
    boxes = [(0, shape[a1], layout)]  # (r0, r1, the layout of the box's rows), the same for every slab
    if not layout.coupled:
        per_row = shape[a2] * min(width, n_cols) * n_asu * 4 * 2 * xyz.element_size()  # bytes of sums per a1 index
        cuts = _aligned_cuts(0, shape[a1], sampling[a1], max(1, _BOX_BYTES // per_row))
        if len(cuts) > 1:
            boxes = []
            for r0, r1 in cuts:
                box_axes = tuple(a[r0:r1] if i == a1 else a for i, a in enumerate(axes))
                boxes.append((r0, r1, plan_layout(box_axes, G, column_axis=f)))

    bar = tqdm(total=shape[f], desc="one-phonon map", unit="plane", disable=not progress or len(slabs) < 2, leave=False)
    rows = (axes[a1].to(dtype), axes[a2].to(dtype))
    U_src = U if U.dim() < 2 or U.shape[0] == 1 else U[sources]  # the computed copies' displacements

    def box(start, stop, mirror, plane, r0, r1, box_layout):
        """Sums and intensities of one box of a slab (a function: its sums are freed before the next box's are made)."""
        if copies:
            S = plane.new_empty((plane.shape[0], n_asu, r1 - r0, *plane.shape[3:]))
            S[:, sources] = plane[:, :, r0:r1]
            for m, cm in copies.items():
                copy_symmetry.derive(plane[:, 0], cm, rows, axes[f].to(dtype)[start:stop], r0, r1, out=S[:, m])
        else:
            S = grid_sums(axes, A_inv, xyz, weights_rb, ff, U, (start, stop), box_layout, budget=plan.engine_budget,
                          q_max=q_max, rows=(r0, r1), tables=tables)
        first = [0, 0, 0]
        first[f], first[a1] = start, r0
        mirror_first = [0, 0, 0]  # the reflected box: all three axes reversed
        mirror_first[a1] = shape[a1] - r1
        if mirror is not None and reflect:
            # I(-q) = I(q): the reflected columns of this box's intensities are the mirrored range
            I = intensities(_to_hkl(S, layout.perm), first)
            lo = shape[f] - stop  # first column of the reflected slab
            Im = I.flip(0, 1, 2).narrow(f, mirror[0] - lo, mirror[1] - mirror[0])  # a copy: store masks I in place
            store(I, first)
            mirror_first[f] = mirror[0]
            store(Im, mirror_first)
            return
        write(_to_hkl(S, layout.perm), first)
        if mirror is not None:
            # S(-hkl) = conj(S(hkl)): reflect all three axes; column j of the slab maps to n_f - 1 - (start + j)
            Sm = S.flip(2, 3, 4).conj()
            lo = shape[f] - stop  # first column of the reflected slab
            Sm = Sm[..., mirror[0] - lo : mirror[1] - lo]
            mirror_first[f] = mirror[0]
            write(_to_hkl(Sm, layout.perm), mirror_first)

    tables = {}  # the engine's tables of atoms and whole axes, shared by every slab and box
    for start, stop, mirror in slabs:
        plane = None
        if copies:  # the computed copies on every row of the slab; the others derived from copy 0 box by box
            plane = grid_sums(axes, A_inv, xyz[sources], weights_rb[sources], ff, U_src, (start, stop), layout,
                              budget=plan.engine_budget, q_max=q_max, tables=tables)
        for b in boxes:
            box(start, stop, mirror, plane, *b)
        bar.update(stop - start + (mirror[1] - mirror[0] if mirror is not None else 0))
    bar.close()
    return out

