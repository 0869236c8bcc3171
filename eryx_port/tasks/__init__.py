# SPDX-License-Identifier: GPL-2.0-or-later
"""The tasks of eryx's ``scripts/tasks.py``, one module each, run by ``eryx-port run -c CONFIG -t TASK``;
and the other models of ``eryx-port simulate --model NAME`` (:mod:`.simulate`).

Each task reads the same config sections as eryx's and writes the same files under ``setup.root_dir``.
Task modules are imported when run (they use the command line's helpers, which import this package).
"""

from __future__ import annotations

import importlib

TASK_MODULES = {
    "OnePhonon": "onephonon",
    "RigidBodyTranslations": "translations",
    "LiquidLikeMotions": "liquid",
}


def run(task: str, config, args) -> int:
    return importlib.import_module(f"{__name__}.{TASK_MODULES[task]}").run(config, args)
