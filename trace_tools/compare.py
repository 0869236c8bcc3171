"""Element-by-element comparison of a port's output with a recorded NumPy output.

The rule for floating values: ``|actual - expected| <= rtol * |expected| + atol``
element by element, where ``atol`` defaults to ``rtol`` times the largest finite
magnitude of the expected array (so exact zeros and cancellation residues compare
on the array's own scale). NaN and inf must sit at the same places (inf with the
same sign), shapes must match exactly, integers and booleans must be equal,
complex values are compared by real and imaginary parts. Containers are compared
element by element. The first mismatch report says where and by how much.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .values import ArraySummary

DEFAULT_RTOL = 1e-10


@dataclass
class Comparison:
    ok: bool = True
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.problems.append(message)

    @property
    def report(self) -> str:
        head = f"max abs err {self.max_abs_err:.3e}, max rel err {self.max_rel_err:.3e}"
        return head if self.ok else head + "\n" + "\n".join(self.problems[:20])


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


def _compare_float(a: np.ndarray, e: np.ndarray, rtol: float, atol: float | None, path: str, out: Comparison) -> None:
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
    scale = float(np.abs(ef).max())
    tol_abs = rtol * scale if atol is None else atol
    err = np.abs(af - ef)
    rel = err / np.maximum(np.abs(ef), np.finfo(np.float64).tiny)
    out.max_abs_err = max(out.max_abs_err, float(err.max()))
    # Relative error of elements that are not negligible on the array's scale (zeros have no relative error).
    significant = np.abs(ef) > tol_abs
    if significant.any():
        out.max_rel_err = max(out.max_rel_err, float(rel[significant].max()))
    bad = err > rtol * np.abs(ef) + tol_abs
    if bad.any():
        worst = int(np.argmax(np.where(bad, err, -1.0)))
        index = np.argwhere(finite)[worst]
        out.fail(
            f"{path}: {int(bad.sum())} of {ef.size} elements differ beyond rtol {rtol:g} + atol {tol_abs:.3g}; "
            f"worst {_where(index, e.shape)}: expected {ef[worst]!r}, got {af[worst]!r} "
            f"(abs err {err[worst]:.3e}, rel err {rel[worst]:.3e})"
        )


def _compare_arrays(actual: Any, expected: Any, rtol: float, atol: float | None, path: str, out: Comparison) -> None:
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
        scale_atol = atol
        if atol is None:  # one scale for both parts: that of the complex values
            finite = np.isfinite(ec)
            scale_atol = rtol * float(np.abs(ec[finite]).max()) if finite.any() else 0.0
        _compare_float(ac.real, ec.real, rtol, scale_atol, f"{path}.real", out)
        _compare_float(ac.imag, ec.imag, rtol, scale_atol, f"{path}.imag", out)
        return
    if e.dtype.kind != "f" or a.dtype.kind not in "biuf":
        out.fail(f"{path}: cannot compare dtype {a.dtype} with {e.dtype}")
        return
    _compare_float(a, e, rtol, atol, path, out)


def _compare(actual: Any, expected: Any, rtol: float, atol: float | None, path: str, out: Comparison) -> None:
    actual, expected = _to_numpy(actual), _to_numpy(expected)
    if isinstance(expected, ArraySummary):
        a = np.asarray(actual)
        if a.shape != tuple(expected.shape):
            out.fail(f"{path}: shape {a.shape} instead of {tuple(expected.shape)} (reference stored as a summary)")
            return
        sample = np.asarray(expected.sample)
        _compare_arrays(a.reshape(-1)[: sample.size], sample.reshape(-1), rtol, atol, f"{path}[sample]", out)
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
            _compare(actual[key], expected[key], rtol, atol, f"{path}[{key!r}]", out)
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            out.fail(f"{path}: expected a {type(expected).__name__}, got {type(actual).__name__}")
            return
        if len(actual) != len(expected):
            out.fail(f"{path}: length {len(actual)} instead of {len(expected)}")
            return
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, rtol, atol, f"{path}[{i}]", out)
        return
    if dataclasses.is_dataclass(expected):
        if type(actual) is not type(expected):
            out.fail(f"{path}: expected {type(expected).__name__}, got {type(actual).__name__}")
            return
        for f in dataclasses.fields(expected):
            _compare(getattr(actual, f.name), getattr(expected, f.name), rtol, atol, f"{path}.{f.name}", out)
        return
    if _is_numeric(expected):
        if not _is_numeric(actual):
            out.fail(f"{path}: expected a number or array, got {type(actual).__name__}")
            return
        _compare_arrays(actual, expected, rtol, atol, path, out)
        return
    out.fail(f"{path}: no rule to compare a {type(expected).__name__}")


def compare(actual: Any, expected: Any, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> Comparison:
    """Compare ``actual`` (port output: tensors, arrays, containers) with ``expected`` (decoded trace value)."""
    out = Comparison()
    _compare(actual, expected, rtol, atol, "result", out)
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
