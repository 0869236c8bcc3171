# SPDX-License-Identifier: GPL-2.0-or-later
"""``eryx-port run -c CONFIG -t RigidBodyTranslations``: eryx's grid scan of the translation sigma against
``setup.exp_map``; writes models/rigidbodytranslations.npy, base/mtransform.npy, figs/scan_rigidbodytranslations.png."""

from __future__ import annotations

from .scan import run_scan


def run(config, args) -> int:
    return run_scan(config, args, "RigidBodyTranslations")
