# SPDX-License-Identifier: GPL-2.0-or-later
"""Multi-model (ensemble) PDB files made from one structure, for the ensemble model's tests and traces.

:func:`write_perturbed_models` copies a structure's header (CRYST1, REMARK 290, ...) and writes its
atoms ``n_models`` times, as ``MODEL``/``ENDMDL`` blocks, each model displaced by a fixed
pseudo-random pattern. Only integer arithmetic on the coordinates' thousandths of an Angstrom is
used, so the file is the same byte for byte on every machine and Python (its hash is what a trace
records). No torch, no NumPy: the recording environment imports this module too.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_perturbed_models"]

# per-axis multipliers of the displacement pattern (atom index, model index, constant)
_ATOM_STEP = (37, 53, 71)
_MODEL_STEP = (101, 131, 151)
_OFFSET = (7, 19, 29)


def _milli(field: str) -> int:
    """A PDB coordinate field ('  -1.234') as integer thousandths, exactly."""
    text = field.strip()
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("+-").partition(".")
    frac = (frac + "000")[:3]
    return sign * (int(whole or "0") * 1000 + int(frac))


def _field(milli: int) -> str:
    sign = "-" if milli < 0 else ""
    value = abs(milli)
    return f"{sign}{value // 1000}.{value % 1000:03d}".rjust(8)


def write_perturbed_models(src, dest, n_models: int = 3, amplitude: float = 0.3) -> str:
    """Write ``n_models`` displaced copies of the atoms of PDB file ``src`` into ``dest``; returns ``dest``.

    Model 1 is the structure as read; in model m + 1 every atom moves by up to ``amplitude``
    Angstrom per axis (rounded to 0.001), a deterministic pattern of the atom and model numbers.
    The header lines before the first atom (cell, symmetry operators) are copied as they are.
    """
    if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
        raise ValueError(f"n_models must be a positive integer, got {n_models!r}")
    amp = int(round(float(amplitude) * 1000))
    if amp < 0:
        raise ValueError(f"amplitude must be non-negative, got {amplitude!r}")
    with open(src, "r") as fh:
        lines = [line.rstrip("\n") for line in fh]
    first = next((i for i, line in enumerate(lines) if line.startswith(("ATOM  ", "HETATM"))), None)
    if first is None:
        raise ValueError(f"{src}: no ATOM/HETATM records")
    header = [line for line in lines[:first] if not line.startswith(("MODEL", "ENDMDL"))]
    body = [line for line in lines[first:] if line.startswith(("ATOM  ", "HETATM", "TER"))]
    out = list(header)
    for m in range(n_models):
        out.append(f"MODEL     {m + 1:4d}")
        n_atom = 0
        for line in body:
            if not line.startswith(("ATOM  ", "HETATM")):
                out.append(line)
                continue
            xyz = [_milli(line[30 + 8 * a : 38 + 8 * a]) for a in range(3)]
            if m > 0 and amp > 0:
                xyz = [
                    v + (n_atom * _ATOM_STEP[a] + m * _MODEL_STEP[a] + _OFFSET[a]) % (2 * amp + 1) - amp
                    for a, v in enumerate(xyz)
                ]
            out.append(line[:30] + "".join(_field(v) for v in xyz) + line[54:])
            n_atom += 1
        out.append("ENDMDL")
    out.append("END")
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w") as fh:
        fh.write("\n".join(out) + "\n")
    return os.fspath(dest)
