# SPDX-License-Identifier: GPL-2.0-or-later
"""Liquid-like motions: eryx's ``LiquidLikeMotions`` in torch.

Displacements are correlated over a length gamma that decays exponentially with distance, so
the diffuse map is the crystal transform (or, ``asu_confined``, the molecular transform)
convolved with the kernel ``8 pi gamma^3 / (1 + q^2 gamma^2)^2`` (normalised to unit sum), times
``q^2 sigma^2 exp(-q^2 sigma^2)`` (or per-axis ``sum_i q_i^2 sigma_i^2``). The transform is
computed on a grid padded by ``border`` Miller indices on every side, so that the convolution
sees the neighbours of the edge points; ``mask`` marks the unpadded region.

Same constructor, attributes and methods as eryx (torch tensors, float64 unless ``dtype=`` says
otherwise, on ``device=``). The convolution runs on torch.fft: a linear convolution cropped to
the grid, as ``scipy.signal.fftconvolve(mode='same')`` which eryx uses below 1e7 points, and
eryx's circular :meth:`fft_convolve` from there on. All gammas are convolved in one batched
FFT (in chunks of bounded memory); the transform's spectrum is computed once and kept. The
maps are differentiable in sigma(s) and gamma(s); :meth:`fit` fits both by gradient descent,
:meth:`optimize` is eryx's grid scan.

Where eryx stops on a bug of its own, the port computes what eryx meant:

* ``optimize`` with per-axis sigma bounds scans the product grid (eryx calls
  ``itertools.product`` without importing it);
* ``border=0`` (no padding): the whole map is the unpadded region (eryx's slice ``[0:-0]`` is
  empty, so its mask is all zero and its scans fail on an empty map).
"""

from __future__ import annotations

import math
import numbers

import torch

from ..base import _crystal_transform_of, _grid_setup, _molecular_transform_of
from ..map_utils import resolution_on_grid
from ..pdb import AtomicModel
from ..stats import compute_cc
from ..tensors import as_real, resolve_device, resolve_dtype
from ._scan import (as_gammas, as_sigmas, best, check_target, describe, fit_lbfgs, linspace, q2_sigma2,
                    scalar_bound, sigma_grid)
from ._checks import check_count, check_res_limit, check_samplings
from .translations import _save, _scalars

__all__ = ["LiquidLikeMotions"]

# complex elements of the padded spectra convolved at once (bounded memory for many gammas)
_FFT_CHUNK_ELEMENTS = 1 << 24


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: an FFT size that is never slow."""
    best_len = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < 2 * n:
        p35 = p5
        while p35 < 2 * n:
            m = p35
            while m < n:
                m *= 2
            best_len = min(best_len, m)
            p35 *= 3
        p5 *= 5
    return best_len


def _inverse_cropped(spectrum: torch.Tensor, shape, lo, size) -> torch.Tensor:
    """``irfftn(spectrum, s=shape)[lo:lo + size]`` of a half spectrum held l-major, (L_l // 2 + 1, L_h, L_k):
    the inverse over h and k (contiguous there), cropped, then the real inverse over l."""
    x = torch.fft.ifftn(spectrum, dim=(1, 2))[:, lo[0]:lo[0] + size[0], lo[1]:lo[1] + size[1]]
    return torch.fft.irfft(x.permute(1, 2, 0), n=shape[2], dim=2)[:, :, lo[2]:lo[2] + size[2]]


class LiquidLikeMotions:
    """Liquid-like motions: correlated displacements decaying over a length gamma (eryx's model, in torch).

    Parameters as eryx: ``pdb_path`` (the asymmetric unit, or with ``expand_p1=False`` a file
    holding the unit cell), ``hsampling, ksampling, lsampling`` ((min, max, oversampling) each),
    ``expand_p1``, ``border`` (padding in Miller indices per side, a non-negative integer),
    ``res_limit`` (Angstrom; 0 keeps every point), ``asu_confined`` (disorder confined to the ASU:
    the molecular instead of the crystal transform); ``batch_size`` and ``n_processes`` are
    accepted (nothing forks). Keyword-only: ``device``, ``dtype`` (float64 default, or float32).

    Attributes (on the padded grid): ``map_shape``, ``q_grid`` (n_points, 3), ``q_mags``,
    ``transform`` (``map_shape``), ``res_mask`` (n_points,) bool, ``mask`` (``map_shape``; 1 inside
    the unpadded region, 0 in the border) and ``map_shape_nopad``; the scan record
    ``scan_sigmas``, ``scan_gammas``, ``scan_ccs``, ``opt_map`` (None before any scan),
    ``opt_sigma``/``opt_gamma`` after one.
    """

    # eryx convolves maps of at least this many points with its circular fft_convolve
    circular_above = 1e7

    def __init__(self, pdb_path, hsampling, ksampling, lsampling, expand_p1=True, border=1, res_limit=0,
                 batch_size=5000, n_processes=8, asu_confined=False, *, device=None, dtype=None):
        check_samplings(hsampling, ksampling, lsampling)
        self.hsampling = hsampling
        self.ksampling = ksampling
        self.lsampling = lsampling
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self._setup(pdb_path, expand_p1=expand_p1, border=border, res_limit=res_limit, batch_size=batch_size,
                    n_processes=n_processes, asu_confined=asu_confined)

    def _setup(self, pdb_path, expand_p1, border, res_limit, batch_size, n_processes, asu_confined):
        """Transform on the padded grid, resolution mask, and the mask of the unpadded region."""
        if isinstance(border, bool) or not isinstance(border, numbers.Integral) or border < 0:
            raise ValueError(f"border must be a non-negative integer (Miller indices per side), got {border!r}")
        border = int(border)
        check_res_limit(res_limit)
        # one reading serves the grid and the transform: the molecular transform reads the first
        # model of the file, the crystal transform all of them (the cell is the same)
        model = AtomicModel(pdb_path, expand_p1=expand_p1, frame=0 if asu_confined else -1, dtype=self.dtype,
                            device=self.device)
        padded = [(s[0] - border, s[1] + border, s[2]) for s in (self.hsampling, self.ksampling, self.lsampling)]
        grid = _grid_setup(model, *padded)
        axes, self.map_shape, _ = grid
        self.res_mask = (resolution_on_grid(model.cell, axes) > res_limit).reshape(-1)

        if asu_confined:
            self.q_grid, self.transform = _molecular_transform_of(model, *padded, expand_friedel=False,
                                                                  res_limit=res_limit, batch_size=batch_size, grid=grid)
        else:
            self.q_grid, self.transform = _crystal_transform_of(model, *padded, res_limit=res_limit,
                                                                batch_size=batch_size, grid=grid)
        self.q_mags = torch.linalg.norm(self.q_grid, dim=1)

        pads = [border * int(s[2]) for s in (self.hsampling, self.ksampling, self.lsampling)]
        inside = [torch.zeros(n, dtype=torch.bool, device=self.device) for n in self.map_shape]
        for axis, p in zip(inside, pads):
            axis[p:axis.numel() - p] = True
        self.mask = (inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]).to(self.dtype)
        self.map_shape_nopad = tuple(n - 2 * p for n, p in zip(self.map_shape, pads))

        self.scan_sigmas, self.scan_gammas, self.scan_ccs = [], [], []
        self.opt_map = None

    # ------------------------------------------------------------------ convolution

    def fft_convolve(self, transform, kernel):
        """eryx's circular convolution: ``ifftshift(ifft(fft(transform) * fft(kernel / kernel.sum())))``.

        ``transform`` and ``kernel`` have the same 3d shape (``kernel`` may carry leading batch
        dimensions: one map per kernel). Returns the real convolved map(s).
        """
        t = as_real(transform, self.dtype, self.device)
        k = as_real(kernel, self.dtype, self.device)
        if t.ndim != 3 or tuple(k.shape[-3:]) != tuple(t.shape):
            raise ValueError(f"kernel must have the transform's 3d shape {tuple(t.shape)}, got {tuple(k.shape)}")
        dims = (-3, -2, -1)
        k = k / k.sum(dim=dims, keepdim=True)
        conv = torch.fft.irfftn(torch.fft.rfftn(t, dim=dims) * torch.fft.rfftn(k, dim=dims), s=t.shape, dim=dims)
        return torch.fft.ifftshift(conv, dim=dims)

    def _transform_spectrum(self, shape):
        """rfftn of the transform zero-padded to ``shape`` (kept while the transform is unchanged)."""
        key = (id(self.transform), self.transform._version, tuple(shape))
        cached = getattr(self, "_spectrum", None)
        if cached is None or cached[0] != key:
            cached = (key, torch.fft.rfftn(self.transform.detach(), s=shape, dim=(-3, -2, -1)))
            self._spectrum = cached
        return cached[1]

    def _convolve(self, kernels: torch.Tensor) -> torch.Tensor:
        """The transform convolved with each normalised kernel (n, *map_shape) -> (n, n_points)."""
        n = kernels.shape[0]
        if math.prod(self.map_shape) >= self.circular_above:
            return self.fft_convolve(self.transform, kernels).reshape(n, -1)
        dims = (-3, -2, -1)
        # scipy's 'same' linear convolution: of the full convolution (2n - 1 points per axis) the n
        # points from c = (n - 1) // 2 on. A circular one of length L >= max(2n - 1 - c, c + n) holds
        # them unaliased (the wrapped tail ends before c), about 1.5 n instead of 2n - 1.
        start = [(m - 1) // 2 for m in self.map_shape]
        shape = [_fast_length(max(2 * m - 1 - c, c + m)) for m, c in zip(self.map_shape, start)]
        spectrum = self._transform_spectrum(shape)
        if self.transform.requires_grad:
            spectrum = torch.fft.rfftn(self.transform, s=shape, dim=dims)
        per_chunk = max(1, _FFT_CHUNK_ELEMENTS // spectrum.numel())
        out = []
        for chunk in kernels.split(per_chunk):  # chunks of gammas (memory), not of points
            full = torch.fft.irfftn(spectrum * torch.fft.rfftn(chunk, s=shape, dim=dims), s=shape, dim=dims)
            out.append(full[:, start[0]:start[0] + self.map_shape[0], start[1]:start[1] + self.map_shape[1],
                            start[2]:start[2] + self.map_shape[2]].reshape(chunk.shape[0], -1))
        return torch.cat(out)

    # ------------------------------------------------------------------ maps

    def apply_disorder(self, sigmas, gammas):
        """Diffuse maps for every (sigma, gamma) pair, sigma-major: (n_sigma * n_gamma, n_points).

        ``sigmas``: a number, (n,) isotropic or (n, 3) per-axis sigmas (Angstrom); ``gammas``: a
        number or (n,) correlation lengths (Angstrom). Arrays or tensors; tensors with
        ``requires_grad`` carry their gradients. NaN beyond ``res_limit``.
        """
        s = as_sigmas(sigmas, self.dtype, self.device)
        g = as_gammas(gammas, self.dtype, self.device)
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in (s, g, self.transform, self.q_grid, self.q_mags))):
            return self._maps(s, g)
        # the kernel normalised to unit sum: 8 pi gamma^3 cancels
        kernels = (1 + (g[:, None] * self.q_mags[None, :]).square()).square().reciprocal()
        kernels = kernels / kernels.sum(dim=1, keepdim=True)
        conv = self._convolve(kernels.reshape(-1, *self.map_shape))  # (n_gamma, n_points)
        q2s2 = q2_sigma2(s, self.q_grid, self.q_mags)  # (n_sigma, n_points)
        scale = torch.exp(-q2s2) * q2s2
        Id = (scale[:, None, :] * conv[None, :, :]).reshape(-1, conv.shape[1])
        return Id.masked_fill_(~self.res_mask[None, :], math.nan)  # NaN beyond res_limit, no gradient there

    # ------------------------------------------------------------------ maps without gradients

    def _even_kernel(self) -> bool:
        """Whether every kernel is even along each axis about the grid's centre: an odd number of points
        per axis and ``q_mags`` mirror-symmetric along each axis (to 1e-12; a grid placed symmetrically
        about 0 in a cell whose metric has no cross terms). Its spectrum is then a product of cosine
        transforms of one octant."""
        key = (id(self.q_mags), self.q_mags._version)
        cached = getattr(self, "_even", None)
        if cached is None or cached[0] != key:
            even = all(m % 2 == 1 for m in self.map_shape) and self.q_mags.numel() == math.prod(self.map_shape)
            if even:
                q = self.q_mags.detach().reshape(self.map_shape)
                tol = 1e-12 * float(q.abs().max())
                for d, m in enumerate(self.map_shape):
                    c = (m - 1) // 2
                    low, high = q.narrow(d, 0, c), q.narrow(d, c + 1, c).flip(d)
                    if c and float((low - high).abs().max()) > tol:
                        even = False
                        break
            cached = (key, even)
            self._even = cached
        return cached[1]

    def _cosine_tables(self, shape):
        """Per axis, the (L // 2 + 1, c + 1) table ``w(d) cos(2 pi w d / L)`` (w(0) = 1, else 2) that turns
        an octant of an even kernel into its spectrum, and the index folding frequency w onto
        min(w, L - w)."""
        tables, folds = [], []
        for m, L in zip(self.map_shape, shape):
            c = (m - 1) // 2
            w = torch.arange(L // 2 + 1, device=self.device)
            d = torch.arange(c + 1, device=self.device)
            angle = (w[:, None] * d[None, :]) % L  # exact integers: the angle stays in [0, 2 pi)
            t = torch.cos(angle.to(self.dtype) * (2 * math.pi / L))
            t[:, 1:] *= 2
            tables.append(t)
            full = torch.arange(L, device=self.device)
            folds.append(torch.minimum(full, L - full))
        return tables, folds

    def _maps(self, s: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """:meth:`apply_disorder` without gradients: one gamma at a time in reused buffers, each
        convolved map multiplied by the sigma factors straight into the output."""
        n_points = self.q_mags.numel()
        n_s, n_g = s.shape[0], g.numel()
        Id = torch.empty((n_s, n_g, n_points), dtype=self.dtype, device=self.device)
        # the sigma factors q2s2 exp(-q2s2), kept in the output's first gamma slot until it is filled
        scale = Id[:, 0]
        torch.mul(s.square()[:, None], self.q_mags.square()[None, :], out=scale) if s.ndim == 1 else \
            torch.matmul(s.square(), self.q_grid.square().T, out=scale)
        row = torch.empty(n_points, dtype=self.dtype, device=self.device)
        for i in range(n_s):
            torch.neg(scale[i], out=row)
            scale[i].mul_(row.exp_())
        shape3 = self.map_shape
        order = range(n_g - 1, -1, -1)  # the slot holding the factors last
        if math.prod(shape3) >= self.circular_above:
            for j in order:
                kernel = (g[j] * self.q_mags).square_().add_(1).square_().reciprocal_()
                conv = self.fft_convolve(self.transform, (kernel / kernel.sum()).reshape(shape3)).reshape(-1)
                torch.mul(scale, conv, out=Id[:, j])
            return self._nan_beyond(Id.reshape(n_s * n_g, n_points))
        start = [(m - 1) // 2 for m in shape3]
        shape = [_fast_length(max(2 * m - 1 - c, c + m)) for m, c in zip(shape3, start)]
        key = (id(self.transform), self.transform._version, tuple(shape))
        cached = getattr(self, "_spectrum_l", None)
        if cached is None or cached[0] != key:  # the transform's half spectrum, l-major
            cached = (key, self._transform_spectrum(shape).permute(2, 0, 1).contiguous())
            self._spectrum_l = cached
        spectrum = cached[1]
        product = torch.empty_like(spectrum)
        even = self._even_kernel()
        if even:
            # the kernel centred on index 0 (circularly): out[i] = sum_j T[j] K(i - j), cropped from 0
            tables, folds = self._cosine_tables(shape)
            octant = self.q_mags.reshape(shape3)[start[0]:, start[1]:, start[2]:]
            weight = (tables[0][0, :, None, None] * tables[1][0, None, :, None] * tables[2][0, None, None, :])
            half = torch.empty((shape[2] // 2 + 1, shape[0], shape[1] // 2 + 1), dtype=self.dtype, device=self.device)
            k_hat = torch.empty(spectrum.shape, dtype=self.dtype, device=self.device)
            lo = (0, 0, 0)
        else:
            lo = start
        factors = scale.reshape(n_s, *shape3)
        for j in order:
            if even:
                k = (g[j] * octant).square_().add_(1).square_().reciprocal_()
                k /= (k * weight).sum()
                # spectrum of the even kernel: cosine transforms of the octant along l, k, h
                x = k @ tables[2].T  # (c0+1, c1+1, L2//2+1)
                x = torch.matmul(tables[1], x)  # (c0+1, L1//2+1, L2//2+1)
                x = (tables[0] @ x.reshape(x.shape[0], -1)).reshape(-1, x.shape[1], x.shape[2])
                # unfolded to every frequency, l-major
                torch.index_select(x.permute(2, 0, 1), 1, folds[0], out=half)
                torch.index_select(half, 2, folds[1], out=k_hat)
                torch.mul(spectrum, k_hat, out=product)
            else:
                k = (g[j] * self.q_mags).square_().add_(1).square_().reciprocal_()
                k /= k.sum()
                k_hat = torch.fft.rfftn(k.reshape(shape3), s=shape, dim=(-3, -2, -1)).permute(2, 0, 1)
                torch.mul(spectrum, k_hat, out=product)
            conv = _inverse_cropped(product, shape, lo, shape3)
            torch.mul(factors, conv, out=Id[:, j].view(n_s, *shape3))
        return self._nan_beyond(Id.reshape(n_s * n_g, n_points))

    def _nan_beyond(self, Id: torch.Tensor) -> torch.Tensor:
        outside = getattr(self, "_outside", None)
        if outside is None or outside[0] is not self.res_mask:
            outside = (self.res_mask, bool((~self.res_mask).any()))
            self._outside = outside
        return Id.masked_fill_(~self.res_mask[None, :], math.nan) if outside[1] else Id

    def _inside(self, maps: torch.Tensor) -> torch.Tensor:
        return maps[..., self.mask.reshape(-1) == 1]

    # ------------------------------------------------------------------ scans and fits

    def optimize(self, target, sigmas_min, sigmas_max, gammas_min, gammas_max, ns_search=20, ng_search=10):
        """eryx's grid scan over sigma and gamma: the pair whose map (unpadded region) correlates best
        with ``target`` (shape ``map_shape_nopad``).

        Sigma bounds are numbers (``ns_search`` isotropic sigmas) or 3 values each (the product grid,
        ``ns_search**3`` per-axis sigmas); ``ng_search`` gammas from ``gammas_min`` to ``gammas_max``.
        Sets ``opt_sigma``, ``opt_gamma`` (this scan's best), ``opt_map`` (the first scan's best,
        replaced by a later scan only when it beats every CC seen before), extends the scan lists,
        prints the optimum as eryx does, and returns ``(ccs, sigmas, gammas)``, one entry per map.
        """
        target = check_target(target, self.map_shape_nopad, self.dtype, self.device)
        sigmas = sigma_grid(sigmas_min, sigmas_max, ns_search, self.dtype, self.device, "ns_search")
        gammas = linspace(scalar_bound(gammas_min, "gammas_min"), scalar_bound(gammas_max, "gammas_max"),
                          check_count(ng_search, "ng_search"), self.dtype, self.device)
        with torch.no_grad():
            Id = self._inside(self.apply_disorder(sigmas, gammas))
            ccs = compute_cc(Id, target.reshape(1, -1))
        i = best(ccs)
        earlier = [float(c) for c in self.scan_ccs]
        beats_all = bool(earlier) and float(ccs.max()) > max(earlier)
        if self.opt_map is None or beats_all:
            self.opt_map = Id[i].reshape(self.map_shape_nopad)
        n_g = gammas.numel()
        sigmas = sigmas.repeat_interleave(n_g, dim=0)
        gammas = gammas.repeat(sigmas.shape[0] // n_g)
        self.opt_sigma = sigmas[i]
        self.opt_gamma = gammas[i]
        self.scan_sigmas.extend(sigmas.cpu().unbind(0))
        self.scan_gammas.extend(gammas.cpu().unbind(0))
        self.scan_ccs.extend(ccs.cpu().unbind(0))
        print(f"Optimal sigma: {describe(self.opt_sigma)}, optimal gamma: {describe(self.opt_gamma)}, "
              f"with correlation coefficient {float(ccs[i]):.4f}")
        return (ccs, sigmas, gammas)

    def fit(self, target, sigmas, gamma, *, mask=None, max_iter=100, tolerance=1e-10):
        """Fit sigma(s) and gamma to ``target`` (shape ``map_shape_nopad``) by gradient descent
        (torch.optim.LBFGS on their logarithms) from the start ``sigmas`` (a number, or 3 per-axis
        values) and ``gamma``, maximising eryx's correlation over the unpadded region (points that
        are not NaN, and where ``mask`` is True). Returns ``(sigmas, gamma, map)``: the fitted sigma
        (0-d) or sigmas (3,), gamma (0-d) and the map (``map_shape_nopad``).
        """
        target = check_target(target, self.map_shape_nopad, self.dtype, self.device)
        start = as_sigmas(sigmas, self.dtype, self.device, "sigmas").detach().reshape(-1)
        if start.numel() not in (1, 3):
            raise ValueError(f"fit starts from one isotropic sigma or 3 per-axis sigmas, got {start.numel()} values")
        g0 = as_gammas(gamma, self.dtype, self.device).detach()
        if g0.numel() != 1:
            raise ValueError(f"fit starts from one gamma, got {g0.numel()}")
        params = torch.cat([start, g0])
        if bool((params <= 0).any()):
            raise ValueError(f"the starting sigma(s) and gamma must be positive, got {params.tolist()}")
        per_axis = start.numel() == 3

        def maps(p):
            s = p[:-1][None] if per_axis else p[:1]
            return self._inside(self.apply_disorder(s, p[-1:]))

        fitted = fit_lbfgs(params, maps, target, mask, max_iter, tolerance)
        with torch.no_grad():
            Id = maps(fitted)[0]
        s = fitted[:-1] if per_axis else fitted[0]
        return s, fitted[-1], Id.reshape(self.map_shape_nopad)

    def plot_scan(self, output=None):
        """Heat map of CC over the (isotropic) sigmas and gammas scanned so far, cubic interpolation on
        a 25 x 25 grid, on the current matplotlib figure; saved to ``output`` when given."""
        import numpy as np
        from matplotlib import pyplot
        from scipy.interpolate import griddata

        x = np.array([float(v) for v in _scalars(self.scan_sigmas, "scan_sigmas")])
        y = np.array([float(v) for v in self.scan_gammas])
        cc = np.array([float(v) for v in self.scan_ccs])
        # CC interpolated (cubic) on a 25 x 25 grid spanning the scanned ranges
        gx, gy = (np.linspace(v.min(), v.max(), 25) for v in (x, y))
        heat = griddata((x, y), cc, (gx[None, :], gy[:, None]), method="cubic")
        filled = pyplot.contourf(gx, gy, heat, 25)
        axes = pyplot.gca()
        axes.set_xlabel(r"$\sigma$ ($\mathrm{\AA}$)", fontsize=14)
        axes.set_ylabel(r"$\gamma$ ($\mathrm{\AA}$)", fontsize=14)
        pyplot.colorbar(filled).ax.set_ylabel("CC", fontsize=14)
        _save(output)
