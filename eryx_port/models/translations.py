# SPDX-License-Identifier: GPL-2.0-or-later
"""Rigid-body translational disorder: eryx's ``RigidBodyTranslations`` in torch.

Each asymmetric unit is displaced as a whole by a Gaussian random translation. The diffuse map
is the molecular transform weighted by ``1 - exp(-q^2 sigma^2)`` (isotropic sigma) or
``1 - exp(-sum_i q_i^2 sigma_i^2)`` (a sigma per axis x, y, z), for any number of sigmas at once.

Same constructor, attributes and methods as eryx (results are torch tensors, float64 unless
``dtype=`` says otherwise, on ``device=``). The map is differentiable in the sigmas; NaN marks
the points where the molecular transform is zero (outside ``res_limit``), as in eryx, and never
reaches a gradient. :meth:`fit` fits the sigmas by gradient descent on the correlation with a
target; :meth:`optimize` is eryx's grid scan.

Where eryx stops on a bug of its own, the port computes what eryx meant:

* ``optimize`` with per-axis bounds scans the product grid (eryx calls ``itertools.product``
  without importing it);
* with ``expand_friedel=True`` on a grid that is not symmetric about the origin, the molecular
  transform covers the grid and its Friedel mates (a map centred on the origin, larger than the
  grid) while eryx keeps the grid's q-vectors, so its ``apply_disorder`` fails on mismatched
  shapes; here ``q_grid`` is that of the centred map (``map_shape`` is the map's shape).
"""

from __future__ import annotations

import math

import torch

from ..base import compute_molecular_transform
from ..map_utils import generate_grid, get_centered_sampling
from ..pdb import AtomicModel
from ..stats import compute_cc
from ..tensors import resolve_device, resolve_dtype
from ._scan import as_sigmas, best, check_target, describe, fit_lbfgs, q2_sigma2, sigma_grid
from ._checks import check_res_limit, check_samplings

__all__ = ["RigidBodyTranslations"]


class RigidBodyTranslations:
    """Rigid ASUs under random Gaussian translations (eryx's model, in torch).

    Parameters as eryx: ``pdb_path`` (the asymmetric unit), ``hsampling, ksampling, lsampling``
    ((min, max, oversampling) each), ``expand_friedel`` (the molecular transform also covers the
    Friedel-related region), ``res_limit`` (Angstrom; 0 keeps every point); ``batch_size`` and
    ``n_processes`` are accepted (the structure factors are chunked, nothing forks). Keyword-only:
    ``device``, ``dtype`` (float64 default, or float32).

    Attributes: ``q_grid`` (n_points, 3), ``transform`` (``map_shape``; NaN where the molecular
    transform is 0), ``q_mags`` (n_points,), ``map_shape``, and the scan record ``scan_sigmas`` /
    ``scan_ccs`` (lists, one entry per scanned sigma), ``opt_sigma`` / ``opt_map`` after a scan.
    """

    def __init__(self, pdb_path, hsampling, ksampling, lsampling, expand_friedel=True, res_limit=0,
                 batch_size=10000, n_processes=8, *, device=None, dtype=None):
        check_samplings(hsampling, ksampling, lsampling)
        self.hsampling = hsampling
        self.ksampling = ksampling
        self.lsampling = lsampling
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self._setup(pdb_path, expand_friedel=expand_friedel, res_limit=res_limit, batch_size=batch_size,
                    n_processes=n_processes)

    def _setup(self, pdb_path, expand_friedel=True, res_limit=0, batch_size=10000, n_processes=8):
        """The molecular transform on the grid (zeros become NaN, the points a CC leaves out) and |q|."""
        check_res_limit(res_limit)
        self.q_grid, transform = compute_molecular_transform(
            pdb_path, self.hsampling, self.ksampling, self.lsampling, expand_friedel=expand_friedel,
            res_limit=res_limit, batch_size=batch_size, n_processes=n_processes, dtype=self.dtype, device=self.device)
        self.transform = torch.where(transform == 0, torch.full_like(transform, math.nan), transform)
        if self.transform.numel() != self.q_grid.shape[0]:
            # the Friedel-expanded map spans +-max of the grid about the origin, not the grid itself
            self.q_grid = self._centered_q_grid(pdb_path, self.transform.shape)
        self.q_mags = torch.linalg.norm(self.q_grid, dim=1)
        self.map_shape = tuple(int(n) for n in self.transform.shape)
        self.scan_sigmas, self.scan_ccs = [], []

    def _centered_q_grid(self, pdb_path, shape):
        """q-vectors of a map of ``shape`` centred on the origin at the grid's oversampling."""
        model = AtomicModel(pdb_path, expand_p1=True, dtype=self.dtype, device=self.device)
        rates = [s[2] for s in (self.hsampling, self.ksampling, self.lsampling)]
        return generate_grid(model.A_inv, *get_centered_sampling(tuple(shape), rates))[0]

    # ------------------------------------------------------------------ maps

    def apply_disorder(self, sigmas):
        """Diffuse maps ``transform * (1 - exp(-q^2 sigma^2))``, one row per sigma: (n_sigma, n_points).

        ``sigmas``: a number, (n,) isotropic sigmas or (n, 3) per-axis sigmas (Angstrom), arrays or
        tensors (a tensor with ``requires_grad`` carries its gradient into the maps).
        """
        s = as_sigmas(sigmas, self.dtype, self.device)
        flat = self.transform.reshape(-1)
        missing = torch.isnan(flat)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (s, flat, self.q_grid, self.q_mags)):
            weight = 1 - torch.exp(-q2_sigma2(s, self.q_grid, self.q_mags))
            Id = flat.nan_to_num(0.0) * weight
        else:  # the same arithmetic in one buffer (the maps are the only large array)
            Id = q2_sigma2(s, self.q_grid, self.q_mags).neg_().exp_().neg_().add_(1).mul_(flat.nan_to_num(0.0))
            if not bool(missing.any()):
                return Id
        return Id.masked_fill_(missing, math.nan)  # NaN where the transform is, no gradient there

    # ------------------------------------------------------------------ scans and fits

    def optimize(self, target, sigmas_min, sigmas_max, n_search=20):
        """eryx's grid scan: the sigma whose map correlates best (Pearson, NaN points left out) with ``target``.

        ``sigmas_min``/``sigmas_max``: numbers (``n_search`` isotropic sigmas) or 3 values each
        (``n_search**3`` per-axis sigmas, the product grid with a slowest and c fastest).
        ``target`` has shape ``map_shape``. Sets ``opt_sigma`` and ``opt_map`` (``map_shape``),
        extends ``scan_sigmas``/``scan_ccs``, prints the optimum as eryx does and returns
        ``(ccs, sigmas)``.
        """
        target = check_target(target, self.map_shape, self.dtype, self.device)
        sigmas = sigma_grid(sigmas_min, sigmas_max, n_search, self.dtype, self.device)
        with torch.no_grad():
            maps = self.apply_disorder(sigmas)
            ccs = compute_cc(maps, target.reshape(1, -1))
        i = best(ccs)
        self.opt_sigma = sigmas[i]
        self.opt_map = maps[i].reshape(self.map_shape)
        self.scan_sigmas.extend(sigmas.cpu().unbind(0))
        self.scan_ccs.extend(ccs.cpu().unbind(0))
        print(f"Optimal sigma: {describe(self.opt_sigma)}, with correlation coefficient {float(ccs[i]):.4f}")
        return (ccs, sigmas)

    def fit(self, target, sigmas, *, mask=None, max_iter=100, tolerance=1e-10):
        """Fit the sigma(s) to ``target`` from the start ``sigmas`` by gradient descent (torch.optim.LBFGS).

        Maximises eryx's correlation (the Pearson CC over points that are not NaN, and where
        ``mask`` is True) over log sigma. ``sigmas``: a number (isotropic) or 3 values (per axis).
        Returns ``(sigmas, map)``: the fitted sigma (0-d) or sigmas (3,), and the map (``map_shape``).
        """
        target = check_target(target, self.map_shape, self.dtype, self.device)
        start = as_sigmas(sigmas, self.dtype, self.device, "sigmas").detach().reshape(-1)
        if start.numel() not in (1, 3):
            raise ValueError(f"fit starts from one isotropic sigma or 3 per-axis sigmas, got {start.numel()} values")
        if bool((start <= 0).any()):
            raise ValueError(f"the starting sigmas must be positive, got {start.tolist()}")
        per_axis = start.numel() == 3
        fitted = fit_lbfgs(start, lambda p: self.apply_disorder(p[None] if per_axis else p), target, mask,
                           max_iter, tolerance)
        with torch.no_grad():
            Id = self.apply_disorder(fitted[None] if per_axis else fitted)[0]
        return (fitted if per_axis else fitted[0]), Id.reshape(self.map_shape)

    def plot_scan(self, output=None):
        """Plot CC against sigma for the isotropic sigmas scanned so far (current matplotlib figure);
        saved to ``output`` when given."""
        from matplotlib import pyplot

        x = [float(v) for v in _scalars(self.scan_sigmas, "scan_sigmas")]
        y = [float(v) for v in self.scan_ccs]
        axes = pyplot.gca()
        axes.scatter(x, y, color="k")
        axes.plot(x, y, color="k")
        axes.set_xlabel(r"$\sigma$ ($\mathrm{\AA}$)", fontsize=14)
        axes.set_ylabel("CC", fontsize=14)
        _save(output)


def _save(output) -> None:
    """The current figure written to ``output`` (300 dpi, tight box), when a path is given."""
    if output is None:
        return
    from matplotlib import pyplot

    pyplot.gcf().savefig(output, bbox_inches="tight", dpi=300)


def _scalars(values, name: str):
    """The entries of a scan list, each one number (plots take isotropic scans only, as in eryx)."""
    out = []
    for v in values:
        t = torch.as_tensor(v)
        if t.numel() != 1:
            raise ValueError(f"{name} holds per-axis sigmas ({tuple(t.shape)}): only isotropic scans can be plotted")
        out.append(t.reshape(()))
    return out
