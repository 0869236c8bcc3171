"""The test structures, found through trace_tools.paths.pdb_dir(); a test that needs one skips when it is absent."""

import pytest

from trace_tools.paths import pdb_dir


def structure(name: str) -> str:
    """Path of ``<name>.pdb`` (or ``name`` when it has a suffix), skipping the test with the reason when absent."""
    path = pdb_dir() / (name if "." in name else f"{name}.pdb")
    if not path.is_file():
        pytest.skip(f"test structure {path} is absent (set ERYX_PORT_PDB_DIR to the folder holding it)")
    return str(path)
