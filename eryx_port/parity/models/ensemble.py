# SPDX-License-Identifier: GPL-2.0-or-later
"""Replay of recorded ``eryx.models.Ensemble`` calls on :class:`eryx_port.models.Ensemble`, and gradchecks.

The multi-model files of the scenarios are never stored: a trace holds the path the scenario used,
``.../<stem>_ens<n>_<12 hex digits of the sha256>.pdb`` (as text: the file existed only while eryx
read it, see traces/scenarios_rotations.py), and :func:`ensemble_file` writes it again from the
shared ``<stem>.pdb`` with :func:`eryx_port.multimodel.write_perturbed_models` (integer arithmetic:
the same bytes everywhere) and checks the hash.

Tolerance of the maps. ``I = sum_c w_c |A_c|^2 - |sum_c w_c A_c|^2`` cancels where the copies agree
(at low q, and exactly at q = 0 for weights summing to one): both eryx and the port round each point
at eps of its incoherent sum ``sum_c |w_c| |A_c|^2``, which exceeds the map's largest value by up
to 1e3 on the recorded grids. Each point is therefore checked on that scale (:func:`map_tolerance`,
the default 256 eps floor), computed by the port from its own structure factors.
"""

from __future__ import annotations

import atexit
import copy
import functools
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from eryx_port.models.ensemble import Ensemble
from eryx_port.multimodel import write_perturbed_models
from trace_tools.compare import Tolerance
from trace_tools.paths import DataFileError, pdb_dir, resolve_file, sha256_file
from trace_tools.registry import gradcheck, parity
from trace_tools.store import load_function
from trace_tools.values import FileRef

_INIT = "eryx.models.Ensemble.__init__"
# the displacement amplitude (Angstrom) the scenarios use (traces/scenarios_rotations.py)
ENSEMBLE_AMPLITUDE = 0.3
_ENSEMBLE_NAME = re.compile(r"^(?P<stem>.+)_ens(?P<n>\d+)_(?P<sha>[0-9a-f]{12})\.pdb$")


@functools.lru_cache(maxsize=None)
def _ensemble_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="eryx_port_ensembles_"))
    atexit.register(shutil.rmtree, folder, True)  # the files are cheap to write again
    return folder


def ensemble_file(ref) -> str:
    """A recorded ``pdb_path``: a shared structure (a file reference) as it is, a scenario's ensemble
    file (a path named ``<stem>_ens<n>_<sha12>.pdb``) written again and checked."""
    if isinstance(ref, FileRef):
        return str(resolve_file(ref))
    name = Path(str(ref)).name
    match = _ENSEMBLE_NAME.match(name)
    if match is None:
        raise LookupError(f"recorded pdb_path {ref!r} is neither a test structure nor a scenario's ensemble file")
    source = pdb_dir() / f"{match['stem']}.pdb"
    if not source.is_file():
        raise DataFileError(f"{name} is made from {source.name}, which is not in {source.parent} (set ERYX_PORT_PDB_DIR)")
    path = _ensemble_folder() / name
    if not path.is_file():
        write_perturbed_models(source, path, int(match["n"]), ENSEMBLE_AMPLITUDE)
    digest = sha256_file(path)
    if not digest.startswith(match["sha"]):
        raise DataFileError(f"{name} written again from {source} differs from the recorded file "
                            f"(sha256 {digest[:12]}... instead of {match['sha']}...)")
    return str(path)


def init_calls(name: str) -> dict:
    trace = load_function(name)
    if trace is None:
        raise LookupError(f"no trace of {name}: record it first (trace-tools record)")
    return {c.scenario: c for c in trace.calls}


def init_args(name: str, scenario: str) -> dict:
    calls = init_calls(name)
    if scenario not in calls:
        raise LookupError(f"scenario {scenario!r} has no recorded {name} call")
    args = dict(calls[scenario].args)
    args["pdb_path"] = ensemble_file(args["pdb_path"])
    return args


@functools.lru_cache(maxsize=None)
def _built(scenario: str) -> Ensemble:
    return Ensemble(**init_args(_INIT, scenario))


def _port(call) -> Ensemble:
    return copy.copy(_built(call.scenario))


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def compare_written(port, call, skip=("model",)):
    """(actual, expected) dicts over the attributes the recorded call set (the AtomicModel is its own adapter's)."""
    written = {k: v for k, v in call.attrs_written.items() if k not in skip}
    return {k: _np(getattr(port, k)) for k in written}, written


def map_tolerance(expected, incoherent) -> Tolerance:
    """Each point of a map on the scale of its incoherent sum (see the module docstring)."""
    return Tolerance(np.asarray(expected), floor=256 * np.finfo(np.float64).eps,
                     scale=np.nan_to_num(_np(incoherent).reshape(np.shape(expected)), nan=1.0),
                     reason="I = <|A|^2> - |<A>|^2 cancels: each point rounds at eps of its incoherent sum <|A|^2>")


@parity(_INIT, port="eryx_port.models.Ensemble.__init__")
def _(call):
    return compare_written(_port(call), call)


@parity("eryx.models.Ensemble._setup", port="eryx_port.models.Ensemble._setup")
def _(call):
    port = _port(call)
    a = call.args
    port._setup(ensemble_file(a["pdb_path"]), a["expand_p1"], a["res_limit"], a["frame"])
    return compare_written(port, call)


@parity("eryx.models.Ensemble.apply_disorder", port="eryx_port.models.Ensemble.apply_disorder")
def _(call):
    port = _port(call)
    a = call.args
    with tempfile.TemporaryDirectory() as folder:
        I = port.apply_disorder(a["weights"], folder if a["ensemble_dir"] is not None else None)
    w = port._weights(a["weights"]).abs()
    incoherent = port._maps(w, incoherent_only=True).reshape(w.shape[0], -1)
    return _np(I), map_tolerance(call.result, incoherent)


# ---------------------------------------------------------------- gradcheck


@gradcheck("eryx.models.Ensemble.apply_disorder", inputs=("weights",))
def _(call, name):
    """The map as a function of the weights, on the scenario's ensemble with a 3 x 3 x 2 grid.

    Divided by its largest value and reduced to 3 fixed random projections (one backward pass each).
    """
    args = init_args(_INIT, call.scenario)
    args.update(hsampling=(-1, 1, 1), ksampling=(-1, 1, 1), lsampling=(0, 1, 1), res_limit=0.0)
    port = Ensemble(**args)
    n = port.model.n_conf
    w0 = torch.linspace(0.2, 0.8, n, dtype=torch.float64)
    ref = port.apply_disorder(w0)[0].detach()
    keep = ~ref.isnan()
    scale = ref[keep].abs().max()
    proj = torch.rand(3, int(keep.sum()), generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def fn(w):
        return proj @ (port.apply_disorder(w)[0][keep] / scale)

    return fn, (w0.clone().requires_grad_(True),)
