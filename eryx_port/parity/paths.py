"""Recorded file arguments (a structure's name and checksum) back as paths in this machine's PDB folder."""

from __future__ import annotations

from typing import Any

from trace_tools.paths import resolve_file
from trace_tools.values import FileRef


def local_path(value: Any) -> Any:
    """The path of a recorded file (checked against its recorded checksum); any other value as it is."""
    return str(resolve_file(value)) if isinstance(value, FileRef) else value
