"""``trace-tools progress``: write the progress dashboard, check that the committed one is current.

Usual use, after the test run (``pytest -n auto`` writes build/trace-results and
build/coverage)::

    trace-tools progress            # writes progress/PROGRESS.md, progress/index.html, progress/history.json
    trace-tools progress --check    # exit 1 when the committed dashboard is stale

The API inventory of the NumPy package (traces/eryx_api.json) is made once, with
the reference's own interpreter, since CI cannot import eryx::

    $ERYX_PYTHON -m trace_tools.cli progress --inventory-from $ERYX_SRC
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import importlib
import inspect
import json
import re
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import progress_facts as pf
from .paths import REPO_ROOT, traces_dir
from .progress_render import (
    COMPLETION_SVG,
    ERRORS_SVG,
    STAMP_RE,
    render_html,
    render_markdown,
    svg_completion,
    svg_error_distribution,
)

HISTORY = "history.json"
ERRORS = "errors.json"  # worst errors per function, the reference of --check's tenfold rule
# --check fails when a function's worst error grows more than this factor over the committed one;
# errors below the noise level (a few eps) count as that level, so rounding noise is no regression.
ERROR_GROWTH = 10.0
ERROR_NOISE = 1e-15


class ProgressError(RuntimeError):
    """A problem the user can fix; reported as one line."""


def configure_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 when the dashboard in --out differs from what would be written",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "progress",
        help="dashboard folder (default progress/)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=pf.RESULTS_DIR,
        help="folder of the test run's *.jsonl results (default build/trace-results)",
    )
    parser.add_argument(
        "--coverage",
        type=Path,
        default=pf.COVERAGE_FILE,
        help="coverage.py data file (default build/coverage/.coverage)",
    )
    parser.add_argument(
        "--traces",
        type=Path,
        default=traces_dir() / "data",
        help="trace folder (default traces/data)",
    )
    parser.add_argument(
        "--functions",
        type=Path,
        default=pf.FUNCTIONS_FILE,
        help="function list (default traces/functions.toml)",
    )
    parser.add_argument(
        "--benchmarks",
        type=Path,
        default=pf.BENCHMARKS_FILE,
        help="benchmark results (default benchmarks/results.json)",
    )
    parser.add_argument(
        "--inventory",
        type=Path,
        default=pf.INVENTORY_FILE,
        help="API inventory of the NumPy package (default traces/eryx_api.json)",
    )
    parser.add_argument(
        "--registry", default="eryx_port.parity", help="module that registers the ports"
    )
    parser.add_argument(
        "--inventory-from",
        type=Path,
        metavar="SOURCE",
        help="import the NumPy package from SOURCE, write its API inventory to --inventory, and stop",
    )
    parser.add_argument(
        "--today", help=argparse.SUPPRESS
    )  # fixed date for tests (YYYY-MM-DD)


def run_progress(args: argparse.Namespace) -> int:
    try:
        if args.inventory_from is not None:
            return _write_inventory(args)
        return _dashboard(args)
    except (ProgressError, ValueError, OSError) as exc:
        print(f"trace-tools progress: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------- dashboard


def gather(args: argparse.Namespace) -> dict[str, Any]:
    """Raw facts from the files named by the options."""
    flist = pf.load_function_list(args.functions)
    traces, problems = pf.load_trace_summaries(args.traces)
    try:
        from .registry import load_registry

        registry = pf.registry_facts(load_registry(args.registry))
    except ImportError as exc:
        raise ProgressError(
            f"cannot load the port registry {args.registry}: {exc}"
        ) from None
    coverage = pf.port_coverage((e["port"] for e in registry.values()), args.coverage)
    return {
        "function_list": flist,
        "traces": traces,
        "trace_problems": problems,
        "registry": registry,
        "results": pf.load_results(args.results),
        "coverage": coverage,
        "benchmarks": pf.load_benchmarks(args.benchmarks),
        "inventory": pf.load_inventory(args.inventory),
        "history": pf.load_history(args.out / HISTORY),
    }


def _dashboard(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    today = args.today or now.strftime("%Y-%m-%d")
    raw = gather(args)
    if args.check and raw["results"] is None:
        raise ProgressError(
            f"no test results in {_rel(args.results)}: run the tests first (`pytest -n auto`), then --check"
        )
    facts = pf.derive(raw, today)
    stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    pages = {
        "PROGRESS.md": render_markdown(facts, stamp),
        "index.html": render_html(facts, stamp),
        COMPLETION_SVG: svg_completion(facts) + "\n",
        ERRORS_SVG: svg_error_distribution(facts) + "\n",
    }
    history_text = json.dumps({"first_passed": facts["history_new"]}, indent=2) + "\n"
    errors = worst_errors(facts)

    if args.check:
        return _check(args.out, pages, history_text, raw, errors)

    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (args.out / name).write_text(text, encoding="utf-8")
    history_path = args.out / HISTORY
    if (
        not history_path.is_file()
        or history_path.read_text(encoding="utf-8") != history_text
    ):
        history_path.write_text(history_text, encoding="utf-8")
    (args.out / ERRORS).write_text(json.dumps(errors, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    o = facts["overall"]
    print(
        f"wrote {_rel(args.out)}/PROGRESS.md, index.html and pictures: {o['done']}/{o['functions']} functions done "
        f"({o['completion']}%), {sum(c['passed'] for c in facts['checkpoints'])}/{len(facts['checkpoints'])} "
        "checkpoints"
    )
    if raw["results"] is None:
        print(
            "warning: no test results found; run `pytest -n auto` first",
            file=sys.stderr,
        )
    return 0


# Worst errors are shown as numbers, whose last digits differ between CPUs. --check
# therefore compares the pages with error numbers, decade buckets and the
# error-distribution picture masked (statuses, case counts, coverage and everything
# else must match exactly), and compares the magnitudes themselves with errors.json:
# a function fails when its worst error grows more than tenfold.
_ERROR_SVG_RE = re.compile(r'<svg[^>]*aria-label="parity errors per function".*?</svg>', re.DOTALL)
_BUCKET_RE = re.compile(r"(?<![\w.])[<>]?1e-?\d+(?![\w.])")
_NUMBER_RE = re.compile(r"(?<![\w.])\d\.\de[-+]\d+(?![\w.])")


def _without_stamp(text: str) -> list[str]:
    text = STAMP_RE.sub("", text)
    text = _ERROR_SVG_RE.sub("<svg>(error distribution)</svg>", text)
    text = _NUMBER_RE.sub("e?", text)
    return _BUCKET_RE.sub("1e?", text).splitlines()


def worst_errors(facts: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per function with parity results: its worst relative error and worst error over scale."""
    rows = [r for phase in facts["phases"] for r in phase["rows"]]
    return {r["name"]: r["parity"]["worst"] for r in rows if r["parity"].get("cases")}


def error_regressions(committed: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Functions whose worst error grew more than ERROR_GROWTH times over the committed one."""
    grown = []
    for name, now in sorted(fresh.items()):
        before = committed.get(name) or {}
        for key, value in now.items():
            old = before.get(key)
            if value is None or old is None:
                continue
            if max(value, ERROR_NOISE) > ERROR_GROWTH * max(old, ERROR_NOISE):
                grown.append(f"{name}: {key} grew from {old:.1e} to {value:.1e} (more than {ERROR_GROWTH:g}x)")
    return grown


def _check(
    out: Path, pages: dict[str, str], history_text: str, raw: dict[str, Any], errors: dict[str, Any]
) -> int:
    stale = []
    errors_path = out / ERRORS
    if errors_path.is_file():
        stale += error_regressions(json.loads(errors_path.read_text(encoding="utf-8")), errors)
    else:
        stale.append(f"{_rel(errors_path)} is missing")
    for name, fresh in pages.items():
        if name == ERRORS_SVG:  # the picture of error magnitudes: see _without_stamp
            continue
        path = out / name
        if not path.is_file():
            stale.append(f"{_rel(path)} is missing")
            continue
        old = _without_stamp(path.read_text(encoding="utf-8"))
        new = _without_stamp(fresh)
        if old != new:
            diff = list(
                difflib.unified_diff(
                    old, new, f"committed {name}", f"current {name}", n=0, lineterm=""
                )
            )
            changed = sum(1 for d in diff[2:] if d[:1] in "+-")
            shown = [d[:160] for d in diff[2:] if not d.startswith("@@")][:6]
            stale.append(
                f"{_rel(path)} differs ({changed} changed lines):\n    "
                + "\n    ".join(shown)
            )
    history_path = out / HISTORY
    if (
        not history_path.is_file()
        or history_path.read_text(encoding="utf-8") != history_text
    ):
        stale.append(f"{_rel(history_path)} lacks a checkpoint date")
    if not stale:
        print(f"{_rel(out)} is up to date")
        return 0
    print(
        "the progress dashboard is stale: regenerate it with `trace-tools progress` and commit it",
        file=sys.stderr,
    )
    for item in stale:
        print(f"  {item}", file=sys.stderr)
    if not raw["coverage"]:
        print(
            "  note: no coverage data was found (build/coverage/.coverage)",
            file=sys.stderr,
        )
    return 1


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- API inventory


def api_inventory(package: str) -> tuple[list[dict[str, str]], list[str]]:
    """Public functions, classes and methods (constructors included) of an importable package.

    Returns (names, modules that failed to import).
    """
    root = importlib.import_module(package)
    modules = [root]
    skipped = []
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        try:
            modules.append(importlib.import_module(info.name))
        except (
            ImportError
        ) as exc:  # an optional dependency missing: list the module, keep going
            skipped.append(f"{info.name}: {type(exc).__name__}")
    names: list[dict[str, str]] = []
    for mod in modules:
        for attr, obj in vars(mod).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            qual = f"{mod.__name__}.{attr}"
            if inspect.isfunction(obj):
                names.append({"name": qual, "kind": "function", "module": mod.__name__})
            elif inspect.isclass(obj):
                names.append({"name": qual, "kind": "class", "module": mod.__name__})
                for meth, member in vars(obj).items():
                    if meth.startswith("_") and meth != "__init__":
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member):
                        names.append(
                            {
                                "name": f"{qual}.{meth}",
                                "kind": "method",
                                "module": mod.__name__,
                            }
                        )
    names.sort(key=lambda n: n["name"])
    return names, sorted(skipped)


def _write_inventory(args: argparse.Namespace) -> int:
    source = args.inventory_from.resolve()
    package = pf.load_function_list(args.functions)["package"]
    if not (source / package).is_dir():
        raise ProgressError(f"{source} holds no package folder {package!r}")
    sys.path.insert(0, str(source))
    try:
        names, skipped = api_inventory(package)
    finally:
        sys.path.remove(str(source))
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = ""
    data = {
        "package": package,
        "source_commit": commit,
        "made_by": "trace-tools progress --inventory-from SOURCE (run with the NumPy package's interpreter)",
        "skipped_modules": skipped,
        "names": names,
    }
    args.inventory.parent.mkdir(parents=True, exist_ok=True)
    args.inventory.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {_rel(args.inventory)}: {len(names)} names of {package}"
        + (f"; modules not importable: {', '.join(skipped)}" if skipped else "")
    )
    return 0
