"""Where the project's data lives: the PDB folder and the traces folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .values import FileRef

REPO_ROOT = Path(__file__).resolve().parent.parent
PDB_DIR_ENV = "ERYX_PORT_PDB_DIR"
# What a test run leaves for the dashboard (not committed).
RESULTS_DIR = REPO_ROOT / "build" / "trace-results"  # parity/gradcheck outcomes, *.jsonl
COVERAGE_FILE = REPO_ROOT / "build" / "coverage" / ".coverage"


def pdb_dir() -> Path:
    """The folder holding the test structures (``$ERYX_PORT_PDB_DIR``, default ``../shared/pdbs``)."""
    env = os.environ.get(PDB_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "pdbs").resolve()


def traces_dir() -> Path:
    return REPO_ROOT / "traces"


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DataFileError(LookupError):
    """A file named by a trace is missing from the data folder or differs from the recorded one."""


def resolve_file(ref: FileRef, folder: str | os.PathLike | None = None) -> Path:
    """Find the file a trace refers to and check that it is the recorded one."""
    base = Path(folder) if folder is not None else pdb_dir()
    path = base / ref.name
    if not path.is_file():
        raise DataFileError(
            f"data file {ref.name!r} named by the trace is not in {base} "
            f"(set {PDB_DIR_ENV} to the folder that holds it)"
        )
    actual = sha256_file(path)
    if actual != ref.sha256:
        raise DataFileError(
            f"data file {path} differs from the recorded one: sha256 {actual[:12]}... "
            f"instead of {ref.sha256[:12]}..."
        )
    return path
