"""``trace-tools import-logs``: turn the earlier toolchain's ``@debug`` logs into traces.

The earlier toolchain (../shared/seed/port-progress.md) wrapped the NumPy
functions in a ``@debug`` decorator that wrote, per function,
``logs/<package>.<module>.<function>.log`` (methods:
``<package>.<module>.<Class>.<method>.log``), one JSON object per line::

    {"args": "<hex>", "kwargs": "<hex>"}                 before the call
    {"result": "<hex>", "execution_time": 0.0123}         after it

and, for methods, ``<package>.<module>.<Class>._state_before_<method>.log`` and
``..._state_after_<method>.log``: one JSON object per call mapping attribute
names to hex strings. Each hex string is a pickle. A call that raised has an
"after" line ``{"exception": "<hex pickle of the exception>"}`` or
``{"error": "<message>", "error_type": "<class name>"}`` instead of a result.
Method call lines hold the arguments after ``self``.

Pickles can run code when they are read, so nothing is read unless the user
passes ``--trust-pickle``; even then the values are read by
:class:`DataUnpickler`, which builds only data (NumPy arrays, dtypes and
scalars, Python's built-in containers and scalars, complex numbers, built-in
exception instances) and refuses any other name a pickle asks for, before
anything of it runs. Dictionaries the earlier toolchain made of gemmi objects
(``{"_gemmi_type": "UnitCell", "a": ...}``) are plain data; unit cells and
space groups among them become the trace records ``CellData`` and
``SpaceGroupData``.

Positional arguments are named after the function's signature, read with
``ast`` (never imported) from ``--source`` when given, or else from the trace of
the same function in traces/data. Traces are written into a temporary folder
and moved into ``--out`` only when every file was read: an error leaves no
partial output.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import inspect
import io
import json
import math
import os
import pickle
import platform
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .codec import Encoder
from .record import _source_commit
from .store import TraceError, TraceParts, default_folder, encode_call, load_function, save_trace, trace_path
from .values import Call, CellData, ExceptionData, SpaceGroupData

IMPORTER_VERSION = f"trace_tools {__version__} import-logs 1"
DEFAULT_SCENARIO = "legacy"
STATE_BEFORE = "._state_before_"
STATE_AFTER = "._state_after_"
MAX_DEPTH = 200

REFUSAL = (
    "the files in {logdir} hold Python pickles, and reading a pickle can run any code it names "
    "(a tampered or foreign log could, for instance, delete files). Nothing was read or written. "
    "If the logs come from a source you trust, run again with --trust-pickle: values are then read by "
    "an unpickler that accepts only data (NumPy arrays, dtypes and scalars, built-in containers and "
    "scalars) and refuses anything else."
)


class LegacyLogError(Exception):
    """A problem with the logs, reported as one line naming the file and line (exit status 2)."""


class UnsafePickle(pickle.UnpicklingError):
    """A pickle asked for something that is not plain data."""


# ---------------------------------------------------------------- the restricted unpickler
class _NdarrayToken:
    """Stands for ``numpy.ndarray`` inside a pickle: usable only as _reconstruct's first argument."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayToken()


class _PendingArray:
    """An array whose state (shape, dtype, data) is checked before the real array is made."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _PendingArray:
    if subtype is not _NDARRAY:
        raise UnsafePickle(f"numpy _reconstruct of {subtype!r} (only plain numpy.ndarray is data)")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and 0 <= n for n in shape) and math.prod(shape) <= 1):
        raise UnsafePickle(f"numpy _reconstruct with shape {shape!r} (a pickled array starts empty: refused as an allocation request)")
    return _PendingArray()


def _checked_dtype(dt: np.dtype) -> np.dtype:
    if dt.itemsize > 1 << 30:
        raise UnsafePickle(f"a dtype of {dt.itemsize} bytes per element")
    return dt


def _dtype(*args: Any) -> np.dtype:
    if not args or not isinstance(args[0], (str, bytes)):
        raise UnsafePickle(f"numpy.dtype{args!r}")
    return _checked_dtype(np.dtype(args[0], *[bool(a) for a in args[1:3]]))


def _scalar(dtype: Any, *data: Any) -> Any:
    if not isinstance(dtype, np.dtype):
        raise UnsafePickle("numpy scalar of something that is not a dtype")
    _checked_dtype(dtype)
    if dtype.hasobject:
        return data[0] if data else None
    if len(data) != 1 or not isinstance(data[0], bytes) or len(data[0]) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar with malformed data")
    return np._core.multiarray.scalar(dtype, data[0])


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickle("numpy _frombuffer of an object dtype")
    arr = np.frombuffer(memoryview(buf).tobytes(), dtype=_checked_dtype(dtype))
    return arr.reshape(shape, order="F" if order == "F" else "C").copy()


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickle(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _bytearray(*args: Any) -> bytearray:
    if args and not isinstance(args[0], (bytes, bytearray, list)):
        raise UnsafePickle(f"bytearray({type(args[0]).__name__}) (an allocation request)")
    if args and isinstance(args[0], list) and not all(isinstance(x, int) for x in args[0]):
        raise UnsafePickle("bytearray of non-integers")
    return bytearray(*args[:1])


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("builtins", "complex"): complex,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("collections", "OrderedDict"): dict,
    ("_codecs", "encode"): _codecs_encode,
}
for _m in _NUMPY_MODULES:
    _ALLOWED[(_m, "_reconstruct")] = _reconstruct
    _ALLOWED[(_m, "scalar")] = _scalar
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_m, "_frombuffer")] = _frombuffer
_EXCEPTION_MODULES = {"numpy.linalg": {"LinAlgError": np.linalg.LinAlgError}}
_PY2_NAMES = {"__builtin__": "builtins", "exceptions": "builtins", "copy_reg": "copyreg"}


def _builtin_exception(name: str) -> type | None:
    import builtins

    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == "builtins":
        return cls
    return None


class DataUnpickler(pickle.Unpickler):
    """An unpickler that builds data only; any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_NAMES.get(module, module)
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "builtins":
            exc = _builtin_exception(name)
            if exc is not None:
                return exc
        exc = _EXCEPTION_MODULES.get(module, {}).get(name)
        if exc is not None:
            return exc
        raise UnsafePickle(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle(f"persistent id {pid!r}")


def _finish(value: Any, seen: dict[int, Any], depth: int = 0) -> Any:
    """Replace checked placeholders by real arrays and gemmi dictionaries by trace records."""
    if depth > MAX_DEPTH:
        raise pickle.UnpicklingError("values nested too deeply")
    key = id(value)
    if key in seen:
        return seen[key]
    if isinstance(value, _PendingArray):
        out = _make_array(value, seen, depth)
    elif isinstance(value, list):
        seen[key] = value
        value[:] = [_finish(v, seen, depth + 1) for v in value]
        return value
    elif isinstance(value, dict):
        seen[key] = value
        for k in list(value):
            value[k] = _finish(value[k], seen, depth + 1)
        return _gemmi_record(value) or value
    elif isinstance(value, tuple):
        out = tuple(_finish(v, seen, depth + 1) for v in value)
    elif isinstance(value, (set, frozenset)):
        out = type(value)(_finish(v, seen, depth + 1) for v in value)
    elif isinstance(value, BaseException):
        value.args = tuple(_finish(v, seen, depth + 1) for v in value.args)
        out = value
    elif isinstance(value, np.ndarray) and value.dtype.hasobject:
        flat = value.reshape(-1)
        for i in range(flat.size):
            flat[i] = _finish(flat[i], seen, depth + 1)
        out = value
    else:
        out = value
    seen[key] = out
    return out


def _make_array(pending: _PendingArray, seen: dict[int, Any], depth: int) -> np.ndarray:
    state = pending.state
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise pickle.UnpicklingError("a numpy array without its data")
    shape, dtype, fortran, raw = state[-4:]
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)) or not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("a numpy array with a malformed shape or dtype")
    n = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(raw, list) or len(raw) != n:
            raise UnsafePickle(f"an object array of shape {shape} with {len(raw) if isinstance(raw, list) else 'no'} items (an allocation request)")
        raw = [_finish(v, seen, depth + 1) for v in raw]
    else:
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != n * dtype.itemsize:
            raise UnsafePickle(f"an array of shape {shape} and dtype {dtype} whose data has another size (an allocation request)")
    arr = np.ndarray.__new__(np.ndarray, (0,), np.uint8)
    arr.__setstate__(state[:-1] + (raw,))
    return arr


def _gemmi_record(d: dict) -> Any:
    kind = d.get("_gemmi_type")
    try:
        if kind in ("UnitCell", "Cell"):
            return CellData(parameters=tuple(float(d[k]) for k in ("a", "b", "c", "alpha", "beta", "gamma")))
        if kind == "SpaceGroup":
            hm = d.get("xhm") or d.get("hm")
            number = d.get("number")
            if isinstance(hm, str) and hm and isinstance(number, int):
                return SpaceGroupData(hm=hm, number=int(number))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def unpickle_data(data: bytes) -> Any:
    """Read one pickle with :class:`DataUnpickler` (raises UnsafePickle or UnpicklingError-like errors)."""
    value = DataUnpickler(io.BytesIO(data)).load()
    return _finish(value, {})


# ---------------------------------------------------------------- reading log files
@dataclass
class _LegacyCall:
    line: int
    args: Any
    kwargs: Any
    result: Any = None
    exception: ExceptionData | None = None
    done: bool = False


@dataclass
class _Function:
    name: str
    log: Path | None = None
    before: Path | None = None
    after: Path | None = None
    calls: list[_LegacyCall] = field(default_factory=list)


def _value(path: Path, line: int, obj: dict, key: str) -> Any:
    raw = obj.get(key)
    if not isinstance(raw, str):
        raise LegacyLogError(f"{path}:{line}: field {key!r} is not a hex string")
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        raise LegacyLogError(f"{path}:{line}: field {key!r} is not a valid hex string") from None
    try:
        return unpickle_data(data)
    except UnsafePickle as exc:
        raise LegacyLogError(
            f"{path}:{line}: field {key!r}: the pickle asks for {exc}, which is not plain data; refused, nothing of it was run"
        ) from None
    except RecursionError:
        raise LegacyLogError(f"{path}:{line}: field {key!r}: the pickle is nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a damaged pickle
        raise LegacyLogError(f"{path}:{line}: field {key!r} is not a readable pickle ({type(exc).__name__}: {exc})") from None


def _json_lines(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LegacyLogError(f"{path}: cannot be read ({exc})") from None
    for k, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise LegacyLogError(f"{path}:{k}: not a complete JSON object (truncated?): {exc}") from None
        if not isinstance(obj, dict):
            raise LegacyLogError(f"{path}:{k}: not a JSON object")
        yield k, obj


def _exception(path: Path, line: int, obj: dict) -> ExceptionData:
    if "exception" in obj and isinstance(obj["exception"], str):
        exc = _value(path, line, obj, "exception")
        if isinstance(exc, BaseException):
            cls = type(exc)
            name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
            return ExceptionData(type=name, message=str(exc))
        return ExceptionData(type=str(obj.get("error_type") or "Exception"), message=str(exc))
    if isinstance(obj.get("exception"), dict):
        e = obj["exception"]
        return ExceptionData(type=str(e.get("type") or "Exception"), message=str(e.get("message") or ""))
    return ExceptionData(type=str(obj.get("error_type") or obj.get("exception_type") or "Exception"), message=str(obj.get("error")))


def read_call_log(path: Path) -> list[_LegacyCall]:
    calls: list[_LegacyCall] = []
    pending: _LegacyCall | None = None
    for line, obj in _json_lines(path):
        if "args" in obj or "kwargs" in obj:
            if pending is not None:
                raise LegacyLogError(f"{path}:{pending.line}: call without a result line (the next call starts on line {line})")
            args = _value(path, line, obj, "args") if "args" in obj else ()
            kwargs = _value(path, line, obj, "kwargs") if "kwargs" in obj else {}
            if not isinstance(args, (tuple, list)):
                raise LegacyLogError(f"{path}:{line}: 'args' is a {type(args).__name__}, not a tuple")
            if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
                raise LegacyLogError(f"{path}:{line}: 'kwargs' is not a dict of names")
            pending = _LegacyCall(line, tuple(args), kwargs)
        elif "result" in obj or "exception" in obj or "error" in obj:
            if pending is None:
                raise LegacyLogError(f"{path}:{line}: result line without a call line before it")
            if "result" in obj:
                pending.result = _value(path, line, obj, "result")
            else:
                pending.exception = _exception(path, line, obj)
            pending.done = True
            calls.append(pending)
            pending = None
        else:
            raise LegacyLogError(f"{path}:{line}: neither a call line ('args', 'kwargs') nor a result line ('result')")
    if pending is not None:
        raise LegacyLogError(f"{path}:{pending.line}: call without a result line (the file ends)")
    return calls


def read_state_log(path: Path) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Each line: (decoded attributes, their hex strings)."""
    states = []
    for line, obj in _json_lines(path):
        states.append(({name: _value(path, line, obj, name) for name in obj}, {n: v for n, v in obj.items()}))
    return states


# ---------------------------------------------------------------- signatures
@dataclass
class _Signature:
    params: list[inspect.Parameter]
    defaults: dict[str, Any]
    method: bool


def _ast_signature(source: Path, name: str) -> _Signature | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        mod, rest = parts[:cut], parts[cut:]
        if len(rest) > 2:
            continue
        for file in (source.joinpath(*mod).with_suffix(".py"), source.joinpath(*mod, "__init__.py")):
            if not file.is_file():
                continue
            try:
                tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            except (SyntaxError, UnicodeDecodeError, OSError):
                continue
            body, in_class = tree.body, False
            if len(rest) == 2:
                cls = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == rest[0]), None)
                if cls is None:
                    continue
                body, in_class = cls.body, True
            fn = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == rest[-1]), None)
            if fn is not None:
                static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
                return _from_ast(fn.args, in_class and not static)
    return None


def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def _from_ast(a: ast.arguments, method: bool) -> _Signature:
    P = inspect.Parameter
    positional = [(x.arg, P.POSITIONAL_ONLY) for x in a.posonlyargs] + [(x.arg, P.POSITIONAL_OR_KEYWORD) for x in a.args]
    defaults: dict[str, Any] = {}
    for (pname, _), node in zip(positional[len(positional) - len(a.defaults):], a.defaults):
        ok, value = _literal(node)
        if ok:
            defaults[pname] = value
    if method and positional:
        positional = positional[1:]
    params = [P(n, k) for n, k in positional]
    if a.vararg:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for x, node in zip(a.kwonlyargs, a.kw_defaults):
        params.append(P(x.arg, P.KEYWORD_ONLY))
        if node is not None:
            ok, value = _literal(node)
            if ok:
                defaults[x.arg] = value
    if a.kwarg:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    return _Signature(params, defaults, method)


def _trace_signature(name: str, folder: Path) -> _Signature | None:
    try:
        trace = load_function(name, folder)
    except TraceError:
        return None
    if trace is None or not trace.calls:
        return None
    P = inspect.Parameter
    names = list(trace.calls[0].args)
    defaults: dict[str, Any] = {}
    for call in trace.calls:
        for n in names:
            if n in call.args and n not in call.passed and n not in defaults:
                defaults[n] = call.args[n]
    method = any(c.attrs_read or c.attrs_written for c in trace.calls)
    return _Signature([P(n, P.POSITIONAL_OR_KEYWORD) for n in names], defaults, method)


def _bind(sig: _Signature | None, name: str, call: _LegacyCall, path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    if sig is None:
        if call.args:
            raise LegacyLogError(
                f"{path}:{call.line}: cannot name the positional arguments of {name}: give --source with the package's "
                "source folder (read with ast, not imported)"
            )
        return dict(call.kwargs), tuple(call.kwargs)
    try:
        bound = inspect.Signature(sig.params).bind_partial(*call.args, **call.kwargs)
    except TypeError as exc:
        raise LegacyLogError(f"{path}:{call.line}: the call does not fit the signature of {name} ({exc})") from None
    passed = tuple(bound.arguments)
    args: dict[str, Any] = {}
    for p in sig.params:
        if p.name in bound.arguments:
            args[p.name] = bound.arguments[p.name]
        elif p.kind is p.VAR_POSITIONAL:
            args[p.name] = ()
        elif p.kind is p.VAR_KEYWORD:
            args[p.name] = {}
        elif p.name in sig.defaults:
            args[p.name] = sig.defaults[p.name]
    return args, passed


# ---------------------------------------------------------------- the import
def _discover(logdir: Path) -> dict[str, _Function]:
    functions: dict[str, _Function] = {}
    for path in sorted(logdir.glob("*.log")):
        stem = path.name[: -len(".log")]
        for marker, attr in ((STATE_BEFORE, "before"), (STATE_AFTER, "after")):
            if marker in stem:
                owner, method = stem.split(marker, 1)
                name = f"{owner}.{method}"
                setattr(functions.setdefault(name, _Function(name)), attr, path)
                break
        else:
            functions.setdefault(stem, _Function(stem)).log = path
    return functions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_logs(
    logdir: Path, out: Path, *, source: Path | None = None, scenario: str = DEFAULT_SCENARIO,
    command: str | None = None, signatures_from: Path | None = None,
) -> list[tuple[str, int, Path]]:
    """Convert every log in ``logdir`` into ``out``; all or nothing. Returns (function, calls, trace file)."""
    if not logdir.is_dir():
        raise LegacyLogError(f"log folder {logdir} does not exist")
    functions = _discover(logdir)
    if not functions:
        raise LegacyLogError(f"no *.log files in {logdir}")
    sig_folder = signatures_from if signatures_from is not None else default_folder()
    provenance_base = {
        "source_commit": _source_commit(source) if source else None,
        "source_path": str(source) if source else None,
        "python": None,  # the recording's environment is not in the logs
        "numpy": None,
        "imported_with": {"python": platform.python_version(), "numpy": np.__version__},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recorder": IMPORTER_VERSION,
        "command": command,
        "imported_from": str(logdir),
    }
    built: list[tuple[str, TraceParts]] = []
    for name, fn in sorted(functions.items()):
        if fn.log is None:
            state = fn.before or fn.after
            raise LegacyLogError(f"{state}: state log without its call log {name}.log")
        try:
            trace_path(name, out)
        except TraceError as exc:
            raise LegacyLogError(f"{fn.log}: {exc}") from None
        calls = read_call_log(fn.log)
        before = read_state_log(fn.before) if fn.before else None
        after = read_state_log(fn.after) if fn.after else None
        for states, path in ((before, fn.before), (after, fn.after)):
            if states is not None and len(states) != len(calls):
                raise LegacyLogError(f"{path}: {len(states)} state line(s) for {len(calls)} call(s) in {fn.log.name}")
        sig = _ast_signature(source, name) if source else None
        if sig is None:
            sig = _trace_signature(name, sig_folder)
        package = name.split(".")[0]
        encoder = Encoder(package)
        records = []
        for k, legacy in enumerate(calls):
            args, passed = _bind(sig, name, legacy, fn.log)
            attrs_read = dict(before[k][0]) if before else {}
            attrs_written = {}
            if after:
                old_hex = before[k][1] if before else {}
                attrs_written = {a: v for a, v in after[k][0].items() if old_hex.get(a) != after[k][1][a]}
            call = Call(
                function=name, scenario=scenario, index=k, args=args, passed=passed,
                result=None if legacy.exception else legacy.result, exception=legacy.exception,
                attrs_read=attrs_read, attrs_written=attrs_written,
            )
            records.append(encode_call(call, encoder))
        files = {p.name: _sha256(p) for p in (fn.log, fn.before, fn.after) if p is not None}
        provenance = dict(provenance_base, package=package, scenarios=[scenario] if records else [], legacy_logs=files)
        built.append((name, TraceParts(
            function=name, provenance=provenance, encoder=encoder, calls=records,
            limits={"max_calls": max(len(records), 1), "max_array_elements": encoder.max_array_elements},
            call_counts={scenario: len(records)},
        )))
    # everything was read: write into a temporary folder, then move the files into place
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        written = []
        for name, parts in built:
            save_trace(parts, trace_path(name, tmp))
        out.mkdir(parents=True, exist_ok=True)
        for name, parts in built:
            target = trace_path(name, out)
            os.replace(trace_path(name, tmp), target)
            written.append((name, len(parts.calls), target))
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- the command
def configure_import_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logdir", type=Path, help="folder of the earlier toolchain's logs (eryx.<module>.<function>.log ...)")
    parser.add_argument("--out", "--traces", dest="out", type=Path, required=True, help="folder for the trace files")
    parser.add_argument(
        "--trust-pickle", action="store_true",
        help="read the pickles in the logs (with a data-only unpickler); without it nothing is read",
    )
    parser.add_argument(
        "--source", type=Path, default=None,
        help="folder holding the logged package's source: signatures are read from it with ast (never imported)",
    )
    parser.add_argument(
        "--signatures-from", type=Path, default=None, metavar="TRACES",
        help="without --source, name positional arguments after the traces in this folder (default traces/data)",
    )
    parser.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario name of the imported calls (case ids <scenario>-call<n>; default %(default)s)")


def run_import_logs(args: argparse.Namespace) -> int:
    logdir = Path(args.logdir)
    if not args.trust_pickle:
        print(f"trace-tools import-logs: refused: {REFUSAL.format(logdir=logdir)}", file=sys.stderr)
        return 2
    source = Path(args.source).expanduser().resolve() if args.source else None
    if source is not None and not source.is_dir():
        print(f"trace-tools import-logs: error: source folder {source} does not exist", file=sys.stderr)
        return 2
    if not args.scenario or "/" in args.scenario:
        print(f"trace-tools import-logs: error: bad scenario name {args.scenario!r}", file=sys.stderr)
        return 2
    words = ["trace-tools", "import-logs", str(logdir), "--out", str(args.out), "--trust-pickle"]
    if source:
        words += ["--source", str(args.source)]
    if args.scenario != DEFAULT_SCENARIO:
        words += ["--scenario", args.scenario]
    try:
        written = import_logs(
            logdir, Path(args.out), source=source, scenario=args.scenario, command=shlex.join(words),
            signatures_from=Path(args.signatures_from) if args.signatures_from else None,
        )
    except LegacyLogError as exc:
        print(f"trace-tools import-logs: error: {exc}", file=sys.stderr)
        return 2
    from .inspect_cmd import print_table

    print_table(["function", "calls", "trace"], [(n, c, p) for n, c, p in written])
    return 0


__all__ = ["DataUnpickler", "LegacyLogError", "UnsafePickle", "import_logs", "unpickle_data"]
