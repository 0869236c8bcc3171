"""``@debug`` (``from trace_tools import debug``): record calls of a hand-instrumented function or method into traces.

    from trace_tools import debug

    @debug
    def my_function(x, scale=1.0): ...

    class Model:
        @debug
        def step(self, k): ...

With the environment variable ``TRACE_TOOLS_DEBUG_DIR`` naming a folder, the
first ``TRACE_TOOLS_DEBUG_CALLS`` calls (default 2) of each decorated function
in a process are written to ``<folder>/<module>.<qualname>.trace.npz`` in the
project's trace format, by the same recorder as ``trace-tools record``
(:class:`trace_tools.record.Recorder`): arguments bound by name with defaults
applied, result or exception, and for methods the instance attributes read
and written. The case ids are ``<scenario>-call<n>`` with the scenario
``TRACE_TOOLS_DEBUG_SCENARIO`` (default ``debug``); calls of other scenarios
already in the file are kept. Without ``TRACE_TOOLS_DEBUG_DIR`` the decorator
returns the function itself: no wrapper, no cost.

The decorated function's results and exceptions are never changed: a value the
recorder cannot encode is stored as its type name (``object`` with no
attributes) with a warning, and a failure of the recorder itself, or of writing
the file, is a warning. The variables are read when the decorator is applied
(usually at import).
"""

from __future__ import annotations

import atexit
import datetime as _dt
import functools
import inspect
import os
import platform
import shlex
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .codec import TAG, qualified_type_name
from .record import Recorder, Target, _HOOKED, _merge_old, _source_commit, _version
from .store import TraceError, save_trace, trace_path

ENV_DIR = "TRACE_TOOLS_DEBUG_DIR"
ENV_CALLS = "TRACE_TOOLS_DEBUG_CALLS"
ENV_SCENARIO = "TRACE_TOOLS_DEBUG_SCENARIO"
DEFAULT_CALLS = 2
DEFAULT_SCENARIO = "debug"
DEBUG_RECORDER = f"trace_tools {__version__} debug 1"


class DebugRecordWarning(RuntimeWarning):
    """Something could not be recorded; the decorated function ran as usual."""


def _warn(message: str) -> None:
    # a warnings filter set to "error" must not turn a recording problem into an exception of the caller
    try:
        warnings.warn(f"trace_tools.debug: {message}", DebugRecordWarning, stacklevel=3)
    except Exception:  # noqa: BLE001
        pass


def _type_name(value: Any) -> str:
    try:
        return qualified_type_name(value)
    except Exception:  # noqa: BLE001
        return "unknown"


class _State:
    """What happened to one call of the decorated function (set by the innermost wrapper)."""

    __slots__ = ("entered", "done", "result", "error")

    def __init__(self) -> None:
        self.entered = self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


_local = threading.local()


def _stack() -> list[_State]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


class DebugRecorder(Recorder):
    """The recorder of ``trace-tools record``, writing each function's trace as soon as it has a new call."""

    def __init__(self, package: str, folder: Path, max_calls: int, scenario: str):
        super().__init__(package, max_calls)
        self.folder = folder
        self.scenario = scenario  # always set: every call may be recorded
        self._merged: set[str] = set()
        self._saved_counts: dict[str, dict[str, int]] = {}
        self._source: tuple[str | None, str | None] | None = None
        self._lock = threading.RLock()
        atexit.register(self.flush)

    def _encode(self, enc, value):  # never raises: an unencodable value becomes its type name
        self._quiet += 1
        try:
            return enc.encode(value)
        except Exception as exc:  # noqa: BLE001
            _warn(f"a value of type {_type_name(value)} cannot be recorded ({type(exc).__name__}: {exc}); stored by its type name")
            return {TAG: "object", "cls": _type_name(value), "attrs": {}, "omitted": []}
        finally:
            self._quiet -= 1

    def hook(self, cls: type) -> None:
        if getattr(cls, _HOOKED, None) is self:
            return
        try:
            self.hook_class(cls)
        except Exception as exc:  # noqa: BLE001  (e.g. a built-in or extension type)
            _warn(f"attribute reads of {cls.__qualname__} cannot be watched ({exc}); attrs_read stays empty")

    def provenance(self, name: str) -> dict[str, Any]:
        if self._source is None:
            path = None
            try:
                module = sys.modules.get(self.package)
                origin = getattr(module, "__file__", None)
                if origin:
                    path = Path(origin).resolve().parent  # the package's folder, or the module's
            except Exception:  # noqa: BLE001
                path = None
            self._source = (str(path) if path else None, _source_commit(path) if path else None)
        try:
            command = shlex.join([str(a) for a in sys.argv]) if sys.argv else None
        except Exception:  # noqa: BLE001
            command = None
        return {
            "source_commit": self._source[1],
            "source_path": self._source[0],
            "package": self.package,
            "scenarios": sorted({c["scenario"] for c in self.calls.get(name, [])}),
            "python": platform.python_version(),
            "numpy": _version("numpy"),
            "scipy": _version("scipy"),
            "gemmi": _version("gemmi"),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "recorder": DEBUG_RECORDER,
            "command": command,
        }

    def save(self, name: str) -> None:
        with self._lock:
            self._quiet += 1
            try:
                path = trace_path(name, self.folder)
                if name not in self._merged:
                    self._merged.add(name)
                    if path.is_file():
                        try:
                            _merge_old(self, name, path, {self.scenario})
                        except TraceError as exc:
                            _warn(f"{exc}; the file is replaced")
                save_trace(self.parts(name, self.provenance(name)), path)
                self._saved_counts[name] = dict(self.counts.get(name, {}))
            except Exception as exc:  # noqa: BLE001
                _warn(f"the trace of {name} could not be written to {self.folder} ({type(exc).__name__}: {exc})")
            finally:
                self._quiet -= 1

    def flush(self) -> None:
        """Rewrite the traces whose call counts grew since they were written (at exit)."""
        for name in list(self._saved_counts):
            if self.counts.get(name, {}) != self._saved_counts.get(name):
                self.save(name)


_RECORDERS: dict[tuple[str, str, int, str], DebugRecorder] = {}


def _settings() -> tuple[Path, int, str] | None:
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    raw = os.environ.get(ENV_CALLS, "").strip()
    calls = DEFAULT_CALLS
    if raw:
        try:
            calls = int(raw)
        except ValueError:
            _warn(f"{ENV_CALLS}={raw!r} is not an integer; recording {DEFAULT_CALLS} calls")
    scenario = os.environ.get(ENV_SCENARIO, "").strip() or DEFAULT_SCENARIO
    return Path(folder).expanduser().resolve(), calls, scenario


def _recorder(package: str, folder: Path, calls: int, scenario: str) -> DebugRecorder:
    key = (package, str(folder), calls, scenario)
    rec = _RECORDERS.get(key)
    if rec is None:
        rec = _RECORDERS[key] = DebugRecorder(package, folder, calls, scenario)
    return rec


def _kind(func: Callable) -> str:
    parts = func.__qualname__.split(".")
    in_class = len(parts) >= 2 and parts[-2] != "<locals>"
    if in_class:
        try:
            params = list(inspect.signature(func).parameters)
        except (TypeError, ValueError):
            params = []
        if params[:1] == ["self"]:
            return "method"
        if params[:1] == ["cls"]:
            return "classmethod"
    return "function"


def debug(func: Callable | None = None) -> Any:
    """Record the first calls of ``func`` when ``TRACE_TOOLS_DEBUG_DIR`` is set; otherwise return it unchanged."""
    if func is None:  # @debug() works too
        return debug
    settings = _settings()
    if settings is None:
        return func
    if isinstance(func, (staticmethod, classmethod)):
        wrapped = _wrap(func.__func__, settings, "classmethod" if isinstance(func, classmethod) else "function")
        return type(func)(wrapped)
    if not inspect.isfunction(func):
        _warn(f"{func!r} is not a Python function; it is not recorded")
        return func
    return _wrap(func, settings, _kind(func))


def _wrap(func: Callable, settings: tuple[Path, int, str], kind: str) -> Callable:
    folder, calls, scenario = settings
    if calls <= 0:
        return func
    try:
        name = f"{func.__module__}.{func.__qualname__}"
        trace_path(name, folder)
        inspect.signature(func)
    except (TraceError, TypeError, ValueError) as exc:
        _warn(f"{getattr(func, '__qualname__', func)!r} cannot be recorded ({exc})")
        return func
    recorder = _recorder(func.__module__.split(".")[0], folder, calls, scenario)

    @functools.wraps(func)
    def inner(*args, **kwargs):
        stack = _stack()
        state = stack[-1] if stack and not stack[-1].entered else None
        if state is None:
            return func(*args, **kwargs)
        state.entered = True
        try:
            state.result = func(*args, **kwargs)
            return state.result
        except BaseException as exc:
            state.error = exc
            raise
        finally:
            state.done = True

    recorded = recorder.wrap(Target(name, kind, None, func.__name__, inner))

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        stack = _stack()
        state = _State()
        stack.append(state)
        before = len(recorder.calls.get(name, ()))
        try:
            if kind == "method" and args:
                recorder.hook(type(args[0]))
            return recorded(*args, **kwargs)
        except BaseException as exc:
            if state.done:
                if state.error is exc:
                    raise  # the function's own exception, untouched
                _warn(f"recording a call of {name} failed ({type(exc).__name__}: {exc})")
                if state.error is not None:
                    raise state.error from None
                return state.result
            if not state.entered:
                _warn(f"recording a call of {name} failed before the call ({type(exc).__name__}: {exc})")
                if stack and stack[-1] is state:
                    stack.pop()
                return func(*args, **kwargs)
            raise
        finally:
            if stack and stack[-1] is state:
                stack.pop()
            if len(recorder.calls.get(name, ())) > before:
                recorder.save(name)

    wrapper.__trace_tools_debug__ = name
    return wrapper


__all__ = ["debug", "DebugRecordWarning", "ENV_DIR", "ENV_CALLS", "ENV_SCENARIO"]
