"""@debug recordings, the import of the earlier toolchain's pickled logs, and replay of any trace folder.

The legacy logs are written by tests/fixtures/legacy_writer.py, which reproduces the
earlier toolchain's format; the hand-instrumented module is tests/fixtures/toydebug.py.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from trace_tools.cli import main as trace_tools_main
from trace_tools.store import load_function, load_trace, trace_files
from trace_tools.values import CellData, ExceptionData, ObjectData, SpaceGroupData

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def _load_writer():
    # loaded from its file: this module leaves sys.path and sys.modules as it found them
    import importlib.util

    spec = importlib.util.spec_from_file_location("_legacy_writer", FIXTURES / "legacy_writer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_writer = _load_writer()
LegacyLog, hex_pickle, legacy_debug = _writer.LegacyLog, _writer.hex_pickle, _writer.legacy_debug


@pytest.fixture(autouse=True)
def _toy_package(monkeypatch):
    """tests/fixtures on sys.path for the test only; the toy modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    yield
    for name in [n for n in sys.modules if n.split(".")[0] in ("toypkg", "toydebug")]:
        del sys.modules[name]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_TOOLS_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _import(logdir: Path, out: Path, *extra: str) -> int:
    return trace_tools_main(["import-logs", str(logdir), "--out", str(out), *extra])


# ---------------------------------------------------------------- @debug
def test_debug_on_a_toy_module_records_two_calls_by_default(tmp_path):
    out = tmp_path / "debug"
    code = "import toydebug; toydebug.main()"
    run = subprocess.run([sys.executable, "-c", code], env=_env(TRACE_TOOLS_DEBUG_DIR=str(out)), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "decorated: toydebug.make_grid" in run.stdout
    names = sorted(p.name for p in trace_files(out))
    assert names == [
        "toydebug.Model.scale.trace.npz", "toydebug.Model.unit.trace.npz",
        "toydebug.always_fails.trace.npz", "toydebug.make_grid.trace.npz",
    ]
    grid = load_function("toydebug.make_grid", out)
    assert [c.case_id for c in grid.calls] == ["debug-call0", "debug-call1"]
    assert grid.provenance["call_counts"] == {"debug": 4}  # 3 calls + 1 from Model.__init__, counted at exit
    assert grid.provenance["recorder"].endswith("debug 1") and grid.provenance["package"] == "toydebug"
    first = grid.calls[0]
    assert first.args["n"] == 3 and first.args["scale"] == 2.0 and first.args["offset"] == 0.0
    assert first.passed == ("n", "scale")
    np.testing.assert_array_equal(first.result, [0.0, 2.0, 4.0])
    fails = load_function("toydebug.always_fails", out)
    assert [c.exception for c in fails.calls] == [ExceptionData("ValueError", "cannot handle 1"), ExceptionData("ValueError", "cannot handle 2")]
    scale = load_function("toydebug.Model.scale", out)
    assert len(scale.calls) == 2
    np.testing.assert_array_equal(scale.calls[0].attrs_read["data"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(scale.calls[1].attrs_written["data"], [0.0, 6.0, 12.0])
    assert "self" not in scale.calls[0].args and scale.calls[0].args["k"] == 2.0
    unit = load_function("toydebug.Model.unit", out)
    np.testing.assert_allclose(unit.calls[0].result, [0.6, 0.8])
    assert trace_tools_main(["verify", "--traces", str(out)]) == 0


def test_debug_records_nothing_when_the_variable_is_unset(tmp_path):
    code = "import toydebug, inspect; toydebug.main(); print(inspect.unwrap(toydebug.make_grid) is toydebug.make_grid)"
    run = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "decorated: None" in run.stdout and run.stdout.strip().endswith("True")  # the function itself
    assert list(tmp_path.iterdir()) == []


def test_debug_call_count_setting_and_unset_is_identity(tmp_path, monkeypatch):
    from trace_tools import debug

    import toypkg.grid as grid

    monkeypatch.delenv("TRACE_TOOLS_DEBUG_DIR", raising=False)
    assert debug(grid.make_grid) is grid.make_grid
    monkeypatch.setenv("TRACE_TOOLS_DEBUG_DIR", str(tmp_path / "five"))
    monkeypatch.setenv("TRACE_TOOLS_DEBUG_CALLS", "5")
    monkeypatch.setenv("TRACE_TOOLS_DEBUG_SCENARIO", "by-hand")
    recorded = debug(grid.make_grid)
    assert recorded is not grid.make_grid
    for n in range(7):
        np.testing.assert_array_equal(recorded(n), grid.make_grid(n))
    trace = load_function("toypkg.grid.make_grid", tmp_path / "five")
    assert [c.case_id for c in trace.calls] == [f"by-hand-call{k}" for k in range(5)]


class _Unreadable:
    """An object of the recorded package whose attributes cannot be read."""

    __module__ = "toypkg.weird"

    @property
    def __dict__(self):
        raise RuntimeError("no attributes for you")


def test_debug_never_changes_results_or_exceptions(tmp_path, monkeypatch):
    from trace_tools import debug

    monkeypatch.setenv("TRACE_TOOLS_DEBUG_DIR", str(tmp_path / "t"))
    weird = _Unreadable()

    def returns_weird(x):
        return weird

    returns_weird.__module__, returns_weird.__qualname__ = "toypkg.weird", "returns_weird"
    error = KeyError("mine")

    def raises(x):
        raise error

    raises.__module__, raises.__qualname__ = "toypkg.weird", "raises"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert debug(returns_weird)(weird) is weird
    assert any("cannot be recorded" in str(w.message) for w in caught)
    with pytest.raises(KeyError) as info:
        debug(raises)(1)
    assert info.value is error
    trace = load_function("toypkg.weird.returns_weird", tmp_path / "t")
    assert trace.calls[0].result == ObjectData(cls="toypkg.weird._Unreadable")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning filter turned to errors must not break the call either
        assert debug(returns_weird)(weird) is weird


# ---------------------------------------------------------------- import-logs: round trip
def _write_toy_logs(folder: Path) -> None:
    import toypkg.grid as grid
    import toypkg.model as model

    make_grid = legacy_debug(folder, "toypkg.grid.make_grid")(grid.make_grid)
    make_grid(3)
    make_grid(4, 2.0, offset=1.0)
    fails = legacy_debug(folder, "toypkg.grid.always_fails")(grid.always_fails)
    with pytest.raises(ValueError):
        fails(5)
    scale = legacy_debug(folder, "toypkg.model.Model.scale", method=True)(model.Model.scale)
    m = model.Model(3)
    scale(m, 2)
    scale(m, k=np.float64(0.5))
    log = LegacyLog(folder)
    log.call("toypkg.grid.describe", (1,), result={"cell": {"_gemmi_type": "Cell", "a": 10.0, "b": 11.0, "c": 12.0, "alpha": 90.0, "beta": 90.0, "gamma": 120.0},
                                                    "sg": {"_gemmi_type": "SpaceGroup", "hm": "P 1 21 1", "number": 4},
                                                    "z": complex(1, -1), "t": (np.int32(3), b"ab"), "s": np.str_("x")})


def test_round_trip_through_import_and_replay(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "traces"
    _write_toy_logs(logs)
    assert _import(logs, out, "--trust-pickle", "--source", str(FIXTURES)) == 0
    assert trace_tools_main(["verify", "--traces", str(out)]) == 0
    assert trace_tools_main(["list", "--traces", str(out)]) == 0
    assert trace_tools_main(["show", "toypkg.model.Model.scale", "--traces", str(out)]) == 0

    import toypkg.grid as grid
    from toypkg.model import Model

    trace = load_function("toypkg.grid.make_grid", out)
    assert trace.provenance["recorder"].endswith("import-logs 1") and trace.provenance["scenarios"] == ["legacy"]
    assert set(trace.provenance["legacy_logs"]) == {"toypkg.grid.make_grid.log"}
    first, second = trace.calls
    assert (first.case_id, first.args, first.passed) == ("legacy-call0", {"n": 3, "scale": 1.0, "offset": 0.0}, ("n",))
    assert second.args == {"n": 4, "scale": 2.0, "offset": 1.0} and second.passed == ("n", "scale", "offset")
    for call in trace.calls:  # replay against the NumPy toy function
        np.testing.assert_array_equal(grid.make_grid(*[call.args[k] for k in ("n", "scale")], offset=call.args["offset"]), call.result)

    fails = load_function("toypkg.grid.always_fails", out).calls[0]
    assert fails.exception == ExceptionData("ValueError", "cannot handle 5") and fails.result is None

    scale = load_function("toypkg.model.Model.scale", out)
    for call in scale.calls:  # rebuild the instance from the state before, run, compare result and state after
        m = Model.__new__(Model)
        m.__dict__.update({k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in call.attrs_read.items()})
        m.history = list(call.attrs_read["history"])
        assert m.scale(call.args["k"]) == call.result
        np.testing.assert_array_equal(m.data, call.attrs_written["data"])
        assert m.history == call.attrs_written["history"]
    assert set(scale.calls[0].attrs_written) == {"data", "history"}  # n did not change
    assert scale.calls[1].passed == ("k",)

    described = load_function("toypkg.grid.describe", out).calls[0].result
    assert described["cell"] == CellData((10.0, 11.0, 12.0, 90.0, 90.0, 120.0))
    assert described["sg"] == SpaceGroupData("P 1 21 1", 4)
    assert described["z"] == complex(1, -1) and described["t"] == (np.int32(3), b"ab")


def test_imported_calls_replay_against_the_port(tmp_path):
    """A recorded eryx call rewritten in the legacy format, imported, and replayed by the port registry."""
    from trace_tools.compare import compare
    from trace_tools.registry import load_registry

    pytest.importorskip("torch")
    logs, out = tmp_path / "logs", tmp_path / "traces"
    log = LegacyLog(logs)
    for name in ("eryx.map_utils.generate_grid", "eryx.pdb.Crystal.hkl_to_id"):
        original = load_function(name)
        if original is None:
            pytest.skip(f"no trace of {name} in traces/data")
        for call in original.calls[:2]:
            state = dict(call.attrs_read) if name.endswith("hkl_to_id") else None
            log.call(name, (), {k: call.args[k] for k in call.passed}, result=call.result,
                     state_before=state, state_after={} if state is not None else None)
    assert _import(logs, out, "--trust-pickle") == 0  # positional names from traces/data (none passed here anyway)
    registry = load_registry()
    for path in trace_files(out):
        trace = load_trace(path)
        assert len(trace.calls) == 2
        for call in trace.calls:
            actual, expected = registry[trace.function].replay(call)
            assert compare(actual, expected).ok, f"{trace.function}[{call.case_id}]"


@pytest.mark.slow  # a pytest run in a subprocess (about 8 s)
def test_pytest_traces_option_collects_the_folder(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "traces"
    original = load_function("eryx.map_utils.compute_resolution")
    if original is None:
        pytest.skip("no trace of eryx.map_utils.compute_resolution in traces/data")
    call = original.calls[0]
    LegacyLog(logs).call("eryx.map_utils.compute_resolution", tuple(call.args[k] for k in ("cell", "hkl")), result=call.result)
    _write_toy_logs(logs)
    assert _import(logs, out, "--trust-pickle", "--source", str(FIXTURES)) == 0
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "tests" / "test_parity.py"), "--traces", str(out), "-q", "-p", "no:xdist", "-p", "no:cacheprovider"],
        env=_env(ERYX_PORT_COVERAGE="0"), capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "test_parity[eryx.map_utils.compute_resolution[legacy-call0]] PASSED" in run.stdout or "1 passed" in run.stdout
    assert "6 xfailed" in run.stdout  # the toy functions: traced, not ported


# ---------------------------------------------------------------- import-logs: refusals and errors
def test_refuses_without_the_flag(tmp_path, capsys):
    logs, out = tmp_path / "logs", tmp_path / "traces"
    _write_toy_logs(logs)
    marker = tmp_path / "marker"
    LegacyLog(logs).raw("toypkg.grid.evil.log", json.dumps({"args": _evil_os_system(marker), "kwargs": hex_pickle({})}))
    assert _import(logs, out) == 2
    err = capsys.readouterr().err
    assert "pickle" in err and "--trust-pickle" in err and "can run" in err
    assert not out.exists() and not marker.exists()


class _Reduce:
    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _evil_os_system(marker: Path) -> str:
    return pickle.dumps(_Reduce(os.system, (f"touch {marker}",))).hex()


def _hostile(kind: str, marker: Path) -> tuple[str, str]:
    """(hex pickle, the name the refusal must mention)"""
    if kind == "os.system":
        return _evil_os_system(marker), "system"
    if kind == "builtins.eval":
        return pickle.dumps(_Reduce(eval, (f"__import__('pathlib').Path({str(marker)!r}).touch()",))).hex(), "builtins.eval"
    if kind == "subprocess":
        return pickle.dumps(_Reduce(subprocess.call, (["touch", str(marker)],))).hex(), "subprocess.call"
    if kind == "nested-reduce":
        return pickle.dumps((1, [np.arange(2), {"x": _Reduce(os.system, (f"touch {marker}",))}])).hex(), "system"
    if kind == "huge-allocation":
        return pickle.dumps(_Reduce(np._core.multiarray._reconstruct, (np.ndarray, (10**12,), b"b"))).hex(), "allocation"
    if kind == "huge-object-array":
        state = (1, (10**12,), np.dtype("O"), False, [1])
        return pickle.dumps(_Reduce(np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), state)).hex(), "allocation"
    if kind == "huge-bytearray":
        return pickle.dumps(_Reduce(bytearray, (10**12,)), protocol=2).hex(), "bytearray"
    raise AssertionError(kind)


HOSTILE = ["os.system", "builtins.eval", "subprocess", "nested-reduce", "huge-allocation", "huge-object-array", "huge-bytearray"]


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("field", ["args", "result", "state"])
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, capsys, kind, field):
    logs, out = tmp_path / "logs", tmp_path / "traces"
    out.mkdir()
    (out / "keep.trace.npz").write_bytes(b"not touched")
    marker = tmp_path / "marker"
    _write_toy_logs(logs)  # sound logs first (sorted before the hostile file): nothing of them may be left either
    evil, mentioned = _hostile(kind, marker)
    log = LegacyLog(logs)
    name = "toypkg.zz.Thing.run"
    log.call(name, (), {"x": 1}, result=2.0, state_before={"a": 1}, state_after={"a": 1})
    if field == "args":
        log.raw(f"{name}.log", json.dumps({"args": evil, "kwargs": hex_pickle({})}))
        log.raw(f"{name}.log", json.dumps({"result": hex_pickle(0), "execution_time": 0.1}))
        file, line = f"{name}.log", 3
    elif field == "result":
        log.raw(f"{name}.log", json.dumps({"args": hex_pickle(()), "kwargs": hex_pickle({"x": 2})}))
        log.raw(f"{name}.log", json.dumps({"result": evil, "execution_time": 0.1}))
        file, line = f"{name}.log", 4
    else:
        log.raw(f"{name}.log", json.dumps({"args": hex_pickle(()), "kwargs": hex_pickle({"x": 2})}))
        log.raw(f"{name}.log", json.dumps({"result": hex_pickle(0), "execution_time": 0.1}))
        log.raw("toypkg.zz.Thing._state_before_run.log", json.dumps({"a": evil}))
        log.raw("toypkg.zz.Thing._state_after_run.log", json.dumps({"a": hex_pickle(1)}))
        file, line = "toypkg.zz.Thing._state_before_run.log", 2
    assert _import(logs, out, "--trust-pickle", "--source", str(FIXTURES)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{file}:{line}:" in err and mentioned in err and "refused" in err, err
    assert not marker.exists()
    assert sorted(p.name for p in out.iterdir()) == ["keep.trace.npz"]  # no partial output
    assert (out / "keep.trace.npz").read_bytes() == b"not touched"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".traces.import-")]


@pytest.mark.parametrize(
    "lines,problem",
    [
        ([{"args": "zz-not-hex", "kwargs": "80047d942e"}], "not a valid hex string"),
        (["{\"args\": \"8004"], "not a complete JSON object"),
        ([{"args": "GOOD", "kwargs": "80047d942e"}], "call without a result line"),
        ([{"result": "80044b002e"}], "result line without a call line"),
        ([{"args": "80044b002e", "kwargs": "80047d942e"}, {"result": "80044b002e"}], "'args' is a int, not a tuple"),
        ([{"args": "GOOD", "kwargs": "80047d942e"}, {"result": "800495"}], "not a readable pickle"),
    ],
)
def test_malformed_logs_give_one_line_naming_file_and_line(tmp_path, capsys, lines, problem):
    logs, out = tmp_path / "logs", tmp_path / "traces"
    log = LegacyLog(logs)
    good = hex_pickle((3,))
    for line in lines:
        text = line if isinstance(line, str) else json.dumps({key: (good if v == "GOOD" else v) for key, v in line.items()})
        log.raw("toypkg.grid.make_grid.log", text)
    assert _import(logs, out, "--trust-pickle", "--source", str(FIXTURES)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err, err
    assert "toypkg.grid.make_grid.log:" in err
    assert not out.exists()


def test_state_lines_must_match_the_calls(tmp_path, capsys):
    logs, out = tmp_path / "logs", tmp_path / "traces"
    log = LegacyLog(logs)
    log.call("toypkg.model.Model.total", (), result=3.0, state_before={"n": 3})
    log.raw("toypkg.model.Model._state_before_total.log", json.dumps({"n": hex_pickle(4)}))
    assert _import(logs, out, "--trust-pickle", "--source", str(FIXTURES)) == 2
    err = capsys.readouterr().err
    assert "_state_before_total.log: 2 state line(s) for 1 call(s)" in err and not out.exists()
