"""The recorder on a toy NumPy package (tests/fixtures/toypkg) with a toy scenarios file."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from trace_tools.record import configure_record, run_record
from trace_tools.store import load_function, read_manifest, trace_files
from trace_tools.values import ArraySummary, ExceptionData, FileRef, ObjectData

FIXTURES = Path(__file__).parent / "fixtures"
TOYPKG = FIXTURES / "toypkg"

FUNCTIONS = """
[meta]
package = "toypkg"

[[function]]
name = "toypkg.grid.make_grid"
phase = "core functions"
notes = "called through the star import in toypkg.model and the package too"

[[function]]
name = "toypkg.grid.outer_sum"
phase = "core functions"

[[function]]
name = "toypkg.grid.always_fails"
phase = "core functions"

[[function]]
name = "toypkg.grid.big_zeros"
phase = "core functions"

[[function]]
name = "toypkg.grid.count_lines"
phase = "core functions"

[[function]]
name = "toypkg.grid.describe"
phase = "core functions"

[[function]]
name = "toypkg.grid.never_called"
phase = "core functions"

[[function]]
name = "toypkg.model.Model.__init__"
phase = "model"

[[function]]
name = "toypkg.model.Model.scale"
phase = "model"

[[function]]
name = "toypkg.model.Model.total"
phase = "model"

[[function]]
name = "toypkg.model.Model.rebuild"
phase = "model"

[[function]]
name = "toypkg.model.Model.unit"
phase = "model"

[[function]]
name = "toypkg.model.Model.make"
phase = "model"

[[function]]
name = "toypkg.model.Child.__init__"
phase = "model"

[[seed_only]]
name = "toypkg.grid.not_a_function_at_all"
"""

SCENARIOS = '''
import numpy as np


def s1(pkg, pdb_dir):
    m = pkg.Model(4)
    m.scale(2.0)
    m.total()
    m.rebuild()
    pkg.outer_sum(3)
    for n in range(2, 8):
        pkg.make_grid(n, scale=0.5)
    try:
        pkg.always_fails(3)
    except ValueError:
        pass
    pkg.big_zeros(100)
    pkg.count_lines(str(pdb_dir / "toy.pdb"))
    pkg.describe(1)
    pkg.Model.unit(np.array([3.0, 4.0]))
    pkg.Model.make(2)


def s2(pkg, pdb_dir):
    pkg.make_grid(2, offset=1.0)
    raise RuntimeError("scenario broke on purpose")


SCENARIOS = {"toy-s1": s1, "toy-s2": s2}
'''


def _argv(tmp: Path, *extra: str) -> list[str]:
    return [
        "--source", str(FIXTURES),
        "--functions", str(tmp / "functions.toml"),
        "--scenarios", str(tmp / "scenarios.py"),
        "--pdb-dir", str(tmp / "pdbs"),
        *extra,
    ]


def record_cli(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the recorder in a fresh interpreter, as the reference environment does."""
    cmd = [sys.executable, "-m", "trace_tools.record", *_argv(tmp, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def record_here(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the recorder in this process, then forget the wrapped toy package so nothing leaks."""
    import contextlib
    import io

    from trace_tools.record import main as record_main

    out, err = io.StringIO(), io.StringIO()
    saved_path = list(sys.path)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = record_main(_argv(tmp, *extra))
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if n == "toypkg" or n.startswith("toypkg.")]:
            del sys.modules[name]
    return subprocess.CompletedProcess([], code, out.getvalue(), err.getvalue())


def source_hashes() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(TOYPKG.glob("*.py"))}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("record")
    (tmp / "functions.toml").write_text(FUNCTIONS)
    (tmp / "scenarios.py").write_text(SCENARIOS)
    (tmp / "pdbs").mkdir()
    (tmp / "pdbs" / "toy.pdb").write_text("ATOM 1\nATOM 2\nEND\n")
    before = source_hashes()
    proc = record_here(tmp, "--out", str(tmp / "out"), "--max-calls", "3", "--max-array-elements", "50")
    return {"tmp": tmp, "out": tmp / "out", "proc": proc, "sources_before": before}


def get(recorded, name):
    trace = load_function(name, recorded["out"])
    assert trace is not None, f"no trace for {name}"
    return trace


def test_exit_status_and_report(recorded):
    proc = recorded["proc"]
    assert proc.returncode == 1, proc.stderr  # toy-s2 fails on purpose
    assert "scenario toy-s2 FAILED: RuntimeError: scenario broke on purpose" in proc.stderr
    assert "scenario failed: toy-s2" in proc.stdout
    assert "never called: toypkg.grid.never_called" in proc.stdout
    header = proc.stdout.splitlines()[0].split()
    assert header[:4] == ["function", "stored", "total", "calls"]
    assert any(line.split()[:3] == ["toypkg.grid.make_grid", "4", "10"] for line in proc.stdout.splitlines())
    assert "Traceback" not in proc.stderr


def test_one_file_per_called_function(recorded):
    names = {p.name.removesuffix(".trace.npz") for p in trace_files(recorded["out"])}
    assert "toypkg.grid.never_called" not in names
    assert names == {
        "toypkg.grid.make_grid", "toypkg.grid.outer_sum", "toypkg.grid.always_fails", "toypkg.grid.big_zeros",
        "toypkg.grid.count_lines", "toypkg.grid.describe", "toypkg.model.Model.__init__",
        "toypkg.model.Model.scale", "toypkg.model.Model.total", "toypkg.model.Model.rebuild",
        "toypkg.model.Model.unit", "toypkg.model.Model.make", "toypkg.model.Child.__init__",
    }


def test_source_files_untouched(recorded):
    assert source_hashes() == recorded["sources_before"]


def test_wrapped_package_does_not_leak(recorded):
    assert "toypkg" not in sys.modules
    assert str(FIXTURES) not in sys.path


def test_function_args_defaults_and_max_calls(recorded):
    trace = get(recorded, "toypkg.grid.make_grid")
    # toy-s1 calls: Model(4) -> make_grid(4) [via the star import in toypkg.model], outer_sum's nested
    # call, six direct calls, Model.make(2): 9 in all, the first 3 stored. toy-s2 calls it once before failing.
    assert trace.provenance["call_counts"] == {"toy-s1": 9, "toy-s2": 1}
    assert [c.case_id for c in trace.calls] == ["toy-s1-call0", "toy-s1-call1", "toy-s1-call2", "toy-s2-call0"]
    first, nested, direct, failing = trace.calls
    assert first.args == {"n": 4, "scale": 1.0, "offset": 0.0} and first.passed == ("n",)
    np.testing.assert_array_equal(first.result, np.arange(4.0))
    assert nested.args["n"] == 3  # made from inside outer_sum
    assert direct.args == {"n": 2, "scale": 0.5, "offset": 0.0} and direct.passed == ("n", "scale")
    np.testing.assert_array_equal(direct.result, [0.0, 0.5])
    assert failing.passed == ("n", "offset") and failing.args["offset"] == 1.0
    assert trace.provenance["limits"] == {"max_calls": 3, "max_array_elements": 50}
    assert trace.provenance["scenarios"] == ["toy-s1", "toy-s2"]


def test_provenance(recorded):
    prov = get(recorded, "toypkg.grid.outer_sum").provenance
    assert prov["package"] == "toypkg" and prov["source_path"] == str(FIXTURES.resolve())
    assert prov["numpy"] == np.__version__
    assert prov["command"].startswith("trace-tools record --source ")
    assert "recorder" in prov and prov["date"].endswith("+00:00")
    assert "source_commit" in prov


def test_nested_result(recorded):
    call = get(recorded, "toypkg.grid.outer_sum").calls[0]
    np.testing.assert_array_equal(call.result, np.add.outer(np.arange(3.0), np.arange(3.0)))


def test_method_reads_and_in_place_writes(recorded):
    [call] = get(recorded, "toypkg.model.Model.scale").calls
    assert call.args == {"k": 2.0}
    assert call.result == 12.0
    assert set(call.attrs_read) == {"data", "history"}
    np.testing.assert_array_equal(call.attrs_read["data"], [0.0, 1.0, 2.0, 3.0])  # value before the call
    assert call.attrs_read["history"] == []
    # in-place changes count as writes; the child (which points back to the model) did not change
    assert set(call.attrs_written) == {"data", "history"}
    np.testing.assert_array_equal(call.attrs_written["data"], [0.0, 2.0, 4.0, 6.0])
    assert call.attrs_written["history"] == [2.0]


def test_assignment_before_read_is_not_an_input(recorded):
    [call] = get(recorded, "toypkg.model.Model.rebuild").calls
    assert set(call.attrs_read) == {"n"}
    assert set(call.attrs_written) == {"data", "cache"}
    np.testing.assert_array_equal(call.attrs_written["cache"], [2.0, 2.0, 2.0, 2.0])
    assert call.result == 8.0
    # rebuild calls total(): a nested method call on the same instance is recorded on its own
    total = get(recorded, "toypkg.model.Model.total")
    assert [c.attrs_read["data"].tolist() for c in total.calls] == [[0.0, 2.0, 4.0, 6.0], [1.0, 1.0, 1.0, 1.0]]


def test_constructor_and_package_objects(recorded):
    calls = get(recorded, "toypkg.model.Model.__init__").calls
    assert [c.args for c in calls] == [{"n": 4}, {"n": 2}]
    written = calls[0].attrs_written
    assert set(written) == {"n", "data", "history", "lock", "child"}
    assert written["lock"] == ObjectData("_thread.lock")  # not data: type name only
    child = written["child"]
    assert child.cls == "toypkg.model.Child" and child.attrs["weight"] == np.float32(0.5)
    back = child.attrs["parent"]  # the cycle child -> model -> child is cut, not followed forever
    assert back.cls == "toypkg.model.Model" and "lock" in back.omitted
    assert back.attrs["child"].attrs == {} and set(back.attrs["child"].omitted) == {"parent", "weight"}
    # Child.__init__ runs nested inside Model.__init__
    assert [c.args["weight"] for c in get(recorded, "toypkg.model.Child.__init__").calls] == [np.float32(0.5)] * 2


def test_static_and_class_methods(recorded):
    [unit] = get(recorded, "toypkg.model.Model.unit").calls
    np.testing.assert_array_equal(unit.args["v"], [3.0, 4.0])
    np.testing.assert_allclose(unit.result, [0.6, 0.8])
    [make] = get(recorded, "toypkg.model.Model.make").calls
    assert make.args == {"n": 2}  # cls left out
    assert make.result.cls == "toypkg.model.Model" and make.result.attrs["n"] == 2


def test_exception_is_recorded_and_reraised(recorded):
    [call] = get(recorded, "toypkg.grid.always_fails").calls
    assert call.exception == ExceptionData("ValueError", "cannot handle 3")
    assert call.result is None
    # the scenario caught it and went on: later calls exist
    assert get(recorded, "toypkg.grid.describe").calls


def test_big_array_summary(recorded):
    trace = get(recorded, "toypkg.grid.big_zeros")
    assert trace.truncated
    summary = trace.calls[0].result
    assert isinstance(summary, ArraySummary) and summary.shape == (100,) and summary.dtype == "float64"
    np.testing.assert_array_equal(summary.sample, np.zeros(16))
    assert not get(recorded, "toypkg.grid.make_grid").truncated


def test_file_argument_becomes_fileref(recorded):
    [call] = get(recorded, "toypkg.grid.count_lines").calls
    expected = hashlib.sha256((recorded["tmp"] / "pdbs" / "toy.pdb").read_bytes()).hexdigest()
    assert call.args["path"] == FileRef("toy.pdb", expected)
    assert call.result == 3


def test_python_values_keep_their_types(recorded):
    result = get(recorded, "toypkg.grid.describe").calls[0].result
    assert list(result) == [1, "two", "z", "nan"]
    assert result[1] == "one" and result["two"] == (2, 2.5) and result["z"] == complex(1, -1)
    assert np.isnan(result["nan"])


def test_only_rerecords_some_scenarios_and_keeps_others(recorded, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(recorded["out"], out)
    proc = record_here(recorded["tmp"], "--out", str(out), "--only", "toy-s2", "--max-array-elements", "50")
    assert proc.returncode == 1, proc.stderr  # toy-s2 still fails
    trace = load_function("toypkg.grid.make_grid", out)
    assert [c.case_id for c in trace.calls] == ["toy-s1-call0", "toy-s1-call1", "toy-s1-call2", "toy-s2-call0"]
    assert trace.provenance["call_counts"] == {"toy-s1": 9, "toy-s2": 1}
    # a function only toy-s1 calls keeps its file untouched in content
    assert read_manifest(out / "toypkg.grid.outer_sum.trace.npz")["calls"] == read_manifest(
        recorded["out"] / "toypkg.grid.outer_sum.trace.npz"
    )["calls"]


# ---------------------------------------------------------------- input errors (exit 2, one line, nothing recorded)
def run_in_process(tmp: Path, capsys, **overrides) -> tuple[int, str]:
    import argparse

    parser = argparse.ArgumentParser()
    configure_record(parser)
    argv = ["--source", str(FIXTURES), "--functions", str(tmp / "functions.toml"),
            "--scenarios", str(tmp / "scenarios.py"), "--out", str(tmp / "out"), "--pdb-dir", str(tmp)]
    for key, value in overrides.items():
        flag = "--" + key.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, *value.split()]
    code = run_record(parser.parse_args(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, functions, scenarios, message",
    [
        ({"source": "/nonexistent/src"}, FUNCTIONS, SCENARIOS, "source folder /nonexistent/src does not exist"),
        ({}, "[meta\npackage=", SCENARIOS, "is not valid TOML"),
        ({}, "[[function]]\nname = 'toypkg.grid.make_grid'\n", SCENARIOS, "needs [meta] package"),
        ({}, "[meta]\npackage = 'toypkg'\n", SCENARIOS, "lists no [[function]]"),
        ({}, FUNCTIONS, "X = 1\n", "must define SCENARIOS"),
        ({}, FUNCTIONS, "raise ImportError('nope')\n", "failed to load: ImportError: nope"),
        ({"only": "toy-s9"}, FUNCTIONS, SCENARIOS, "unknown scenario(s) toy-s9"),
        ({"max_calls": "0"}, FUNCTIONS, SCENARIOS, "--max-calls must be at least 1"),
        ({"pdb_dir": "/nonexistent/pdbs"}, FUNCTIONS, SCENARIOS, "PDB folder /nonexistent/pdbs does not exist"),
    ],
)
def test_input_errors(tmp_path, capsys, overrides, functions, scenarios, message):
    (tmp_path / "functions.toml").write_text(functions)
    (tmp_path / "scenarios.py").write_text(scenarios)
    code, err = run_in_process(tmp_path, capsys, **overrides)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("trace-tools record: error: ") and message in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unknown_function_is_reported(tmp_path):
    (tmp_path / "functions.toml").write_text(
        FUNCTIONS + '\n[[function]]\nname = "toypkg.grid.no_such_thing"\nphase = "x"\n'
    )
    (tmp_path / "scenarios.py").write_text(textwrap.dedent("""
        def s(pkg, pdb_dir):
            pkg.make_grid(3)
        SCENARIOS = {"only": s}
    """))
    (tmp_path / "pdbs").mkdir()
    proc = record_cli(tmp_path, "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "not recorded: toypkg.grid.no_such_thing was not found" in proc.stdout
    assert load_function("toypkg.grid.make_grid", tmp_path / "out").calls[0].args["n"] == 3
