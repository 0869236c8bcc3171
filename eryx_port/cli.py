"""The eryx-port command: one-phonon diffuse scattering maps from the command line.

  eryx-port simulate [PDB] [options]     a map for one structure (default: a bundled demo peptide),
                                         written as .npy, .npz, CCP4 and PNG sections
  eryx-port run -c CONFIG -t OnePhonon   eryx's own run configuration (YAML), writing what eryx's
                                         task writes: ROOT_DIR/models/onephonon.npy

Bad input gets one line on stderr and exit status 2; nothing is left half-written. That includes structures
that read but cannot give a map (eryx_port.validation: non-finite numbers, impossible cells, no atoms left,
a network that does not hold the crystal together); what is merely suspicious is one "warning:" line each.
An internal failure (e.g. in linear algebra) is one line, exit status 1; --debug shows its traceback.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import __version__
from .tasks.simulate import OTHER_MODELS
from .config import (
    PORTED_TASKS,
    ConfigError,
    check_positive,
    check_sampling,
    check_task,
    load_config,
)

PROG = "eryx-port"
DEMO_NAME = "demo_peptide.pdb"
DEFAULT_SAMPLING = (-4, 4, 3)
DEFAULT_OUT = "eryx-port-out"
STEM = "onephonon"
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


class UsageError(ValueError):
    """Bad input: reported as one line on stderr with exit status 2."""


class ComputeError(RuntimeError):
    """A computation that failed for a known reason: one line on stderr, exit status 1."""


# --------------------------------------------------------------------------- argument parsing


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a parse error is raised (and reported as one line) instead of printing the usage."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise _ArgumentError(f"{message} (see '{self.prog} --help')")


def _number(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return int(value) if value.is_integer() and re.fullmatch(r"[+-]?\d+", text.strip()) else value


def _sampling_option(parser: argparse.ArgumentParser, axis: str) -> None:
    parser.add_argument(
        f"--{axis}sampling",
        nargs=3,
        type=_number,
        metavar=("MIN", "MAX", "N"),
        default=None,
        help=f"{axis} range in Miller indices (whole numbers) and oversampling N (points per unit of {axis}, "
        f"a positive integer); default {' '.join(map(str, DEFAULT_SAMPLING))}",
    )


def _compute_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", metavar="DEVICE", help="torch device: cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--dtype", default="float64", choices=("float64", "float32"), help="floating precision (default float64)"
    )
    parser.add_argument(
        "--max-memory", default=None, metavar="SIZE", type=_size,
        help="working memory besides the map itself, e.g. 2G or 512M (default: a quarter of the available memory, "
        "at most 4G); large maps are computed slab by slab straight into their .npy file",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no progress bars (shown on a terminal only) and no summary"
    )
    parser.add_argument(  # SUPPRESS: an absent flag here leaves the top-level --debug alone
        "--debug", dest="debug", action="store_true", default=argparse.SUPPRESS,
        help="show the Python traceback of an internal error (for bug reports)",
    )


def _default_max_memory(device) -> int:
    from .diffuse import default_max_memory

    return default_max_memory(device)


def _size(text: str) -> int:
    """Bytes from '2G', '512M', '64k' or a plain number of bytes (argparse type)."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    body = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = body[-1:] if body[-1:] in units else ""
    try:
        value = float(body[: len(body) - len(unit)])
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive size such as 2G or 512M, got {text!r}")
    return int(value * units[unit])


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=min(100, shutil.get_terminal_size((80, 20)).columns - 2))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Diffuse X-ray scattering from protein crystals in the one-phonon approximation "
        "(Gaussian network model of the crystal), with a PyTorch port of eryx.",
        epilog="Examples:\n"
        f"  {PROG} simulate --out {DEFAULT_OUT}\n"
        f"  {PROG} simulate my.pdb --hsampling -6 6 2 --gamma-inter 0.5 --out my-map\n"
        f"  {PROG} run -c config.yaml -t OnePhonon\n"
        f"Run '{PROG} COMMAND --help' for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--debug", "--traceback", dest="debug", action="store_true",
        help="show the Python traceback of an internal error (for bug reports); also accepted after the command",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    sim = sub.add_parser(
        "simulate",
        help="compute the one-phonon diffuse map of a structure (default: a bundled demo peptide)",
        description=_wrap("Compute the one-phonon diffuse intensity of a crystal structure on a grid of Miller indices "
        "and write it to --out as NAME.npy (the map, shape map_shape = points along h, k, l), NAME.npz "
        "(hkl grid, map shape, parameters, versions), NAME.ccp4 (the map on the reciprocal lattice, "
        "1/Angstrom, NaN written as 0) and PNG images of the central h, k and l sections. "
        "NaN in the map marks the Bragg peaks (whole Miller indices, where the intensity diverges) and "
        "points beyond --res-limit."),
        epilog="Example:\n"
        f"  {PROG} simulate --out {DEFAULT_OUT}\n"
        f"  {PROG} simulate 5zck.pdb --hsampling -2 2 3 --ksampling -6 6 3 --lsampling -10 10 3 "
        "--gamma-intra 2 --use-data-adp --out 5zck-map",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument(
        "pdb",
        nargs="?",
        metavar="PDB",
        help="coordinates of the asymmetric unit (PDB or mmCIF) with a unit cell (CRYST1) and, for PDB files, "
        "the REMARK 290 symmetry operators; default: the bundled demo peptide (42 atoms, P 21 21 21)",
    )
    for axis in "hkl":
        _sampling_option(sim, axis)
    sim.add_argument("--gamma-intra", type=_number, default=1.0, metavar="G", help="spring constant within a molecule (default 1)")
    sim.add_argument(
        "--gamma-inter", type=_number, default=1.0, metavar="G", help="spring constant between molecules (default 1)"
    )
    sim.add_argument("--cutoff", type=_number, default=4.0, metavar="C", help="GNM contact distance cutoff in Angstrom (default 4)")
    sim.add_argument(
        "--res-limit", type=_number, default=0.0, metavar="R", help="high-resolution limit in Angstrom; 0 keeps every point (default)"
    )
    sim.add_argument(
        "--use-data-adp",
        action="store_true",
        help="use the B-factors of the file for the Debye-Waller factor (default: the GNM's own, scaled to them)",
    )
    other = sim.add_argument_group(
        "other disorder models (--model): the map of one of eryx's other models instead of the one-phonon map"
    )
    other.add_argument(
        "--model", default="onephonon", choices=("onephonon", *OTHER_MODELS),
        help="disorder model: onephonon (default), translations (RigidBodyTranslations), liquid (LiquidLikeMotions), "
        "rotations (RigidBodyRotations), ensemble (Ensemble: the models of a multi-model PDB), deformable "
        "(NonInteractingDeformableMolecules, GNM with --cutoff)",
    )
    other.add_argument("--sigma", type=_number, nargs="+", metavar="S", default=None,
                       help="translations, liquid: displacement sigma in Angstrom (one value, or three per axis); "
                       "rotations: rotation sigma in degrees (default 0.5)")
    other.add_argument("--gamma", type=_number, default=10.0, metavar="G",
                       help="liquid: correlation length in Angstrom (default 10)")
    other.add_argument("--asu-confined", action="store_true",
                       help="liquid: motions confined to the asymmetric unit (molecular transform)")
    other.add_argument("--num-rot", type=int, default=100, metavar="N", help="rotations: rotations drawn per ASU (default 100)")
    other.add_argument("--seed", type=int, default=0, metavar="N", help="rotations: seed of the random rotations (default 0)")
    other.add_argument("--weights", type=_number, nargs="+", metavar="W", default=None,
                       help="ensemble: one relative weight per model of the file, made to sum to 1 (default: equal weights)")
    sim.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder, created if needed (default ./{DEFAULT_OUT})")
    _compute_options(sim)
    sim.set_defaults(_run=run_simulate)

    run = sub.add_parser(
        "run",
        help="run a task of an eryx YAML configuration (as eryx's scripts/main.py -c CONFIG -t TASK)",
        description=_wrap("Run a task from an eryx configuration file, in eryx's format unchanged (a 'setup' section: "
        "pdb_path, hsampling, ksampling, lsampling, batch_size, n_processes, root_dir, ...; one section per "
        "model). For OnePhonon, as eryx's task does: each sampling range is made symmetric about 0 and "
        "its bounds rounded to whole numbers, gnm_cutoff, gamma_intra, gamma_inter and expand_p1 come from "
        "the OnePhonon section, the B-factors of the file set the Debye-Waller factor (use_data_adp), "
        "setup.res_limit is not used, and the map (shape map_shape) is written to ROOT_DIR/models/"
        "onephonon.npy; ROOT_DIR/{models,base,figs} are created. RigidBodyTranslations and LiquidLikeMotions scan "
        "their section's sigmas (and gammas) against the measured map setup.exp_map (a .npy on the config's grid) "
        "with eryx's correlation and write the best map to ROOT_DIR/models/, the transform to ROOT_DIR/base/ and "
        "the scan's plot to ROOT_DIR/figs/, under eryx's file names. Relative paths are taken from the current "
        f"directory. Tasks available: {', '.join(PORTED_TASKS)}."),
        epilog=f"Example:\n  {PROG} run -c config.yaml -t OnePhonon",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("-c", "--config", required=True, metavar="CONFIG", help="path to the YAML configuration file")
    run.add_argument("-t", "--task", required=True, metavar="TASK", help=f"disorder model to run ({', '.join(PORTED_TASKS)})")
    _compute_options(run)
    run.set_defaults(_run=run_task)
    return parser


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        _fail(str(exc))
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    try:
        return int(args._run(args) or 0)
    except (UsageError, ConfigError) as exc:
        _fail(str(exc))
        return 2
    except ComputeError as exc:
        if getattr(args, "debug", False):
            raise
        _fail(str(exc))
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as exc:  # an unexpected failure: one line, unless asked for the traceback
        if getattr(args, "debug", False):
            raise
        _fail(f"internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with '{PROG} --debug ...' for the traceback)")
        return 1


def _fail(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------- shared checks


@dataclass
class Structure:
    """What the command needs to know about a structure before building the model."""

    path: Path
    n_asu: int
    n_atoms: int  # per asymmetric unit
    cell: tuple[float, ...]
    reciprocal_cell: tuple[float, ...]
    space_group: str
    remark290: bool  # symmetry operators from the file's REMARK 290 SMTRY records


def check_structure(path: Path, *, expand_p1: bool = True) -> Structure:
    """Read the structure the way the model will, turning every problem with the file into a UsageError
    (see :mod:`eryx_port.validation`) and printing each StructureWarning as one line on stderr."""
    import warnings

    from .pdb import AtomicModel
    from .validation import StructureWarning

    if not path.exists():
        raise UsageError(f"structure file {str(path)!r} does not exist")
    if not path.is_file():
        raise UsageError(f"structure file {str(path)!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"structure file {str(path)!r} cannot be read (permission denied)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StructureWarning)
            model = AtomicModel(str(path), expand_p1=expand_p1)
    except (ValueError, OSError, RuntimeError, TypeError, KeyError, IndexError) as exc:
        raise UsageError(_one_line(exc)) from exc
    for w in caught:
        if issubclass(w.category, StructureWarning):
            _warn(str(w.message))
        else:  # not ours: let Python show it as it would have
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    cell = model.structure.cell
    if not cell.is_crystal():
        raise UsageError(f"{path}: no unit cell (CRYST1) found")
    return Structure(
        path=path,
        n_asu=int(model.n_asu),
        n_atoms=int(model.xyz.shape[-2]),
        cell=tuple(cell.parameters),
        reciprocal_cell=tuple(cell.reciprocal().parameters),
        space_group=str(model.space_group),
        remark290=_has_smtry(path),
    )


def _has_smtry(path: Path) -> bool:
    with open(path, errors="replace") as fh:
        return any(line.startswith("REMARK 290") and "SMTRY" in line for line in fh)


def warn_symmetry(structure: Structure) -> None:
    """Without REMARK 290 (e.g. mmCIF input) eryx falls back to gemmi's space-group operators, whose
    fractional translations it applies as Angstroms, misplacing the other ASUs: say so rather than stay silent."""
    if not structure.remark290 and structure.n_asu > 1:
        print(
            f"{PROG}: warning: {structure.path.name} has no REMARK 290 SMTRY records; the symmetry copies come from "
            "the space group's fractional operators (as eryx does), which misplaces them: prefer a PDB file with "
            "REMARK 290",
            file=sys.stderr,
        )


def check_device(name: str):
    import torch

    from .tensors import resolve_device

    if not _DEVICE_RE.match(name):
        raise UsageError(f"unknown device {name!r}: use cpu, cuda or cuda:N")
    try:
        device = resolve_device(name)
    except RuntimeError as exc:
        raise UsageError(_one_line(exc)) from exc
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError(f"device {name!r} was asked for, but MPS is not available on this machine")
    return device


def map_shape_of(samplings: Sequence[Sequence[float]]) -> tuple[int, int, int]:
    """Points along h, k, l, as eryx's generate_grid counts them."""
    return tuple(int(n * (hi - lo) + 1) for lo, hi, n in samplings)  # type: ignore[return-value]


# Bytes per q-point that writing simulate's files takes besides the map: the hkl grid of the .npz (and its
# construction) and the float32 copy of the CCP4 map.
_SIMULATE_FILE_BYTES = 3 * 8 * 2 + 8

# Peak resident memory of the interpreter with torch, gemmi and the model set up, measured on 6o2h
# and the demo peptide (260-420 MB; 330 MiB for 6o2h on 1.4e4 q-points, benchmarks/bench_memory.py).
_BASE_BYTES = 400 << 20


def estimate_memory(samplings, structure: Structure, *, itemsize: int, max_memory: int, per_point_files: int = 0) -> int:
    """Peak bytes of one OnePhonon map: the interpreter and model, the map itself, the working memory of
    :func:`eryx_port.diffuse.plan_memory` (at most ``max_memory``; the engine's column axis depends on the
    cell, so the largest of the three is taken), per k-vector phonon matrices, and ``per_point_files``
    bytes per q-point for writing the files. Checked against measured peaks by ``benchmarks/bench_memory.py``."""
    from .diffuse import plan_memory

    shape = map_shape_of(samplings)
    n_q = math.prod(shape)
    n_k = math.prod(int(s[2]) for s in samplings)
    n_dof = 6 * structure.n_asu
    working = max(
        plan_memory(shape, f, structure.n_asu, structure.n_atoms, True, max_memory, itemsize).working_bytes for f in range(3)
    )
    per_k = 8 * n_dof * n_dof * 16
    return int(_BASE_BYTES + n_q * (itemsize + per_point_files) + working + n_k * per_k)


def available_memory() -> int | None:
    """Bytes the machine can still give (MemAvailable), or None where that is unknown."""
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(samplings, structure: Structure, *, itemsize: int, device, max_memory: int, lower: str, per_point_files: int = 0) -> int:
    """The estimated peak; refuses (with what to lower) when even the smallest working memory cannot fit."""
    from .outputs import human_size

    need = estimate_memory(samplings, structure, itemsize=itemsize, max_memory=max_memory, per_point_files=per_point_files)
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        have, where = int(free), f"free on {device}"
    else:
        have, where = available_memory(), "available"
    if have is not None and need > have:
        shape = " x ".join(map(str, map_shape_of(samplings)))
        raise UsageError(
            f"the {shape} grid needs about {human_size(need)} but only {human_size(have)} is {where}; "
            f"lower {lower}"
        )
    return need


# --------------------------------------------------------------------------- progress and timing


@dataclass
class Stages:
    """Times each stage and shows a progress bar over the stages on stderr (when it is a terminal)."""

    names: list[str]
    quiet: bool
    times: dict[str, float] = field(default_factory=dict)
    _bar: Any = None

    def __post_init__(self):
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=len(self.names),
            file=sys.stderr,
            disable=not self.show,
            unit="stage",
            bar_format="{desc:<28}{bar:20} {n_fmt}/{total_fmt} stages [{elapsed}]",
            leave=False,
        )
        self._bar.set_description_str(self.names[0])

    @property
    def show(self) -> bool:
        """Bars only on a terminal (a log file or a pipe gets the summary alone) and not with --quiet."""
        return not self.quiet and sys.stderr.isatty()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._bar.set_description_str(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - start
        self._bar.update(1)

    def close(self):
        self._bar.close()


def _accepts(func: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _progress_kwargs(func: Callable, show: bool) -> dict[str, Any]:
    """The model's own progress switch, whatever it is called, when it has one."""
    for name in ("progress", "show_progress", "verbose"):
        if _accepts(func, name):
            return {name: show}
    return {}


def compute_map(model_kwargs: dict[str, Any], *, use_data_adp: bool, device, dtype, stages: Stages, out_path: Path,
                max_memory: int | None = None):
    """Build OnePhonon and compute its map straight into the .npy file ``out_path`` (a memmap, written slab
    by slab, so the map need not fit in memory twice); returns (model, the map as a read-write memmap of
    shape map_shape)."""
    import warnings

    import numpy as np
    import torch

    from . import models
    from .validation import FloppyNetworkWarning, StructureWarning

    cls = models.OnePhonon
    kwargs = dict(model_kwargs, device=device, dtype=dtype)
    show = stages.show
    linalg_errors = (torch.linalg.LinAlgError, np.linalg.LinAlgError)
    with stages.stage("phonons (model setup)"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", StructureWarning)  # said once already, by check_structure
                # the API keeps eryx's partly NaN map; the command refuses it
                warnings.simplefilter("error", FloppyNetworkWarning)
                model = cls(**kwargs, **_progress_kwargs(cls, show))
        except (ValueError, FloppyNetworkWarning) as exc:  # the model's checks of its input (eryx_port.validation)
            raise UsageError(_one_line(exc)) from exc
        except linalg_errors as exc:
            raise _linalg_failure(exc, dtype, "phonons (model setup)") from exc
    with stages.stage("diffuse intensity"):
        intensity = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.dtype(dtype), shape=tuple(model.map_shape))
        try:
            model.apply_disorder(use_data_adp=use_data_adp, out=intensity, max_memory=max_memory)
        except linalg_errors as exc:
            raise _linalg_failure(exc, dtype, "diffuse intensity") from exc
        intensity.flush()
    return model, intensity


_LIKELY_CAUSE = {
    "phonons (model setup)": "the dynamical matrices K(k) of the Gaussian network are numerically singular or "
    "ill-conditioned (springs of very different stiffness, or a nearly floppy lattice: try another --cutoff, "
    "--gamma-intra or --gamma-inter)",
    "diffuse intensity": "K(k) is not positive definite at some k-vector (a mode of nearly zero frequency that "
    "escaped eryx's threshold: try a larger --cutoff or --gamma-inter)",
}


def _linalg_failure(exc: Exception, dtype: str, stage: str) -> ComputeError:
    """One line: the stage, what failed, its likely cause, and how to see the traceback."""
    hint = " (float32 may be too coarse for these phonon matrices: try --dtype float64)" if dtype == "float32" else ""
    cause = _LIKELY_CAUSE.get(stage, "a numerically singular matrix")
    return ComputeError(
        f"the phonon computation failed in stage '{stage}': {_one_line(exc)}; likely cause: {cause}{hint}; "
        f"rerun with --debug for the traceback"
    )


def _to_numpy(x):
    import numpy as np

    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- output folders


@contextmanager
def staged_folder(destination: Path) -> Iterator[Path]:
    """A temporary folder beside ``destination`` to write into; on success its files move into
    ``destination``, on any failure it disappears (and so do parent folders this made)."""
    from .outputs import replace_into

    if destination.exists() and not destination.is_dir():
        raise UsageError(f"output {str(destination)!r} exists and is not a folder")
    parent = destination.parent
    created = []
    for folder in reversed([parent, *parent.parents]):
        if not folder.exists():
            try:
                folder.mkdir()
            except OSError as exc:
                _remove_created(created)
                raise UsageError(f"cannot create output folder {str(folder)!r}: {exc.strerror or exc}") from exc
            created.append(folder)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's private 0700 would carry over to the renamed folder
    except OSError as exc:
        _remove_created(created)
        raise UsageError(f"cannot write in {str(parent)!r}: {exc.strerror or exc}") from exc
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_created(created)
        raise
    replace_into(staging, destination)


def _remove_created(created: list[Path]) -> None:
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            break


def check_writable(folder: Path, what: str) -> None:
    """Fail early (before any computing) when ``folder`` could not be created or written."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{what} {str(folder)!r} cannot be created: {str(probe)!r} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(folder)!r} cannot be written (permission denied on {str(probe)!r})")


# --------------------------------------------------------------------------- simulate


def demo_structure() -> Path:
    return Path(str(resources.files("eryx_port") / "data" / DEMO_NAME))


def _sim_samplings(args) -> list[tuple[float, float, int]]:
    samplings = []
    for axis in "hkl":
        value = getattr(args, f"{axis}sampling") or DEFAULT_SAMPLING
        lo, hi, n = _checked(check_sampling, f"--{axis}sampling", list(value))
        if lo != int(lo) or hi != int(hi):
            raise UsageError(
                f"--{axis}sampling bounds must be whole Miller indices (the phonon grid is tied to the Bragg peaks), "
                f"got {lo:g} {hi:g}"
            )
        samplings.append((lo, hi, n))
    return samplings


def _checked(check: Callable, name: str, value: Any, **kwargs):
    try:
        return check(name, value, **kwargs)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _simulate_inputs(args):
    """What every ``simulate`` checks first: (samplings, output folder, device, structure path, Structure)."""
    samplings = _sim_samplings(args)
    if not math.isfinite(args.res_limit) or args.res_limit < 0:
        raise UsageError(f"--res-limit must be >= 0 Angstrom, got {args.res_limit:g}")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder")
    check_writable(out, "--out folder")
    device = check_device(args.device)
    path = Path(args.pdb).expanduser() if args.pdb else demo_structure()
    structure = check_structure(path)
    warn_symmetry(structure)
    return samplings, out, device, path, structure


def run_simulate(args) -> int:
    if args.model != "onephonon":
        return run_simulate_other(args)
    gamma_intra = _checked(check_positive, "--gamma-intra", args.gamma_intra)
    gamma_inter = _checked(check_positive, "--gamma-inter", args.gamma_inter)
    cutoff = _checked(check_positive, "--cutoff", args.cutoff)
    samplings, out, device, path, structure = _simulate_inputs(args)
    itemsize = 8 if args.dtype == "float64" else 4
    batch_size = 10000
    max_memory = args.max_memory or _default_max_memory(device)
    need = check_memory(
        samplings, structure, itemsize=itemsize, device=device, max_memory=max_memory, per_point_files=_SIMULATE_FILE_BYTES,
        lower="the ranges or oversampling of --hsampling/--ksampling/--lsampling (MIN MAX N), or use --dtype float32",
    )

    model_kwargs = dict(
        pdb_path=str(path),
        hsampling=samplings[0],
        ksampling=samplings[1],
        lsampling=samplings[2],
        expand_p1=True,
        res_limit=float(args.res_limit),
        gnm_cutoff=cutoff,
        gamma_intra=gamma_intra,
        gamma_inter=gamma_inter,
        batch_size=batch_size,
    )
    stages = Stages(["phonons (model setup)", "diffuse intensity", "writing files"], args.quiet)
    try:
        with staged_folder(out) as staging:
            model, intensity = compute_map(
                model_kwargs, use_data_adp=args.use_data_adp, device=device, dtype=args.dtype, stages=stages,
                out_path=staging / f"{STEM}.npy", max_memory=max_memory,
            )
            with stages.stage("writing files"):
                written = _write_simulation(staging, intensity, model, samplings, structure, model_kwargs, args)
    finally:
        stages.close()
    final = [out.resolve() / p.name for p in written]
    if not args.quiet:
        print(_summary(structure, intensity, samplings, stages.times, final, need, device, args.dtype))
    return 0


def run_simulate_other(args) -> int:
    """``simulate --model NAME`` for eryx's other models: the map in memory, then the same files."""
    import numpy as np

    from . import outputs
    from .map_utils import generate_grid
    from .tasks import simulate

    if args.num_rot <= 0:
        raise UsageError(f"--num-rot must be a positive integer, got {args.num_rot}")
    samplings, out, device, path, structure = _simulate_inputs(args)
    model_kwargs = dict(pdb_path=str(path), hsampling=samplings[0], ksampling=samplings[1], lsampling=samplings[2],
                        res_limit=float(args.res_limit))
    stem = args.model
    stages = Stages(["model setup and map", "writing files"], args.quiet)
    try:
        with staged_folder(out) as staging:
            with stages.stage("model setup and map"):
                model, intensity = simulate.compute(args.model, args, model_kwargs, device=device, dtype=args.dtype)
            with stages.stage("writing files"):
                map_samplings = simulate.map_samplings(model, samplings)
                hkl, _ = generate_grid(np.eye(3), *map_samplings, return_hkl=True)
                npy = staging / f"{stem}.npy"
                np.save(npy, intensity)
                parameters = {k: v for k, v in vars(args).items() if k in (
                    "model", "sigma", "gamma", "asu_confined", "num_rot", "seed", "weights", "cutoff", "res_limit",
                    "device", "dtype")}
                parameters.update(pdb_path=str(structure.path), space_group=structure.space_group, cell=list(structure.cell),
                                  eryx_class=simulate.RUNS[args.model].class_name)
                npz = outputs.write_npz(staging / f"{stem}.npz", intensity_file=npy.name, map_shape=intensity.shape,
                                        hkl_grid=_to_numpy(hkl), samplings=map_samplings, parameters=parameters,
                                        versions=_versions())
                ccp4 = outputs.write_ccp4(staging / f"{stem}.ccp4", intensity, map_samplings, structure.reciprocal_cell)
                pngs = outputs.write_sections_png(staging, stem, intensity, map_samplings, title=f"{structure.path.name} ({stem})")
                written = [npy, npz, ccp4, *pngs]
    finally:
        stages.close()
    if not args.quiet:
        final = [out.resolve() / p.name for p in written]
        print(_summary(structure, intensity, map_samplings, stages.times, final, 0, device, args.dtype,
                       nan_note="beyond res limit"))
    return 0


def _versions() -> dict[str, str]:
    import gemmi
    import numpy as np
    import torch

    return {
        "eryx_port": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gemmi": gemmi.__version__,
        "python": platform.python_version(),
    }


def _write_simulation(folder: Path, intensity, model, samplings, structure: Structure, model_kwargs, args):
    from . import outputs

    hkl = _to_numpy(model.hkl_grid)  # (n_points, 3) float64: counted in _SIMULATE_FILE_BYTES
    parameters = dict(
        model_kwargs,
        pdb_path=str(structure.path),
        use_data_adp=bool(args.use_data_adp),
        model="gnm",
        group_by="asu",
        device=args.device,
        dtype=args.dtype,
        space_group=structure.space_group,
        cell=list(structure.cell),
    )
    npy = folder / f"{STEM}.npy"  # written by compute_map
    npz = outputs.write_npz(
        folder / f"{STEM}.npz",
        intensity_file=npy.name,
        map_shape=intensity.shape,
        hkl_grid=hkl,
        samplings=samplings,
        parameters=parameters,
        versions=_versions(),
    )
    ccp4 = outputs.write_ccp4(folder / f"{STEM}.ccp4", intensity, samplings, structure.reciprocal_cell)
    title = "demo peptide" if structure.path == demo_structure() else structure.path.name
    pngs = outputs.write_sections_png(folder, STEM, intensity, samplings, title=title)
    return [npy, npz, ccp4, *pngs]


def _summary(structure, intensity, samplings, times, files, need, device, dtype,
             nan_note: str = "Bragg peaks / beyond res limit") -> str:
    import numpy as np

    from .outputs import human_size

    from .outputs import finite_values

    finite = finite_values(intensity)
    n_nan = int(intensity.size - np.count_nonzero(np.isfinite(intensity)))
    shape = " x ".join(map(str, intensity.shape))
    ranges = ", ".join(f"{a} {lo:g}..{hi:g} /{n}" for a, (lo, hi, n) in zip("hkl", samplings))
    lines = [
        f"structure   {structure.path}  ({structure.space_group}, {structure.n_asu} ASU x {structure.n_atoms} atoms)",
        f"grid        {shape} = {intensity.size} points  ({ranges})",
        f"compute     {device} {dtype}" + (f", estimated peak memory {human_size(need)}" if need else ""),
    ]
    if finite.size:
        lo, med, hi = np.percentile(finite, [0, 50, 100])
        lines.append(f"intensity   min {lo:.4g}  median {med:.4g}  max {hi:.4g}  ({n_nan} NaN: {nan_note})")
    else:
        lines.append(f"intensity   all {n_nan} points NaN")
    lines.append("time        " + "  ".join(f"{name} {t:.2f} s" for name, t in times.items()))
    lines.append(f"total       {sum(times.values()):.2f} s")
    lines.append("files")
    lines += [f"  {p}  ({human_size(p.stat().st_size)})" for p in files]
    return "\n".join(lines)


# --------------------------------------------------------------------------- run (eryx config)


def run_task(args) -> int:
    """``run -c CONFIG -t TASK``: one module per task in :mod:`eryx_port.tasks`."""
    check_task(args.task)
    config = load_config(args.config)
    from .tasks import run

    return run(args.task, config, args)


if __name__ == "__main__":
    sys.exit(main())
