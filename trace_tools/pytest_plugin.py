"""pytest integration: replay recorded NumPy calls against the port, and record the outcomes.

``tests/test_parity.py`` asks :func:`parity_params` and :func:`gradcheck_params`
for its cases and runs them with :func:`run_parity` / :func:`run_gradcheck`.
Each case's outcome and largest errors go to ``build/trace-results/<worker>.jsonl``
(one JSON object per line), which ``trace-tools progress`` reads. Works under
pytest-xdist: every worker writes its own file into the run's own folder, and when
the run ends the controller moves them into place, replacing the previous run's.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from .compare import compare
from .paths import RESULTS_DIR, pdb_dir, traces_dir
from .registry import load_registry
from .values import Call, FileRef, ObjectData

_RESULT_KEY = "trace_result"

# ``pytest --traces DIR``: the parity cases come from the traces in DIR (every function that has one)
# instead of traces/functions.toml and traces/data; set in pytest_configure, before collection.
_TRACES_FOLDER: Path | None = None


class NotPorted(AssertionError):
    """The function is listed and traced, but no port is registered for it yet."""


# ---------------------------------------------------------------- case discovery


@lru_cache(maxsize=None)
def listed_functions(functions_file: str | None = None) -> tuple[str, ...]:
    path = Path(functions_file) if functions_file else traces_dir() / "functions.toml"
    if not path.is_file():
        return ()
    with open(path, "rb") as fh:
        table = tomllib.load(fh)
    return tuple(entry["name"] for entry in table.get("function", []))


@lru_cache(maxsize=None)
def _trace(function: str):
    from .store import load_function  # imported lazily: the store may be absent in a half-built checkout

    return load_function(function, _TRACES_FOLDER)


def case_functions() -> tuple[str, ...]:
    """The functions whose calls become cases: the listed ones, or with ``--traces DIR`` those traced in DIR."""
    if _TRACES_FOLDER is None:
        return listed_functions()
    from .store import read_manifest, trace_files

    return tuple(read_manifest(path)["function"] for path in trace_files(_TRACES_FOLDER))


def _calls(function: str) -> list[Call]:
    trace = _trace(function)
    return list(trace.calls) if trace is not None else []


def get_call(function: str, case_id: str) -> Call:
    for call in _calls(function):
        if call.case_id == case_id:
            return call
    raise LookupError(f"{function}: no recorded call {case_id}")


def parity_params() -> list:
    """One pytest param per recorded call of every listed function; unported ones are expected failures."""
    registry = load_registry()
    params = []
    for function in case_functions():
        marks = [pytest.mark.parity]
        if function not in registry:
            marks.append(pytest.mark.xfail(reason="not ported", raises=NotPorted, strict=True))
        for call in _calls(function):
            params.append(pytest.param(function, call.case_id, id=f"{function}[{call.case_id}]", marks=marks))
    return params


def gradcheck_params() -> list:
    """One param per differentiable input of each ported function, on the first call of each scenario."""
    registry = load_registry()
    params = []
    for function in case_functions():
        entry = registry.get(function)
        if entry is None or not entry.grad_inputs:
            continue
        firsts = [c for c in _calls(function) if c.index == 0 and c.exception is None]
        for call in firsts:
            for name in entry.grad_inputs:
                params.append(
                    pytest.param(
                        function,
                        name,
                        call.case_id,
                        id=f"{function}[{name}:{call.case_id}]",
                        marks=[pytest.mark.gradcheck],
                    )
                )
    return params


# ---------------------------------------------------------------- running cases


def _file_refs(value: Any, depth: int = 0):
    if depth > 6:
        return
    if isinstance(value, FileRef):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _file_refs(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _file_refs(v, depth + 1)
    elif isinstance(value, ObjectData):
        yield from _file_refs(value.attrs, depth + 1)


def _skip_without_data(call: Call) -> None:
    """Skip (with the reason) when the call needs a test structure and the data folder lacks it."""
    for ref in _file_refs([call.args, call.attrs_read]):
        if not (pdb_dir() / ref.name).is_file():
            pytest.skip(f"test structure {ref.name} not found in {pdb_dir()} (set ERYX_PORT_PDB_DIR)")


def run_parity(request, function: str, case_id: str) -> None:
    result = {"function": function, "kind": "parity", "case": case_id}
    request.node.user_properties.append((_RESULT_KEY, result))
    entry = load_registry().get(function)
    if entry is None:
        raise NotPorted(f"{function} is not ported")
    call = get_call(function, case_id)
    _skip_without_data(call)
    actual, expected = entry.replay(call)
    outcome = compare(actual, expected, rtol=entry.rtol, atol=entry.atol, floor=entry.floor)
    result.update(
        max_abs_err=outcome.max_abs_err, max_rel_err=outcome.max_rel_err, max_scaled_err=outcome.max_scaled_err
    )
    assert outcome.ok, f"{function}[{case_id}] differs from eryx: {outcome.report}"


def run_gradcheck(request, function: str, name: str, case_id: str) -> None:
    import torch

    result = {"function": function, "kind": "gradcheck", "case": f"{name}:{case_id}"}
    request.node.user_properties.append((_RESULT_KEY, result))
    entry = load_registry()[function]
    call = get_call(function, case_id)
    _skip_without_data(call)
    built = entry.grad_builder(call, name)
    fn, inputs = built[:2]
    options = dict(built[2]) if len(built) > 2 else {}  # e.g. {"eps": 1e-4, "reason": "..."}
    eps = float(options.get("eps", 1e-6))
    assert eps == 1e-6 or options.get("reason"), f"{function}: a gradcheck step other than 1e-6 needs a reason"
    result["eps"] = eps
    inputs = tuple(inputs)
    checked = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    assert checked, f"{function}: the gradcheck builder for {name!r} returned no input that requires grad"
    for t in checked:
        assert t.dtype in (torch.float64, torch.complex128), f"{function}: gradcheck input {name!r} is {t.dtype}"
    assert torch.autograd.gradcheck(fn, inputs, eps=eps, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- results file


_SESSION_KEY = "trace_results_session"
_session_key = pytest.StashKey[str]()


def _session_dir(config) -> Path:
    sid = getattr(config, "workerinput", {}).get(_SESSION_KEY) or config.stash.get(_session_key, None)
    return RESULTS_DIR / f".session-{sid}"


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--traces", metavar="DIR", default=None,
        help="replay the traces in DIR (e.g. imported logs or @debug recordings) instead of traces/data",
    )


def pytest_configure(config) -> None:
    global _TRACES_FOLDER
    folder = config.getoption("traces", None)
    if folder is not None:
        _TRACES_FOLDER = Path(folder).expanduser().resolve()
        if not _TRACES_FOLDER.is_dir():
            raise pytest.UsageError(f"--traces: folder {_TRACES_FOLDER} does not exist")
    # Each run writes into its own folder; when it ends, its results (if it ran any
    # parity or gradcheck case) replace the previous ones in RESULTS_DIR. So runs of
    # other test files leave the last results alone, and concurrent runs don't mix.
    if not hasattr(config, "workerinput"):
        config.stash[_session_key] = f"{os.getpid()}-{time.time_ns()}"


def pytest_collection_modifyitems(config, items) -> None:
    # ``pytest --traces DIR`` runs the replay of DIR only: the other tests are deselected
    if _TRACES_FOLDER is None:
        return
    def replays(item) -> bool:  # a case made by parity_params / gradcheck_params
        params = getattr(getattr(item, "callspec", None), "params", {})
        marked = item.get_closest_marker("parity") or item.get_closest_marker("gradcheck")
        return bool(marked) and "function" in params and "case" in params

    keep = [i for i in items if replays(i)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist: hand the run's folder to each worker
    node.workerinput[_SESSION_KEY] = node.config.stash[_session_key]


def pytest_sessionfinish(session) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    folder = _session_dir(config)
    fresh = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if fresh and _TRACES_FOLDER is None:  # a run on another traces folder leaves the dashboard's results alone
        for old in RESULTS_DIR.glob("*.jsonl"):
            old.unlink()
        for path in fresh:
            path.replace(RESULTS_DIR / path.name)
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # makereport runs only in the process that ran the test (an xdist worker, or the
    # only process), so each outcome is written once.
    made = yield
    report = made.get_result()
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    result = dict(item.user_properties).get(_RESULT_KEY)
    if result is None:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed"
    elif report.outcome in ("passed", "skipped"):
        outcome = report.outcome
    else:
        outcome = "failed"
    message = None
    if outcome in ("failed", "skipped") and call.excinfo is not None:
        message = f"{call.excinfo.typename}: {call.excinfo.value}"[:500]
    record = {
        "function": result["function"],
        "kind": result["kind"],
        "case": result["case"],
        "outcome": outcome,
        "max_abs_err": result.get("max_abs_err"),
        "max_rel_err": result.get("max_rel_err"),
        "max_scaled_err": result.get("max_scaled_err"),
        "message": message,
    }
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    folder = _session_dir(item.config)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{worker}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
