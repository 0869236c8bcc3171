"""Reading eryx's YAML run configuration (the file eryx's ``scripts/main.py -c CONFIG -t TASK`` takes).

The format is eryx's, unchanged: a ``setup`` section (``pdb_path``, ``hsampling``,
``ksampling``, ``lsampling``, ``res_limit``, ``batch_size``, ``n_processes``, ``root_dir``,
``exp_map``) and one section per disorder model (``OnePhonon: {gnm_cutoff, gamma_intra,
gamma_inter, expand_p1}``, ...).  Everything here is plain Python: checking the values and
turning them into the keyword arguments of the model, with one-line errors
(:class:`ConfigError`) that name the file, the key and the problem.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# Tasks of eryx's scripts/tasks.py, all of which this package runs (eryx_port.tasks).
ERYX_TASKS = ("RigidBodyTranslations", "LiquidLikeMotions", "OnePhonon")
PORTED_TASKS = ERYX_TASKS
# eryx's main.py creates these under root_dir before running any task.
ROOT_SUBDIRS = ("models", "base", "figs")


class ConfigError(ValueError):
    """A configuration that cannot be run; the message is one line naming the problem."""


@dataclass(frozen=True)
class OnePhononJob:
    """Everything needed to run eryx's OnePhonon task: the model's arguments and where the map goes."""

    pdb_path: Path
    hsampling: tuple[float, float, int]
    ksampling: tuple[float, float, int]
    lsampling: tuple[float, float, int]
    gnm_cutoff: float
    gamma_intra: float
    gamma_inter: float
    expand_p1: bool
    batch_size: int
    n_processes: int
    root_dir: Path
    ignored: tuple[str, ...] = field(default=())  # setup keys eryx's task does not use, for a note to the user

    @property
    def output(self) -> Path:
        return self.root_dir / "models" / "onephonon.npy"

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``OnePhonon(...)``, the ones eryx's task passes (res_limit is not among them)."""
        return dict(
            pdb_path=str(self.pdb_path),
            hsampling=self.hsampling,
            ksampling=self.ksampling,
            lsampling=self.lsampling,
            gnm_cutoff=self.gnm_cutoff,
            gamma_intra=self.gamma_intra,
            gamma_inter=self.gamma_inter,
            batch_size=self.batch_size,
            n_processes=self.n_processes,
            expand_p1=self.expand_p1,
        )


def load_config(path: str | Path) -> dict[str, Any]:
    """The parsed YAML file as nested dicts, lists turned into tuples (as eryx does)."""
    try:
        import yaml
    except ImportError as exc:
        raise ConfigError("reading eryx configuration files needs PyYAML: pip install pyyaml") from exc

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} is not a regular file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {_one_line(exc)}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r} must hold sections (setup, OnePhonon, ...), not {type(data).__name__}")
    return {str(k): _tuples(v) for k, v in data.items()}


def expand_sampling(sampling: tuple, force_int: bool = False) -> tuple:
    """eryx's ``expand_sampling`` for one axis: make (min, max, n) symmetric about 0 by taking the larger
    magnitude on both sides, then, with ``force_int``, round both bounds to the nearest integer (half to even,
    as NumPy's ``around``); the oversampling is left alone."""
    lo, hi, n = sampling
    if lo != -hi:
        bound = max(abs(lo), abs(hi))
        lo, hi = -bound, bound
    if force_int:
        lo, hi = float(round(lo)), float(round(hi))  # Python's round is half-to-even, like np.around
    return (lo, hi, n)


def check_sampling(name: str, value: Any, *, where: str = "") -> tuple[float, float, int]:
    """A (min, max, oversampling) triple of numbers with min <= max and a positive whole oversampling."""
    label = f"{where}{name}"
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise ConfigError(f"{label} must be three numbers [min, max, oversampling], got {value!r}")
    lo, hi, n = value
    for part, v in (("min", lo), ("max", hi), ("oversampling", n)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ConfigError(f"{label} {part} must be a finite number, got {v!r}")
    if lo > hi:
        raise ConfigError(f"{label} min {lo:g} is larger than max {hi:g}")
    if n != int(n) or n <= 0:
        raise ConfigError(f"{label} oversampling must be a positive integer, got {n!r}")
    return (float(lo), float(hi), int(n))


def check_positive(name: str, value: Any, *, where: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{where}{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{where}{name} must be > 0, got {value:g}")
    return float(value)


def check_count(name: str, value: Any, *, where: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value) or value <= 0:
        raise ConfigError(f"{where}{name} must be a positive integer, got {value!r}")
    return int(value)


def onephonon_job(config: Mapping[str, Any], *, base_dir: str | Path | None = None) -> OnePhononJob:
    """Check a parsed config for eryx's OnePhonon task and return what to run.

    Relative ``pdb_path`` and ``root_dir`` are taken relative to ``base_dir`` (default: the current
    directory, which is what eryx does since it passes them to gemmi and os.makedirs unchanged).
    """
    setup = _section(config, "setup")
    task = _section(config, "OnePhonon")
    base = Path.cwd() if base_dir is None else Path(base_dir)
    for key in ("pdb_path", "root_dir", "hsampling", "ksampling", "lsampling"):
        if key not in setup:
            raise ConfigError(f"config section 'setup' lacks {key!r}")
    for key in ("gnm_cutoff", "gamma_intra", "gamma_inter"):
        if key not in task:
            raise ConfigError(f"config section 'OnePhonon' lacks {key!r}")

    sampling = {}
    for key in ("hsampling", "ksampling", "lsampling"):
        checked = check_sampling(key, setup[key], where="setup.")
        sampling[key] = expand_sampling(checked, force_int=True)

    expand_p1 = task.get("expand_p1")
    if expand_p1 is None:
        expand_p1 = True  # eryx's default when the key is absent or null
    if not isinstance(expand_p1, bool):
        raise ConfigError(f"OnePhonon.expand_p1 must be true or false, got {expand_p1!r}")

    ignored = tuple(k for k in ("res_limit",) if setup.get(k) not in (None, 0, 0.0))
    return OnePhononJob(
        pdb_path=_path(setup["pdb_path"], "setup.pdb_path", base),
        root_dir=_path(setup["root_dir"], "setup.root_dir", base),
        gnm_cutoff=check_positive("gnm_cutoff", task["gnm_cutoff"], where="OnePhonon."),
        gamma_intra=check_positive("gamma_intra", task["gamma_intra"], where="OnePhonon."),
        gamma_inter=check_positive("gamma_inter", task["gamma_inter"], where="OnePhonon."),
        expand_p1=expand_p1,
        batch_size=check_count("batch_size", setup.get("batch_size", 10000), where="setup."),
        n_processes=check_count("n_processes", setup.get("n_processes", 8), where="setup."),
        ignored=ignored,
        **sampling,
    )


@dataclass(frozen=True)
class ScanJob:
    """eryx's grid-scan tasks (RigidBodyTranslations, LiquidLikeMotions): model arguments, the scan's
    bounds, the measured map it is scored against and where eryx's task writes its files."""

    task: str
    model_kwargs: dict[str, Any]
    scan_kwargs: dict[str, Any]
    exp_map: Path
    root_dir: Path
    outputs: dict[str, Path]  # "map", "transform", "figure" -> file


def scan_job(config: Mapping[str, Any], task: str, *, base_dir: str | Path | None = None) -> ScanJob:
    """Check a parsed config for eryx's RigidBodyTranslations or LiquidLikeMotions task.

    As eryx's tasks: translations keep the sampling as written; liquid-like motions make it symmetric
    about 0 (no rounding); both read ``setup.exp_map`` (a .npy of the measured map) and ``res_limit``,
    ``batch_size``, ``n_processes`` from ``setup``.
    """
    setup = _section(config, "setup")
    section = _section(config, task)
    base = Path.cwd() if base_dir is None else Path(base_dir)
    for key in ("pdb_path", "root_dir", "exp_map", "hsampling", "ksampling", "lsampling"):
        if key not in setup:
            raise ConfigError(f"config section 'setup' lacks {key!r} (the {task} task needs it)")
    where = f"{task}."
    sampling = {}
    for key in ("hsampling", "ksampling", "lsampling"):
        checked = check_sampling(key, setup[key], where="setup.")
        sampling[key] = expand_sampling(checked) if task == "LiquidLikeMotions" else checked
    res_limit = setup.get("res_limit", 0) or 0
    if isinstance(res_limit, bool) or not isinstance(res_limit, numbers.Real) or res_limit < 0:
        raise ConfigError(f"setup.res_limit must be a number >= 0, got {res_limit!r}")
    model_kwargs = dict(
        pdb_path=str(_path(setup["pdb_path"], "setup.pdb_path", base)),
        res_limit=float(res_limit),
        batch_size=check_count("batch_size", setup.get("batch_size", 10000), where="setup."),
        n_processes=check_count("n_processes", setup.get("n_processes", 8), where="setup."),
        **sampling,
    )
    root = _path(setup["root_dir"], "setup.root_dir", base)
    if task == "RigidBodyTranslations":
        _require(section, task, ("sigmas_min", "sigmas_max", "n_search"))
        model_kwargs["expand_friedel"] = _flag(section, "expand_friedel", True, where)
        scan = dict(
            sigmas_min=_bound(section["sigmas_min"], "sigmas_min", where),
            sigmas_max=_bound(section["sigmas_max"], "sigmas_max", where),
            n_search=check_count("n_search", section["n_search"], where=where),
        )
        _ordered(scan["sigmas_min"], scan["sigmas_max"], "sigmas", where)
        outputs = {"map": root / "models" / "rigidbodytranslations.npy", "transform": root / "base" / "mtransform.npy",
                   "figure": root / "figs" / "scan_rigidbodytranslations.png"}
    elif task == "LiquidLikeMotions":
        _require(section, task, ("sigmas_min", "sigmas_max", "gammas_min", "gammas_max", "ns_search", "ng_search",
                                 "asu_confined"))
        confined = _flag(section, "asu_confined", False, where)
        model_kwargs["asu_confined"] = confined
        scan = dict(
            sigmas_min=_bound(section["sigmas_min"], "sigmas_min", where),
            sigmas_max=_bound(section["sigmas_max"], "sigmas_max", where),
            gammas_min=_bound(section["gammas_min"], "gammas_min", where),
            gammas_max=_bound(section["gammas_max"], "gammas_max", where),
            ns_search=check_count("ns_search", section["ns_search"], where=where),
            ng_search=check_count("ng_search", section["ng_search"], where=where),
        )
        _ordered(scan["sigmas_min"], scan["sigmas_max"], "sigmas", where)
        _ordered(scan["gammas_min"], scan["gammas_max"], "gammas", where)
        suffix, transform = ("_asuconfined", "mtransform") if confined else ("", "ctransform")
        outputs = {"map": root / "models" / f"liquidlikemotions{suffix}.npy",
                   "transform": root / "base" / f"{transform}.npy",
                   "figure": root / "figs" / f"scan_liquidlikemotions{suffix}.png"}
    else:
        raise ConfigError(f"task {task!r} is not a grid-scan task")
    return ScanJob(task=task, model_kwargs=model_kwargs, scan_kwargs=scan,
                   exp_map=_path(setup["exp_map"], "setup.exp_map", base), root_dir=root, outputs=outputs)


def _require(section: Mapping[str, Any], task: str, keys) -> None:
    for key in keys:
        if key not in section:
            raise ConfigError(f"config section {task!r} lacks {key!r}")


def _flag(section: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = section.get(key)
    if value is None:
        return default  # eryx's default when the key is absent or null
    if not isinstance(value, bool):
        raise ConfigError(f"{where}{key} must be true or false, got {value!r}")
    return value


def _bound(value: Any, name: str, where: str):
    """A scan bound: one number, or one per axis (a list of three), each finite; sigmas >= 0, others > 0."""
    if isinstance(value, (tuple, list)):
        if len(value) != 3:
            raise ConfigError(f"{where}{name} must be one number or three (one per axis), got {value!r}")
        return tuple(_bound(v, name, where) for v in value)
    if name.startswith("sigmas") and value == 0 and not isinstance(value, bool):
        return 0.0  # no disorder: a valid end of a scan
    return check_positive(name, value, where=where)


def _ordered(lo, hi, name: str, where: str) -> None:
    los = lo if isinstance(lo, tuple) else (lo,)
    his = hi if isinstance(hi, tuple) else (hi,)
    if isinstance(lo, tuple) != isinstance(hi, tuple):
        raise ConfigError(f"{where}{name}_min and {name}_max must both be one number or both three, got {lo!r} and {hi!r}")
    if any(a > b for a, b in zip(los, his)):
        raise ConfigError(f"{where}{name}_min {lo!r} is larger than {name}_max {hi!r}")


def check_task(task: str) -> None:
    """Refuse a task this package cannot run, naming the ones it can."""
    if task not in PORTED_TASKS:
        raise ConfigError(f"unknown task {task!r}; available: {', '.join(PORTED_TASKS)}")


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    if name not in config:
        raise ConfigError(f"config has no {name!r} section (sections: {', '.join(map(str, config)) or 'none'})")
    section = config[name]
    if not isinstance(section, Mapping):
        raise ConfigError(f"config section {name!r} must hold keys, got {section!r}")
    return section


def _path(value: Any, label: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{label} must be a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _tuples(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
