"""Turning recorded values into JSON plus numpy arrays, and back.

Every value becomes JSON. Arrays are kept aside in a table (member names
``a0``, ``a1``, ...) and referred to by name; anything that is not plain JSON
is a tagged object ``{"$t": <tag>, ...}`` (the tags are listed in
traces/FORMAT.md). Decoding only builds numpy arrays, Python builtins and the
records of :mod:`trace_tools.values`; it never imports or runs anything named
in a trace.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .values import (
    ArraySummary,
    CellData,
    ElementData,
    ExceptionData,
    FileRef,
    ObjectData,
    SpaceGroupData,
)

TAG = "$t"
SAMPLE_SIZE = 16
MAX_DEPTH = 32


_PLAIN = frozenset({int, float, str, bool, type(None)})


class DecodeError(ValueError):
    """The JSON of a trace does not follow the format (wrapped into TraceError by the store)."""


def array_sha256(arr: np.ndarray) -> str:
    """Content hash of an array's bytes (C order); dtype and shape are checked separately."""
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def qualified_type_name(obj: Any) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", None) or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return f"{module}.{name}" if module and module != "builtins" else name


# ---------------------------------------------------------------- file hashes
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def _file_ref(path: Path) -> FileRef:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _FILE_HASHES[key] = h.hexdigest()
    return FileRef(name=path.name, sha256=digest)


def _existing_file(value: str | os.PathLike) -> Path | None:
    text = os.fspath(value)
    if not text or "\n" in text or "\x00" in text or len(text) > 4096:
        return None
    try:
        path = Path(text)
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- encoding
def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {TAG: "float", "v": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


class Encoder:
    """Encodes values into JSON-ready data, collecting arrays into one table.

    ``package`` names the traced package: its objects are stored by their
    attributes. Arrays with more than ``max_array_elements`` elements are
    stored as an :class:`ArraySummary` and set :attr:`truncated`. Identical
    arrays are stored once.
    """

    def __init__(self, package: str | None = None, max_array_elements: int = 2_000_000):
        self.package = package
        self.max_array_elements = int(max_array_elements)
        self.arrays: dict[str, np.ndarray] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self._by_content: dict[tuple[str, tuple[int, ...], str], str] = {}
        self.truncated = False

    # -- arrays
    def _store_array(self, arr: np.ndarray) -> str:
        arr = np.asarray(arr)
        digest = array_sha256(arr)
        key = (arr.dtype.str, tuple(arr.shape), digest)
        name = self._by_content.get(key)
        if name is None:
            name = f"a{len(self.arrays)}"
            self.arrays[name] = np.array(arr, copy=True, order="C")
            self.meta[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "sha256": digest}
            self._by_content[key] = name
        return name

    def _array(self, arr: np.ndarray, depth: int, path: set[int]) -> Any:
        if arr.dtype.hasobject:
            items = [self._encode(v, depth + 1, path) for v in arr.ravel(order="C").tolist()]
            return {TAG: "objarray", "shape": list(arr.shape), "items": items}
        if arr.size > self.max_array_elements:
            self.truncated = True
            sample = arr.reshape(-1)[:SAMPLE_SIZE]
            return {
                TAG: "summary",
                "shape": list(arr.shape),
                "dtype": arr.dtype.str,
                "sha256": array_sha256(arr),
                "sample": self._store_array(sample),
            }
        return {TAG: "array", "ref": self._store_array(arr)}

    # -- objects
    def is_package_object(self, obj: Any) -> bool:
        if not self.package or isinstance(obj, type):
            return False
        module = getattr(type(obj), "__module__", "") or ""
        return module == self.package or module.startswith(self.package + ".")

    def is_data(self, value: Any) -> bool:
        """Whether ``value`` encodes to something more than its type name."""
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.ndarray, np.generic)):
            return True
        if isinstance(value, (list, tuple, dict, os.PathLike)):
            return True
        if isinstance(value, (ElementData, CellData, SpaceGroupData, FileRef, ArraySummary, ObjectData)):
            return True
        if _gemmi_kind(value) is not None:
            return True
        return self.is_package_object(value)

    def object_data(self, obj: Any, depth: int = 0, path: set[int] | None = None) -> dict:
        """Encode a package object by its instance attributes."""
        path = set() if path is None else path
        attrs: dict[str, Any] = {}
        omitted: list[str] = []
        names = sorted(getattr(obj, "__dict__", {}) or {})
        if id(obj) in path or depth >= MAX_DEPTH:
            return {TAG: "object", "cls": qualified_type_name(obj), "attrs": {}, "omitted": names}
        path.add(id(obj))
        try:
            for name in names:
                value = obj.__dict__[name]
                if not self.is_data(value):
                    omitted.append(name)
                    continue
                try:
                    attrs[name] = self._encode(value, depth + 1, path)
                except _Unencodable:
                    omitted.append(name)
        finally:
            path.discard(id(obj))
        return {TAG: "object", "cls": qualified_type_name(obj), "attrs": attrs, "omitted": omitted}

    # -- entry point
    def encode(self, value: Any) -> Any:
        try:
            return self._encode(value, 0, set())
        except _Unencodable:
            return {TAG: "object", "cls": qualified_type_name(value), "attrs": {}, "omitted": []}

    def _encode(self, value: Any, depth: int, path: set[int]) -> Any:
        if depth > MAX_DEPTH:
            raise _Unencodable("nested too deeply")
        if value is None or isinstance(value, (bool, str)):
            if isinstance(value, str):
                found = _existing_file(value)
                if found is not None:
                    return self._encode_record(_file_ref(found))
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return _float(float(value))
        if isinstance(value, complex):
            return {TAG: "complex", "re": _float(value.real), "im": _float(value.imag)}
        if isinstance(value, np.ndarray):
            return self._array(value, depth, path)
        if isinstance(value, np.generic):
            if isinstance(value, np.object_):
                return self._encode(value.item(), depth + 1, path)
            return {TAG: "scalar", "ref": self._store_array(np.asarray(value))}
        if isinstance(value, bytes):
            return {TAG: "bytes", "ref": self._store_array(np.frombuffer(value, dtype=np.uint8))}
        if isinstance(value, os.PathLike):
            found = _existing_file(value)
            if found is not None:
                return self._encode_record(_file_ref(found))
            return {TAG: "path", "v": os.fspath(value)}
        if isinstance(value, (list, tuple, dict)):
            if id(value) in path:
                raise _Unencodable("refers to itself")
            path.add(id(value))
            try:
                if isinstance(value, dict):
                    items = [[self._encode(k, depth + 1, path), self._encode(v, depth + 1, path)] for k, v in value.items()]
                    return {TAG: "dict", "items": items}
                items = [self._encode(v, depth + 1, path) for v in value]
                return {TAG: "tuple", "items": items} if isinstance(value, tuple) else items
            finally:
                path.discard(id(value))
        record = _from_gemmi(value)
        if record is not None:
            return self._encode_record(record)
        if isinstance(value, (ElementData, CellData, SpaceGroupData, FileRef, ArraySummary, ObjectData, ExceptionData)):
            return self._encode_record(value, depth, path)
        if self.is_package_object(value):
            return self.object_data(value, depth, path)
        return {TAG: "object", "cls": qualified_type_name(value), "attrs": {}, "omitted": []}

    def _encode_record(self, rec: Any, depth: int = 0, path: set[int] | None = None) -> Any:
        path = set() if path is None else path
        if isinstance(rec, FileRef):
            return {TAG: "file", "name": rec.name, "sha256": rec.sha256}
        if isinstance(rec, ElementData):
            return {
                TAG: "element",
                "symbol": rec.symbol,
                "a": [_float(float(x)) for x in rec.it92_a],
                "b": [_float(float(x)) for x in rec.it92_b],
                "c": _float(float(rec.it92_c)),
                "weight": _float(float(rec.weight)),
            }
        if isinstance(rec, CellData):
            return {TAG: "cell", "parameters": [_float(float(x)) for x in rec.parameters]}
        if isinstance(rec, SpaceGroupData):
            return {TAG: "spacegroup", "hm": rec.hm, "number": int(rec.number)}
        if isinstance(rec, ArraySummary):
            return {
                TAG: "summary",
                "shape": [int(n) for n in rec.shape],
                "dtype": np.dtype(rec.dtype).str,
                "sha256": rec.sha256,
                "sample": self._store_array(np.asarray(rec.sample)),
            }
        if isinstance(rec, ObjectData):
            return {
                TAG: "object",
                "cls": rec.cls,
                "attrs": {str(k): self._encode(v, depth + 1, path) for k, v in rec.attrs.items()},
                "omitted": list(rec.omitted),
            }
        if isinstance(rec, ExceptionData):
            return {TAG: "exception", "type": rec.type, "message": rec.message}
        raise TypeError(f"not a trace record: {type(rec).__name__}")


class _Unencodable(Exception):
    pass


def _gemmi_kind(value: Any) -> str | None:
    cls = type(value)
    if (getattr(cls, "__module__", "") or "").split(".")[0] != "gemmi":
        return None
    name = cls.__name__
    return name if name in ("Element", "UnitCell", "SpaceGroup") else None


def _from_gemmi(value: Any) -> Any:
    kind = _gemmi_kind(value)
    if kind == "Element":
        it92 = value.it92
        if it92 is None:
            a, b, c = (), (), float("nan")
        else:
            a, b, c = tuple(float(x) for x in it92.a), tuple(float(x) for x in it92.b), float(it92.c)
        return ElementData(symbol=value.name, it92_a=a, it92_b=b, it92_c=c, weight=float(value.weight))
    if kind == "UnitCell":
        return CellData(parameters=tuple(float(x) for x in value.parameters))
    if kind == "SpaceGroup":
        return SpaceGroupData(hm=value.xhm(), number=int(value.number))
    return None


# ---------------------------------------------------------------- decoding
def _need(obj: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise DecodeError(f"tag {obj.get(TAG)!r} lacks field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise DecodeError(f"field {key!r} of tag {obj.get(TAG)!r} has the wrong type")
    return value


def decode_float(value: Any) -> float:
    if isinstance(value, bool):
        raise DecodeError("expected a number, found a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict) and value.get(TAG) == "float":
        special = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
        if value.get("v") in special:
            return special[value["v"]]
    raise DecodeError(f"expected a number, found {type(value).__name__}")


class Decoder:
    """Decodes JSON data made by :class:`Encoder`, reading arrays through ``get_array(name)``."""

    def __init__(self, get_array: Callable[[str], np.ndarray]):
        self.get_array = get_array

    def decode(self, value: Any, depth: int = 0) -> Any:
        if depth > 4 * MAX_DEPTH:
            raise DecodeError("values nested too deeply")
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, list):
            # plain JSON scalars decode to themselves: skip the call for them (long index lists)
            return [v if type(v) in _PLAIN else self.decode(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            raise DecodeError(f"unexpected JSON value of type {type(value).__name__}")
        tag = value.get(TAG)
        handler = _HANDLERS.get(tag) if isinstance(tag, str) else None
        if handler is None:
            raise DecodeError(f"unknown value tag {tag!r}")
        return handler(self, value, depth + 1)

    def _array(self, name: Any) -> np.ndarray:
        if not isinstance(name, str):
            raise DecodeError("array reference is not a member name")
        return self.get_array(name)


def _dec_array(d: Decoder, v: dict, depth: int) -> Any:
    return d._array(v.get("ref"))


def _dec_scalar(d: Decoder, v: dict, depth: int) -> Any:
    arr = d._array(v.get("ref"))
    if arr.ndim != 0:
        raise DecodeError("scalar member is not 0-dimensional")
    return arr[()]


def _dec_bytes(d: Decoder, v: dict, depth: int) -> Any:
    arr = d._array(v.get("ref"))
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise DecodeError("bytes member is not a 1-d uint8 array")
    return arr.tobytes()


def _dec_float(d: Decoder, v: dict, depth: int) -> Any:
    return decode_float(v)


def _dec_complex(d: Decoder, v: dict, depth: int) -> Any:
    return complex(decode_float(v.get("re")), decode_float(v.get("im")))


def _dec_tuple(d: Decoder, v: dict, depth: int) -> Any:
    return tuple(d.decode(x, depth) for x in _need(v, "items", list))


def _dec_dict(d: Decoder, v: dict, depth: int) -> Any:
    out = {}
    for pair in _need(v, "items", list):
        if not isinstance(pair, list) or len(pair) != 2:
            raise DecodeError("dict item is not a key/value pair")
        key = d.decode(pair[0], depth)
        try:
            out[key] = d.decode(pair[1], depth)
        except TypeError as exc:  # unhashable key
            raise DecodeError(f"dict key cannot be used: {exc}") from None
    return out


def _dec_objarray(d: Decoder, v: dict, depth: int) -> Any:
    shape = tuple(int(n) for n in _need(v, "shape", list))
    items = [d.decode(x, depth) for x in _need(v, "items", list)]
    if math.prod(shape) != len(items):
        raise DecodeError("object array items do not match its shape")
    out = np.empty(len(items), dtype=object)
    out[:] = items if items else []
    return out.reshape(shape)


def _dec_path(d: Decoder, v: dict, depth: int) -> Any:
    return Path(_need(v, "v", str))


def _dec_file(d: Decoder, v: dict, depth: int) -> Any:
    return FileRef(name=_need(v, "name", str), sha256=_need(v, "sha256", str))


def _dec_element(d: Decoder, v: dict, depth: int) -> Any:
    return ElementData(
        symbol=_need(v, "symbol", str),
        it92_a=tuple(decode_float(x) for x in _need(v, "a", list)),
        it92_b=tuple(decode_float(x) for x in _need(v, "b", list)),
        it92_c=decode_float(v.get("c")),
        weight=decode_float(v.get("weight")),
    )


def _dec_cell(d: Decoder, v: dict, depth: int) -> Any:
    params = tuple(decode_float(x) for x in _need(v, "parameters", list))
    if len(params) != 6:
        raise DecodeError("cell needs 6 parameters")
    return CellData(parameters=params)


def _dec_spacegroup(d: Decoder, v: dict, depth: int) -> Any:
    return SpaceGroupData(hm=_need(v, "hm", str), number=_need(v, "number", int))


def _dec_summary(d: Decoder, v: dict, depth: int) -> Any:
    try:
        dtype = np.dtype(_need(v, "dtype", str))
    except TypeError:
        raise DecodeError(f"summary has an unknown dtype {v.get('dtype')!r}") from None
    if dtype.hasobject:
        raise DecodeError("summary names an object dtype")
    return ArraySummary(
        shape=tuple(int(n) for n in _need(v, "shape", list)),
        dtype=str(dtype),
        sha256=_need(v, "sha256", str),
        sample=d._array(v.get("sample")),
    )


def _dec_object(d: Decoder, v: dict, depth: int) -> Any:
    attrs = _need(v, "attrs", dict)
    omitted = v.get("omitted", [])
    if not isinstance(omitted, list) or not all(isinstance(x, str) for x in omitted):
        raise DecodeError("object 'omitted' is not a list of names")
    return ObjectData(
        cls=_need(v, "cls", str),
        attrs={str(k): d.decode(x, depth) for k, x in attrs.items()},
        omitted=tuple(omitted),
    )


def _dec_exception(d: Decoder, v: dict, depth: int) -> Any:
    return ExceptionData(type=_need(v, "type", str), message=_need(v, "message", str))


_HANDLERS = {
    "array": _dec_array,
    "scalar": _dec_scalar,
    "bytes": _dec_bytes,
    "float": _dec_float,
    "complex": _dec_complex,
    "tuple": _dec_tuple,
    "dict": _dec_dict,
    "objarray": _dec_objarray,
    "path": _dec_path,
    "file": _dec_file,
    "element": _dec_element,
    "cell": _dec_cell,
    "spacegroup": _dec_spacegroup,
    "summary": _dec_summary,
    "object": _dec_object,
    "exception": _dec_exception,
}
