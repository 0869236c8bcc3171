"""Reading and writing trace files (``traces/data/<function>.trace.npz``).

A trace file is an ``np.savez_compressed`` archive holding the
arrays of the recorded values (members ``a0``, ``a1``, ...), the JSON manifest
(member ``manifest``, UTF-8 bytes as a uint8 array) and the manifest's sha256
(member ``manifest_sha256``). traces/FORMAT.md describes it in full.

Loading uses ``np.load(..., allow_pickle=False)`` only and checks every
checksum, so a damaged or tampered file gives one :class:`TraceError` and no
code from the file is ever run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .codec import TAG, DecodeError, Decoder, Encoder, array_sha256
from .paths import DataFileError, resolve_file, traces_dir
from .values import Call, ExceptionData, FileRef, ObjectData, Trace

FORMAT_NAME = "eryx-port-trace"
FORMAT_VERSION = 1
SUFFIX = ".trace.npz"
MANIFEST = "manifest"
MANIFEST_SHA = "manifest_sha256"
_ZIP_MAGIC = b"PK\x03\x04"


class TraceError(ValueError):
    """A trace file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


def default_folder() -> Path:
    return traces_dir() / "data"


def trace_path(function: str, folder: str | os.PathLike | None = None) -> Path:
    if not function or "/" in function or "\\" in function or function.startswith("."):
        raise TraceError(None, f"{function!r} is not a qualified function name")
    return Path(folder if folder is not None else default_folder()) / f"{function}{SUFFIX}"


# ---------------------------------------------------------------- writing
@dataclass
class TraceParts:
    """A trace in encoded form, as the recorder builds it call by call.

    ``calls`` holds encoded call records (see :func:`encode_call`); the
    encoder holds the array table they refer to.
    """

    function: str
    provenance: dict[str, Any]
    encoder: Encoder
    calls: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    call_counts: dict[str, int] = field(default_factory=dict)


def encode_call(call: Call, encoder: Encoder) -> dict[str, Any]:
    """Encode a :class:`Call` made of plain values and trace records."""
    return {
        "scenario": call.scenario,
        "index": int(call.index),
        "args": {str(k): encoder.encode(v) for k, v in call.args.items()},
        "passed": list(call.passed),
        "result": None if call.exception is not None else encoder.encode(call.result),
        "exception": None
        if call.exception is None
        else {"type": call.exception.type, "message": call.exception.message},
        "attrs_read": {str(k): encoder.encode(v) for k, v in call.attrs_read.items()},
        "attrs_written": {str(k): encoder.encode(v) for k, v in call.attrs_written.items()},
    }


def parts_from_trace(trace: Trace) -> TraceParts:
    provenance = dict(trace.provenance)
    limits = provenance.pop("limits", None) or {}
    counts = provenance.pop("call_counts", None)
    if counts is None:
        counts = {}
        for call in trace.calls:
            counts[call.scenario] = counts.get(call.scenario, 0) + 1
    encoder = Encoder(max_array_elements=int(limits.get("max_array_elements", 1 << 62)))
    parts = TraceParts(trace.function, provenance, encoder, limits=dict(limits), call_counts=dict(counts))
    parts.calls = [encode_call(c, encoder) for c in trace.calls]
    encoder.truncated = encoder.truncated or bool(trace.truncated)
    return parts


def save_trace(trace_or_parts: Trace | TraceParts, path: str | os.PathLike) -> Path:
    """Write a trace file (atomically: a half-written file never replaces a good one)."""
    parts = trace_or_parts if isinstance(trace_or_parts, TraceParts) else parts_from_trace(trace_or_parts)
    enc = parts.encoder
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "function": parts.function,
        "provenance": parts.provenance,
        "limits": parts.limits,
        "truncated": bool(enc.truncated),
        "call_counts": parts.call_counts,
        "calls": parts.calls,
        "arrays": enc.meta,
    }
    blob = json.dumps(manifest, allow_nan=False, separators=(",", ":")).encode("utf-8")
    members: dict[str, np.ndarray] = dict(enc.arrays)
    members[MANIFEST] = np.frombuffer(blob, dtype=np.uint8)
    members[MANIFEST_SHA] = np.frombuffer(hashlib.sha256(blob).hexdigest().encode("ascii"), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **members)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- reading
def _open_archive(path: Path) -> np.lib.npyio.NpzFile:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise TraceError(path, "no such file") from None
    except OSError as exc:
        raise TraceError(path, f"cannot be read ({exc.strerror or exc})") from None
    if head != _ZIP_MAGIC:
        raise TraceError(path, "not a trace archive (not an .npz/zip file)")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise TraceError(path, f"damaged or truncated archive ({exc})") from None


def _read_member(path: Path, npz: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    if name not in npz.files:
        raise TraceError(path, f"member {name!r} is missing")
    try:
        value = npz[name]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise TraceError(path, f"member {name!r} holds pickled/object data, which traces never contain") from None
        raise TraceError(path, f"member {name!r} is damaged ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise TraceError(path, f"member {name!r} is damaged or truncated ({exc})") from None
    if not isinstance(value, np.ndarray):
        raise TraceError(path, f"member {name!r} is not a numpy array")
    if value.dtype.hasobject:
        raise TraceError(path, f"member {name!r} has an object dtype, which traces never contain")
    return value


def _read_manifest(path: Path, npz: np.lib.npyio.NpzFile) -> dict[str, Any]:
    raw = _read_member(path, npz, MANIFEST)
    digest = _read_member(path, npz, MANIFEST_SHA)
    if raw.dtype != np.uint8 or raw.ndim != 1 or digest.dtype != np.uint8 or digest.ndim != 1:
        raise TraceError(path, "manifest members are not byte arrays")
    blob = raw.tobytes()
    if hashlib.sha256(blob).hexdigest() != digest.tobytes().decode("ascii", "replace"):
        raise TraceError(path, "manifest checksum mismatch (the manifest or its checksum was changed)")

    def _no_constants(name: str) -> Any:
        raise ValueError(f"bare {name} is not allowed")

    try:
        manifest = json.loads(blob.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TraceError(path, f"manifest is not valid JSON ({exc})") from None
    _check_schema(path, manifest)
    return manifest


def _check_schema(path: Path, manifest: Any) -> None:
    if not isinstance(manifest, dict):
        raise TraceError(path, "manifest is not a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise TraceError(path, f"format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise TraceError(
            path, f"schema version {manifest.get('version')!r} is not supported (this trace_tools reads {FORMAT_VERSION})"
        )
    expected = {
        "function": str,
        "provenance": dict,
        "limits": dict,
        "truncated": bool,
        "call_counts": dict,
        "calls": list,
        "arrays": dict,
    }
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            raise TraceError(path, f"manifest field {key!r} is missing or not a {kind.__name__}")
    for name, meta in manifest["arrays"].items():
        if not (
            isinstance(meta, dict)
            and isinstance(meta.get("dtype"), str)
            and isinstance(meta.get("shape"), list)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in meta["shape"])
            and isinstance(meta.get("sha256"), str)
        ):
            raise TraceError(path, f"manifest entry for array {name!r} is malformed")


class _Arrays:
    """Reads array members on demand, checking dtype, shape and checksum once each."""

    def __init__(self, path: Path, npz: np.lib.npyio.NpzFile, meta: dict[str, dict]):
        self.path, self.npz, self.meta = path, npz, meta
        self.loaded: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        arr = self.loaded.get(name)
        if arr is not None:
            return arr
        meta = self.meta.get(name)
        if meta is None:
            raise TraceError(self.path, f"a value refers to array {name!r}, which the manifest does not list")
        arr = _read_member(self.path, self.npz, name)
        if arr.dtype.str != meta["dtype"] or list(arr.shape) != meta["shape"]:
            raise TraceError(
                self.path,
                f"array {name!r} is {arr.dtype.str}{list(arr.shape)}, manifest says {meta['dtype']}{meta['shape']}",
            )
        if array_sha256(arr) != meta["sha256"]:
            raise TraceError(self.path, f"checksum mismatch in array {name!r} (its data was changed)")
        arr.flags.writeable = False  # decoded traces are cached and shared
        self.loaded[name] = arr
        return arr


def _decode_call(function: str, raw: Any, dec: Decoder, k: int) -> Call:
    if not isinstance(raw, dict):
        raise DecodeError(f"call {k} is not a JSON object")
    scenario, index = raw.get("scenario"), raw.get("index")
    if not isinstance(scenario, str) or not isinstance(index, int) or isinstance(index, bool):
        raise DecodeError(f"call {k} lacks a scenario name or index")
    for key in ("args", "attrs_read", "attrs_written"):
        if not isinstance(raw.get(key), dict):
            raise DecodeError(f"call {k} field {key!r} is missing or not an object")
    passed = raw.get("passed")
    if not isinstance(passed, list) or not all(isinstance(p, str) for p in passed):
        raise DecodeError(f"call {k} field 'passed' is not a list of names")
    exc = raw.get("exception")
    exception = None
    if exc is not None:
        if not (isinstance(exc, dict) and isinstance(exc.get("type"), str) and isinstance(exc.get("message"), str)):
            raise DecodeError(f"call {k} has a malformed exception record")
        exception = ExceptionData(type=exc["type"], message=exc["message"])
    return Call(
        function=function,
        scenario=scenario,
        index=index,
        args={name: dec.decode(v) for name, v in raw["args"].items()},
        passed=tuple(passed),
        result=None if exception is not None else dec.decode(raw.get("result")),
        exception=exception,
        attrs_read={name: dec.decode(v) for name, v in raw["attrs_read"].items()},
        attrs_written={name: dec.decode(v) for name, v in raw["attrs_written"].items()},
    )


_CACHE: dict[str, tuple[tuple[int, int], Trace]] = {}


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise TraceError(path, "no such file") from None
    return (st.st_mtime_ns, st.st_size)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The checked manifest of a trace file, without reading its arrays (quick: for listings)."""
    path = Path(path)
    with _open_archive(path) as npz:
        return _read_manifest(path, npz)


def load_trace(path: str | os.PathLike) -> Trace:
    """Load and check one trace file.

    Results are cached per file (path, modification time, size); the arrays in a
    loaded trace are read-only because the same objects are handed to every caller.
    """
    path = Path(path)
    key = str(path.resolve())
    stamp = _stamp(path)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    with _open_archive(path) as npz:
        manifest = _read_manifest(path, npz)
        listed, present = set(manifest["arrays"]), set(npz.files) - {MANIFEST, MANIFEST_SHA}
        if listed - present:
            raise TraceError(path, f"member {sorted(listed - present)[0]!r} is missing")
        if present - listed:
            raise TraceError(path, f"unexpected member {sorted(present - listed)[0]!r}")
        arrays = _Arrays(path, npz, manifest["arrays"])
        for name in sorted(listed):
            arrays(name)
        dec = Decoder(arrays)
        function = manifest["function"]
        try:
            calls = [_decode_call(function, raw, dec, k) for k, raw in enumerate(manifest["calls"])]
        except DecodeError as exc:
            raise TraceError(path, f"malformed manifest: {exc}") from None
    provenance = dict(manifest["provenance"])
    provenance["limits"] = manifest["limits"]
    provenance["call_counts"] = manifest["call_counts"]
    trace = Trace(
        function=function, provenance=provenance, calls=calls, truncated=manifest["truncated"], path=str(path)
    )
    _CACHE[key] = (stamp, trace)
    return trace


def trace_files(folder: str | os.PathLike | None = None) -> list[Path]:
    folder = Path(folder) if folder is not None else default_folder()
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*{SUFFIX}"))


def iter_traces(folder: str | os.PathLike | None = None) -> Iterator[Trace]:
    """Every trace in ``folder`` (default traces/data), in file-name order."""
    for path in trace_files(folder):
        yield load_trace(path)


def load_function(name: str, folder: str | os.PathLike | None = None) -> Trace | None:
    """The trace of function ``name`` (e.g. ``eryx.map_utils.generate_grid``), or None if not recorded."""
    path = trace_path(name, folder)
    return load_trace(path) if path.is_file() else None


# ---------------------------------------------------------------- checking
def iter_values(value: Any) -> Iterator[Any]:
    """``value`` and every value nested in it (containers, object attributes)."""
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, ObjectData):
            stack.extend(v.attrs.values())
        elif isinstance(v, np.ndarray) and v.dtype.hasobject:
            stack.extend(v.ravel().tolist())


def file_refs(trace: Trace) -> list[FileRef]:
    refs: dict[FileRef, None] = {}
    for call in trace.calls:
        for part in (call.args, call.result, call.attrs_read, call.attrs_written):
            for v in iter_values(part):
                if isinstance(v, FileRef):
                    refs[v] = None
    return list(refs)


def verify_trace(path: str | os.PathLike, pdb_dir: str | os.PathLike | None = None) -> list[str]:
    """Problems with one trace file (empty when it is sound): loading, checksums, naming, data files."""
    path = Path(path)
    try:
        trace = load_trace(path)
    except TraceError as exc:
        return [str(exc)]
    problems = []
    if path.name != f"{trace.function}{SUFFIX}":
        problems.append(f"{path}: holds function {trace.function!r}, the file name says otherwise")
    for ref in file_refs(trace):
        try:
            resolve_file(ref, pdb_dir)
        except DataFileError as exc:
            problems.append(f"{path}: {exc}")
    return problems


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TAG",
    "TraceError",
    "TraceParts",
    "encode_call",
    "file_refs",
    "iter_traces",
    "load_function",
    "load_trace",
    "read_manifest",
    "save_trace",
    "trace_files",
    "trace_path",
    "verify_trace",
]
