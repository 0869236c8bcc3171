"""Writing a diffuse map to disk: NumPy (.npy, .npz), CCP4/MRC (.ccp4) and PNG sections.

All writers take a map as a NumPy array of shape ``map_shape`` = (n_h, n_k, n_l), indexed
[h, k, l] like eryx's ``Id.reshape(map_shape)``, and the sampling triples
``(min, max, oversampling)`` that made it, so grid index i along h is Miller index
``min + i / oversampling``.  NaN marks points without a value (Bragg peaks, where the
one-phonon intensity diverges, and points beyond the resolution limit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

AXES = ("h", "k", "l")
# CCP4 maps cannot hold NaN usefully (viewers choke on it): those points are written as this value.
CCP4_NAN_FILL = 0.0


def axis_values(sampling: Sequence[float], n_points: int) -> np.ndarray:
    """Miller indices along one axis of the grid (as eryx's generate_grid lays them out)."""
    lo, hi, _ = sampling
    return np.linspace(lo, hi, n_points)


def write_npy(path: str | Path, intensity: np.ndarray) -> Path:
    path = Path(path)
    np.save(path, intensity)
    return path


def write_npz(
    path: str | Path,
    *,
    intensity_file: str,
    map_shape: Sequence[int],
    hkl_grid: np.ndarray,
    samplings: Sequence[Sequence[float]],
    parameters: Mapping[str, Any],
    versions: Mapping[str, str],
) -> Path:
    """The grid and provenance of a map: hkl_grid (n_points, 3) in the map's flat order, the Miller indices
    along each axis, map_shape, and parameters/versions as JSON strings (``json.loads(str(f['parameters']))``)."""
    path = Path(path)
    extra = {f"{axis}_values": axis_values(s, n) for axis, s, n in zip(AXES, samplings, map_shape)}
    np.savez(
        path,
        hkl_grid=np.asarray(hkl_grid, dtype=np.float64),
        map_shape=np.asarray(map_shape, dtype=np.int64),
        sampling=np.asarray(samplings, dtype=np.float64),
        intensity_file=np.str_(intensity_file),
        parameters=np.str_(json.dumps(parameters, sort_keys=True, default=str)),
        versions=np.str_(json.dumps(versions, sort_keys=True)),
        **extra,
    )
    return path


def write_ccp4(
    path: str | Path,
    intensity: np.ndarray,
    samplings: Sequence[Sequence[float]],
    reciprocal_cell: Sequence[float],
    *,
    nan_fill: float = CCP4_NAN_FILL,
    label: str = "eryx-port diffuse intensity",
) -> Path:
    """A CCP4/MRC map of the sampled hkl box in reciprocal space.

    The map's "unit cell" is the box itself, built on the reciprocal lattice: edge lengths
    n_i * a*_i / oversampling_i in 1/Angstrom (no 2 pi) and the reciprocal angles
    alpha*, beta*, gamma*, with the grid start at min_i * oversampling_i, so a viewer
    (ChimeraX, Coot) puts each voxel at its reciprocal-space position and hkl = 0 at the
    origin.  NaN points are written as ``nan_fill``.
    """
    import gemmi

    data = np.where(np.isfinite(intensity), intensity, nan_fill).astype(np.float32)
    shape = data.shape
    rstar = reciprocal_cell
    lengths = [n * rstar[i] / s[2] for i, (n, s) in enumerate(zip(shape, samplings))]
    box = gemmi.UnitCell(*lengths, *rstar[3:6])
    ccp4 = gemmi.Ccp4Map()
    ccp4.grid = gemmi.FloatGrid(np.ascontiguousarray(data), box, gemmi.SpaceGroup("P 1"))
    ccp4.update_ccp4_header(2, True)  # mode 2: 32-bit floats; fills in the statistics
    for word, s in zip((5, 6, 7), samplings):
        ccp4.set_header_i32(word, int(round(s[0] * s[2])))  # NCSTART/NRSTART/NSSTART: grid index of the first point
    ccp4.set_header_i32(56, 1)  # one label
    ccp4.set_header_str(57, label[:80].ljust(80))
    ccp4.write_ccp4_map(str(path))
    return Path(path)


def central_index(values: np.ndarray) -> int:
    """The section through Miller index 0 when the axis has it, else the middle one."""
    zero = np.nonzero(np.isclose(values, 0.0))[0]
    return int(zero[0]) if zero.size else len(values) // 2


# Statistics of larger maps are taken on an even sample of this many points (a copy of a
# paper-scale map would double the memory a run needs).
SAMPLE_POINTS = 1 << 24


def finite_values(intensity: np.ndarray) -> np.ndarray:
    """The finite values of a map, or of an even sample of it when it has more than SAMPLE_POINTS points."""
    flat = intensity.reshape(-1)
    step = -(-flat.size // SAMPLE_POINTS)
    sample = np.asarray(flat[::step])
    return sample[np.isfinite(sample)]


def robust_limits(intensity: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """Colour limits from percentiles of the finite values (a few huge values near Bragg peaks would wash out a
    min-max scale)."""
    finite = finite_values(intensity)
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [low, high])
    if not hi > lo:
        hi = lo + (abs(lo) if lo else 1.0)
    return float(lo), float(hi)


def write_sections_png(
    folder: str | Path,
    stem: str,
    intensity: np.ndarray,
    samplings: Sequence[Sequence[float]],
    *,
    title: str = "",
) -> list[Path]:
    """PNG images of the central h, k and l sections (one file each), with a shared colour scale clipped to the
    1st-99th percentiles of the whole map (logarithmic when all values are positive); NaN points are left
    blank."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from matplotlib.colors import LogNorm, Normalize

    folder = Path(folder)
    values = [axis_values(s, n) for s, n in zip(samplings, intensity.shape)]
    vmin, vmax = robust_limits(intensity)
    # diffuse intensity spans decades (it diverges at the Bragg peaks): a log scale shows the structure
    # away from them; a map with zero or negative values falls back to a linear scale
    log = vmin > 0
    norm = LogNorm(vmin=vmin, vmax=vmax) if log else Normalize(vmin=vmin, vmax=vmax)
    cmap = plt.get_cmap("magma").with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # NaN: transparent
    paths = []
    for axis, name in enumerate(AXES):
        index = central_index(values[axis])
        section = np.take(intensity, index, axis=axis)  # remaining axes in h, k, l order
        rows, cols = [a for a in range(3) if a != axis]
        fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=110)
        # imshow puts the first array axis vertically: transpose so the later Miller axis runs up
        image = ax.imshow(
            np.ma.masked_invalid(section.T),
            origin="lower",
            cmap=cmap,
            norm=norm,
            extent=_extent(values[rows], values[cols]),
            aspect="equal",
            interpolation="nearest",
        )
        ax.set_xlabel(f"{AXES[rows]} (Miller index)")
        ax.set_ylabel(f"{AXES[cols]} (Miller index)")
        ax.set_title(f"{title + ': ' if title else ''}{name} = {values[axis][index]:g} section", fontsize=10)
        bar = fig.colorbar(image, ax=ax, shrink=0.85)
        bar.set_label(f"intensity ({'log scale, ' if log else ''}1st-99th percentile)")
        fig.tight_layout()
        path = folder / f"{stem}_{name}_section.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _extent(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Image extent putting pixel centres on the grid points."""
    dx = (x[1] - x[0]) / 2 if len(x) > 1 else 0.5
    dy = (y[1] - y[0]) / 2 if len(y) > 1 else 0.5
    return [x[0] - dx, x[-1] + dx, y[0] - dy, y[-1] + dy]


def human_size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError


def replace_into(staging: str | Path, destination: str | Path) -> list[Path]:
    """Move every file of ``staging`` into ``destination`` (created if needed), replacing files of the same
    name, and remove ``staging``; returns the final paths."""
    staging, destination = Path(staging), Path(destination)
    if not destination.exists():
        os.replace(staging, destination)  # one atomic rename when the folder is new
        return sorted(p for p in destination.iterdir())
    moved = []
    for item in sorted(staging.iterdir()):
        target = destination / item.name
        os.replace(item, target)
        moved.append(target)
    staging.rmdir()
    return moved
