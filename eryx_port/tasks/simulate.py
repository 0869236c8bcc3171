# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx-port simulate --model NAME``: the diffuse map of one of eryx's other disorder models, with its
parameters as options (the one-phonon map, the default, is made slab by slab in :mod:`eryx_port.cli`).

Each model's map lies on its own grid: the config's grid, except for liquid-like motions (padded by
``border`` Miller indices per side) and Friedel-expanded translations (centred on the origin); the
files say which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

# model name on the command line -> eryx class, the options it uses, how to call apply_disorder
OTHER_MODELS = ("translations", "liquid", "rotations", "ensemble", "deformable")


@dataclass(frozen=True)
class ModelRun:
    class_name: str
    build: Callable[[Any], dict]  # args -> extra constructor arguments
    disorder: Callable[[Any, Any], Any]  # (model, args) -> map(s)


def _sigmas(args, name: str, per_axis: bool):
    from ..cli import UsageError

    values = args.sigma if args.sigma is not None else [0.5]
    if len(values) not in ((1, 3) if per_axis else (1,)):
        raise UsageError(f"--sigma takes {'one value or three (per axis)' if per_axis else 'one value'} for --model {name}")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UsageError(f"--sigma must be >= 0, got {' '.join(f'{v:g}' for v in values)}")
    return [values] if len(values) == 3 else values[0]


def _positive(value, name: str):
    from ..cli import UsageError

    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be > 0, got {value:g}")
    return value


def _probabilities(weights):
    """Relative weights of the models made probabilities (eryx's Ensemble takes probabilities as they are:
    weights that do not sum to 1 give a map that can be negative)."""
    import numpy as np

    from ..cli import UsageError

    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise UsageError(f"--weights must be >= 0 with a positive sum, got {' '.join(f'{v:g}' for v in weights)}")
    return w / w.sum()


RUNS = {
    "translations": ModelRun(
        "RigidBodyTranslations",
        lambda a: dict(expand_friedel=False),
        lambda m, a: m.apply_disorder(_sigmas(a, "translations", per_axis=True)),
    ),
    "liquid": ModelRun(
        "LiquidLikeMotions",
        lambda a: dict(asu_confined=bool(a.asu_confined)),
        lambda m, a: m.apply_disorder(_sigmas(a, "liquid", per_axis=True), _positive(a.gamma, "--gamma")),
    ),
    "rotations": ModelRun(
        "RigidBodyRotations",
        lambda a: dict(seed=a.seed),
        lambda m, a: m.apply_disorder(_sigmas(a, "rotations", per_axis=False), num_rot=a.num_rot),
    ),
    "ensemble": ModelRun(
        "Ensemble",
        lambda a: {},
        lambda m, a: m.apply_disorder(weights=_probabilities(a.weights)),
    ),
    "deformable": ModelRun(
        "NonInteractingDeformableMolecules",
        lambda a: dict(gnm_cutoff=_positive(a.cutoff, "--cutoff")),
        lambda m, a: m.apply_disorder(),
    ),
}


def map_samplings(model, samplings) -> list[tuple[float, float, int]]:
    """(min, max, oversampling) of each axis of the model's map, which may differ from the grid asked for."""
    shape = tuple(int(n) for n in model.map_shape)
    rates = [int(s[2]) for s in samplings]
    grid = [int(round((hi - lo) * n)) + 1 for lo, hi, n in samplings]
    if list(shape) == grid:
        return list(samplings)
    border = [(m - g) / (2 * r) for m, g, r in zip(shape, grid, rates)]
    if all(b == int(b) and b >= 0 for b in border):  # padded symmetrically (liquid-like motions)
        return [(lo - b, hi + b, n) for (lo, hi, n), b in zip(samplings, border)]
    from ..map_utils import get_centered_sampling  # centred on the origin (Friedel-expanded transforms)

    return [tuple(s) for s in get_centered_sampling(shape, rates)]


def compute(name: str, args, model_kwargs: dict, *, device, dtype):
    """(model, map as a float NumPy array of the model's map_shape)."""
    import warnings

    import torch

    from .. import models
    from ..cli import UsageError, _one_line

    run = RUNS[name]
    cls = getattr(models, run.class_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the structure's warnings were given once by check_structure
        try:
            model = cls(**model_kwargs, **run.build(args), device=device,
                        dtype=torch.float64 if dtype == "float64" else torch.float32)
            with torch.no_grad():
                Id = run.disorder(model, args)
        except ValueError as exc:
            raise UsageError(_one_line(exc)) from exc
    Id = Id.detach().cpu().numpy() if hasattr(Id, "detach") else Id
    return model, Id.reshape(tuple(int(n) for n in model.map_shape))
