"""``trace-tools list / show / verify`` (and record's error path) through trace_tools.cli.main."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trace_tools.cli import main
from trace_tools.store import save_trace, trace_path
from trace_tools.values import ArraySummary, Call, ExceptionData, FileRef, ObjectData, Trace


@pytest.fixture
def folder(tmp_path) -> Path:
    data = tmp_path / "pdbs"
    data.mkdir()
    (data / "toy.pdb").write_text("ATOM\n")
    ref = FileRef("toy.pdb", hashlib.sha256(b"ATOM\n").hexdigest())
    traces = tmp_path / "traces"
    grid_calls = [
        Call("pkg.grid.make", "toy-s1", 0, {"n": 3, "scale": 0.5}, ("n",), result=np.arange(3) * 0.5),
        Call("pkg.grid.make", "toy-s2", 0, {"n": 0, "scale": 1.0}, ("n",), exception=ExceptionData("ValueError", "n must be positive")),
    ]
    prov = {"source_commit": "abc123", "package": "pkg", "call_counts": {"toy-s1": 5, "toy-s2": 1}}
    save_trace(Trace("pkg.grid.make", prov, grid_calls), trace_path("pkg.grid.make", traces))
    model_call = Call(
        "pkg.model.M.run", "toy-s1", 0, {"path": ref}, ("path",),
        result=ArraySummary((4000,), "float64", "00" * 32, np.zeros(16)),
        attrs_read={"xyz": np.ones((2, 3))},
        attrs_written={"child": ObjectData("pkg.model.Child", {"w": 1.5}, ("structure",))},
    )
    save_trace(Trace("pkg.model.M.run", {"package": "pkg"}, [model_call], truncated=True), trace_path("pkg.model.M.run", traces))
    return tmp_path


def test_list_table(folder, capsys):
    assert main(["list", "--traces", str(folder / "traces")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["function", "calls", "total", "scenarios", "truncated"]
    assert out[2].split() == ["pkg.grid.make", "2", "6", "toy-s1,", "toy-s2"]
    assert out[3].split() == ["pkg.model.M.run", "1", "1", "toy-s1", "yes"]


def test_list_json(folder, capsys):
    assert main(["list", "--traces", str(folder / "traces"), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["function"], e["calls"], e["scenarios"]) for e in entries] == [
        ("pkg.grid.make", 2, ["toy-s1", "toy-s2"]),
        ("pkg.model.M.run", 1, ["toy-s1"]),
    ]
    assert entries[0]["total_calls"] == 6 and entries[1]["truncated"] is True


def test_show(folder, capsys):
    assert main(["show", "pkg.grid.make", "--traces", str(folder / "traces")]) == 0
    out = capsys.readouterr().out
    assert "source_commit: abc123" in out
    assert "toy-s1-call0" in out and "toy-s2-call0" in out
    assert "n = 3" in out and "scale = 0.5" in out and "(default)" in out
    assert "result: ndarray float64[3] [0, 0.5, 1]" in out
    assert "raised ValueError: n must be positive" in out


def test_show_one_call_of_a_method(folder, capsys):
    path = folder / "traces" / "pkg.model.M.run.trace.npz"
    assert main(["show", str(path), "--call", "toy-s1-call0"]) == 0
    out = capsys.readouterr().out
    assert "path = file toy.pdb" in out
    assert "ArraySummary float64[4000] (not stored)" in out
    assert "attributes read:" in out and "xyz = ndarray float64[2, 3]" in out
    assert "child = pkg.model.Child object with 1 attributes (w); omitted structure" in out


def test_verify_ok(folder, capsys):
    assert main(["verify", "--traces", str(folder / "traces"), "--pdb-dir", str(folder / "pdbs")]) == 0
    assert "2 trace(s)" in capsys.readouterr().out


def test_verify_reports_each_problem(folder, capsys):
    (folder / "pdbs" / "toy.pdb").write_text("changed\n")
    broken = folder / "traces" / "pkg.grid.make.trace.npz"
    broken.write_bytes(broken.read_bytes()[:100])
    assert main(["verify", "--traces", str(folder / "traces"), "--pdb-dir", str(folder / "pdbs")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert err[0].startswith(str(broken)) and "damaged or truncated" in err[0]
    assert "toy.pdb" in err[1] and "differs from the recorded one" in err[1]


def test_verify_notices_tampered_array(folder, capsys):
    path = folder / "traces" / "pkg.grid.make.trace.npz"
    with zipfile.ZipFile(path) as zf:
        content = {n: zf.read(n) for n in zf.namelist()}
    arr_member = next(n for n in content if n.startswith("a"))
    raw = bytearray(content[arr_member])
    raw[-1] ^= 0xFF  # flip the last data byte
    content[arr_member] = bytes(raw)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    assert main(["verify", "--traces", str(folder / "traces"), "--pdb-dir", str(folder / "pdbs")]) == 1
    assert "checksum mismatch in array" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["list", "--traces", "/nonexistent/traces"], "traces folder /nonexistent/traces does not exist"),
        (["verify", "--traces", "/nonexistent/traces"], "traces folder /nonexistent/traces does not exist"),
        (["show", "pkg.grid.nothing"], "no trace for 'pkg.grid.nothing'"),
        (["show", "pkg.grid.make", "--call", "toy-s9-call0"], "has no call 'toy-s9-call0'"),
    ],
)
def test_errors_are_one_line_exit_2(folder, capsys, argv, message):
    if "--traces" not in argv:
        argv = [*argv, "--traces", str(folder / "traces")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_damaged_file_in_list_and_show(folder, capsys):
    path = folder / "traces" / "pkg.grid.make.trace.npz"
    path.write_text("garbage")
    assert main(["show", "pkg.grid.make", "--traces", str(folder / "traces")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a trace archive" in err
    assert main(["list", "--traces", str(folder / "traces")]) == 2
    captured = capsys.readouterr()
    assert "not a trace archive" in captured.err and "pkg.model.M.run" in captured.out


def test_record_error_through_the_command(tmp_path):
    """Through the installed entry point: one line on stderr, exit 2, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "trace_tools.cli", "record", "--source", str(tmp_path / "absent"),
         "--functions", str(tmp_path / "f.toml"), "--scenarios", str(tmp_path / "s.py"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
