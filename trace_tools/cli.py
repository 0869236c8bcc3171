"""The trace-tools command. Each subcommand lives in its own module with configure(parser) and run(args)."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# name -> (module, one-line help)
SUBCOMMANDS = {
    "record": ("trace_tools.record", "record calls of the NumPy package into traces"),
    "list": ("trace_tools.inspect_cmd", "list the recorded traces"),
    "show": ("trace_tools.inspect_cmd", "show one trace"),
    "verify": ("trace_tools.inspect_cmd", "check that every trace loads and matches its checksums and data files"),
    "progress": ("trace_tools.progress", "write the progress dashboard (progress/)"),
    "import-logs": ("trace_tools.legacy_logs", "convert the earlier toolchain's @debug logs (pickled) into traces"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trace-tools", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trace-tools {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(module)
        attr = name.replace("-", "_")
        getattr(mod, f"configure_{attr}")(p)
        p.set_defaults(_run=getattr(mod, f"run_{attr}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
