"""Facts behind the progress dashboard, and the rules that turn them into statuses.

Gathering (the ``load_*`` and ``*_coverage`` functions) reads the function list,
the traces, the port registry, the test results written by the pytest plugin,
coverage data, benchmark results and the eryx API inventory. :func:`derive`
then applies the rules (function status, phase completion, checkpoints) to a
plain facts dict, so renderers and tests work on dicts alone.

Everything that reaches the page is rounded or bucketed so that the dashboard is
the same on every machine for the same test outcomes (see :func:`error_bucket`).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .paths import COVERAGE_FILE, REPO_ROOT, RESULTS_DIR, traces_dir
from .registry import DEFAULT_FLOOR, DEFAULT_RTOL

# The seed plan's phases, in order; phases of later model families follow, sorted by name.
PHASES = (
    "core utilities",
    "adapters",
    "core functions",
    "OnePhonon model",
    "integration",
)

BENCHMARKS_FILE = REPO_ROOT / "benchmarks" / "results.json"
INVENTORY_FILE = traces_dir() / "eryx_api.json"
FUNCTIONS_FILE = traces_dir() / "functions.toml"

# Function statuses, in the order they are counted on the page.
DONE, FAILING, UNTESTED, NOT_PORTED = "done", "failing", "untested", "not ported"

COMPLETION_RULE = (
    "A listed function counts as done when it is ported (registered in eryx_port.parity), "
    "at least one recorded call was replayed, every replayed parity case passed, and every "
    "gradient check passed (functions without differentiable inputs need none). "
    "Completion = done functions / listed functions (seed-only entries are not counted)."
)

# Checkpoints of the seed plan; each is a rule over the function statuses.
# select: fnmatch patterns over NumPy names, or "phase:<name>"; extra: further conditions.
CHECKPOINTS: tuple[dict[str, Any], ...] = (
    {
        "id": "CP1",
        "title": "Core Utilities Complete",
        "select": ["phase:core utilities"],
    },
    {"id": "CP2", "title": "Adapters Complete", "select": ["phase:adapters"]},
    {"id": "CP3", "title": "Map Utils Complete", "select": ["eryx.map_utils.*"]},
    {"id": "CP4", "title": "Scatter Complete", "select": ["eryx.scatter.*"]},
    {
        "id": "CP5",
        "title": "Matrix Construction Complete",
        "select": [
            "eryx.models.OnePhonon._build_A",
            "eryx.models.OnePhonon._build_M",
            "eryx.models.OnePhonon._build_M_allatoms",
            "eryx.models.OnePhonon._project_M",
        ],
    },
    {
        "id": "CP6",
        "title": "K-vector Methods Complete",
        "select": [
            "eryx.models.OnePhonon._build_kvec_Brillouin",
            "eryx.models.OnePhonon._center_kvec",
            "eryx.models.OnePhonon._at_kvec_from_miller_points",
        ],
    },
    {
        "id": "CP7",
        "title": "Phonon Calculation Complete",
        "select": [
            "eryx.pdb.GaussianNetworkModel.*",
            "eryx.models.OnePhonon.compute_hessian",
            "eryx.models.OnePhonon.compute_gnm_phonons",
            "eryx.models.OnePhonon.compute_rb_phonons",
        ],
    },
    {
        "id": "CP8",
        "title": "Covariance Matrix Complete",
        "select": ["eryx.models.OnePhonon.compute_covariance_matrix"],
    },
    {
        "id": "CP9",
        "title": "Apply Disorder Complete",
        "select": ["eryx.models.OnePhonon.apply_disorder"],
    },
    {
        "id": "CP10",
        "title": "End-to-End Integration Complete",
        "select": ["*"],
        "extra": ["benchmarks"],
    },
)


def checkpoint_rule(cp: dict[str, Any]) -> str:
    """The checkpoint's rule in words, as stated on the page."""
    parts = []
    for sel in cp["select"]:
        if sel == "*":
            parts.append("every listed function")
        elif sel.startswith("phase:"):
            parts.append(f"every function of phase '{sel[6:]}'")
        else:
            parts.append(f"`{sel}`")
    text = ", ".join(parts) + " done"
    if "benchmarks" in cp.get("extra", ()):
        text += ", and benchmark results recorded (benchmarks/results.json)"
    return text


# ---------------------------------------------------------------- rounding


def error_bucket(err: float | None) -> str:
    """A relative error shown as its decade upper bound ("<1e-14", "1e-12", ...), stable across CPUs."""
    if err is None:
        return "—"
    if math.isnan(err) or math.isinf(err):
        return "nan" if math.isnan(err) else "inf"
    if err < 1e-14:
        return "<1e-14"
    # 1e-12 itself stays in the 1e-12 bucket
    exponent = math.ceil(math.log10(err) - 1e-9)
    return f"1e{exponent:+d}".replace("+", "") if exponent != 0 else "1"


def case_bucket(err: float | None, passed: bool, rtol: float) -> str:
    """The bucket of one parity case.

    A passing case can exceed rtol only on elements close to the absolute floor
    (atol = rtol * max|expected|), where the relative error is rounding noise that
    differs between CPUs; such cases all show as ">rtol" so the page stays stable.
    """
    if passed and err is not None and not math.isnan(err) and err > rtol:
        return f">{_sci(rtol)}"
    return error_bucket(err)


def bucket_order(bucket: str) -> float:
    """Sort key of a bucket label (larger errors last)."""
    if bucket == "<1e-14":
        return -15
    if bucket in ("nan", "inf"):
        return math.inf
    if bucket == "1":
        return 0
    if bucket.startswith(">"):
        return math.log10(float(bucket[1:])) + 0.5
    return float(bucket[2:])


# ---------------------------------------------------------------- gathering


def load_function_list(path: Path | None = None) -> dict[str, Any]:
    """``{"package", "functions": [{name, phase, notes}], "seed_only": [...]}`` from functions.toml."""
    path = Path(path) if path is not None else FUNCTIONS_FILE
    if not path.is_file():
        return {
            "package": "eryx",
            "functions": [],
            "seed_only": [],
            "missing_file": path.name,
        }
    with open(path, "rb") as fh:
        table = tomllib.load(fh)

    def entries(key: str) -> list[dict[str, str]]:
        out = []
        for item in table.get(key, []):
            out.append(
                {
                    "name": item["name"],
                    "phase": item.get("phase", ""),
                    "notes": item.get("notes", ""),
                }
            )
        return out

    return {
        "package": table.get("meta", {}).get("package", "eryx"),
        "functions": entries("function"),
        "seed_only": entries("seed_only"),
    }


def load_trace_summaries(
    folder: Path | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({function: {"calls", "scenarios", "truncated", "commit"}}, problems)`` from the stored traces."""
    try:
        from . import store
    except ImportError as exc:  # half-built checkout: the store is not there yet
        return {}, [f"trace store unavailable: {exc}"]
    summaries: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    folder = Path(folder) if folder is not None else traces_dir() / "data"
    if not folder.is_dir():
        return {}, []
    # The manifest alone tells the calls and scenarios; reading it skips decoding the arrays.
    read = getattr(store, "read_manifest", None)
    for path in sorted(folder.glob("*.trace.npz")):
        try:
            if read is not None:
                manifest = read(path)
                function, provenance = (
                    manifest["function"],
                    manifest.get("provenance") or {},
                )
                scenarios = [c["scenario"] for c in manifest["calls"]]
                truncated = manifest.get("truncated", False)
            else:
                trace = store.load_trace(path)
                function, provenance = trace.function, trace.provenance or {}
                scenarios = [c.scenario for c in trace.calls]
                truncated = trace.truncated
        except ValueError as exc:  # TraceError names the file and the problem
            problems.append(
                str(exc)
                .replace(str(folder) + "/", "")
                .replace(str(REPO_ROOT) + "/", "")
            )
            continue
        summaries[function] = {
            "calls": len(scenarios),
            "scenarios": sorted(set(scenarios)),
            "truncated": bool(truncated),
            "commit": str(
                provenance.get("source_commit") or provenance.get("commit") or ""
            )[:7],
        }
    return summaries, problems


def load_results(folder: Path | None = None) -> list[dict[str, Any]] | None:
    """All case records of the last test run, or None when the folder holds no results file."""
    folder = Path(folder) if folder is not None else RESULTS_DIR
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        return None
    records = []
    for path in files:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path.name} line {lineno}: not JSON ({exc.msg})"
                ) from None
            if (
                not isinstance(rec, dict)
                or not {"function", "kind", "case", "outcome"} <= rec.keys()
            ):
                raise ValueError(
                    f"{path.name} line {lineno}: a result needs function, kind, case and outcome"
                )
            records.append(rec)
    return records


def registry_facts(registry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The dashboard's view of the port registry (plain data)."""
    out = {}
    for name, entry in sorted(registry.items()):
        out[name] = {
            "port": entry.port_name,
            "rtol": entry.rtol,
            "atol": entry.atol,
            "floor": entry.floor,
            "tolerance_reason": entry.tolerance_reason or "",
            "notes": entry.notes or "",
            "grad_inputs": list(entry.grad_inputs),
        }
    return out


def load_registry_facts() -> dict[str, dict[str, Any]]:
    from .registry import load_registry

    return registry_facts(load_registry())


def load_benchmarks(path: Path | None = None) -> dict[str, Any] | None:
    path = Path(path) if path is not None else BENCHMARKS_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_inventory(path: Path | None = None) -> list[dict[str, str]] | None:
    path = Path(path) if path is not None else INVENTORY_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return list(data["names"])


def load_history(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return dict(data.get("first_passed", {}))


def _body_lines(qualname: str) -> tuple[str, range] | None:
    """Source file and body line range of a port function given by its dotted name, or None."""
    import ast
    import importlib
    import inspect
    import textwrap

    parts = qualname.split(".")
    obj = None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = inspect.getattr_static(obj, attr)
        except AttributeError:
            return None
        break
    if obj is None:
        return None
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    if inspect.isclass(obj):  # a class stands for its constructor
        obj = vars(obj).get("__init__")
        if obj is None:
            return None
    obj = inspect.unwrap(obj)
    try:
        filename = inspect.getsourcefile(obj)
        lines, start = inspect.getsourcelines(obj)
    except (TypeError, OSError):
        return None
    if filename is None:
        return None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0] if tree.body else None
    if (
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
    ):
        # Decorators and the def line run at import; only the body tells whether tests reached it.
        first = start + node.body[0].lineno - 1
    else:
        first = start
    return str(Path(filename).resolve()), range(first, start + len(lines))


def port_coverage(
    port_names: Iterable[str], data_file: Path | None = None
) -> dict[str, int | None]:
    """Integer line coverage (percent) of each port function's body, from coverage.py data."""
    data_file = Path(data_file) if data_file is not None else COVERAGE_FILE
    names = sorted(set(port_names))
    if not data_file.is_file():
        return {}
    import coverage
    from coverage.exceptions import CoverageException

    cov = coverage.Coverage(data_file=str(data_file))
    cov.load()
    data = cov.get_data()
    measured = {str(Path(f).resolve()): f for f in data.measured_files()}
    analysed: dict[str, tuple[set[int], set[int]]] = {}
    out: dict[str, int | None] = {}
    for name in names:
        found = _body_lines(name)
        if found is None:
            out[name] = None
            continue
        filename, body = found
        if filename not in analysed:
            recorded = measured.get(filename)
            executed = set(data.lines(recorded) or ()) if recorded else set()
            try:
                statements = set(cov.analysis2(filename)[1])
            except (
                CoverageException
            ):  # coverage cannot parse it: report no figure rather than a wrong one
                statements = set()
            analysed[filename] = (statements, executed)
        statements, executed = analysed[filename]
        body_statements = {ln for ln in statements if ln in body}
        if not body_statements:
            out[name] = None
            continue
        out[name] = len(body_statements & executed) * 100 // len(body_statements)
    return out


# ---------------------------------------------------------------- rules


def error_number(err: float | None) -> str:
    """A worst error as a number with two significant digits ("3.2e-13", "0.0e+00" when exact)."""
    if err is None:
        return "—"
    if math.isnan(err) or math.isinf(err):
        return "nan" if math.isnan(err) else "inf"
    return f"{err:.1e}"


def _worst(records: list[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in records if r.get(key) is not None]
    return max(values) if values else None


def _case_summary(records: list[dict[str, Any]], rtol: float) -> dict[str, Any]:
    """Outcome counts, the worst errors (numbers), and the error buckets of passed and of failed cases."""
    counts = {k: 0 for k in ("passed", "failed", "error", "xfailed", "skipped")}
    buckets: dict[str, dict[str, int]] = {"passed": {}, "failed": {}}
    for rec in records:
        outcome = rec["outcome"] if rec["outcome"] in counts else "error"
        counts[outcome] += 1
        err = rec.get("max_rel_err")
        if err is not None and outcome in buckets:
            b = case_bucket(float(err), outcome == "passed", rtol)
            buckets[outcome][b] = buckets[outcome].get(b, 0) + 1
    # The worst error shown: of the failing cases if any failed, else of the passing ones.
    failed = [r for r in records if r["outcome"] == "failed"]
    shown = failed or [r for r in records if r["outcome"] == "passed"]
    return {
        "counts": counts,
        "cases": len(records),
        "max_rel_err": error_number(_worst(shown, "max_rel_err")),
        "worst": {key: _worst(shown, key) for key in ("max_rel_err", "max_scaled_err")},
        "buckets": {
            k: dict(sorted(v.items(), key=lambda kv: bucket_order(kv[0])))
            for k, v in buckets.items()
        },
    }


def _parity_status(summary: dict[str, Any], ported: bool) -> str:
    c = summary["counts"]
    if c["failed"] or c["error"]:
        return "fail"
    if c["passed"]:
        return "pass"
    if not ported or (c["xfailed"] and not c["passed"]):
        return "not ported"
    if c["skipped"]:
        return "skipped"
    return "no results"


def _grad_status(summary: dict[str, Any], grad_inputs: list[str]) -> str:
    if not grad_inputs:
        return "n/a"
    c = summary["counts"]
    if c["failed"] or c["error"]:
        return "fail"
    if c["passed"]:
        return "pass"
    if c["skipped"]:
        return "skipped"
    return "no results"


def function_row(
    item: dict[str, str],
    registry: dict[str, dict[str, Any]],
    traces: dict[str, dict[str, Any]],
    results: list[dict[str, Any]],
    coverage: dict[str, int | None],
) -> dict[str, Any]:
    """One listed function with every fact the page shows about it, and its status."""
    name = item["name"]
    entry = registry.get(name)
    ported = entry is not None
    rtol = entry["rtol"] if entry else DEFAULT_RTOL
    mine = [r for r in results if r["function"] == name]
    parity = _case_summary([r for r in mine if r["kind"] == "parity"], rtol)
    grad = _case_summary([r for r in mine if r["kind"] == "gradcheck"], rtol)
    grad_inputs = entry["grad_inputs"] if entry else []
    parity_status = _parity_status(parity, ported)
    grad_status = _grad_status(grad, grad_inputs)
    if not ported or parity_status == "not ported":
        status = NOT_PORTED
    elif parity_status == "fail" or grad_status == "fail":
        status = FAILING
    elif parity_status == "pass" and grad_status in ("pass", "n/a"):
        status = DONE
    else:
        status = UNTESTED
    trace = traces.get(name)
    return {
        "name": name,
        "phase": item["phase"],
        "notes": item.get("notes", ""),
        "port": entry["port"] if entry else None,
        "calls": trace["calls"] if trace else 0,
        "scenarios": trace["scenarios"] if trace else [],
        "truncated": bool(trace and trace.get("truncated")),
        "parity": {
            "status": parity_status,
            "passed": parity["counts"]["passed"],
            "cases": parity["cases"],
            "max_rel_err": parity["max_rel_err"],
            "worst": parity["worst"],
            "buckets": parity["buckets"]["passed"],
            "failed_buckets": parity["buckets"]["failed"],
        },
        "grad": {
            "status": grad_status,
            "passed": grad["counts"]["passed"],
            "cases": grad["cases"],
            "inputs": list(grad_inputs),
        },
        "coverage": coverage.get(entry["port"]) if entry else None,
        "registry_notes": entry["notes"] if entry else "",
        "tolerance": _tolerance_text(entry) if entry else "",
        "status": status,
    }


def _tolerance_text(entry: dict[str, Any]) -> str:
    if (
        entry["rtol"] == DEFAULT_RTOL
        and entry["atol"] is None
        and entry.get("floor", DEFAULT_FLOOR) <= DEFAULT_FLOOR
        and not entry["tolerance_reason"]
    ):
        return ""
    text = f"rtol {_sci(entry['rtol'])}"
    if entry.get("floor") is not None and entry["floor"] > DEFAULT_FLOOR:
        text += f", floor {_sci(entry['floor'])} of the scale"
    if entry["atol"] is not None:
        text += f", atol {_sci(entry['atol'])}"
    if entry["tolerance_reason"]:
        text += f": {entry['tolerance_reason']}"
    return text


def _sci(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-").replace("e+0", "e+")


def _percent(done: int, total: int) -> int:
    return done * 100 // total if total else 0


def _tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status, completion and state of a group of function rows (a phase, or all)."""
    count = {st: sum(r["status"] == st for r in rows) for st in (DONE, FAILING, UNTESTED, NOT_PORTED)}
    return {
        "functions": len(rows),
        "done": count[DONE],
        "failing": count[FAILING],
        "untested": count[UNTESTED],
        "not_ported": count[NOT_PORTED],
        "completion": _percent(count[DONE], len(rows)),
        "state": _phase_state(count[DONE], len(rows), len(rows) - count[NOT_PORTED]),
    }


def _phase_state(done: int, total: int, started: int) -> str:
    if total and done == total:
        return "Complete"
    return "In Progress" if started else "Not Started"


def _selected(rows: list[dict[str, Any]], select: list[str]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        for sel in select:
            if sel.startswith("phase:"):
                hit = row["phase"] == sel[6:]
            else:
                hit = fnmatchcase(row["name"], sel)
            if hit:
                out.append(row)
                break
    return out


def derive(raw: dict[str, Any], today: str) -> dict[str, Any]:
    """Apply the rules to raw facts; returns the dict the renderers take (raw is not modified).

    ``raw`` keys: function_list, registry, traces, trace_problems, results (list or None),
    coverage, benchmarks, inventory, history. ``today`` (YYYY-MM-DD) dates checkpoints
    that pass for the first time; ``history_new`` holds the updated dates.
    """
    results = raw.get("results") or []
    registry = raw.get("registry", {})
    flist = raw["function_list"]
    rows = [
        function_row(
            item, registry, raw.get("traces", {}), results, raw.get("coverage", {})
        )
        for item in sorted(flist["functions"], key=lambda f: f["name"])
    ]
    phase_names = list(PHASES) + sorted({r["phase"] for r in rows} - set(PHASES))
    phases = []
    for phase in phase_names:
        members = [r for r in rows if r["phase"] == phase]
        if not members and phase not in PHASES:
            continue
        tally = _tally(members)
        if not members:
            tally["state"] = "No functions listed"
        phases.append({"name": phase, **tally, "rows": members})
    overall = _tally(rows)

    history = dict(raw.get("history", {}))
    checkpoints = []
    for cp in CHECKPOINTS:
        members = _selected(rows, cp["select"])
        done = sum(r["status"] == DONE for r in members)
        passed = bool(members) and done == len(members)
        if "benchmarks" in cp.get("extra", ()):
            passed = passed and bool(raw.get("benchmarks"))
        if passed and cp["id"] not in history:
            history[cp["id"]] = today
        blocking = sorted(r["name"] for r in members if r["status"] != DONE)
        checkpoints.append(
            {
                "id": cp["id"],
                "title": cp["title"],
                "rule": checkpoint_rule(cp),
                "passed": passed,
                "done": done,
                "total": len(members),
                "first_passed": history.get(cp["id"]),
                "blocking": blocking,
            }
        )

    missing = sorted(r["name"] for r in rows if r["calls"] == 0)
    registered_unlisted = sorted(set(registry) - {r["name"] for r in rows})
    return {
        "package": flist.get("package", "eryx"),
        "function_list_missing": flist.get("missing_file"),
        "have_results": raw.get("results") is not None,
        "have_coverage": bool(raw.get("coverage")),
        "completion_rule": COMPLETION_RULE,
        "phases": phases,
        "overall": overall,
        "checkpoints": checkpoints,
        "history_new": dict(sorted(history.items(), key=lambda kv: _cp_number(kv[0]))),
        "missing_traces": missing,
        "trace_problems": sorted(raw.get("trace_problems", [])),
        "trace_commits": sorted(
            {t["commit"] for t in raw.get("traces", {}).values() if t.get("commit")}
        ),
        "seed_only": sorted(
            flist.get("seed_only", []), key=lambda s: (s["phase"], s["name"])
        ),
        "registered_unlisted": registered_unlisted,
        "surface": _surface(raw.get("inventory"), registry, {r["name"] for r in rows}),
        "benchmarks": _benchmarks(raw.get("benchmarks")),
    }


def _cp_number(cp_id: str) -> int:
    return int(cp_id[2:]) if cp_id[2:].isdigit() else 99


def _surface(
    inventory: list[dict[str, str]] | None, registry: dict[str, Any], listed: set[str]
) -> dict[str, Any] | None:
    """eryx's public API split by module into ported and unported names."""
    if inventory is None:
        return None
    modules: dict[str, dict[str, Any]] = {}
    for item in sorted(inventory, key=lambda i: i["name"]):
        name, kind = item["name"], item["kind"]
        if kind == "class":
            continue  # a class is covered through its methods
        module = item.get("module") or name.rsplit(".", 1)[0]
        m = modules.setdefault(
            module, {"module": module, "total": 0, "ported": 0, "unported": []}
        )
        m["total"] += 1
        if name in registry:
            m["ported"] += 1
        else:
            m["unported"].append({"name": name, "kind": kind, "listed": name in listed})
    mods = [modules[k] for k in sorted(modules)]
    return {
        "modules": mods,
        "total": sum(m["total"] for m in mods),
        "ported": sum(m["ported"] for m in mods),
    }


def _blas_line(bench: dict) -> str:
    """Each side's BLAS as one line (port: torch's; eryx: NumPy's), or "" for results recorded without them."""
    port, eryx = bench.get("torch_blas"), bench.get("eryx_blas")
    if not port and not eryx:
        return ""
    return f"port: {port or '?'}; eryx: NumPy {bench.get('eryx_numpy') or '?'} with {eryx or '?'}"


def _benchmarks(bench: dict[str, Any] | None) -> dict[str, Any] | None:
    if not bench:
        return None
    cases = []
    for case in sorted(
        bench.get("cases", []), key=lambda c: (str(c.get("case")), str(c.get("stage")))
    ):
        cases.append(
            {
                "case": str(case.get("case", "")),
                "stage": str(case.get("stage", "")),
                "eryx_s": case.get("eryx_s"),
                "port_s": case.get("port_s"),
                "ratio": case.get("ratio"),
                "eryx_extrapolated": bool(case.get("eryx_extrapolated")),
            }
        )
    errors = {
        str(k): error_bucket(v)
        for k, v in sorted((bench.get("max_rel_err") or {}).items())
    }
    return {
        "machine": str(bench.get("machine", "")),
        "date": str(bench.get("date", "")),
        "command": str(bench.get("command", "")),
        "torch": str(bench.get("torch", "")),
        "numpy": str(bench.get("numpy", "")),
        # each side's BLAS (recorded since 2026-12-03; much of a ratio is the two libraries')
        "blas": _blas_line(bench),
        "cases": cases,
        "max_rel_err": errors,
        # peak resident memory of the fresh-process cases (MiB), eryx's possibly extrapolated
        "peak_rss_mib": {
            str(k): {
                "eryx": v.get("eryx"),
                "port": v.get("port"),
                "eryx_extrapolated": bool(v.get("eryx_extrapolated")),
            }
            for k, v in sorted((bench.get("peak_rss_mib") or {}).items())
        },
    }
