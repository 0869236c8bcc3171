# SPDX-License-Identifier: GPL-2.0-or-later
"""One-phonon diffuse scattering around one Bragg peak: eryx's ``OnePhononBrillouin``, in torch.

A :class:`~eryx_port.models.onephonon.OnePhonon` map is computed on the box of Miller indices
``h-1 .. h+1`` (and likewise k, l) sampled ``N`` times per unit, and cut down to the points around
``(h, k, l)``: along each axis the ``2N + 1`` grid values keep indices ``N//2 + 1`` up to (not
including) ``2N + 1 - ceil(N/2)``, as eryx crops them (one point fewer after the peak than before
it when N is even). The peak itself is NaN for the GNM model (zero-frequency modes), as in eryx.

Differentiable in ``gamma_intra`` / ``gamma_inter`` (0-d tensors with ``requires_grad``).

Difference from eryx: with ``model='rb'`` eryx always fails (IndexError for N < 4, AttributeError
otherwise: its map asks for the GNM's ADPs, which the rigid-body model never computes). The port
uses the data B-factors there (``use_data_adp=True``), and refuses N < 4 with a ValueError since the
'rb' model scales k by the fourth k-vector along h.
"""

from __future__ import annotations

import math
import numbers

import torch

from .onephonon import OnePhonon

__all__ = ["OnePhononBrillouin"]


def _miller(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite Miller index, got {value!r}")
    return value


class OnePhononBrillouin:
    """One-phonon intensity in the Brillouin zone of the Bragg peak ``(h, k, l)``.

    Parameters as eryx: ``pdb_path, h, k, l, N`` (points per Miller unit), ``group_by``,
    ``model`` ('gnm' or 'rb'), ``gnm_cutoff``, ``gamma_intra``, ``gamma_inter``, ``batch_size``,
    ``n_processes`` (passed on to :class:`OnePhonon`). Keyword-only: ``device``, ``dtype``,
    ``progress`` (default False).

    Attributes: ``phonon`` (the :class:`OnePhonon` model) and ``Id``, the map around the peak,
    a tensor of shape (n, n, n) with ``n = 2N + 1 - (N//2 + 1) - ceil(N/2)``.
    """

    def __init__(
        self,
        pdb_path,
        h,
        k,
        l,  # noqa: E741  (eryx's name)
        N,
        group_by="asu",
        model="gnm",
        gnm_cutoff=4.0,
        gamma_intra=1.0,
        gamma_inter=1.0,
        batch_size=10000,
        n_processes=8,
        *,
        device=None,
        dtype=None,
        progress=False,
    ):
        h, k, l = (_miller(v, n) for v, n in ((h, "h"), (k, "k"), (l, "l")))  # noqa: E741
        if isinstance(N, bool) or not isinstance(N, numbers.Integral) or N < 1:
            raise ValueError(f"N must be a positive integer (grid points per Miller unit), got {N!r}")
        if model == "rb" and N < 4:
            raise ValueError(f"model='rb' needs N >= 4 (it scales k by the fourth k-vector along h); got N={N}")
        self.N = int(N)
        self.phonon = OnePhonon(
            pdb_path, (h - 1, h + 1, N), (k - 1, k + 1, N), (l - 1, l + 1, N),
            group_by=group_by, model=model, gnm_cutoff=gnm_cutoff,
            gamma_intra=gamma_intra, gamma_inter=gamma_inter,
            batch_size=batch_size, n_processes=n_processes,
            device=device, dtype=dtype, progress=progress,
        )
        self._compute()

    def _zone(self) -> slice:
        """Indices kept along each axis of the (2N + 1)-point grid."""
        n = 2 * self.N + 1
        return slice(self.N // 2 + 1, n - (self.N + 1) // 2)

    def _compute(self) -> torch.Tensor:
        rigid = getattr(self.phonon, "gnm", None) is None  # model='rb': no GNM ADPs, the data's B-factors
        full = self.phonon.apply_disorder(use_data_adp=rigid).reshape(self.phonon.map_shape)
        z = self._zone()
        self.Id = full[z, z, z]
        return self.Id

    def update(self, *, gamma_intra=None, gamma_inter=None):
        """New spring constants (tensors may require grad); recomputes ``Id`` and returns it."""
        self.phonon.update(gamma_intra=gamma_intra, gamma_inter=gamma_inter)
        return self._compute()
