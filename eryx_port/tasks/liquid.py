# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx-port run -c CONFIG -t LiquidLikeMotions``: eryx's grid scan of sigma and gamma against
``setup.exp_map``; writes models/liquidlikemotions[_asuconfined].npy, base/ctransform.npy (or mtransform.npy
when ``asu_confined``) and figs/scan_liquidlikemotions[_asuconfined].png."""

from __future__ import annotations

from .scan import run_scan


def run(config, args) -> int:
    return run_scan(config, args, "LiquidLikeMotions")
