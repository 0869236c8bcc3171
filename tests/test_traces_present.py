# SPDX-License-Identifier: GPL-2.0-or-later
"""The function list (traces/functions.toml) and the committed traces (traces/data) agree.

Every listed NumPy function has a trace holding recorded calls from at least two
scenarios; every trace belongs to a listed function and is named after it; the
traces are complete (no array replaced by a summary, no failed call) and come
from the scenarios of traces/scenarios.py; the whole traces/ folder stays small.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import tomllib

import pytest

from trace_tools.paths import pdb_dir, traces_dir
from trace_tools.store import SUFFIX, load_trace, trace_files, verify_trace

TRACES = traces_dir()
DATA = TRACES / "data"
FUNCTIONS_FILE = TRACES / "functions.toml"
SCENARIOS_FILE = TRACES / "scenarios.py"

PHASES = (
    "core utilities", "adapters", "core functions", "OnePhonon model", "integration",
    "base, statistics and reference",
    "translations and liquid-like motions",
    "rotations and ensembles",
    "deformable molecules and Brillouin",
)
MAX_TRACES_BYTES = 40 * 1024 * 1024
MIN_SCENARIOS = 2
SCENARIO_NAME = re.compile(r"^[0-9a-z_]+-s[0-9]+$")
NAME = re.compile(r"^eryx\.[a-z_]+\.([A-Z][A-Za-z]*\.)?[A-Za-z_][A-Za-z0-9_]*$")

# What the assignment requires the list to hold at least (checked so that an
# accidental deletion from functions.toml is caught).
REQUIRED = {
    "eryx.map_utils": [
        "generate_grid", "compute_resolution", "get_resolution_mask", "get_symmetry_equivalents",
        "get_ravel_indices", "get_dq_map", "get_hkl_extents", "expand_sym_ops", "compute_multiplicity",
        "get_centered_sampling", "resize_map", "get_asu_mask", "parse_asu_condition",
    ],
    "eryx.scatter": ["compute_form_factors", "structure_factors_batch", "structure_factors"],
    "eryx.pdb": [
        "sym_str_as_matrix", "extract_sym_ops", "extract_transformations", "get_unit_cell_axes",
        "AtomicModel.__init__", "AtomicModel._get_xyz_asus", "AtomicModel.flatten_model",
        "Crystal.get_asu_xyz", "Crystal.get_unitcell_origin", "Crystal.hkl_to_id", "Crystal.id_to_hkl",
        "GaussianNetworkModel.__init__", "GaussianNetworkModel.build_gamma",
        "GaussianNetworkModel.build_neighbor_list", "GaussianNetworkModel.compute_hessian",
        "GaussianNetworkModel.compute_K", "GaussianNetworkModel.compute_Kinv",
        "AtomicModel.extract_frame", "Crystal.__init__", "Crystal.supercell_extent",
    ],
    "eryx.models": [
        "OnePhonon.__init__", "OnePhonon._setup", "OnePhonon._setup_phonons", "OnePhonon._build_A",
        "OnePhonon._build_M", "OnePhonon._build_M_allatoms", "OnePhonon._project_M",
        "OnePhonon._build_kvec_Brillouin", "OnePhonon._center_kvec", "OnePhonon._at_kvec_from_miller_points",
        "OnePhonon.compute_gnm_phonons", "OnePhonon.compute_hessian", "OnePhonon.compute_covariance_matrix",
        "OnePhonon.apply_disorder", "OnePhonon.compute_rb_phonons",
        # issue 10: every other model
        "RigidBodyTranslations.__init__", "RigidBodyTranslations.apply_disorder", "RigidBodyTranslations.optimize",
        "RigidBodyTranslations.plot_scan", "LiquidLikeMotions.__init__", "LiquidLikeMotions.fft_convolve",
        "LiquidLikeMotions.apply_disorder", "LiquidLikeMotions.optimize", "LiquidLikeMotions.plot_scan",
        "RigidBodyRotations.__init__", "RigidBodyRotations.generate_rotations_around_axis",
        "RigidBodyRotations.apply_disorder", "RigidBodyRotations.optimize", "Ensemble.__init__",
        "Ensemble.apply_disorder", "NonInteractingDeformableMolecules.__init__",
        "NonInteractingDeformableMolecules.compute_covariance_matrix",
        "NonInteractingDeformableMolecules.compute_scl_intensity",
        "NonInteractingDeformableMolecules.compute_intensity_naive",
        "NonInteractingDeformableMolecules.apply_disorder", "OnePhononBrillouin.__init__",
    ],
    "eryx.base": [
        "compute_molecular_transform", "compute_crystal_transform", "incoherent_sum_real",
        "incoherent_sum_reciprocal", "guinier_reconstruct", "natural_sort",
    ],
    "eryx.stats": ["compute_cc", "compute_cc_by_shell", "compute_cc_by_dq"],
    "eryx.reference": ["structure_factors", "diffuse_covmat"],
}


def _function_table() -> dict:
    with open(FUNCTIONS_FILE, "rb") as fh:
        return tomllib.load(fh)


def _listed() -> list[str]:
    return [entry["name"] for entry in _function_table().get("function", [])]


@functools.lru_cache(maxsize=1)
def _scenario_names() -> frozenset[str]:
    # The scenarios module is our own code and imports only numpy at module level.
    spec = importlib.util.spec_from_file_location("_eryx_port_trace_scenarios", SCENARIOS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.SCENARIOS)


def _listed_params():
    return [pytest.param(name, id=name) for name in _listed()]


def _trace_params():
    return [pytest.param(path, id=path.name) for path in trace_files(DATA)]


# ---------------------------------------------------------------- the list itself


def test_function_list_is_well_formed():
    table = _function_table()
    assert table["meta"]["package"] == "eryx"
    names = _listed()
    assert len(names) == len(set(names)), "a function is listed twice"
    for entry in table["function"]:
        assert NAME.match(entry["name"]), f"{entry['name']!r} is not eryx.<module>.[<Class>.]<function>"
        assert entry.get("phase") in PHASES, f"{entry['name']}: phase {entry.get('phase')!r} is not one of {PHASES}"
    for entry in table.get("seed_only", []):
        assert entry.get("phase") in PHASES, f"seed-only {entry['name']}: bad phase {entry.get('phase')!r}"
        assert entry.get("notes"), f"seed-only {entry['name']} needs a note saying where its concern lives"
        assert entry["name"] not in names, f"{entry['name']} is both listed and seed-only"


def test_function_list_holds_the_required_functions():
    names = set(_listed())
    missing = [f"{mod}.{fn}" for mod, fns in REQUIRED.items() for fn in fns if f"{mod}.{fn}" not in names]
    assert not missing, f"missing from functions.toml: {missing}"


def test_every_phase_has_functions():
    phases = {entry["phase"] for entry in _function_table()["function"]}
    assert phases == set(PHASES)


# ---------------------------------------------------------------- list <-> traces


@pytest.mark.parametrize("name", _listed_params())
def test_listed_function_has_trace_from_two_scenarios(name):
    path = DATA / f"{name}{SUFFIX}"
    assert path.is_file(), f"{name} is listed but has no trace {path.name} (re-record: see traces/README.md)"
    trace = load_trace(path)
    assert trace.function == name
    assert trace.calls, f"{path.name} holds no calls"
    scenarios = {call.scenario for call in trace.calls}
    assert len(scenarios) >= MIN_SCENARIOS, f"{name}: calls from {sorted(scenarios)} only"


def test_no_trace_for_unlisted_function():
    listed = set(_listed())
    stray = [p.name for p in trace_files(DATA) if p.name[: -len(SUFFIX)] not in listed]
    assert not stray, f"traces of functions not in functions.toml: {stray}"


def test_every_scenario_is_recorded():
    recorded = {call.scenario for path in trace_files(DATA) for call in load_trace(path).calls}
    unused = sorted(_scenario_names() - recorded)
    assert not unused, f"scenarios with no recorded call (re-record: see traces/README.md): {unused}"


def test_traces_folder_is_small():
    total = sum(p.stat().st_size for p in TRACES.rglob("*") if p.is_file())
    assert total < MAX_TRACES_BYTES, f"traces/ holds {total / 2**20:.1f} MiB (limit 40 MiB)"


@pytest.mark.parametrize("path", _trace_params())
def test_trace_is_complete_and_from_known_scenarios(path):
    trace = load_trace(path)
    assert path.name == f"{trace.function}{SUFFIX}", "file name and recorded function differ"
    assert trace.provenance.get("package", "eryx") == "eryx"
    assert not trace.truncated, f"{path.name}: some arrays are stored as summaries only (cannot be replayed)"
    known = _scenario_names()
    for call in trace.calls:
        assert SCENARIO_NAME.match(call.scenario), f"{call.case_id}: bad scenario name"
        assert call.scenario in known, f"{call.case_id}: scenario not in traces/scenarios.py"
        assert call.exception is None, f"{call.case_id} raised {call.exception}"
    ids = [call.case_id for call in trace.calls]
    assert len(ids) == len(set(ids)), "duplicate case ids"


@pytest.mark.parametrize("path", _trace_params())
def test_trace_verifies_against_data_files(path):
    folder = pdb_dir()
    if not folder.is_dir():
        pytest.skip(f"test structures folder {folder} is absent (set ERYX_PORT_PDB_DIR)")
    assert verify_trace(path, folder) == []
