"""``trace-tools list``, ``show`` and ``verify``: look at the stored traces.

Errors (missing folder, unknown function, damaged file) are one line on stderr
and exit status 2; ``verify`` prints one line per problem and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .store import SUFFIX, TraceError, default_folder, load_trace, read_manifest, trace_files, trace_path, verify_trace
from .values import ArraySummary, CellData, ElementData, FileRef, ObjectData, SpaceGroupData

SAMPLE = 4


class _Usage(Exception):
    """A problem reported as one line on stderr with exit status 2."""


def _add_traces_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=None, help="folder of trace files (default: traces/data of the repository)")


def _folder(args: argparse.Namespace) -> Path:
    folder = Path(args.traces) if args.traces is not None else default_folder()
    if not folder.is_dir():
        raise _Usage(f"traces folder {folder} does not exist")
    return folder


def _fail(command: str, message: str) -> int:
    print(f"trace-tools {command}: error: {message}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------- list
def configure_list(parser: argparse.ArgumentParser) -> None:
    _add_traces_option(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run_list(args: argparse.Namespace) -> int:
    try:
        folder = _folder(args)
    except _Usage as exc:
        return _fail("list", str(exc))
    entries, bad = [], 0
    for path in trace_files(folder):
        try:
            manifest = read_manifest(path)
        except TraceError as exc:
            print(f"trace-tools list: error: {exc}", file=sys.stderr)
            bad += 1
            continue
        calls = manifest["calls"]
        entries.append(
            {
                "function": manifest["function"],
                "calls": len(calls),
                "total_calls": sum(int(n) for n in manifest["call_counts"].values()),
                "scenarios": sorted({c.get("scenario") for c in calls if isinstance(c, dict)}),
                "truncated": manifest["truncated"],
                "source_commit": manifest["provenance"].get("source_commit"),
                "path": str(path),
            }
        )
    if args.json:
        print(json.dumps(entries, indent=2))
    elif entries:
        rows = [
            (e["function"], str(e["calls"]), str(e["total_calls"]), ", ".join(e["scenarios"]), "yes" if e["truncated"] else "")
            for e in entries
        ]
        print_table(["function", "calls", "total", "scenarios", "truncated"], rows)
    else:
        print(f"no traces in {folder}")
    return 2 if bad else 0


def print_table(header: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Print left-aligned columns under a header and a rule."""
    table = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


# ---------------------------------------------------------------- show
def configure_show(parser: argparse.ArgumentParser) -> None:
    _add_traces_option(parser)
    parser.add_argument("name", help="qualified function name (e.g. eryx.map_utils.generate_grid) or a .trace.npz file")
    parser.add_argument("--call", metavar="CASE_ID", help="show only this call (e.g. 5zck-s1-call0)")


def run_show(args: argparse.Namespace) -> int:
    try:
        if args.name.endswith(SUFFIX) and Path(args.name).is_file():
            path = Path(args.name)
        else:
            try:
                path = trace_path(args.name, _folder(args))
            except TraceError as exc:
                raise _Usage(str(exc)) from None
            if not path.is_file():
                raise _Usage(f"no trace for {args.name!r} in {path.parent}")
        trace = load_trace(path)
    except _Usage as exc:
        return _fail("show", str(exc))
    except TraceError as exc:
        return _fail("show", str(exc))
    calls = trace.calls if args.call is None else [c for c in trace.calls if c.case_id == args.call]
    if args.call is not None and not calls:
        return _fail("show", f"{trace.function} has no call {args.call!r} (calls: {', '.join(c.case_id for c in trace.calls)})")
    print(f"{trace.function}  ({trace.path})")
    for key, value in trace.provenance.items():
        print(f"  {key}: {value}")
    print(f"  truncated: {trace.truncated}")
    for call in calls:
        print(f"\n{call.case_id}")
        _section("args", {k: v for k, v in call.args.items()}, passed=set(call.passed))
        if call.exception is not None:
            print(f"  raised {call.exception.type}: {call.exception.message}")
        else:
            print(f"  result: {summarize(call.result)}")
        if call.attrs_read:
            _section("attributes read", call.attrs_read)
        if call.attrs_written:
            _section("attributes written", call.attrs_written)
    return 0


def _section(title: str, values: dict[str, Any], passed: set[str] | None = None) -> None:
    print(f"  {title}:")
    if not values:
        print("    (none)")
    for name, value in values.items():
        note = "" if passed is None or name in passed else "  (default)"
        print(f"    {name} = {summarize(value)}{note}")


def _sample(arr: np.ndarray) -> str:
    flat = np.asarray(arr).reshape(-1)
    shown = ", ".join(np.format_float_positional(x, precision=6, trim="-") if np.isrealobj(x) and np.issubdtype(np.asarray(x).dtype, np.floating) else str(x) for x in flat[:SAMPLE])
    return f"[{shown}{', ...' if flat.size > SAMPLE else ''}]"


def summarize(value: Any, depth: int = 0) -> str:
    """A one-line description of a decoded value: type, shape, dtype, a few values."""
    if isinstance(value, np.ndarray):
        text = f"ndarray {value.dtype}{list(value.shape)}"
        if value.size and not value.dtype.hasobject:
            text += f" {_sample(value)}"
            if np.issubdtype(value.dtype, np.number) and not np.iscomplexobj(value) and value.size > 1:
                with np.errstate(all="ignore"):
                    text += f" min {np.nanmin(value):.6g} max {np.nanmax(value):.6g}" if not np.all(np.isnan(value)) else " all NaN"
        return text
    if isinstance(value, np.generic):
        return f"{type(value).__name__}({value})"
    if isinstance(value, ArraySummary):
        return f"ArraySummary {value.dtype}{list(value.shape)} (not stored) first {_sample(value.sample)} sha256 {value.sha256[:12]}"
    if isinstance(value, FileRef):
        return f"file {value.name} (sha256 {value.sha256[:12]})"
    if isinstance(value, ElementData):
        return f"Element {value.symbol}"
    if isinstance(value, CellData):
        return f"Cell {tuple(value.parameters)}"
    if isinstance(value, SpaceGroupData):
        return f"SpaceGroup {value.hm!r} ({value.number})"
    if isinstance(value, ObjectData):
        omitted = f"; omitted {', '.join(value.omitted)}" if value.omitted else ""
        return f"{value.cls} object with {len(value.attrs)} attributes ({', '.join(sorted(value.attrs)[:8])}{', ...' if len(value.attrs) > 8 else ''}){omitted}"
    if isinstance(value, (list, tuple)):
        kind = type(value).__name__
        if depth > 1 or len(value) > SAMPLE:
            inner = summarize(value[0], depth + 1) if value else ""
            return f"{kind} of {len(value)}" + (f", first: {inner}" if inner else "")
        return f"{kind}({'; '.join(summarize(v, depth + 1) for v in value)})"
    if isinstance(value, dict):
        keys = list(value)
        if depth > 1 or len(keys) > SAMPLE:
            return f"dict of {len(keys)} (keys {', '.join(repr(k) for k in keys[:SAMPLE])}{', ...' if len(keys) > SAMPLE else ''})"
        return "{" + "; ".join(f"{k!r}: {summarize(v, depth + 1)}" for k, v in value.items()) + "}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- verify
def configure_verify(parser: argparse.ArgumentParser) -> None:
    _add_traces_option(parser)
    parser.add_argument("--pdb-dir", type=Path, default=None, help="folder of the data files traces refer to (default: trace_tools.paths.pdb_dir())")


def run_verify(args: argparse.Namespace) -> int:
    try:
        folder = _folder(args)
    except _Usage as exc:
        return _fail("verify", str(exc))
    if args.pdb_dir is not None and not Path(args.pdb_dir).is_dir():
        return _fail("verify", f"PDB folder {args.pdb_dir} does not exist")
    paths = trace_files(folder)
    problems = []
    for path in paths:
        problems.extend(verify_trace(path, args.pdb_dir))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(paths)} trace(s) in {folder}: all load, checksums and data files match")
    return 0
