# SPDX-License-Identifier: GPL-2.0-or-later
"""Port modules that may not exist yet (the facade exports stand-ins for their names until they do)."""

import importlib


def port_module(name: str):
    try:
        return importlib.import_module(f"eryx_port.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"eryx_port.{name}":
            raise
        return None
