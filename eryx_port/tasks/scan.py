# SPDX-License-Identifier: GPL-2.0-or-later
"""The flow shared by eryx's grid-scan tasks: build the model, scan its parameters against the measured map,
write the best map, the transform it stands on and the scan's figure (as eryx's scripts/tasks.py does)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from ..cli import (
    Stages, UsageError, _one_line, _remove_created, check_device, check_structure, check_writable, warn_symmetry,
)
from ..config import ROOT_SUBDIRS, ConfigError, scan_job


def load_target(path: Path):
    """The measured map of ``setup.exp_map``: a .npy of numbers, read without pickles."""
    import numpy as np

    if not path.is_file():
        raise ConfigError(f"setup.exp_map {str(path)!r} does not exist (the measured map the scan is scored against)")
    try:
        target = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"setup.exp_map {str(path)!r} is not a NumPy .npy array: {_one_line(exc)}") from exc
    if not isinstance(target, np.ndarray) or target.dtype.kind not in "fiu":
        raise ConfigError(f"setup.exp_map {str(path)!r} must hold real numbers, not {getattr(target, 'dtype', type(target))}")
    return target.astype(np.float64, copy=False)


def run_scan(config, args, task: str) -> int:
    import numpy as np
    import torch

    from .. import models

    job = scan_job(config, task)
    check_writable(job.root_dir, "setup.root_dir")
    if job.root_dir.exists() and not job.root_dir.is_dir():
        raise UsageError(f"setup.root_dir {str(job.root_dir)!r} exists and is not a folder")
    device = check_device(args.device)
    structure = check_structure(Path(job.model_kwargs["pdb_path"]))
    warn_symmetry(structure)
    target = load_target(job.exp_map)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    stages = Stages(["model setup", "parameter scan", "writing files"], args.quiet)
    made = []
    try:
        with stages.stage("model setup"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the structure's warnings were given once by check_structure
                try:
                    model = getattr(models, task)(**job.model_kwargs, device=device, dtype=dtype)
                except ValueError as exc:
                    raise UsageError(_one_line(exc)) from exc
        # liquid-like motions score the map without its padding border (eryx's map_shape_nopad)
        shape = tuple(int(n) for n in getattr(model, "map_shape_nopad", model.map_shape))
        if target.size != math.prod(shape):
            raise ConfigError(
                f"setup.exp_map has {target.size} values (shape {target.shape}) but the {task} task scores maps of "
                f"shape {shape} ({math.prod(shape)} values): the measured map must be on the config's "
                "hsampling/ksampling/lsampling grid"
            )
        with stages.stage("parameter scan"), _quiet_if(args.quiet):
            model.optimize(torch.as_tensor(target.reshape(shape), dtype=dtype, device=device), **job.scan_kwargs)
        with stages.stage("writing files"):
            for folder in [*reversed(job.root_dir.parents), job.root_dir, *(job.root_dir / s for s in ROOT_SUBDIRS)]:
                if not folder.exists():
                    folder.mkdir()
                    made.append(folder)
            model.plot_scan(output=str(job.outputs["figure"]))
            np.save(job.outputs["map"], _numpy(model.opt_map))
            np.save(job.outputs["transform"], _numpy(model.transform))
    except BaseException:
        _remove_created(made)
        raise
    finally:
        stages.close()
    if not args.quiet:
        lines = [f"{task}: best parameters {_best(model)}", *(f"  {path}" for path in job.outputs.values())]
        print("\n".join(lines))
    return 0


def _quiet_if(quiet: bool):
    """The models print their optimum as eryx's do; --quiet silences that too."""
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


def _numpy(x):
    import numpy as np

    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _best(model) -> str:
    names = [n for n in ("opt_sigma", "opt_sigmas", "opt_gamma", "opt_gammas") if hasattr(model, n)]
    return ", ".join(f"{n[4:]} {_numpy(getattr(model, n)).tolist()}" for n in names) or "(see the figure)"
