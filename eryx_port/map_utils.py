# SPDX-License-Identifier: GPL-2.0-or-later
"""Reciprocal-space grids and masks in torch: the port of ``eryx.map_utils``.

Names and positional signatures follow eryx, so switching imports is enough.
Inputs may be NumPy arrays, lists or tensors; outputs are tensors (float64
unless a float32 tensor or ``dtype=`` asks otherwise), Python tuples where
eryx returns tuples, and integer/boolean tensors for indices and masks.

Conventions (same as eryx):

* ``A_inv`` is the fractionalisation matrix (Cartesian -> fractional), so a
  Miller vector ``hkl`` (row) maps to ``q = 2 pi hkl @ A_inv`` (1/Angstrom).
* A grid ``(hmin, hmax, oversampling)`` per axis is flattened with ``h``
  slowest and ``l`` fastest; ``map_shape`` is ``(n_h, n_k, n_l)``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache, reduce
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .tensors import as_real, float_context, resolve_device

__all__ = [
    "generate_grid",
    "get_symmetry_equivalents",
    "get_ravel_indices",
    "cos_sq",
    "sin_sq",
    "compute_resolution",
    "get_hkl_extents",
    "expand_sym_ops",
    "compute_multiplicity",
    "get_asu_mask",
    "asu_condition",
    "parse_asu_condition",
    "get_resolution_mask",
    "get_dq_map",
    "get_centered_sampling",
    "resize_map",
]


# ----------------------------------------------------------------------------- input checks


def _matrix3(x: Any, name: str, dtype=None, device=None) -> torch.Tensor:
    m = as_real(x, dtype, device)
    if m.shape != (3, 3):
        raise ValueError(f"{name} must be a 3x3 matrix, got shape {tuple(m.shape)}")
    return m


def _points3(x: Any, name: str, dtype=None, device=None) -> torch.Tensor:
    p = as_real(x, dtype, device)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n_points, 3), got {tuple(p.shape)}")
    return p


def _sampling(s: Any, name: str) -> tuple[float, float, float]:
    try:
        lo, hi, over = (float(v) for v in s)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (min, max, oversampling), got {s!r}") from None
    if hi < lo or over <= 0:
        raise ValueError(f"{name} must have min <= max and oversampling > 0, got {s!r}")
    return lo, hi, over


def _axis_values(s: Any, name: str, dtype, device) -> torch.Tensor:
    """Evenly spaced values from min to max, both included, as ``numpy.mgrid`` with a complex step spaces them."""
    lo, hi, over = _sampling(s, name)
    n = int(over * (hi - lo) + 1)
    step = (hi - lo) / float(n - 1) if n != 1 else 1.0
    return torch.arange(n, dtype=dtype, device=device) * step + lo


# ----------------------------------------------------------------------------- grids


def grid_axes(hsampling, ksampling, lsampling, *, dtype=None, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Miller indices along h, k and l of the grid :func:`generate_grid` lays out (its points are their product)."""
    dtype = dtype or torch.float64
    return tuple(
        _axis_values(s, name, dtype, device)
        for s, name in ((hsampling, "hsampling"), (ksampling, "ksampling"), (lsampling, "lsampling"))
    )


def generate_grid(A_inv, hsampling, ksampling, lsampling, return_hkl=False, *, dtype=None, device=None):
    """Grid of q-vectors (or Miller indices when ``return_hkl``) and its 3d ``map_shape``.

    Each sampling is ``(min, max, oversampling)``; an axis holds
    ``int(oversampling * (max - min) + 1)`` evenly spaced values.
    Returns ``(grid of shape (n_points, 3), map_shape)``.
    """
    dtype, device = float_context(dtype, device, A_inv)
    A = _matrix3(A_inv, "A_inv", dtype, device)
    axes = grid_axes(hsampling, ksampling, lsampling, dtype=A.dtype, device=A.device)
    map_shape = tuple(int(a.numel()) for a in axes)
    hkl = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    if return_hkl:
        return hkl, map_shape
    return 2 * math.pi * (hkl @ A), map_shape


def get_symmetry_equivalents(hkl_grid, sym_ops, *, dtype=None, device=None):
    """Miller indices rotated by every symmetry operation: shape ``(n_ops, n_points, 3)``.

    ``sym_ops`` maps an index to a 3x3 rotation (a dict as eryx builds it), or
    is a sequence / ``(n_ops, 3, 3)`` array; row vectors are multiplied on the
    right, ``hkl @ R``.
    """
    hkl = _points3(hkl_grid, "hkl_grid", *float_context(dtype, device, hkl_grid))
    rots = _stack_ops(sym_ops, hkl.dtype, hkl.device)
    return torch.matmul(hkl.unsqueeze(0), rots)


def _stack_ops(sym_ops: Any, dtype, device) -> torch.Tensor:
    values = list(sym_ops.values()) if isinstance(sym_ops, Mapping) else sym_ops
    if isinstance(values, (list, tuple)):
        if not values:
            raise ValueError("sym_ops is empty: at least the identity operation is needed")
        rots = torch.stack([as_real(r, dtype, device) for r in values])
    else:  # one (n_ops, 3, 3) array or tensor
        rots = as_real(values, dtype, device)
    if rots.ndim != 3 or rots.shape[1:] != (3, 3):
        raise ValueError(f"sym_ops must hold 3x3 rotation matrices, got shape {tuple(rots.shape)}")
    return rots


def get_ravel_indices(hkl_grid_sym, sampling, *, device=None):
    """Flat indices of symmetry-equivalent grid points in the smallest box holding them all.

    ``hkl_grid_sym`` has shape ``(n_ops, n_points, 3)`` and ``sampling`` is the
    oversampling per axis. Returns ``(ravel of shape (n_ops, n_points), box shape)``
    with C (row-major) order in the box.
    """
    hkl = as_real(hkl_grid_sym, device=device)
    if hkl.ndim != 3 or hkl.shape[-1] != 3 or hkl.shape[1] == 0:
        raise ValueError(f"hkl_grid_sym must have shape (n_ops, n_points, 3) with n_points > 0, got {tuple(hkl.shape)}")
    rate = as_real(sampling, hkl.dtype, hkl.device).reshape(-1)
    if rate.numel() != 3:
        raise ValueError(f"sampling must hold 3 rates (h, k, l), got {rate.numel()}")
    # round() is half-to-even like numpy.around; the index grid is integral after scaling
    idx = torch.round(hkl.detach() * rate).to(torch.int64)
    flat = idx.reshape(-1, 3)
    lower = flat.min(dim=0).values
    shape = flat.max(dim=0).values - lower + 1
    rel = idx - lower
    ravel = (rel[..., 0] * shape[1] + rel[..., 1]) * shape[2] + rel[..., 2]
    return ravel, tuple(int(s) for s in shape)


def get_centered_sampling(map_shape: Sequence[int], sampling: Sequence[float]) -> list[tuple]:
    """``[hsampling, ksampling, lsampling]`` of a map of ``map_shape`` centred on hkl = 0."""
    half = [(int(map_shape[i]) - 1) / sampling[i] / 2.0 for i in range(3)]
    return [(-half[i], half[i], sampling[i]) for i in range(3)]


def resize_map(new_map, old_sampling: Sequence[tuple], new_sampling: Sequence[tuple]) -> torch.Tensor:
    """Trim a symmetrised map back to the extent of ``old_sampling`` along each axis that grew.

    An axis whose maximum grew by ``d`` loses ``round(2 d)`` planes at each end:
    eryx's rule, which counts two planes per Miller unit whatever the sampling.
    """
    out = new_map if isinstance(new_map, torch.Tensor) else as_real(new_map)
    if out.ndim != 3:
        raise ValueError(f"new_map must be a 3d map, got shape {tuple(out.shape)}")
    for axis in range(3):
        grown = new_sampling[axis][1] - old_sampling[axis][1]
        if abs(grown) > 1e-6:
            cut = int(round(2 * grown))
            out = out[(slice(None),) * axis + (slice(cut, -cut),)]
    return out


# ----------------------------------------------------------------------------- integer grids
#
# A grid axis whose values are integers over its oversampling rate, (n0 + i) / rate, and operators
# that send such indices to such indices (``diag(1/rate) R diag(rate)`` integral) let the symmetry
# bookkeeping run on small integer vectors: an image's flat index in a box is then an affine function
# of the three axis indices, and a point's multiplicity is the size of its orbit. Both give what
# rounding ``hkl @ R * rate`` point by point gives, without (n_ops, n_points, 3) temporaries.

_AXIS_TOL = 1e-6  # grid values within this of a multiple of 1/rate (after scaling) count as on it
_OPERATOR_TOL = 1e-9


def integral_axis(values: torch.Tensor, rate: float) -> torch.Tensor | None:
    """``round(values * rate)`` as int64 when every value is that integer over ``rate`` (to 1e-6), else None."""
    scaled = values.detach() * float(rate)
    n = torch.round(scaled)
    if scaled.numel() and float((scaled - n).abs().max()) > _AXIS_TOL:
        return None
    return n.to(torch.int64)


def integral_operators(rotations: torch.Tensor, rates: Sequence[float]) -> list[tuple[tuple[int, ...], ...]] | None:
    """The 3x3 integer matrices ``M`` (tuples of rows) with ``round(hkl @ R * rate) = n @ M`` for
    ``hkl = n / rate``, when ``diag(1/rate) R diag(rate)`` is integral for every ``R`` of ``rotations``
    (n_ops, 3, 3); None otherwise."""
    s = [float(r) for r in rates]
    out = []
    for rot in rotations.detach().cpu().tolist():
        m = []
        for d in range(3):
            row = []
            for e in range(3):
                v = rot[d][e] * s[e] / s[d]
                if abs(v - round(v)) > _OPERATOR_TOL:
                    return None
                row.append(int(round(v)))
            m.append(tuple(row))
        out.append(tuple(m))
    return out


def image_bounds(axes: Sequence[torch.Tensor], ops) -> tuple[list[int], list[int]]:
    """Smallest and largest ``n @ M`` per component over the product grid of the integer ``axes``
    and every operator ``M`` of ``ops``: the box :func:`get_ravel_indices` spans."""
    ends = [(int(a.min()), int(a.max())) for a in axes]
    lower, upper = [None] * 3, [None] * 3
    for m in ops:
        for e in range(3):
            lo = sum(min(m[d][e] * ends[d][0], m[d][e] * ends[d][1]) for d in range(3))
            hi = sum(max(m[d][e] * ends[d][0], m[d][e] * ends[d][1]) for d in range(3))
            lower[e] = lo if lower[e] is None else min(lower[e], lo)
            upper[e] = hi if upper[e] is None else max(upper[e], hi)
    return lower, upper


def _matmul3(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3))


def _det3(m) -> int:
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def orbit_sizes(axes: Sequence[torch.Tensor], ops) -> torch.Tensor | None:
    """How many distinct points ``n @ M`` the integer matrices ``ops`` give, for every ``n`` of the
    product grid of the integer ``axes``: (n0, n1, n2) int64.

    Counted as ``|S| / |stabiliser of n|`` over the distinct matrices ``S`` of ``ops``, which needs
    ``S`` to be a group (the point group with Friedel's inversion is one); None otherwise. The
    stabiliser conditions ``n (M - I) = 0`` are linear, so each is a comparison of broadcast axis
    vectors, not a pass over rotated copies of the grid.
    """
    group = list(dict.fromkeys(ops))
    eye = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    members = set(group)
    if eye not in members or any(abs(_det3(a)) != 1 for a in group):
        return None
    if any(_matmul3(a, b) not in members for a in group for b in group):
        return None
    shaped = [axes[0].reshape(-1, 1, 1), axes[1].reshape(1, -1, 1), axes[2].reshape(1, 1, -1)]
    shape = tuple(int(a.numel()) for a in axes)
    fixed = torch.ones(shape, dtype=torch.int64, device=axes[0].device)  # the identity fixes every point
    for m in group:
        if m == eye:
            continue
        cond = None
        for e in range(3):
            terms = [shaped[d] * (m[d][e] - eye[d][e]) for d in range(3) if m[d][e] != eye[d][e]]
            if not terms:
                continue
            c = reduce(torch.add, terms) == 0
            cond = c if cond is None else cond & c
        fixed += cond
    return len(group) // fixed


# ----------------------------------------------------------------------------- resolution


def cos_sq(angles):
    """cos(angles)**2, angles in radians."""
    return torch.cos(as_real(angles)) ** 2


def sin_sq(angles):
    """sin(angles)**2, angles in radians."""
    return torch.sin(as_real(angles)) ** 2


def _cell6(cell: Any, dtype, device) -> torch.Tensor:
    c = as_real(cell, dtype, device).reshape(-1)
    if c.numel() != 6:
        raise ValueError(f"cell must hold 6 parameters (a, b, c, alpha, beta, gamma), got {c.numel()}")
    return c


def compute_resolution(cell, hkl, *, dtype=None, device=None):
    """Resolution d (Angstrom) of each Miller index, from the triclinic d-spacing formula.

    ``cell`` is ``(a, b, c, alpha, beta, gamma)`` in Angstrom/degrees. hkl = 0
    gives ``inf``. Differentiable in ``cell`` and ``hkl``.
    """
    m = _points3(hkl, "hkl", *float_context(dtype, device, hkl, cell))
    c = _cell6(cell, m.dtype, m.device)
    return _resolution(c, *m.unbind(-1))


def resolution_on_grid(cell, axes: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`compute_resolution` on the product grid of the Miller indices ``axes`` (h, k, l values),
    shaped (n_h, n_k, n_l): the same arithmetic per point, on broadcast axis vectors."""
    c = _cell6(cell, axes[0].dtype, axes[0].device)
    return _resolution(c, axes[0].reshape(-1, 1, 1), axes[1].reshape(1, -1, 1), axes[2].reshape(1, 1, -1))


def _resolution(c: torch.Tensor, h: torch.Tensor, k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    a, b, cc = c[0], c[1], c[2]
    ang = torch.deg2rad(c[3:])
    cos, sin = torch.cos(ang), torch.sin(ang)
    # squared volume of the unit cell with unit edges
    v2 = 1.0 - (cos**2).sum() + 2.0 * cos.prod()
    diag = (h * sin[0] / a) ** 2 + (k * sin[1] / b) ** 2 + (l * sin[2] / cc) ** 2
    x_kl = 2.0 * k * l * (cos[1] * cos[2] - cos[0]) / (b * cc)
    x_lh = 2.0 * l * h * (cos[2] * cos[0] - cos[1]) / (cc * a)
    x_hk = 2.0 * h * k * (cos[0] * cos[1] - cos[2]) / (a * b)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (c, h, k, l)):
        return 1.0 / torch.sqrt((diag + (x_kl + x_lh + x_hk)) / v2)
    # the same operations in place (on a grid of broadcast axes, two full-size arrays instead of six)
    cross = _add(x_kl + x_lh, x_hk)
    return _add(diag, cross).div_(v2).sqrt_().reciprocal_()


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` into ``a`` (a temporary) when it already has the broadcast shape."""
    holds = a.dim() >= b.dim() and all(x == y or y == 1 for x, y in zip(a.shape[::-1], b.shape[::-1]))
    return a.add_(b) if holds else a + b


def get_resolution_mask(cell, hkl_grid, res_limit, *, dtype=None, device=None):
    """``(mask, res_map)``: resolution of each grid point and whether it is coarser than ``res_limit``."""
    res_map = compute_resolution(cell, hkl_grid, dtype=dtype, device=device)
    return res_map > res_limit, res_map


def get_hkl_extents(cell, resolution: float, oversampling: int | Sequence[int] = 1) -> tuple[tuple, tuple, tuple]:
    """``(hsampling, ksampling, lsampling)`` covering every reflection up to ``resolution``.

    The limits are gemmi's ``UnitCell.get_hkl_limits`` (``int(edge / d_min)``),
    symmetric about 0; ``oversampling`` is an int or one rate per axis.
    """
    import gemmi  # only this function needs gemmi's cell

    params = [float(v) for v in as_real(cell).reshape(-1).tolist()]
    if len(params) != 6:
        raise ValueError(f"cell must hold 6 parameters, got {len(params)}")
    if not float(resolution) > 0:
        raise ValueError(f"resolution must be a positive number of Angstrom, got {resolution!r}")
    if isinstance(oversampling, int):
        oversampling = (oversampling,) * 3
    elif len(oversampling) != 3:
        raise ValueError(f"oversampling must be an int or 3 rates, got {oversampling!r}")
    h, k, l = gemmi.UnitCell(*params).get_hkl_limits(float(resolution))
    return tuple((-limit, limit, rate) for limit, rate in zip((h, k, l), oversampling))


def get_dq_map(A_inv, hkl_grid, *, dtype=None, device=None):
    """Distance in q (1/Angstrom) from each grid point to its nearest Bragg peak, rounded to 8 decimals."""
    hkl = _points3(hkl_grid, "hkl_grid", *float_context(dtype, device, hkl_grid, A_inv))
    A = _matrix3(A_inv, "A_inv", hkl.dtype, hkl.device)
    q_peak = 2 * math.pi * (torch.round(hkl) @ A)
    q = 2 * math.pi * (hkl @ A)
    return torch.round(torch.linalg.vector_norm(q_peak - q, dim=1), decimals=8)


# ----------------------------------------------------------------------------- symmetry


def expand_sym_ops(sym_ops):
    """The rotations followed by their negatives (Friedel mates), keyed ``i`` and ``i + n``."""
    if not isinstance(sym_ops, Mapping):
        sym_ops = dict(enumerate(sym_ops))
    ops = {key: as_real(rot) for key, rot in sym_ops.items()}
    n = len(ops)
    ops.update({key + n: -rot for key, rot in list(ops.items())})
    return ops


def compute_multiplicity(model, hsampling, ksampling, lsampling, *, device=None):
    """``(hkl_grid, multiplicity)``: how many distinct grid points each point's Friedel-expanded equivalents hit.

    ``model`` is anything with ``sym_ops`` (rotations) and ``A_inv``.
    """
    for attr in ("sym_ops", "A_inv"):
        if not hasattr(model, attr):
            raise ValueError(f"model must have a {attr!r} attribute (got {type(model).__name__})")
    ops = expand_sym_ops(model.sym_ops)
    hkl, map_shape = generate_grid(model.A_inv, hsampling, ksampling, lsampling, return_hkl=True, device=device)
    ravel, _ = get_ravel_indices(get_symmetry_equivalents(hkl, ops), (hsampling[2], ksampling[2], lsampling[2]))
    ordered = torch.sort(ravel.T, dim=1).values
    distinct = (ordered[:, 1:] != ordered[:, :-1]).sum(dim=1) + 1
    return hkl, distinct.reshape(map_shape)


# ----------------------------------------------------------------------------- reciprocal ASU

# gemmi's ASU conditions are comparisons of h, k, l with each other or with integers,
# combined with "and"/"or" and parentheses; they are parsed into closures, never eval'd.
_TOKEN = re.compile(r"\s*(>=|<=|>|<|=|\(|\)|and\b|or\b|[hkl]\b|-?\d+)\s*")
_COMPARE = {
    ">=": torch.ge,
    "<=": torch.le,
    ">": torch.gt,
    "<": torch.lt,
    "=": torch.eq,
}
_FLIP = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "=": "="}
_Cond = Callable[[dict], torch.Tensor]


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unexpected text in ASU condition {text!r} at position {pos}")
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


@lru_cache(maxsize=None)
def _parse_condition(text: str) -> _Cond:
    """Closure evaluating gemmi's condition string on a dict of h, k, l tensors.

    Grammar: or_expr := and_expr ("or" and_expr)*; and_expr := atom ("and" atom)*;
    atom := "(" or_expr ")" | operand op operand, operand being h, k, l or an integer.
    """
    tokens = _tokenize(text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take(expected=None):
        nonlocal pos
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"malformed ASU condition {text!r}: expected {expected or 'more'}, got {tok!r}")
        pos += 1
        return tok

    def operand():
        tok = take()
        if tok in ("h", "k", "l") or re.fullmatch(r"-?\d+", tok):
            return tok
        raise ValueError(f"malformed ASU condition {text!r}: unexpected {tok!r}")

    def atom():
        if peek() == "(":
            take("(")
            inner = or_expr()
            take(")")
            return inner
        left = operand()
        op = take()
        if op not in _COMPARE:
            raise ValueError(f"malformed ASU condition {text!r}: {op!r} is not a comparison")
        right = operand()
        if left not in ("h", "k", "l"):  # "0<=h": put the index on the left
            left, right, op = right, left, _FLIP[op]
        if left not in ("h", "k", "l"):
            raise ValueError(f"malformed ASU condition {text!r}: comparison of two numbers")
        fn = _COMPARE[op]
        if right in ("h", "k", "l"):
            return lambda v: fn(v[left], v[right])
        value = int(right)
        return lambda v: fn(v[left], value)

    def chain(part, word, combine):
        def parse():
            items = [part()]
            while peek() == word:
                take(word)
                items.append(part())
            if len(items) == 1:
                return items[0]
            return lambda v: reduce(combine, [item(v) for item in items])

        return parse

    and_expr = chain(atom, "and", torch.logical_and)
    or_expr = chain(and_expr, "or", torch.logical_or)
    tree = or_expr()
    if pos != len(tokens):
        raise ValueError(f"malformed ASU condition {text!r}: trailing {tokens[pos:]!r}")
    return tree


# gemmi spelling -> NumPy's elementwise spelling, applied in this order ("=" first, so ">=" passes
# through ">==" on its way back to ">=")
_PYTHON_SPELLING = (("=", "=="), ("and", "&"), ("or", "|"), (">==", ">="), ("<==", "<="))
# one comparison: an index letter directly followed by its operator, up to the next space
_COMPARISON = re.compile(r"[A-Za-z][^ ()][^ ]*")


def parse_asu_condition(asu_condition: str) -> str:
    """gemmi's ASU condition rewritten as eryx rewrites it: NumPy operators, each comparison in parentheses.

    ``'h>=0 and (k>0 or l=0)'`` -> ``'(h>=0) & ((k>0) | (l==0))'``. The result is text (eryx
    evaluates it with ``eval``); the port never evaluates it: :func:`get_asu_mask` parses gemmi's
    condition into closures. Exposed for eryx compatibility; the output matches eryx's for every
    condition gemmi produces.
    """
    if not isinstance(asu_condition, str):
        raise TypeError(f"asu_condition must be gemmi's condition string, not {type(asu_condition).__name__}")
    text = asu_condition
    for gemmi_word, numpy_word in _PYTHON_SPELLING:
        text = text.replace(gemmi_word, numpy_word)
    # a comparison runs to the next space; closing parentheses it swallows stay inside the added pair,
    # which gives the same text as closing right after the comparison
    return _COMPARISON.sub(lambda m: f"({m.group(0)})", text)


def _space_group(space_group: Any):
    import gemmi

    if isinstance(space_group, gemmi.SpaceGroup):
        return space_group
    if hasattr(space_group, "hm") and not isinstance(space_group, str):  # trace_tools SpaceGroupData
        space_group = space_group.hm
    try:
        return gemmi.SpaceGroup(int(space_group) if not isinstance(space_group, str) else space_group)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(f"space_group {space_group!r} is not a space group gemmi knows: {exc}") from None


def asu_condition(space_group) -> str:
    """gemmi's condition (a string over h, k, l) for a Miller index to lie in the reciprocal ASU."""
    import gemmi

    return gemmi.ReciprocalAsu(_space_group(space_group)).condition_str()


def get_asu_mask(space_group, hkl_grid, *, device=None):
    """Boolean mask of the grid points inside the reciprocal asymmetric unit of ``space_group``.

    Evaluates gemmi's ``ReciprocalAsu`` condition string on the (possibly
    fractional) indices, as eryx does. That condition is written for the
    reference setting of the space group: for integral indices the mask equals
    ``gemmi.ReciprocalAsu(gemmi.SpaceGroup(sg.number)).is_in``, which is
    ``ReciprocalAsu(sg).is_in`` itself only when ``sg`` is a reference setting.
    """
    if device is None and isinstance(hkl_grid, torch.Tensor):
        device = hkl_grid.device
    hkl = hkl_grid.detach() if isinstance(hkl_grid, torch.Tensor) else torch.as_tensor(np.array(hkl_grid))
    hkl = hkl.to(device=resolve_device(device) if device is not None else hkl.device)
    if hkl.ndim != 2 or hkl.shape[1] != 3:
        raise ValueError(f"hkl_grid must have shape (n_points, 3), got {tuple(hkl.shape)}")
    cond = _parse_condition(asu_condition(space_group))
    h, k, l = hkl.unbind(-1)
    return cond({"h": h, "k": k, "l": l})


def asu_mask_on_grid(space_group, axes: Sequence[torch.Tensor]) -> torch.Tensor:
    """:func:`get_asu_mask` on the product grid of the Miller indices ``axes``: (n_h, n_k, n_l) bool."""
    cond = _parse_condition(asu_condition(space_group))
    h, k, l = (a.detach().reshape(shape) for a, shape in zip(axes, ((-1, 1, 1), (1, -1, 1), (1, 1, -1))))
    shape = tuple(int(a.numel()) for a in axes)
    return torch.as_tensor(cond({"h": h, "k": k, "l": l}), device=h.device).expand(shape)
