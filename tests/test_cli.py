"""The eryx-port command line: simulate on the bundled demo, run on eryx configs, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eryx_port import cli, config as cfg

REPO = Path(__file__).resolve().parent.parent

# eryx's own scripts/main.py -c CONFIG -t OnePhonon on ERYX_CONFIG (5zck.pdb, n_processes=1), run once with the
# NumPy reference (commit cc96863, numpy 2.3.5, gemmi 0.6.7): models/onephonon.npy had shape (5, 9, 7), 45 NaN
# and these values.
ERYX_CONFIG = """\
setup:
  root_dir: '{root}'
  pdb_path: '{pdb}'
  exp_map: 'unused.npy'
  hsampling: [-1.4, 0.6, 2]
  ksampling: [0, 2.5, 2]
  lsampling: [-1, 1, 3]
  res_limit: 1.25
  batch_size: 10000
  n_processes: 1

OnePhonon:
  gnm_cutoff: 4
  gamma_intra: 2
  gamma_inter: 0.5
"""
ERYX_SHAPE, ERYX_NAN = (5, 9, 7), 45
ERYX_NANSUM = 151879.08666394075
ERYX_VALUES = {
    (0, 0, 1): 423.1420247819731,
    (1, 2, 2): 337.05245504885556,
    (2, 4, 5): 177.14402044943114,
    (1, 1, 0): 122.45210458614582,
    (0, 3, 4): 2169.554379993907,
}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "eryx_port.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def entries(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --------------------------------------------------------------------------- simulate


@pytest.mark.slow  # ~6 s: the README's first command, end to end in a fresh process
def test_simulate_default_writes_every_output(tmp_path):
    import gemmi
    import matplotlib.image

    from eryx_port.models import OnePhonon

    res = run_cli("simulate", "--out", "maps", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    out = tmp_path / "maps"
    names = {p.name for p in out.iterdir()}
    assert names == {
        "onephonon.npy", "onephonon.npz", "onephonon.ccp4",
        "onephonon_h_section.png", "onephonon_k_section.png", "onephonon_l_section.png",
    }
    assert not [p for p in tmp_path.iterdir() if p.name != "maps"], "staging folder left behind"
    assert str(out / "onephonon.ccp4") in res.stdout  # the summary says where the files are

    # the map: default sampling -4..4 x 3 on each axis; NaN exactly at the Bragg peaks, finite positive elsewhere
    intensity = np.load(out / "onephonon.npy")
    assert intensity.shape == (25, 25, 25) and intensity.dtype == np.float64
    with np.load(out / "onephonon.npz") as f:
        hkl = f["hkl_grid"].reshape(25, 25, 25, 3)
        assert tuple(f["map_shape"]) == (25, 25, 25)
        np.testing.assert_allclose(f["h_values"], np.linspace(-4, 4, 25))
        params, versions = json.loads(str(f["parameters"])), json.loads(str(f["versions"]))
    bragg = np.all(np.isclose(hkl, np.round(hkl)), axis=-1)
    np.testing.assert_array_equal(np.isnan(intensity), bragg)
    assert np.all(intensity[~bragg] > 0) and np.all(np.isfinite(intensity[~bragg]))
    assert params["gamma_intra"] == 1.0 and params["use_data_adp"] is False and params["dtype"] == "float64"
    assert versions["eryx_port"] == cli.__version__ and "torch" in versions

    # same numbers as the Python API with the same arguments
    model = OnePhonon(
        str(cli.demo_structure()), (-4, 4, 3), (-4, 4, 3), (-4, 4, 3), gnm_cutoff=4.0, progress=False
    )
    expected = model.apply_disorder().reshape(model.map_shape).numpy()
    np.testing.assert_allclose(intensity, expected, rtol=1e-12, equal_nan=True)

    # CCP4: the grid of the map, NaN written as 0, hkl = 0 at the origin, reciprocal cell of the demo
    ccp4 = gemmi.read_ccp4_map(str(out / "onephonon.ccp4"), setup=False)
    grid = np.array(ccp4.grid, copy=False)
    assert grid.shape == (25, 25, 25)
    assert [ccp4.header_i32(w) for w in (5, 6, 7)] == [-12, -12, -12]
    np.testing.assert_allclose(grid, np.nan_to_num(intensity, nan=0.0).astype(np.float32))
    rstar = gemmi.read_structure(str(cli.demo_structure())).cell.reciprocal()
    assert ccp4.grid.unit_cell.a == pytest.approx(25 * rstar.a / 3, rel=1e-5)

    for axis in "hkl":
        image = matplotlib.image.imread(out / f"onephonon_{axis}_section.png")
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image[..., :3].std() > 0.05  # not a blank picture


def test_simulate_into_existing_folder_keeps_other_files(tmp_path, pdb_file):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "onephonon.npy").write_text("old")
    pdb = str(pdb_file("5zck.pdb"))
    args = ["simulate", pdb, "--hsampling", "-1", "1", "2", "--ksampling", "-1", "1", "2", "--lsampling", "0", "1", "2"]
    assert cli.main([*args, "--quiet", "--dtype", "float32", "--out", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    intensity = np.load(out / "onephonon.npy")
    assert intensity.shape == (5, 5, 3) and intensity.dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps"]


def test_failure_during_computation_leaves_nothing(tmp_path, monkeypatch, capsys):
    from eryx_port import models

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated failure\nsecond line")

    monkeypatch.setattr(models.OnePhonon, "apply_disorder", broken)
    out = tmp_path / "new" / "maps"
    rc = cli.main(["simulate", "--hsampling", "-1", "1", "2", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "simulated failure second line" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- run (eryx configs)


def test_expand_sampling_symmetrises_and_rounds_like_eryx():
    assert cfg.expand_sampling((-1.4, 0.6, 2), force_int=True) == (-1.0, 1.0, 2)
    assert cfg.expand_sampling((0, 2.5, 2), force_int=True) == (-2.0, 2.0, 2)  # half to even, as np.around
    assert cfg.expand_sampling((-3.5, 3.5, 4), force_int=True) == (-4.0, 4.0, 4)
    assert cfg.expand_sampling((-22.46, 22.46, 13), force_int=False) == (-22.46, 22.46, 13)
    assert cfg.expand_sampling((-0.45, 30.45, 11), force_int=True) == (-30.0, 30.0, 11)
    for lo, hi in [(-2.5, 1.0), (0.5, 1.5), (-7.5, 7.5), (1.49, 2.51)]:
        got = cfg.expand_sampling((lo, hi, 1), force_int=True)
        bound = max(abs(lo), abs(hi))
        assert got[:2] == (float(np.around(-bound)), float(np.around(bound)))


def test_run_writes_what_eryx_writes(tmp_path, pdb_file):
    from eryx_port.models import OnePhonon

    pdb = pdb_file("5zck.pdb")
    (tmp_path / "cfg.yaml").write_text(ERYX_CONFIG.format(root="out/root", pdb=os.path.relpath(pdb, tmp_path)))
    res = run_cli("run", "-c", "cfg.yaml", "-t", "OnePhonon", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "res_limit not used" in res.stdout
    root = tmp_path / "out" / "root"
    assert entries(root) == {"models", "base", "figs", "models/onephonon.npy"}
    got = np.load(root / "models" / "onephonon.npy")

    # the port's API with the values eryx's task derives: symmetric, rounded sampling; use_data_adp=True
    model = OnePhonon(str(pdb), (-1, 1, 2), (-2, 2, 2), (-1, 1, 3), gnm_cutoff=4, gamma_intra=2, gamma_inter=0.5,
                      expand_p1=True, progress=False)
    expected = model.apply_disorder(use_data_adp=True).reshape(model.map_shape).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)

    # and eryx's own output for this config (recorded constants, see ERYX_VALUES)
    assert got.shape == ERYX_SHAPE and int(np.isnan(got).sum()) == ERYX_NAN
    assert np.nansum(got) == pytest.approx(ERYX_NANSUM, rel=1e-10)
    for index, value in ERYX_VALUES.items():
        assert got[index] == pytest.approx(value, rel=1e-10)


# --------------------------------------------------------------------------- help and version


def test_help_and_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"eryx-port {cli.__version__}"
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "simulate" in top and "run" in top and "Examples" in top
    assert cli.main(["simulate", "--help"]) == 0
    sim = capsys.readouterr().out
    for option in ("--hsampling", "--ksampling", "--lsampling", "--gamma-intra", "--gamma-inter", "--cutoff",
                   "--res-limit", "--use-data-adp", "--device", "--dtype", "--out", "--quiet"):
        assert option in sim
    assert cli.main(["run", "--help"]) == 0
    assert "--config" in (run_help := capsys.readouterr().out) and "OnePhonon" in run_help


def test_module_entry_point_runs(tmp_path):
    res = run_cli("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == f"eryx-port {cli.__version__}"


# --------------------------------------------------------------------------- bad input


def _write_inputs(folder: Path, pdb: Path | None) -> dict[str, str]:
    """Small files for the bad-input cases; returns name -> path."""
    (folder / "notpdb.pdb").write_bytes(bytes(range(256)) * 4)
    (folder / "nocell.pdb").write_text(
        "ATOM      1  CA  ALA A   1       1.000   2.000   3.000  1.00 10.00           C\nEND\n"
    )
    (folder / "waters.pdb").write_text(
        "CRYST1   20.000   20.000   20.000  90.00  90.00  90.00 P 1           1\n"
        "HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00 10.00           O\nEND\n"
    )
    (folder / "adir.pdb").mkdir()
    (folder / "bad.yaml").write_text("setup: [unclosed\n")
    good = ERYX_CONFIG.format(root="root", pdb=str(pdb or "missing.pdb"))
    (folder / "good.yaml").write_text(good)
    (folder / "nogamma.yaml").write_text(good.replace("  gamma_inter: 0.5\n", ""))
    (folder / "badsampling.yaml").write_text(good.replace("[-1, 1, 3]", "[-1, 1, 1.5]"))
    (folder / "minmax.yaml").write_text(good.replace("[-1, 1, 3]", "[2, -2, 3]"))
    (folder / "missingpdb.yaml").write_text(good.replace(str(pdb or "missing.pdb"), "nowhere/x.pdb"))
    (folder / "afile").write_text("in the way")
    return {p.name.replace(".", "_"): str(p) for p in folder.iterdir()}


SMALL = ["--hsampling", "-1", "1", "2", "--ksampling", "-1", "1", "2", "--lsampling", "-1", "1", "2"]
BAD_SIMULATE = {
    "missing file": (["nowhere.pdb"], "does not exist"),
    "directory": (["{adir_pdb}"], "not a regular file"),
    "not a pdb": (["{notpdb_pdb}"], "no unit cell"),
    "no cell": (["{nocell_pdb}"], "CRYST1"),
    "no atoms": (["{waters_pdb}"], "no atoms left"),
    "fractional oversampling": (["--hsampling", "-1", "1", "1.5"], "oversampling must be a positive integer"),
    "zero oversampling": (["--ksampling", "-1", "1", "0"], "oversampling must be a positive integer"),
    "negative oversampling": (["--lsampling", "-1", "1", "-2"], "oversampling must be a positive integer"),
    "min above max": (["--ksampling", "2", "-2", "2"], "larger than max"),
    "fractional bound": (["--hsampling", "-1.5", "1", "2"], "whole Miller indices"),
    "not a number": (["--hsampling", "a", "1", "2"], "not a number"),
    "zero gamma_intra": (["--gamma-intra", "0"], "must be > 0"),
    "negative gamma_inter": (["--gamma-inter", "-1"], "must be > 0"),
    "zero cutoff": (["--cutoff", "0"], "must be > 0"),
    "negative res limit": (["--res-limit", "-1"], "--res-limit"),
    "unknown device": (["--device", "tpu"], "unknown device"),
    "unknown dtype": (["--dtype", "float16"], "invalid choice"),
    "out is a file": (["--out", "{afile}"], "not a folder"),
    "huge grid": (["--hsampling", "-50000", "50000", "50", "--ksampling", "-50000", "50000", "50"], "--hsampling"),
}
BAD_RUN = {
    "unknown task": (["-c", "{good_yaml}", "-t", "Nonsense"], "unknown task 'Nonsense'; available: RigidBodyTranslations, LiquidLikeMotions, OnePhonon"),
    "task section missing": (["-c", "{good_yaml}", "-t", "LiquidLikeMotions"], "config has no 'LiquidLikeMotions' section"),
    "missing config": (["-c", "nowhere.yaml", "-t", "OnePhonon"], "does not exist"),
    "invalid yaml": (["-c", "{bad_yaml}", "-t", "OnePhonon"], "not valid YAML"),
    "missing key": (["-c", "{nogamma_yaml}", "-t", "OnePhonon"], "lacks 'gamma_inter'"),
    "fractional oversampling": (["-c", "{badsampling_yaml}", "-t", "OnePhonon"], "oversampling"),
    "min above max": (["-c", "{minmax_yaml}", "-t", "OnePhonon"], "larger than max"),
    "missing pdb": (["-c", "{missingpdb_yaml}", "-t", "OnePhonon"], "does not exist"),
}


def _assert_one_line_error(rc: int, err: str, expected: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("eryx-port: error: "), err
    assert "Traceback" not in err
    assert expected in err, err


@pytest.mark.parametrize("case", list(BAD_SIMULATE))
def test_simulate_bad_input(case, tmp_path, capsys):
    inputs = _write_inputs(tmp_path, None)
    before = entries(tmp_path)
    args, expected = BAD_SIMULATE[case]
    # a small grid first: the case's own options come later and win (argparse keeps the last value)
    args = [*SMALL, "--out", str(tmp_path / "out"), *[a.format(**inputs) for a in args]]
    rc = cli.main(["simulate", *args])
    _assert_one_line_error(rc, capsys.readouterr().err, expected)
    assert entries(tmp_path) == before, "files left behind"


@pytest.mark.parametrize("case", list(BAD_RUN))
def test_run_bad_input(case, tmp_path, capsys, monkeypatch):
    inputs = _write_inputs(tmp_path, None)
    monkeypatch.chdir(tmp_path)
    before = entries(tmp_path)
    args, expected = BAD_RUN[case]
    rc = cli.main(["run", *[a.format(**inputs) for a in args]])
    _assert_one_line_error(rc, capsys.readouterr().err, expected)
    assert entries(tmp_path) == before, "files left behind"


def test_cuda_absent_or_missing_device_is_refused(tmp_path, capsys):
    import torch

    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    rc = cli.main(["simulate", *SMALL, "--device", device, "--out", str(tmp_path / "out")])
    _assert_one_line_error(rc, capsys.readouterr().err, "cuda")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_in_a_real_process(tmp_path):
    """The same one-line report and exit status 2 from the installed entry point, with nothing written."""
    res = run_cli("simulate", "missing.pdb", "--gamma-inter", "1", "--out", "out", cwd=tmp_path)
    _assert_one_line_error(res.returncode, res.stderr, "does not exist")
    res = run_cli("run", "-c", "x.yaml", "-t", "Nonsense", cwd=tmp_path)
    _assert_one_line_error(res.returncode, res.stderr, "available: RigidBodyTranslations, LiquidLikeMotions, OnePhonon")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path, capsys):
    path = tmp_path / "secret.pdb"
    path.write_text("CRYST1\n")
    path.chmod(0)
    rc = cli.main(["simulate", str(path), *SMALL, "--out", str(tmp_path / "out")])
    _assert_one_line_error(rc, capsys.readouterr().err, "permission denied")


def test_run_p1_file_without_expansion_is_refused(tmp_path, pdb_file, capsys, monkeypatch):
    """eryx's config can say expand_p1: false; with a '_p1' file the model cannot be built, and we say why."""
    text = ERYX_CONFIG.format(root="root", pdb=pdb_file("5zck_p1.pdb")) + "  expand_p1: false\n"
    (tmp_path / "p1.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["run", "-c", "p1.yaml", "-t", "OnePhonon"])
    _assert_one_line_error(rc, capsys.readouterr().err, "expand_p1")
    assert entries(tmp_path) == {"p1.yaml"}


def test_linear_algebra_failure_is_one_line_with_a_hint(tmp_path, monkeypatch, capsys):
    import torch

    from eryx_port import models

    def singular(self, *args, **kwargs):
        torch.linalg.cholesky(torch.zeros(2, 2, dtype=torch.float32))

    monkeypatch.setattr(models.OnePhonon, "apply_disorder", singular)
    rc = cli.main(["simulate", *SMALL, "--dtype", "float32", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "try --dtype float64" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
