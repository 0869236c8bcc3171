"""Property-based fuzzing of damaged structures (issue 13), through the Python API and the command line.

A valid small PDB (a P1 cell of 5 Angstrom, six atoms, REMARK 290 identity operator) is damaged by
hypothesis: fields blanked or shifted, numbers replaced by nan/inf/huge/negative values, lines dropped or
duplicated, random bytes written in. Whatever comes out must be one of

* a map, finite at every q-point but the Bragg peaks (or, in the API only, NaN on the k-vectors a
  FloppyNetworkWarning names, as eryx's rule has it), with any warning a StructureWarning;
* a clean refusal: StructureError in the API, exit status 2 with one line on stderr and nothing written
  from the command line;

never a traceback, another exception, a hang (each example runs under a time limit) or a silent NaN map.
Deterministic (derandomize) and small (a 3 x 3 x 3 grid, few examples), so it fits in CI.
"""

from __future__ import annotations

import contextlib
import io
import math
import signal
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz test needs hypothesis (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from eryx_port import cli  # noqa: E402
from eryx_port.models import OnePhonon  # noqa: E402
from eryx_port.validation import FloppyNetworkWarning, StructureError, StructureWarning  # noqa: E402

BASE = """\
CRYST1    5.000    5.000    5.000  90.00  90.00  90.00 P 1           1
REMARK 290   SMTRY1   1  1.000000  0.000000  0.000000        0.00000
REMARK 290   SMTRY2   1  0.000000  1.000000  0.000000        0.00000
REMARK 290   SMTRY3   1  0.000000  0.000000  1.000000        0.00000
ATOM      1  N   ALA A   1       1.000   1.000   1.000  1.00 10.00           N
ATOM      2  CA  ALA A   1       2.400   1.000   1.000  1.00 12.00           C
ATOM      3  C   ALA A   1       1.000   2.400   1.000  1.00 14.00           C
ATOM      4  O   ALA A   1       1.000   1.000   2.400  1.00 16.00           O
ATOM      5  CB  ALA A   1       2.400   2.400   1.000  1.00 18.00           C
ATOM      6  N   GLY A   2       2.400   1.000   2.400  1.00 20.00           N
END
"""
LINES = BASE.splitlines(keepends=True)
# (start, stop) columns of the fields a mutation may touch, per record
FIELDS = {
    "CRYST1": [(6, 15), (15, 24), (24, 33), (33, 40), (40, 47), (47, 54), (55, 66)],
    "REMARK": [(24, 33), (34, 43), (44, 53), (53, 68)],
    "ATOM  ": [(12, 16), (16, 17), (17, 20), (21, 22), (22, 26), (30, 38), (38, 46), (46, 54), (54, 60), (60, 66), (76, 78)],
}
NUMBERS = ["nan", "NaN", "inf", "-inf", "1e30", "-1e30", "1e308", "99999999", "-999.999", "0", "-0.0", "-5", "-12.5",
           "1e-30", "9999.9", "0.001", "abc", "", "1,5", "+"]
SMALL = ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2))  # 5 x 5 x 5 points; 8 k-vectors
SMALL_ARGS = ["--hsampling", "-1", "1", "2", "--ksampling", "-1", "1", "2", "--lsampling", "-1", "1", "2"]
TIME_LIMIT_S = 30  # per example; a healthy one takes well under a second


@st.composite
def mutation(draw):
    kind = draw(st.sampled_from(["blank", "number", "shift", "drop", "duplicate", "bytes", "swap"]))
    # END stays (a dropped END is one of the 'drop' cases below); half of the mutations go to the ATOM records
    line = draw(st.one_of(st.integers(4, len(LINES) - 2), st.integers(0, len(LINES) - 2)))
    if kind in ("blank", "number"):
        record = LINES[line][:6]
        start, stop = draw(st.sampled_from(FIELDS.get(record, FIELDS["ATOM  "])))
        text = "" if kind == "blank" else draw(st.sampled_from(NUMBERS))
        return (kind, line, start, stop, text)
    if kind == "shift":
        return (kind, line, draw(st.integers(0, 79)), draw(st.integers(-3, 3)), "")
    if kind == "bytes":
        return (kind, line, draw(st.integers(0, 79)), 0, draw(st.binary(min_size=1, max_size=6)))
    if kind == "drop":
        return (kind, draw(st.integers(0, len(LINES) - 1)), 0, 0, "")
    return (kind, line, draw(st.integers(0, len(LINES) - 2)), 0, "")


def apply(mutations) -> bytes:
    lines = [ln.encode() for ln in LINES]
    for kind, line, a, b, text in mutations:
        line = min(line, len(lines) - 1)
        if not lines:
            break
        raw = lines[line]
        body, end = raw.rstrip(b"\n"), b"\n"
        if kind in ("blank", "number"):
            body = body.ljust(b)
            field = text.encode().rjust(b - a)[: b - a] if text else b" " * (b - a)
            body = body[:a] + field + body[b:]
        elif kind == "shift":
            body = body[:a] + b" " * b + body[a:] if b >= 0 else body[:a] + body[a - b :]
        elif kind == "bytes":
            body = body[:a] + text + body[a + len(text) :]
        elif kind == "drop":
            del lines[line]
            continue
        elif kind == "duplicate":
            lines.insert(line, raw)
            continue
        elif kind == "swap":
            other = min(a, len(lines) - 1)
            lines[line], lines[other] = lines[other], lines[line]
            continue
        lines[line] = body + end
    return b"".join(lines)


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (TimeoutError) instead of hanging; a no-op where signals are not available."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"example took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def bragg_mask(model) -> torch.Tensor:
    hkl = model.hkl_grid
    return (hkl == hkl.round()).all(dim=1)


def check_map(I: torch.Tensor, bragg: torch.Tensor, floppy: bool, text: bytes) -> None:
    nan = I.isnan()
    assert not bool(torch.isinf(I).any()), f"infinite values in the map of\n{text!r}"
    if floppy:  # eryx's rule: whole k-vector classes NaN, said by the warning; never all of the map
        assert bool(nan[bragg].all()) and not bool(nan[~bragg].all()), f"NaN map despite a warning for\n{text!r}"
    else:
        assert torch.equal(nan, bragg), f"NaN off the Bragg peaks without a word for\n{text!r}"


SETTINGS = dict(
    derandomize=True,
    database=None,
    deadline=None,  # the time limit is time_limit(): a deadline would fail a slow shared CI machine at random
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)

MUTATIONS = st.lists(mutation(), min_size=1, max_size=3)


def test_base_structure_is_valid():
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "base.pdb"
        path.write_text(BASE)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = OnePhonon(str(path), *SMALL, progress=False)
            check_map(model.apply_disorder(), bragg_mask(model), False, BASE.encode())


@settings(max_examples=120, **SETTINGS)
@given(MUTATIONS)
def test_damaged_structures_in_the_python_api(mutations):
    text = apply(mutations)
    with tempfile.TemporaryDirectory() as folder, time_limit(TIME_LIMIT_S):
        path = Path(folder) / "damaged.pdb"
        path.write_bytes(text)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model = OnePhonon(str(path), *SMALL, progress=False)
            except StructureError as exc:
                message = str(exc)
                assert "\n" not in message.strip() and message, f"unclear refusal {message!r}"
                assert "damaged.pdb" in message, f"refusal does not name the file: {message!r}"
                return
            maps = [model.apply_disorder(), model.apply_disorder(use_data_adp=True)]
        others = [w for w in caught if not issubclass(w.category, StructureWarning)]
        assert not others, f"unnamed warnings {[str(w.message) for w in others]} for\n{text!r}"
        floppy = any(issubclass(w.category, FloppyNetworkWarning) for w in caught)
        bragg = bragg_mask(model)
        for I in maps:
            check_map(I, bragg, floppy, text)


@settings(max_examples=25, **SETTINGS)
@given(MUTATIONS)
def test_damaged_structures_on_the_command_line(mutations):
    text = apply(mutations)
    with tempfile.TemporaryDirectory() as folder, time_limit(TIME_LIMIT_S):
        folder = Path(folder)
        path = folder / "damaged.pdb"
        path.write_bytes(text)
        out = folder / "out"
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["simulate", str(path), *SMALL_ARGS, "--quiet", "--out", str(out)])
        err = err.getvalue()
        assert "Traceback" not in err
        lines = err.splitlines()
        if rc == 2:
            assert len(lines) == 1 and lines[0].startswith("eryx-port: error: "), err
            assert sorted(p.name for p in folder.iterdir()) == ["damaged.pdb"], "files left behind"
            return
        assert rc == 0, f"exit {rc}: {err}\nfor\n{text!r}"
        assert all(line.startswith("eryx-port: warning: ") for line in lines), err
        intensity = np.load(out / "onephonon.npy")
        with np.load(out / "onephonon.npz") as f:
            hkl = f["hkl_grid"].reshape(*intensity.shape, 3)
        bragg = np.all(hkl == np.round(hkl), axis=-1)
        assert np.array_equal(np.isnan(intensity), bragg), f"NaN off the Bragg peaks for\n{text!r}\n{err}"
        assert np.isfinite(intensity[~bragg]).all()


def test_mutations_do_what_they_say():
    blanked = apply([("blank", 5, 60, 66, "")]).decode().splitlines()[5]
    assert blanked[60:66] == " " * 6 and blanked[:60] == LINES[5][:60]
    nan = apply([("number", 5, 60, 66, "nan")]).decode().splitlines()[5]
    assert nan[60:66] == "   nan"
    assert apply([("drop", 4, 0, 0, "")]).count(b"ATOM") == 5
    assert apply([("duplicate", 4, 0, 0, "")]).count(b"ATOM") == 7
    assert math.isclose(len(apply([("shift", 4, 30, 2, "")])), len(BASE) + 2)
