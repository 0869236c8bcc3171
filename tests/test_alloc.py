# SPDX-License-Identifier: GPL-2.0-or-later
"""The allocator setting behind fast maps: taken on glibc, left alone when asked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = "from eryx_port._alloc import keep_freed_memory as k; print(k(), k())"


def _run(env_value):
    env = dict(os.environ)
    env.pop("ERYX_PORT_MALLOC_TUNING", None)
    if env_value is not None:
        env["ERYX_PORT_MALLOC_TUNING"] = env_value
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's: elsewhere the allocator is left as it is")
def test_glibc_keeps_freed_blocks():
    assert _run(None) == ["True", "True"]  # taken once, the same answer after


def test_opt_out_leaves_the_allocator_alone():
    assert _run("0") == ["False", "False"]
