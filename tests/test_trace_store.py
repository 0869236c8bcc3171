"""Trace files: every value kind survives a round trip, and every kind of bad file gives one TraceError."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trace_tools.codec import Encoder
from trace_tools.store import (
    TraceError,
    iter_traces,
    load_function,
    load_trace,
    read_manifest,
    save_trace,
    trace_path,
    verify_trace,
)
from trace_tools.values import (
    ArraySummary,
    Call,
    CellData,
    ElementData,
    ExceptionData,
    FileRef,
    ObjectData,
    SpaceGroupData,
    Trace,
)


# ---------------------------------------------------------------- helpers
def same(a, b) -> bool:
    """Exact equality that also checks types, dtypes, shapes, dict key types and NaN positions."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.hasobject:
            return all(same(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist()))
        return np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and (a == b or (np.isnan(a) and np.isnan(b)) if a.dtype.kind in "fc" else a == b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(type(k) is type(l) for k, l in zip(a, b)) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, ObjectData):
        return a.cls == b.cls and a.omitted == b.omitted and same(a.attrs, b.attrs)
    if isinstance(a, ArraySummary):
        return (a.shape, a.dtype, a.sha256) == (b.shape, b.dtype, b.sha256) and same(a.sample, b.sample)
    return a == b


def one_call_trace(value, function="pkg.mod.f", **call) -> Trace:
    fields = {"args": {"x": value}, "passed": ("x",), "result": value}
    fields.update(call)
    return Trace(function, {"package": "pkg"}, [Call(function, "toy-s1", 0, **fields)])


def roundtrip(value, tmp_path):
    path = save_trace(one_call_trace(value), tmp_path / "pkg.mod.f.trace.npz")
    call = load_trace(path).calls[0]
    return call.args["x"], call.result


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def npy(arr: np.ndarray, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def write_members(path: Path, content: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in content.items():
            zf.writestr(name, data)


def manifest_of(content: dict[str, bytes]) -> dict:
    raw = np.load(io.BytesIO(content["manifest.npy"]))
    return json.loads(raw.tobytes())


def with_manifest(content: dict[str, bytes], manifest: dict, fix_checksum=True) -> dict[str, bytes]:
    blob = json.dumps(manifest).encode()
    out = dict(content)
    out["manifest.npy"] = npy(np.frombuffer(blob, dtype=np.uint8))
    if fix_checksum:
        out["manifest_sha256.npy"] = npy(np.frombuffer(hashlib.sha256(blob).hexdigest().encode(), dtype=np.uint8))
    return out


class MakeMarker:
    """Unpickling this creates a file: proves that loading a trace never unpickles."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (self.marker.touch, ())


# ---------------------------------------------------------------- round trips
VALUES = {
    "float64-2d": np.arange(12.0).reshape(3, 4) / 7,
    "float32": np.linspace(-1, 1, 5, dtype=np.float32),
    "int8": np.array([-128, 0, 127], dtype=np.int8),
    "uint64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "bool-array": np.array([[True, False], [False, True]]),
    "complex128": np.array([1 + 2j, -3.5j, np.nan + 1j]),
    "complex64": np.array([1 - 1j], dtype=np.complex64),
    "zero-d": np.array(2.5),
    "empty": np.zeros((0, 3)),
    "fortran-order": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big-endian": np.arange(4, dtype=">f8"),
    "nan-inf-array": np.array([np.nan, np.inf, -np.inf, -0.0]),
    "datetime": np.array(["2024-01-01"], dtype="datetime64[D]"),
    "unicode-array": np.array(["ab", "Å"]),
    "np-float32": np.float32(1.5),
    "np-int16": np.int16(-7),
    "np-bool": np.bool_(True),
    "np-complex64": np.complex64(1 - 2j),
    "int": 3,
    "big-int": 2**70,
    "negative-int": -12,
    "float": 0.1,
    "negative-zero": -0.0,
    "nan": float("nan"),
    "inf": float("inf"),
    "minus-inf": float("-inf"),
    "complex": complex(1.5, -2),
    "complex-nan": complex(float("nan"), float("inf")),
    "true": True,
    "false": False,
    "str": "P 21 21 21",
    "unicode": "Ångström",
    "empty-str": "",
    "none": None,
    "tuple": (1, (2.0, "x"), None),
    "empty-tuple": (),
    "list": [1, [2, 3], (4,)],
    "dict-int-and-str-keys": {0: "zero", "1": "one", 2: [np.eye(2)]},
    "dict-tuple-keys": {(0, 1): 1.0, (1, 0): -1.0},
    "dict-of-arrays": {0: np.eye(3), 1: np.ones((3, 4))},
    "bytes": b"\x00\x01abc",
    "object-array": np.array([ElementData("C", (1.0,), (2.0,), 0.5, 12.0), None], dtype=object),
    "element": ElementData("Fe", (11.0, 7.0, 3.0, 1.0), (4.0, 0.2, 12.0, 100.0), 1.0, 55.845),
    "cell": CellData((10.0, 20.0, 30.0, 90.0, 90.0, 120.0)),
    "spacegroup": SpaceGroupData("P 31", 144),
    "fileref": FileRef("5zck.pdb", "ab" * 32),
    "summary": ArraySummary((1000, 3), "float64", "cd" * 32, np.arange(16.0)),
    "object": ObjectData(
        "eryx.pdb.Crystal",
        {"n_cell": 27, "model": ObjectData("eryx.pdb.AtomicModel", {"xyz": np.ones((2, 3))}, ("structure",))},
        (),
    ),
    "opaque-object": ObjectData("gemmi.Structure"),
    "missing-path": Path("/nonexistent/dir/file.pdb"),
}


@pytest.mark.parametrize("kind", list(VALUES))
def test_value_round_trip(kind, tmp_path):
    value = VALUES[kind]
    arg, result = roundtrip(value, tmp_path)
    assert same(arg, value), (arg, value)
    assert same(result, value)


def test_identical_arrays_stored_once(tmp_path):
    a = np.arange(1000.0)
    path = save_trace(one_call_trace([a, a.copy(), a]), tmp_path / "pkg.mod.f.trace.npz")
    assert len(read_manifest(path)["arrays"]) == 1
    loaded = load_trace(path).calls[0].args["x"]
    assert all(np.array_equal(x, a) for x in loaded)


def test_live_gemmi_objects_become_records(tmp_path):
    import gemmi
    value = [gemmi.Element("Fe"), gemmi.UnitCell(10, 20, 30, 90, 95, 90), gemmi.SpaceGroup("P 21 21 21")]
    arg, _ = roundtrip(value, tmp_path)
    element, cell, sg = arg
    assert element.symbol == "Fe" and element.weight == pytest.approx(55.845)
    assert element.it92_a == tuple(gemmi.Element("Fe").it92.a)
    assert cell == CellData((10.0, 20.0, 30.0, 90.0, 95.0, 90.0))
    assert sg == SpaceGroupData("P 21 21 21", 19)


def test_existing_file_path_becomes_fileref(tmp_path):
    data = tmp_path / "toy.pdb"
    data.write_text("ATOM\n")
    expected = FileRef("toy.pdb", hashlib.sha256(b"ATOM\n").hexdigest())
    arg, _ = roundtrip([str(data), data], tmp_path)
    assert arg == [expected, expected]


def test_big_array_becomes_summary():
    big = np.arange(100.0).reshape(10, 10)
    enc = Encoder(max_array_elements=50)
    encoded = enc.encode({"big": big, "small": big[:2]})
    assert enc.truncated
    assert encoded["items"][0][1]["$t"] == "summary"
    assert encoded["items"][1][1]["$t"] == "array"


def test_truncated_flag_and_summary_survive_saving(tmp_path):
    enc = Encoder(max_array_elements=10)
    enc.encode(np.zeros(11))
    from trace_tools.store import TraceParts, encode_call

    call = Call("pkg.f", "toy-s1", 0, {"x": np.arange(20.0)}, ("x",), result=None)
    parts = TraceParts("pkg.f", {}, Encoder(max_array_elements=10), limits={"max_calls": 3, "max_array_elements": 10})
    parts.calls.append(encode_call(call, parts.encoder))
    trace = load_trace(save_trace(parts, tmp_path / "pkg.f.trace.npz"))
    summary = trace.calls[0].args["x"]
    assert trace.truncated
    assert isinstance(summary, ArraySummary) and summary.shape == (20,) and summary.dtype == "float64"
    assert np.array_equal(summary.sample, np.arange(16.0))
    assert summary.sha256 == hashlib.sha256(np.arange(20.0).tobytes()).hexdigest()


def test_cyclic_list_is_reduced_not_fatal(tmp_path):
    loop = [1]
    loop.append(loop)
    arg, _ = roundtrip(loop, tmp_path)
    assert arg == ObjectData("list")


def test_exception_call_round_trip(tmp_path):
    trace = one_call_trace(3, result=None, exception=ExceptionData("ValueError", "bad x"))
    call = load_trace(save_trace(trace, tmp_path / "pkg.mod.f.trace.npz")).calls[0]
    assert call.exception == ExceptionData("ValueError", "bad x") and call.result is None
    assert call.case_id == "toy-s1-call0" and call.passed == ("x",)


def test_loaded_arrays_are_read_only_and_cached(tmp_path):
    path = save_trace(one_call_trace(np.ones(3)), tmp_path / "pkg.mod.f.trace.npz")
    first = load_trace(path)
    assert load_trace(path) is first
    with pytest.raises(ValueError):
        first.calls[0].args["x"][0] = 5.0
    os.utime(path, ns=(1, 1))  # a changed file is read again
    assert load_trace(path) is not first


def test_iter_and_load_function(tmp_path):
    for name in ("pkg.b.g", "pkg.a.f"):
        save_trace(one_call_trace(1.0, function=name), trace_path(name, tmp_path))
    (tmp_path / "notes.txt").write_text("not a trace")
    assert [t.function for t in iter_traces(tmp_path)] == ["pkg.a.f", "pkg.b.g"]
    assert load_function("pkg.a.f", tmp_path).path == str(tmp_path / "pkg.a.f.trace.npz")
    assert load_function("pkg.a.missing", tmp_path) is None
    assert list(iter_traces(tmp_path / "absent")) == []
    with pytest.raises(TraceError, match="qualified function name"):
        trace_path("../evil", tmp_path)


def test_provenance_limits_and_counts(tmp_path):
    trace = one_call_trace(1)
    trace.provenance.update({"limits": {"max_calls": 3, "max_array_elements": 10}, "call_counts": {"toy-s1": 5}})
    loaded = load_trace(save_trace(trace, tmp_path / "pkg.mod.f.trace.npz"))
    manifest = read_manifest(loaded.path)
    assert manifest["format"] == "eryx-port-trace" and manifest["version"] == 1
    assert manifest["call_counts"] == {"toy-s1": 5} and manifest["limits"]["max_calls"] == 3
    assert loaded.provenance == {"package": "pkg", "limits": manifest["limits"], "call_counts": {"toy-s1": 5}}


# ---------------------------------------------------------------- bad files
@pytest.fixture
def good(tmp_path) -> Path:
    value = {"a": np.arange(5.0), "b": [np.eye(2), 2.5]}
    return save_trace(one_call_trace(value), tmp_path / "pkg.mod.f.trace.npz")


def _mangle(kind: str, path: Path, marker: Path) -> None:
    content = members(path)
    manifest = manifest_of(content)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty-file":
        path.write_bytes(b"")
    elif kind == "text-file":
        path.write_text("calls: []\n")
    elif kind == "bare-npy":
        np.save(path.with_suffix(".tmp.npy"), np.arange(3))
        os.replace(path.with_suffix(".tmp.npy"), path)
    elif kind == "pickle-file":
        path.write_bytes(pickle.dumps(MakeMarker(marker)))
    elif kind == "pickled-object-member":
        payload = np.array([MakeMarker(marker)], dtype=object)
        content["a0.npy"] = npy(payload, allow_pickle=True)
        write_members(path, content)
    elif kind == "raw-pickle-member":
        content["a0.npy"] = pickle.dumps(MakeMarker(marker))
        write_members(path, content)
    elif kind == "manifest-edited":
        manifest["calls"][0]["scenario"] = "other"
        write_members(path, with_manifest(content, manifest, fix_checksum=False))
    elif kind == "array-edited":
        arr = np.load(io.BytesIO(content["a0.npy"])).copy()
        arr.reshape(-1)[0] += 1
        content["a0.npy"] = npy(arr)
        write_members(path, content)
    elif kind == "wrong-format":
        manifest["format"] = "something-else"
        write_members(path, with_manifest(content, manifest))
    elif kind == "wrong-version":
        manifest["version"] = 2
        write_members(path, with_manifest(content, manifest))
    elif kind == "missing-member":
        del content["a1.npy"]
        write_members(path, content)
    elif kind == "missing-manifest-checksum":
        del content["manifest_sha256.npy"]
        write_members(path, content)
    elif kind == "unexpected-member":
        content["extra.npy"] = npy(np.zeros(2))
        write_members(path, content)
    elif kind == "dtype-mismatch":
        manifest["arrays"]["a0"]["dtype"] = "<f4"
        write_members(path, with_manifest(content, manifest))
    elif kind == "unknown-tag":
        manifest["calls"][0]["result"] = {"$t": "eval", "code": "__import__('os')"}
        write_members(path, with_manifest(content, manifest))
    elif kind == "bad-reference":
        manifest["calls"][0]["result"] = {"$t": "array", "ref": "a99"}
        write_members(path, with_manifest(content, manifest))
    elif kind == "missing-field":
        del manifest["calls"]
        write_members(path, with_manifest(content, manifest))
    elif kind == "bare-nan-json":
        blob = json.dumps(manifest).replace('"truncated": false', '"truncated": NaN').encode()
        content = with_manifest(content, manifest)
        content["manifest.npy"] = npy(np.frombuffer(blob, dtype=np.uint8))
        content["manifest_sha256.npy"] = npy(np.frombuffer(hashlib.sha256(blob).hexdigest().encode(), dtype=np.uint8))
        write_members(path, content)
    else:
        raise AssertionError(kind)


BAD = {
    "truncated": "damaged or truncated",
    "empty-file": "not a trace archive",
    "text-file": "not a trace archive",
    "bare-npy": "not a trace archive",
    "pickle-file": "not a trace archive",
    "pickled-object-member": "pickled/object data",
    "raw-pickle-member": "not a numpy array",
    "manifest-edited": "manifest checksum mismatch",
    "array-edited": "checksum mismatch in array 'a0'",
    "wrong-format": "format is 'something-else'",
    "wrong-version": "schema version 2 is not supported",
    "missing-member": "member 'a1' is missing",
    "missing-manifest-checksum": "member 'manifest_sha256' is missing",
    "unexpected-member": "unexpected member 'extra'",
    "dtype-mismatch": "manifest says <f4",
    "unknown-tag": "unknown value tag 'eval'",
    "bad-reference": "does not list",
    "missing-field": "'calls' is missing",
    "bare-nan-json": "not valid JSON",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_file_gives_one_trace_error(kind, good, tmp_path):
    marker = tmp_path / "unpickled.marker"
    _mangle(kind, good, marker)
    with pytest.raises(TraceError) as info:
        load_trace(good)
    message = str(info.value)
    assert message.startswith(str(good)), message
    assert BAD[kind] in message, message
    assert isinstance(info.value, ValueError)
    assert not marker.exists(), "loading a trace ran code from the file"
    assert verify_trace(good) == [message]


def test_marker_payload_really_runs_when_unpickled(tmp_path):
    """The payload used above is live: unpickling it does create the marker."""
    marker = tmp_path / "m"
    pickle.loads(pickle.dumps(MakeMarker(marker)))
    assert marker.exists()


def test_missing_file_is_a_trace_error(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "pkg.x.trace.npz")


# ---------------------------------------------------------------- verify
def test_verify_resolves_file_refs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "toy.pdb").write_text("ATOM\n")
    ref = FileRef("toy.pdb", hashlib.sha256(b"ATOM\n").hexdigest())
    path = save_trace(one_call_trace({"p": [ref]}), tmp_path / "pkg.mod.f.trace.npz")
    assert verify_trace(path, data) == []
    (data / "toy.pdb").write_text("HETATM\n")
    [problem] = verify_trace(path, data)
    assert "differs from the recorded one" in problem and str(path) in problem
    (data / "toy.pdb").unlink()
    [problem] = verify_trace(path, data)
    assert "'toy.pdb'" in problem and "not in" in problem


def test_verify_checks_file_name(tmp_path):
    path = save_trace(one_call_trace(1, function="pkg.mod.g"), tmp_path / "pkg.mod.f.trace.npz")
    [problem] = verify_trace(path)
    assert "pkg.mod.g" in problem


@pytest.mark.parametrize(
    "a, b",
    [
        (1, 1.0),
        ({1: "x"}, {"1": "x"}),
        (-0.0, 0.0),
        (np.float32(1), np.float64(1)),
        ((1,), [1]),
        (np.zeros(2), np.zeros(2, dtype=np.float32)),
        (np.zeros(2), np.zeros((1, 2))),
        (float("nan"), 0.0),
    ],
)
def test_same_helper_tells_values_apart(a, b):
    assert not same(a, b)
