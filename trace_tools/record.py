"""``trace-tools record``: run scenarios against a NumPy package and record calls of listed functions.

The package is imported from ``--source`` and each function or method named in
the functions file is replaced by a recording wrapper, in every module of the
package that holds it (re-exports such as ``from .map_utils import *``
included) and, for methods, on the class. Source files are never changed.

For each call the recorder keeps the arguments bound by name (defaults
applied), the result or the exception, and for methods the instance
attributes read during the call (before any assignment) and the ones it set
or changed in place (values afterwards). Values are encoded as soon as they
are seen, so later mutation by the caller does not alter the record.

Can also be run as ``python -m trace_tools.record ...`` (the reference
environment has no torch, and this module needs none).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import hashlib
import importlib
import importlib.util
import inspect
import pkgutil
import platform
import shlex
import subprocess
import sys
import time
import tomllib
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import __version__
from .codec import Encoder, qualified_type_name
from .inspect_cmd import print_table
from .paths import REPO_ROOT, pdb_dir as default_pdb_dir
from .store import TraceError, TraceParts, encode_call, load_trace, save_trace, trace_path

RECORDER_VERSION = f"trace_tools {__version__} recorder 1"
DEFAULT_MAX_CALLS = 3
DEFAULT_MAX_ARRAY_ELEMENTS = 2_000_000
_MARK = "_trace_tools_recorded"
_HOOKED = "_trace_tools_attr_hooks"


class RecordError(Exception):
    """A problem with the recorder's input (reported as one line, exit status 2)."""


# ---------------------------------------------------------------- fingerprints for change detection
# code objects: compared by identity, never walked
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)

def _fingerprint(value: Any, seen: set[int] | None = None, depth: int = 0) -> Any:
    """A comparable summary of a value's content: equal before/after a call unless it changed."""
    seen = set() if seen is None else seen
    if depth > 32:
        return ("deep", id(value))
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ("objarray", value.shape, tuple(_fingerprint(v, seen, depth + 1) for v in value.ravel().tolist()))
        return ("array", value.dtype.str, value.shape, hashlib.sha256(np.ascontiguousarray(value).tobytes()).digest())
    if isinstance(value, float):
        return ("float", repr(value))
    if value is None or isinstance(value, (bool, int, str, bytes, complex, np.generic)):
        return (type(value).__name__, repr(value))
    if isinstance(value, _OPAQUE):
        return ("opaque", id(value))
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "__dict__"):
        if id(value) in seen:
            return ("cycle", id(value))
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                return ("dict", tuple((_fingerprint(k, seen, depth + 1), _fingerprint(v, seen, depth + 1)) for k, v in value.items()))
            if isinstance(value, (list, tuple)):
                return (type(value).__name__, tuple(_fingerprint(v, seen, depth + 1) for v in value))
            if type(value).__module__.split(".")[0] in ("gemmi",):
                return ("opaque", id(value))
            attrs = vars(value)
            return ("obj", id(value), tuple((k, _fingerprint(v, seen, depth + 1)) for k, v in attrs.items()))
        except TypeError:
            return ("opaque", id(value))
        finally:
            seen.discard(id(value))
    return ("opaque", id(value))


def _instance_dict(obj: Any) -> dict[str, Any]:
    """The instance attributes (empty for objects without a __dict__, e.g. with __slots__)."""
    try:
        return object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return {}


# ---------------------------------------------------------------- the recorder
@dataclass
class _Frame:
    """Attribute bookkeeping for one recorded method call on one instance."""

    encoder: Encoder
    reads: dict[str, Any] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)


@dataclass
class Target:
    """One function or method to record."""

    name: str  # as listed, e.g. eryx.models.OnePhonon._build_A
    kind: str  # "function", "method", "staticmethod", "classmethod"
    owner: Any  # the module or class that holds it
    attr: str
    original: Callable


class Recorder:
    def __init__(self, package: str, max_calls: int = DEFAULT_MAX_CALLS, max_array_elements: int = DEFAULT_MAX_ARRAY_ELEMENTS):
        self.package = package
        self.max_calls = int(max_calls)
        self.max_array_elements = int(max_array_elements)
        self.scenario: str | None = None
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.encoders: dict[str, Encoder] = {}
        self.targets: dict[str, Target] = {}
        self._active: dict[int, list[_Frame]] = {}  # id(instance) -> frames of calls recording its attributes
        self._quiet = 0  # > 0 while the recorder itself is working: hooks stay silent

    def encoder(self, name: str) -> Encoder:
        enc = self.encoders.get(name)
        if enc is None:
            enc = self.encoders[name] = Encoder(self.package, self.max_array_elements)
        return enc

    def _encode(self, enc: Encoder, value: Any) -> Any:
        self._quiet += 1
        try:
            return enc.encode(value)
        finally:
            self._quiet -= 1

    # -- attribute hooks
    def hook_class(self, cls: type) -> None:
        """Make reads and assignments of instance attributes visible to active frames."""
        if getattr(cls, _HOOKED, None) is self:
            return
        get_original = cls.__getattribute__
        set_original = cls.__setattr__
        recorder = self

        def __getattribute__(obj, name):
            value = get_original(obj, name)
            if recorder._active and not recorder._quiet and not name.startswith("__"):
                frames = recorder._active.get(id(obj))
                if frames:
                    recorder._saw_read(obj, name, value, frames)
            return value

        def __setattr__(obj, name, value):
            set_original(obj, name, value)
            if recorder._active and not recorder._quiet:
                for frame in recorder._active.get(id(obj), ()):
                    frame.assigned.add(name)

        cls.__getattribute__ = __getattribute__
        cls.__setattr__ = __setattr__
        setattr(cls, _HOOKED, self)

    def _saw_read(self, obj: Any, name: str, value: Any, frames: list[_Frame]) -> None:
        try:
            own = object.__getattribute__(obj, "__dict__")
        except AttributeError:
            return
        if name not in own or own[name] is not value:
            return  # a method, property or class attribute, not instance data
        for frame in frames:
            if name not in frame.reads and name not in frame.assigned:
                frame.reads[name] = self._encode(frame.encoder, value)

    # -- wrapping
    def wrap(self, target: Target) -> Callable:
        func = target.original
        sig = inspect.signature(func)
        params = list(sig.parameters)
        skip_first = target.kind in ("method", "classmethod")
        first = params[0] if skip_first and params else None
        recorder, name = self, target.name

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            scenario = recorder.scenario
            if scenario is None or recorder._quiet:
                return func(*args, **kwargs)
            counts = recorder.counts.setdefault(name, {})
            index = counts.get(scenario, 0)
            counts[scenario] = index + 1
            if index >= recorder.max_calls:
                return func(*args, **kwargs)
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError:
                return func(*args, **kwargs)  # let the function report the bad call itself
            passed = [p for p in bound.arguments if p != first]
            bound.apply_defaults()
            instance = bound.arguments.get(first) if target.kind == "method" else None
            enc = recorder.encoder(name)
            record: dict[str, Any] = {
                "scenario": scenario,
                "index": index,
                "args": {k: recorder._encode(enc, v) for k, v in bound.arguments.items() if k != first},
                "passed": passed,
            }
            frame = None
            if instance is not None:
                recorder._quiet += 1
                try:
                    # the instance itself counts as seen, so attributes that point back to it
                    # (parent links) do not make every attribute look changed
                    before = {k: _fingerprint(v, {id(instance)}) for k, v in _instance_dict(instance).items()}
                finally:
                    recorder._quiet -= 1
                frame = _Frame(enc)
                recorder._active.setdefault(id(instance), []).append(frame)
            finished = False
            try:
                result = func(*args, **kwargs)
                record["result"] = recorder._encode(enc, result)
                record["exception"] = None
                finished = True
                return result
            except Exception as exc:
                record["result"] = None
                record["exception"] = {"type": qualified_type_name(exc), "message": str(exc)}
                finished = True
                raise
            finally:
                written: dict[str, Any] = {}
                if frame is not None:
                    frames = recorder._active[id(instance)]
                    frames.remove(frame)
                    if not frames:
                        del recorder._active[id(instance)]
                    recorder._quiet += 1
                    try:
                        for k, v in _instance_dict(instance).items():
                            if k not in before or _fingerprint(v, {id(instance)}) != before[k]:
                                written[k] = enc.encode(v)
                    finally:
                        recorder._quiet -= 1
                if finished:
                    record["attrs_read"] = frame.reads if frame is not None else {}
                    record["attrs_written"] = written
                    recorder.calls.setdefault(name, []).append(record)

        setattr(wrapper, _MARK, name)
        return wrapper

    def install(self, target: Target, package_modules: list[Any]) -> None:
        wrapper = self.wrap(target)
        if target.kind in ("function",):
            for module in package_modules:
                for key, value in list(vars(module).items()):
                    if value is target.original:
                        setattr(module, key, wrapper)
        else:
            if target.kind == "staticmethod":
                setattr(target.owner, target.attr, staticmethod(wrapper))
            elif target.kind == "classmethod":
                setattr(target.owner, target.attr, classmethod(wrapper))
            else:
                setattr(target.owner, target.attr, wrapper)
                self.hook_class(target.owner)
        self.targets[target.name] = target

    # -- results
    def parts(self, name: str, provenance: dict[str, Any]) -> TraceParts:
        calls = sorted(self.calls.get(name, []), key=lambda c: (c["scenario"], c["index"]))
        enc = self.encoder(name)
        return TraceParts(
            function=name,
            provenance=provenance,
            encoder=enc,
            calls=calls,
            limits={"max_calls": self.max_calls, "max_array_elements": self.max_array_elements},
            call_counts=dict(self.counts.get(name, {})),
        )


# ---------------------------------------------------------------- loading the package, functions and scenarios
def import_package(source: Path, package: str) -> tuple[Any, list[Any], list[str]]:
    """Import ``package`` from ``source`` and all its submodules; returns (package, modules, import problems)."""
    sys.path.insert(0, str(source))
    importlib.invalidate_caches()
    try:
        pkg = importlib.import_module(package)
    except Exception as exc:
        raise RecordError(f"cannot import package {package!r} from {source}: {type(exc).__name__}: {exc}") from None
    # a folder without __init__.py is a namespace package: check its search path instead of __file__
    origins = [Path(p).resolve() for p in getattr(pkg, "__path__", [])] or [Path(pkg.__file__).resolve().parent]
    if not all(source.resolve() in origin.parents for origin in origins):
        raise RecordError(f"package {package!r} was imported from {origins[0]}, not from {source}")
    problems = []
    for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), prefix=package + "."):
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            problems.append(f"module {info.name} could not be imported ({type(exc).__name__}: {exc})")
    modules = [m for n, m in sorted(sys.modules.items()) if m is not None and (n == package or n.startswith(package + "."))]
    return pkg, modules, problems


def resolve_target(name: str) -> Target:
    """Find the function or method called ``name`` among the loaded modules."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if module is None:
            continue
        rest = parts[cut:]
        if len(rest) == 1:
            obj = vars(module).get(rest[0])
            if obj is None:
                break
            if getattr(obj, _MARK, None):
                raise RecordError(f"{name} is the same function as {getattr(obj, _MARK)} (listed twice)")
            if not inspect.isfunction(obj):
                raise RecordError(f"{name} is a {type(obj).__name__}, not a function")
            return Target(name, "function", module, rest[0], obj)
        if len(rest) == 2:
            cls = vars(module).get(rest[0])
            if not isinstance(cls, type):
                break
            raw = None
            for klass in cls.__mro__:
                if rest[1] in vars(klass):
                    raw = vars(klass)[rest[1]]
                    break
            if raw is None:
                break
            if isinstance(raw, staticmethod):
                return Target(name, "staticmethod", cls, rest[1], raw.__func__)
            if isinstance(raw, classmethod):
                return Target(name, "classmethod", cls, rest[1], raw.__func__)
            if getattr(raw, _MARK, None) and rest[1] in vars(cls):
                raise RecordError(f"{name} is listed twice")
            if not inspect.isfunction(raw):
                raise RecordError(f"{name} is a {type(raw).__name__}, not a method")
            return Target(name, "method", cls, rest[1], raw)
        break
    raise RecordError(f"{name} was not found in the imported package")


def read_functions(path: Path) -> tuple[str, list[str]]:
    """The package name and the listed function names of a functions.toml file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"functions file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"functions file {path} is not valid TOML: {exc}") from None
    package = data.get("meta", {}).get("package")
    if not isinstance(package, str) or not package.isidentifier():
        raise RecordError(f"functions file {path} needs [meta] package = \"<name>\"")
    names = []
    for k, entry in enumerate(data.get("function", [])):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name.startswith(package + "."):
            raise RecordError(f"functions file {path}: [[function]] #{k + 1} needs name = \"{package}.<module>...\"")
        if name not in names:
            names.append(name)
    if not names:
        raise RecordError(f"functions file {path} lists no [[function]]")
    return package, names


def read_scenarios(path: Path) -> dict[str, Callable]:
    if not path.is_file():
        raise RecordError(f"scenarios file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"_trace_tools_scenarios_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise RecordError(f"scenarios file {path} failed to load: {type(exc).__name__}: {exc}") from None
    scenarios = getattr(module, "SCENARIOS", None)
    if not isinstance(scenarios, dict) or not all(isinstance(k, str) and callable(v) for k, v in scenarios.items()):
        raise RecordError(f"scenarios file {path} must define SCENARIOS = {{name: function(pkg, pdb_dir)}}")
    return scenarios


# ---------------------------------------------------------------- provenance
def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        mod = sys.modules.get(module)
        return getattr(mod, "__version__", None)


def _source_commit(source: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _command_line(args: argparse.Namespace) -> str:
    words = ["trace-tools", "record", "--source", str(args.source), "--functions", str(args.functions)]
    words += ["--scenarios", str(args.scenarios), "--out", str(args.out)]
    words += ["--max-calls", str(args.max_calls), "--max-array-elements", str(args.max_array_elements)]
    if args.only:
        words += ["--only", *args.only]
    if args.pdb_dir:
        words += ["--pdb-dir", str(args.pdb_dir)]
    return shlex.join(words)


# ---------------------------------------------------------------- the command
def configure_record(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, type=Path, help="folder that holds the package to record (put first on sys.path)")
    parser.add_argument("--functions", type=Path, default=REPO_ROOT / "traces" / "functions.toml", help="functions.toml listing what to record")
    parser.add_argument("--scenarios", type=Path, default=REPO_ROOT / "traces" / "scenarios.py", help="Python file defining SCENARIOS")
    parser.add_argument("--out", "--traces", dest="out", type=Path, default=REPO_ROOT / "traces" / "data", help="folder for the trace files")
    parser.add_argument("--max-calls", type=int, default=DEFAULT_MAX_CALLS, help="calls stored per function and scenario (default %(default)s)")
    parser.add_argument(
        "--max-array-elements", type=int, default=DEFAULT_MAX_ARRAY_ELEMENTS,
        help="larger arrays are stored as a summary (default %(default)s)",
    )
    parser.add_argument("--only", nargs="+", metavar="SCENARIO", help="run only these scenarios (other scenarios' calls in existing traces are kept)")
    parser.add_argument("--pdb-dir", type=Path, default=None, help="folder of the PDB files handed to scenarios (default: trace_tools.paths.pdb_dir())")


def run_record(args: argparse.Namespace) -> int:
    try:
        return _record(args)
    except (RecordError, TraceError) as exc:
        print(f"trace-tools record: error: {exc}", file=sys.stderr)
        return 2


def _record(args: argparse.Namespace) -> int:
    if args.max_calls < 1:
        raise RecordError("--max-calls must be at least 1")
    if args.max_array_elements < 1:
        raise RecordError("--max-array-elements must be at least 1")
    source = Path(args.source).expanduser().resolve()
    if not source.is_dir():
        raise RecordError(f"source folder {source} does not exist")
    pdbs = Path(args.pdb_dir).expanduser().resolve() if args.pdb_dir else default_pdb_dir()
    if not pdbs.is_dir():
        raise RecordError(f"PDB folder {pdbs} does not exist (use --pdb-dir)")
    package, names = read_functions(Path(args.functions))
    scenarios = read_scenarios(Path(args.scenarios))
    if args.only:
        unknown = [s for s in args.only if s not in scenarios]
        if unknown:
            raise RecordError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(scenarios)}")
        scenarios = {k: v for k, v in scenarios.items() if k in args.only}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    pkg, modules, problems = import_package(source, package)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    recorder = Recorder(package, args.max_calls, args.max_array_elements)
    missing = []
    for name in names:
        try:
            recorder.install(resolve_target(name), modules)
        except RecordError as exc:
            missing.append(str(exc))

    failed = []
    for scenario, func in scenarios.items():
        print(f"scenario {scenario} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        recorder.scenario = scenario
        try:
            func(pkg, pdbs)
        except Exception as exc:
            failed.append(scenario)
            tb = traceback.extract_tb(exc.__traceback__)[-3:]
            where = "; ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in tb)
            print(f"scenario {scenario} FAILED: {type(exc).__name__}: {exc} [{where}]", file=sys.stderr, flush=True)
        finally:
            recorder.scenario = None
        print(f"scenario {scenario} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    base_provenance = {
        "source_commit": _source_commit(source),
        "source_path": str(source),
        "package": package,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "gemmi": _version("gemmi"),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recorder": RECORDER_VERSION,
        "command": _command_line(args),
    }
    rows, never_called = [], []
    ran = set(scenarios)
    for name in names:
        if name not in recorder.targets:
            continue
        path = trace_path(name, out)
        if args.only and path.is_file():
            _merge_old(recorder, name, path, ran)
        if not recorder.calls.get(name):
            never_called.append(name)
            if not args.only and path.is_file():
                path.unlink()  # stale: this function is no longer called by the scenarios
            continue
        provenance = dict(base_provenance)
        provenance["scenarios"] = sorted({c["scenario"] for c in recorder.calls[name]})
        parts = recorder.parts(name, provenance)
        save_trace(parts, path)
        rows.append(
            (name, len(parts.calls), sum(parts.call_counts.values()), len(provenance["scenarios"]),
             "yes" if parts.encoder.truncated else "", f"{path.stat().st_size / 1e6:.2f}")
        )
    print_table(["function", "stored", "total calls", "scenarios", "truncated", "MB"], rows)
    for name in never_called:
        print(f"never called: {name}")
    for problem in missing:
        print(f"not recorded: {problem}")
    for scenario in failed:
        print(f"scenario failed: {scenario}")
    return 1 if failed or missing else 0


def _merge_old(recorder: Recorder, name: str, path: Path, ran: set[str]) -> None:
    """Keep the calls of scenarios that were not re-run (``--only``) from the existing trace."""
    old = load_trace(path)
    enc = recorder.encoder(name)
    kept = [c for c in old.calls if c.scenario not in ran]
    recorder.calls.setdefault(name, []).extend(encode_call(c, enc) for c in kept)
    if old.truncated and kept:
        enc.truncated = True
    counts = recorder.counts.setdefault(name, {})
    for scenario, n in old.provenance.get("call_counts", {}).items():
        if scenario not in ran:
            counts[scenario] = n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trace_tools.record", description=__doc__.splitlines()[0])
    configure_record(parser)
    return run_record(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
