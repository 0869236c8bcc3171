"""Element-by-element comparison of a port's output with a recorded NumPy output.

The rule for floating values, element by element::

    |actual - expected| <= max(rtol * |expected|, floor * scale)

``rtol`` is 1e-10. ``scale`` is the largest finite magnitude of the expected array
(or a per-element scale an adapter states with :class:`Tolerance`), and ``floor``
is the round-off of a float64 computation on that scale: :data:`DEFAULT_FLOOR`
(256 eps, 5.7e-14) unless the function's registry entry, or a :class:`Tolerance`
around one expected value, states a larger one with its reason. So every element
above ``floor / rtol`` of the scale (5.7e-4 by default) is checked to 1e-10 of
itself, and smaller elements (cancellation residues, exact zeros) to within the
round-off floor, never to within a fraction of the largest element.

NaN and inf must sit at the same places (inf with the same sign), shapes must match
exactly, integers and booleans must be equal, complex values are compared by real
and imaginary parts on the scale of the complex magnitudes. Containers are compared
element by element. The first mismatch report says where and by how much.

:class:`Comparison` reports the worst relative error among the elements checked
relatively (``max_rel_err``) and the worst error as a fraction of the scale
(``max_scaled_err``): the dashboard shows them and ``progress --check`` fails when
either grows more than tenfold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .values import ArraySummary

DEFAULT_RTOL = 1e-10
EPS = float(np.finfo(np.float64).eps)
# Round-off of a float64 result built from sums of a few hundred terms of the array's
# scale: elements below 256 eps of the largest one are cancellation residues.
DEFAULT_FLOOR = 256 * EPS


@dataclass(frozen=True)
class Tolerance:
    """An expected value with its own round-off floor, and why it needs one.

    ``floor`` (a number, or an array broadcastable to ``value``) is relative to ``scale``:
    the largest magnitude of ``value`` when ``scale`` is None, else an array broadcastable
    to ``value`` (a per-element scale, for outputs whose elements are computed
    independently on very different scales).
    """

    value: Any
    floor: Any
    reason: str
    scale: Any = None


@dataclass
class Comparison:
    ok: bool = True
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0  # over elements checked relatively (rtol * |expected| above the floor)
    max_scaled_err: float = 0.0  # |actual - expected| / scale, over all elements
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)

    @property
    def report(self) -> str:
        head = (
            f"max abs err {self.max_abs_err:.3e}, max rel err {self.max_rel_err:.3e}, "
            f"max err/scale {self.max_scaled_err:.3e}"
        )
        return head if self.ok else head + "\n" + "\n".join(self.problems[:20])


@dataclass(frozen=True)
class _Rule:
    rtol: float
    floor: Any  # a number, or an array broadcastable to the expected one
    atol: float | None = None  # an absolute floor, replacing floor * scale
    scale: Any = None  # per-element scale (from a Tolerance)


def _to_numpy(x: Any) -> Any:
    """Tensors (torch, without importing it) and NumPy scalars become arrays; other values pass through."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        return x.detach().cpu().resolve_conj().numpy()
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _is_numeric(x: Any) -> bool:
    return isinstance(x, (np.ndarray, int, float, complex)) and not isinstance(x, bool) or isinstance(
        x, (bool, np.bool_)
    )


def _where(index: tuple, shape: tuple) -> str:
    return f"at index {tuple(int(i) for i in index)}" if shape else "(scalar)"


def _scale_and_floor(e: np.ndarray, finite: np.ndarray, rule: _Rule, scale: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per finite element: its scale and its absolute floor (``floor * scale``, or the rule's ``atol``)."""
    if scale is None:
        s = np.full(e.shape, float(np.abs(e[finite]).max()))
    else:
        s = np.broadcast_to(np.abs(np.asarray(scale, dtype=np.float64)), e.shape)
    floor = np.broadcast_to(np.asarray(rule.floor, dtype=np.float64), e.shape)
    absolute = np.full(e.shape, rule.atol) if rule.atol is not None else floor * s
    return s[finite], absolute[finite]


def _compare_float(a: np.ndarray, e: np.ndarray, rule: _Rule, scale: Any, path: str, out: Comparison) -> None:
    a = a.astype(np.float64)
    e = e.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if (nan_a != nan_e).any():
        bad = np.argwhere(nan_a != nan_e)
        out.fail(
            f"{path}: NaN at different places ({len(bad)} elements; expected NaN {int(nan_e.sum())}, "
            f"got NaN {int(nan_a.sum())}); first {_where(bad[0], e.shape)}: expected {e[tuple(bad[0])]!r}, "
            f"got {a[tuple(bad[0])]!r}"
        )
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    if (inf_a != inf_e).any() or (np.sign(a[inf_e]) != np.sign(e[inf_e])).any():
        out.fail(f"{path}: inf at different places or with different signs")
    finite = np.isfinite(e) & np.isfinite(a)
    if not finite.any():
        return
    ef, af = e[finite], a[finite]
    scale_f, floor = _scale_and_floor(e, finite, rule, scale)
    err = np.abs(af - ef)
    rel = err / np.maximum(np.abs(ef), np.finfo(np.float64).tiny)
    out.max_abs_err = max(out.max_abs_err, float(err.max()))
    scaled = np.where(scale_f > 0, err / np.where(scale_f > 0, scale_f, 1.0), np.where(err > 0, np.inf, 0.0))
    out.max_scaled_err = max(out.max_scaled_err, float(scaled.max()))
    relative = rule.rtol * np.abs(ef) >= floor  # elements whose check is the relative one
    if relative.any():
        out.max_rel_err = max(out.max_rel_err, float(rel[relative].max()))
    bad = err > np.maximum(rule.rtol * np.abs(ef), floor)
    if bad.any():
        worst = int(np.argmax(np.where(bad, err / np.maximum(rule.rtol * np.abs(ef), floor), -1.0)))
        index = np.argwhere(finite)[worst]
        out.fail(
            f"{path}: {int(bad.sum())} of {ef.size} elements differ beyond max(rtol {rule.rtol:g} * |expected|, "
            f"floor {floor[worst]:.3g}); worst {_where(index, e.shape)}: expected {ef[worst]!r}, got {af[worst]!r} "
            f"(abs err {err[worst]:.3e}, rel err {rel[worst]:.3e})"
        )


def _compare_arrays(actual: Any, expected: Any, rule: _Rule, path: str, out: Comparison) -> None:
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        out.fail(f"{path}: shape {a.shape} instead of {e.shape}")
        return
    if e.dtype.kind in "biu":
        if a.dtype.kind not in "biu":
            out.fail(f"{path}: expected integers/booleans ({e.dtype}), got {a.dtype}")
            return
        bad = a != e
        if bad.any():
            index = np.argwhere(bad)[0]
            out.fail(
                f"{path}: {int(bad.sum())} of {e.size} integer/boolean elements differ; first {_where(index, e.shape)}: "
                f"expected {e[tuple(index)]!r}, got {a[tuple(index)]!r}"
            )
        return
    if e.dtype.kind == "c" or a.dtype.kind == "c":
        ec, ac = e.astype(np.complex128), a.astype(np.complex128)
        scale = rule.scale
        if scale is None:  # one scale for both parts: that of the complex values
            finite = np.isfinite(ec)
            scale = float(np.abs(ec[finite]).max()) if finite.any() else 0.0
        _compare_float(ac.real, ec.real, rule, scale, f"{path}.real", out)
        _compare_float(ac.imag, ec.imag, rule, scale, f"{path}.imag", out)
        return
    if e.dtype.kind != "f" or a.dtype.kind not in "biuf":
        out.fail(f"{path}: cannot compare dtype {a.dtype} with {e.dtype}")
        return
    _compare_float(a, e, rule, rule.scale, path, out)


def _compare(actual: Any, expected: Any, rule: _Rule, path: str, out: Comparison) -> None:
    if isinstance(expected, Tolerance):  # a value with its own stated floor; never looser than the rule's
        floor = np.maximum(expected.floor, rule.floor)
        _compare(actual, expected.value, dataclasses.replace(rule, floor=floor, scale=expected.scale), path, out)
        return
    actual, expected = _to_numpy(actual), _to_numpy(expected)
    if isinstance(expected, ArraySummary):
        a = np.asarray(actual)
        if a.shape != tuple(expected.shape):
            out.fail(f"{path}: shape {a.shape} instead of {tuple(expected.shape)} (reference stored as a summary)")
            return
        sample = np.asarray(expected.sample)
        _compare_arrays(a.reshape(-1)[: sample.size], sample.reshape(-1), rule, f"{path}[sample]", out)
        return
    if expected is None or isinstance(expected, str):
        if actual != expected:
            out.fail(f"{path}: expected {expected!r}, got {actual!r}")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            out.fail(f"{path}: expected a dict, got {type(actual).__name__}")
            return
        if set(actual) != set(expected):
            out.fail(f"{path}: keys {sorted(map(repr, actual))} instead of {sorted(map(repr, expected))}")
            return
        for key in expected:
            _compare(actual[key], expected[key], rule, f"{path}[{key!r}]", out)
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            out.fail(f"{path}: expected a {type(expected).__name__}, got {type(actual).__name__}")
            return
        if len(actual) != len(expected):
            out.fail(f"{path}: length {len(actual)} instead of {len(expected)}")
            return
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, rule, f"{path}[{i}]", out)
        return
    if dataclasses.is_dataclass(expected):
        if type(actual) is not type(expected):
            out.fail(f"{path}: expected {type(expected).__name__}, got {type(actual).__name__}")
            return
        for f in dataclasses.fields(expected):
            _compare(getattr(actual, f.name), getattr(expected, f.name), rule, f"{path}.{f.name}", out)
        return
    if _is_numeric(expected):
        if not _is_numeric(actual):
            out.fail(f"{path}: expected a number or array, got {type(actual).__name__}")
            return
        _compare_arrays(actual, expected, rule, path, out)
        return
    out.fail(f"{path}: no rule to compare a {type(expected).__name__}")


def compare(
    actual: Any,
    expected: Any,
    rtol: float = DEFAULT_RTOL,
    atol: float | None = None,
    floor: float = DEFAULT_FLOOR,
) -> Comparison:
    """Compare ``actual`` (port output: tensors, arrays, containers) with ``expected`` (decoded trace value).

    ``floor`` is relative to each array's scale (see the module docstring); ``atol``, when given,
    is an absolute floor instead.
    """
    out = Comparison()
    _compare(actual, expected, _Rule(rtol=rtol, floor=floor, atol=atol), "result", out)
    return out


def align_phases(actual: np.ndarray, expected: np.ndarray, axis: int = -2) -> np.ndarray:
    """Multiply each column (mode) of ``actual`` by the unit phase that best matches ``expected``.

    Eigenvectors are defined up to a phase per mode; ``axis`` is the component axis
    (modes run along the last axis). Modes where either side is all NaN are left alone.
    """
    a = np.asarray(_to_numpy(actual))
    e = np.asarray(_to_numpy(expected))
    overlap = np.nansum(np.conj(a) * e, axis=axis, keepdims=True)
    mag = np.abs(overlap)
    phase = np.where(mag > 0, overlap / np.where(mag > 0, mag, 1), 1)
    return a * phase
