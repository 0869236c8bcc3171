# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.pdb`` calls on :mod:`eryx_port.pdb` / :mod:`eryx_port.gnm`, and their gradchecks.

Constructors are replayed from the recorded file (``FileRef`` resolved in the
PDB folder). Methods are replayed on an instance rebuilt from the attributes
the recorded call read (``call.attrs_read``); nested eryx objects arrive as
``ObjectData`` and are rebuilt with :meth:`AtomicModel.from_arrays`. Methods
that mutate their instance are compared through ``call.attrs_written``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eryx_port import gnm as gnm_mod
from eryx_port import pdb
from trace_tools.compare import Tolerance
from trace_tools.registry import gradcheck, parity
from trace_tools.values import ElementData, ObjectData

from .paths import local_path as _path
from .outcome import recorded_outcome
from .tolerances import inverse_floor

# gemmi.Structure is stored as an empty record (not data); everything else eryx set is compared.
_NOT_DATA = {"structure"}




def _element_data(el) -> ElementData:
    it92 = el.it92
    return ElementData(
        symbol=el.name, it92_a=tuple(it92.a), it92_b=tuple(it92.b), it92_c=float(it92.c), weight=float(el.weight)
    )


def _mirror(actual: Any, expected: Any) -> tuple[Any, Any]:
    """Put a port value in the recorded value's form (objects by the recorded attributes, gemmi elements as records).

    Returns ``(actual, expected)``; only the gemmi Structure is dropped (from both sides).
    """
    if isinstance(expected, ObjectData):
        names = [n for n in expected.attrs if n not in _NOT_DATA]
        pairs = {n: _mirror(getattr(actual, n, f"<{n} missing in port>"), expected.attrs[n]) for n in names}
        return (
            ObjectData(expected.cls, {n: p[0] for n, p in pairs.items()}, expected.omitted),
            ObjectData(expected.cls, {n: p[1] for n, p in pairs.items()}, expected.omitted),
        )
    if isinstance(expected, ElementData) and not isinstance(actual, ElementData) and hasattr(actual, "it92"):
        return _element_data(actual), expected
    if isinstance(expected, list) and isinstance(actual, list) and len(actual) == len(expected):
        pairs = [_mirror(a, e) for a, e in zip(actual, expected)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if isinstance(expected, dict) and isinstance(actual, dict) and set(actual) == set(expected):
        pairs = {k: _mirror(actual[k], expected[k]) for k in expected}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    return actual, expected


def _written(obj: Any, call) -> tuple[dict, dict]:
    """The port object's attributes named in ``call.attrs_written`` next to the recorded ones."""
    expected = {k: v for k, v in call.attrs_written.items() if k not in _NOT_DATA}
    actual = {k: getattr(obj, k, f"<{k} missing in port>") for k in expected}
    return _mirror(actual, expected)


def _constructed(call, build) -> tuple[Any, Any]:
    """Replay a constructor: the attributes it set against eryx's; where eryx raised, the port must raise."""

    def run():
        return _written(build(), call)

    return run() if call.exception is None else recorded_outcome(call, run)


def _attr(obj: Any, name: str) -> Any:
    return obj.attrs[name] if isinstance(obj, ObjectData) else getattr(obj, name)


def _model_from_record(record: ObjectData) -> pdb.AtomicModel:
    """An AtomicModel holding the recorded cell, operators and coordinates (enough for placement and GNM)."""
    a = record.attrs
    return pdb.AtomicModel.from_arrays(
        cell=a["cell"],
        sym_ops=a["sym_ops"],
        transformations=a["transformations"],
        unit_cell_axes=a.get("unit_cell_axes"),
        xyz=a.get("xyz"),
    )


def _crystal_from_record(record: ObjectData) -> pdb.Crystal:
    crystal = pdb.Crystal(_model_from_record(record.attrs["model"]))
    a = record.attrs
    if "nx" in a:
        crystal.supercell_extent(nx=a["nx"], ny=a["ny"], nz=a["nz"])
    else:
        crystal.supercell_extent(*(_half_width(a[r]) for r in ("xrange", "yrange", "zrange")))
    return crystal


def _half_width(values) -> int:
    values = np.asarray(values)
    n = (len(values) - 1) // 2
    if not np.array_equal(values, np.arange(-n, n + 1)):
        raise ValueError(f"recorded supercell range {values} is not symmetric about 0")
    return n


def _crystal_from_ranges(read: dict) -> pdb.Crystal:
    crystal = pdb.Crystal.__new__(pdb.Crystal)
    crystal.model = None
    crystal.supercell_extent(*(_half_width(read[r]) for r in ("xrange", "yrange", "zrange")))
    return crystal


def _bare_gnm(read: dict) -> gnm_mod.GaussianNetworkModel:
    """A GNM instance holding only the recorded attributes the replayed method needs."""
    g = gnm_mod.GaussianNetworkModel.__new__(gnm_mod.GaussianNetworkModel)
    g.dtype, g.device = torch.float64, torch.device("cpu")
    for name in ("n_asu", "n_cell", "id_cell_ref", "n_atoms_per_asu", "enm_cutoff", "gamma_intra", "gamma_inter"):
        if name in read:
            setattr(g, name, read[name])
    if "crystal" in read:
        g.crystal = _crystal_from_record(read["crystal"])
        if "n_atoms_per_asu" not in read and g.crystal.model.xyz is not None:
            g.n_atoms_per_asu = int(g.crystal.model.xyz.shape[-2])
    if "gamma" in read:
        g.gamma = torch.tensor(np.array(read["gamma"]), dtype=torch.float64)
    if "asu_neighbors" in read:
        g.contacts = gnm_mod.contacts_from_neighbor_lists(read["asu_neighbors"], read["id_cell_ref"])
    g._asu_neighbors = None
    return g


# ---------------------------------------------------------------- module functions

@parity("eryx.pdb.sym_str_as_matrix", port="eryx_port.pdb.sym_str_as_matrix")
def _(call):
    return recorded_outcome(call, lambda: pdb.sym_str_as_matrix(call.args["sym_str"]))


@parity("eryx.pdb.extract_sym_ops", port="eryx_port.pdb.extract_sym_ops")
def _(call):
    return recorded_outcome(call, lambda: pdb.extract_sym_ops(_path(call.args["pdb_file"])))


@parity("eryx.pdb.extract_transformations", port="eryx_port.pdb.extract_transformations")
def _(call):
    return recorded_outcome(call, lambda: pdb.extract_transformations(_path(call.args["pdb_file"])))


@parity("eryx.pdb.get_unit_cell_axes", port="eryx_port.pdb.get_unit_cell_axes")
def _(call):
    return recorded_outcome(call, lambda: pdb.get_unit_cell_axes(call.args["cell"]))


@gradcheck("eryx.pdb.get_unit_cell_axes", inputs=("cell",))
def _(call, name):
    cell = torch.tensor(np.array(call.args["cell"], dtype=float), dtype=torch.float64).requires_grad_(True)
    return pdb.get_unit_cell_axes, (cell,)


# ---------------------------------------------------------------- AtomicModel

@parity("eryx.pdb.AtomicModel.__init__", port="eryx_port.pdb.AtomicModel.__init__")
def _(call):
    a = call.args
    return _constructed(call, lambda: pdb.AtomicModel(
        _path(a["pdb_file"]), expand_p1=a.get("expand_p1", False), frame=a.get("frame", 0),
        clean_pdb=a.get("clean_pdb", True),
    ))


@parity("eryx.pdb.AtomicModel._get_xyz_asus", port="eryx_port.pdb.AtomicModel._get_xyz_asus")
def _(call):
    r = call.attrs_read
    model = pdb.AtomicModel.from_arrays(
        cell=r["cell"], sym_ops=r["sym_ops"], transformations=r["transformations"], unit_cell_axes=r["unit_cell_axes"]
    )
    return recorded_outcome(call, lambda: model._get_xyz_asus(call.args["xyz"]))


@gradcheck("eryx.pdb.AtomicModel._get_xyz_asus", inputs=("xyz",))
def _(call, name):
    r = call.attrs_read
    model = pdb.AtomicModel.from_arrays(
        cell=r["cell"], sym_ops=r["sym_ops"], transformations=r["transformations"], unit_cell_axes=r["unit_cell_axes"]
    )
    xyz = torch.tensor(np.array(call.args["xyz"])[:6], dtype=torch.float64).requires_grad_(True)
    return model._get_xyz_asus, (xyz,)


@parity("eryx.pdb.AtomicModel.flatten_model", port="eryx_port.pdb.AtomicModel.flatten_model")
def _(call):
    model = pdb.AtomicModel.__new__(pdb.AtomicModel)
    for name, value in call.attrs_read.items():
        setattr(model, name, torch.tensor(np.array(value), dtype=torch.float64) if isinstance(value, np.ndarray) else value)
    model.flatten_model()
    return _written(model, call)


# ---------------------------------------------------------------- Crystal

def _crystal_with_model(call) -> pdb.Crystal:
    crystal = pdb.Crystal(_model_from_record(call.attrs_read["model"]))
    return crystal


@parity("eryx.pdb.Crystal.get_unitcell_origin", port="eryx_port.pdb.Crystal.get_unitcell_origin")
def _(call):
    crystal = _crystal_with_model(call)
    return recorded_outcome(call, lambda: crystal.get_unitcell_origin(call.args.get("unit_cell")))


@parity("eryx.pdb.Crystal.hkl_to_id", port="eryx_port.pdb.Crystal.hkl_to_id")
def _(call):
    crystal = _crystal_from_ranges(call.attrs_read)
    return recorded_outcome(call, lambda: crystal.hkl_to_id(call.args.get("unit_cell")))


@parity("eryx.pdb.Crystal.id_to_hkl", port="eryx_port.pdb.Crystal.id_to_hkl")
def _(call):
    crystal = _crystal_from_ranges(call.attrs_read)
    return recorded_outcome(call, lambda: crystal.id_to_hkl(call.args.get("cell_id", 0)))


@parity("eryx.pdb.Crystal.get_asu_xyz", port="eryx_port.pdb.Crystal.get_asu_xyz")
def _(call):
    crystal = _crystal_with_model(call)
    a = call.args
    return recorded_outcome(call, lambda: crystal.get_asu_xyz(a.get("asu_id", 0), a.get("unit_cell")))


# ---------------------------------------------------------------- GaussianNetworkModel

@parity("eryx.pdb.GaussianNetworkModel.__init__", port="eryx_port.gnm.GaussianNetworkModel.__init__")
def _(call):
    a = call.args
    return _constructed(
        call, lambda: gnm_mod.GaussianNetworkModel(_path(a["pdb_path"]), a["enm_cutoff"], a["gamma_intra"], a["gamma_inter"])
    )


@parity("eryx.pdb.GaussianNetworkModel.build_gamma", port="eryx_port.gnm.GaussianNetworkModel.build_gamma")
def _(call):
    g = _bare_gnm(call.attrs_read)
    g.build_gamma()
    return _written(g, call)


@gradcheck("eryx.pdb.GaussianNetworkModel.build_gamma", inputs=("gamma_intra", "gamma_inter"))
def _(call, name):
    g = _bare_gnm(call.attrs_read)
    value = torch.tensor(float(call.attrs_read[name]), dtype=torch.float64, requires_grad=True)

    def fn(x):
        setattr(g, name, x)
        return g.build_gamma()

    return fn, (value,)


@parity(
    "eryx.pdb.GaussianNetworkModel.build_neighbor_list",
    port="eryx_port.gnm.GaussianNetworkModel.build_neighbor_list",
    notes="The port finds contacts with one k-d tree over the 27-cell supercell; nested lists are derived from them.",
)
def _(call):
    g = _bare_gnm(call.attrs_read)
    g.build_neighbor_list()
    return _written(g, call)


@parity("eryx.pdb.GaussianNetworkModel.compute_hessian", port="eryx_port.gnm.GaussianNetworkModel.compute_hessian")
def _(call):
    g = _bare_gnm(call.attrs_read)
    return recorded_outcome(call, g.compute_hessian)


@parity("eryx.pdb.GaussianNetworkModel.compute_K", port="eryx_port.gnm.GaussianNetworkModel.compute_K")
def _(call):
    g = _bare_gnm(call.attrs_read)
    a = call.args
    return recorded_outcome(call, lambda: g.compute_K(a["hessian"], kvec=a.get("kvec")))


@parity("eryx.pdb.GaussianNetworkModel.compute_Kinv", port="eryx_port.gnm.GaussianNetworkModel.compute_Kinv")
def _(call):
    """K's (pseudo-)inverse, to within K's rounding amplified by its condition number (:func:`inverse_floor`)."""
    g = _bare_gnm(call.attrs_read)
    a = call.args
    actual, expected = recorded_outcome(
        call, lambda: g.compute_Kinv(a["hessian"], kvec=a.get("kvec"), reshape=a.get("reshape", True))
    )
    if call.exception is not None:
        return actual, expected
    K = g.compute_K(a["hessian"], kvec=a.get("kvec")).detach().cpu().numpy()
    n = int(round(np.sqrt(K.size)))
    reason = "inverse of K: 16 eps cond(K) (cond on K's range for the pseudo-inverse at k = 0)"
    return actual, Tolerance(expected, floor=inverse_floor(K.reshape(n, n)), reason=reason)


# gradchecks of K and its inverse w.r.t. the spring constants: the recorded call's
# crystal, shrunk to a few atoms per ASU and rebuilt as a GNM with a fixed cutoff,
# at the recorded k (or a generic one where the call used k = 0, where K is singular).
_GRAD_ATOMS, _GRAD_CUTOFF, _GRAD_OUT = 4, 5.0, 6  # K stays well conditioned (smallest/largest singular value > 5e-3)
_GENERIC_K = (0.11, -0.07, 0.05)


_AT_ZERO = "@k=0"  # input-name suffix: the gradient at k = 0 (K singular: its pseudo-inverse)


def _grad_gnm(call, at_zero: bool = False) -> tuple[gnm_mod.GaussianNetworkModel, torch.Tensor]:
    model = _model_from_record(call.attrs_read["crystal"].attrs["model"])
    model.xyz = model.xyz[:, :_GRAD_ATOMS]
    g = gnm_mod.GaussianNetworkModel.from_model(model, _GRAD_CUTOFF, 1.0, 0.5)
    kvec = call.args.get("kvec")
    if at_zero:
        return g, torch.zeros(3, dtype=torch.float64)
    k = torch.tensor(_GENERIC_K if kvec is None or not np.any(kvec) else np.array(kvec), dtype=torch.float64)
    return g, k


def _k_gradcheck(call, name, inverse: bool):
    at_zero = name.endswith(_AT_ZERO)
    name = name.removesuffix(_AT_ZERO)
    g, k = _grad_gnm(call, at_zero)
    value = torch.tensor(1.3 if name == "gamma_intra" else 0.6, dtype=torch.float64, requires_grad=True)

    def fn(x):
        setattr(g, name, x)
        g.build_gamma()
        out = g.compute_Kinv(None, kvec=k) if inverse else g.compute_K(None, kvec=k)
        n = g.n_asu * g.n_atoms_per_asu
        return out.reshape(n, n)[:_GRAD_OUT, 0]  # one column, across ASU blocks: few outputs keep gradcheck cheap

    return fn, (value,)


@gradcheck("eryx.pdb.GaussianNetworkModel.compute_K", inputs=("gamma_intra", "gamma_inter"))
def _(call, name):
    return _k_gradcheck(call, name, inverse=False)


@gradcheck(
    "eryx.pdb.GaussianNetworkModel.compute_Kinv",
    inputs=("gamma_intra", "gamma_inter", "gamma_intra" + _AT_ZERO, "gamma_inter" + _AT_ZERO),
)
def _(call, name):
    return _k_gradcheck(call, name, inverse=True)


# ---------------------------------------------------------------- extract_frame, Crystal construction (issue 10)

def _frame_file(call) -> str:
    """The structure file a recorded ``extract_frame`` call read (gemmi's Structure is not stored).

    Found through the scenario's recorded ``AtomicModel`` constructor calls: the one file when the
    scenario reads only one (scenarios that call ``extract_frame`` directly do, see
    traces/scenarios_base.py); otherwise the constructor call with the same number, whose own
    ``extract_frame`` call it is (eryx's constructor calls it once), checked by its arguments.
    """
    from trace_tools.store import load_function

    trace = load_function("eryx.pdb.AtomicModel.__init__")
    inits = sorted((c for c in (trace.calls if trace else []) if c.scenario == call.scenario), key=lambda c: c.index)
    files = {c.args["pdb_file"] for c in inits}
    if len(files) == 1:
        return _path(next(iter(files)))
    if call.index < len(inits):
        init = inits[call.index]
        if (bool(init.args.get("expand_p1", False)), int(init.args.get("frame", 0))) == (
            bool(call.args.get("expand_p1", False)), int(call.args.get("frame", 0))
        ):
            return _path(init.args["pdb_file"])
    if not inits:
        found = _model_constructor_file(call)
        if found is not None:
            return found
    raise LookupError(f"{call.case_id}: cannot tell which structure file this extract_frame call read")


def _model_constructor_file(call) -> str | None:
    """Where a scenario records no AtomicModel constructor (its structure is a multi-model file written
    only while eryx reads it, see traces/scenarios_rotations.py): the file of the scenario's one model
    constructor (``eryx.models.<Model>.__init__``) whose ``expand_p1`` and ``frame`` match, written again."""
    from trace_tools.store import default_folder, load_function

    from .models.ensemble import ensemble_file

    wanted = (bool(call.args.get("expand_p1", False)), int(call.args.get("frame", 0)))
    found = set()
    for path in sorted(default_folder().glob("eryx.models.*.__init__.trace.npz")):
        trace = load_function(path.name.removesuffix(".trace.npz"))
        for c in trace.calls if trace else []:
            if c.scenario != call.scenario or "pdb_path" not in c.args:
                continue
            if (bool(c.args.get("expand_p1", False)), int(c.args.get("frame", 0))) == wanted:
                found.add(c.args["pdb_path"])
    return ensemble_file(next(iter(found))) if len(found) == 1 else None


@parity(
    "eryx.pdb.AtomicModel.extract_frame", port="eryx_port.pdb.AtomicModel.extract_frame",
    notes="Replayed on the structure file of the scenario's AtomicModel constructor calls, with the recorded cell and operators.",
)
def _(call):
    model = pdb.AtomicModel(_frame_file(call))
    r = call.attrs_read
    for name in ("cell", "unit_cell_axes"):
        if name in r:
            setattr(model, name, torch.as_tensor(np.array(r[name], dtype=np.float64)))
    for name in ("sym_ops", "transformations"):
        if name in r:
            setattr(model, name, {int(k): torch.as_tensor(np.array(v, dtype=np.float64)) for k, v in r[name].items()})
    a = call.args
    if call.exception is not None:
        return recorded_outcome(call, lambda: model.extract_frame(expand_p1=a.get("expand_p1", False), frame=a.get("frame", 0)))
    model.extract_frame(expand_p1=a.get("expand_p1", False), frame=a.get("frame", 0))
    return _written(model, call)


@parity("eryx.pdb.Crystal.__init__", port="eryx_port.pdb.Crystal.__init__")
def _(call):
    """The supercell attributes against eryx's; ``model`` must be the very object passed in."""
    model = _model_from_record(call.args["atomic_model"])
    crystal = pdb.Crystal(model)
    expected = {k: v for k, v in call.attrs_written.items() if k != "model"}
    actual = {k: getattr(crystal, k, f"<{k} missing in port>") for k in expected}
    if "model" in call.attrs_written:
        expected["model"] = "the atomic_model passed in"
        actual["model"] = expected["model"] if crystal.model is model else "another object"
    return actual, expected


@parity("eryx.pdb.Crystal.supercell_extent", port="eryx_port.pdb.Crystal.supercell_extent")
def _(call):
    crystal = pdb.Crystal.__new__(pdb.Crystal)
    crystal.model = None
    a = call.args
    if call.exception is not None:
        return recorded_outcome(call, lambda: crystal.supercell_extent(a.get("nx", 0), a.get("ny", 0), a.get("nz", 0)))
    crystal.supercell_extent(a.get("nx", 0), a.get("ny", 0), a.get("nz", 0))
    return _written(crystal, call)
