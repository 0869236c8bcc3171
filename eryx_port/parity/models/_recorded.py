"""The recorded constructor calls that the model adapters rebuild their port objects from."""

from __future__ import annotations

import functools

from trace_tools.store import load_function

from ..paths import local_path


@functools.lru_cache(maxsize=None)
def _calls(init_name: str) -> dict:
    trace = load_function(init_name)
    if trace is None:
        raise LookupError(f"no trace of {init_name}: record it first (trace-tools record)")
    return {c.scenario: c for c in trace.calls}


def structure_paths(args: dict) -> dict:
    """``args`` with a recorded structure file (``pdb_path``) resolved to its path in the PDB folder."""
    args = dict(args)
    if "pdb_path" in args:
        args["pdb_path"] = local_path(args["pdb_path"])
    return args


def init_args(init_name: str, scenario: str) -> dict:
    """The recorded constructor arguments of ``scenario`` (the structure file resolved to a path)."""
    calls = _calls(init_name)
    if scenario not in calls:
        raise LookupError(f"scenario {scenario!r} has no recorded {init_name} call")
    return structure_paths(calls[scenario].args)


def attribute_replay(make_port, compare, method: str):
    """Replay of a recorded call of ``method`` (no arguments) that only sets attributes: the port made for
    the call by ``make_port(call)`` runs it, then ``compare(port, call)`` checks what it wrote."""

    def replay(call):
        port = make_port(call)
        getattr(port, method)()
        return compare(port, call)

    return replay
