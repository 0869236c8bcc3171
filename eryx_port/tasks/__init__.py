# SPDX-License-Identifier: GPL-2.0-or-later
"""The tasks of eryx's ``scripts/tasks.py``, one module each, run by ``eryx-port run -c CONFIG -t TASK``.

Each task reads the same config sections as eryx's and writes the same files under ``setup.root_dir``.
"""

from __future__ import annotations

from . import liquid, onephonon, translations

TASKS = {
    "OnePhonon": onephonon.run,
    "RigidBodyTranslations": translations.run,
    "LiquidLikeMotions": liquid.run,
}
