"""Test configuration: the parity harness plugin and shared fixtures."""

from pathlib import Path

import pytest

pytest_plugins = ["trace_tools.pytest_plugin", "trace_tools.coverage_plugin"]


@pytest.fixture(scope="session")
def pdb_folder() -> Path:
    """The test structures folder; tests that need it skip with the reason when it is absent."""
    from trace_tools.paths import pdb_dir

    folder = pdb_dir()
    if not folder.is_dir():
        pytest.skip(f"test structures folder {folder} is absent (set ERYX_PORT_PDB_DIR)")
    return folder


@pytest.fixture
def pdb_file(pdb_folder):
    """``pdb_file("5zck.pdb")`` -> path, skipping with the reason when that structure is absent."""

    def find(name: str) -> Path:
        path = pdb_folder / name
        if not path.is_file():
            pytest.skip(f"test structure {name} is absent from {pdb_folder}")
        return path

    return find
