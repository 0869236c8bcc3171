"""Structures that parse but are wrong: refused (StructureError / exit 2) or warned about by name (issue 13).

Every structure here is a few hand-made lines of PDB text: a P1 cell of 5 Angstrom holding six atoms, whose
network connects each cell to its neighbours along a, b and c at the default cutoff of 4 Angstrom.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from eryx_port import cli
from eryx_port.models import OnePhonon
from eryx_port.pdb import AtomicModel
from eryx_port.validation import FloppyNetworkWarning, StructureError, StructureWarning

CELL = "CRYST1    5.000    5.000    5.000  90.00  90.00  90.00 P 1           1\n"
ATOMS = [
    # name, residue, seq, x, y, z, occupancy, B, element
    ("N", "ALA", 1, 1.0, 1.0, 1.0, 1.0, 10.0, "N"),
    ("CA", "ALA", 1, 2.4, 1.0, 1.0, 1.0, 12.0, "C"),
    ("C", "ALA", 1, 1.0, 2.4, 1.0, 1.0, 14.0, "C"),
    ("O", "ALA", 1, 1.0, 1.0, 2.4, 1.0, 16.0, "O"),
    ("CB", "ALA", 1, 2.4, 2.4, 1.0, 1.0, 18.0, "C"),
    ("N", "GLY", 2, 2.4, 1.0, 2.4, 1.0, 20.0, "N"),
]
SMALL = ((-1, 1, 2), (-1, 1, 2), (-1, 1, 2))
SMALL_ARGS = ["--hsampling", "-1", "1", "2", "--ksampling", "-1", "1", "2", "--lsampling", "-1", "1", "2"]


def fmt_num(value, width: int, decimals: int) -> str:
    text = f"{value:{width}.{decimals}f}" if isinstance(value, float) and math.isfinite(value) else str(value)
    return text.rjust(width)[:width] if len(text) <= width else text[:width]


def atom_line(serial, name, resname, seq, x, y, z, occ, b, element, *, record="ATOM", altloc=" ", chain="A") -> str:
    name_field = f" {name:<3}" if len(name) < 4 else name
    return (
        f"{record:<6}{serial:5d} {name_field}{altloc}{resname:>3} {chain}{seq:4d}    "
        f"{fmt_num(x, 8, 3)}{fmt_num(y, 8, 3)}{fmt_num(z, 8, 3)}{fmt_num(occ, 6, 2)}{fmt_num(b, 6, 2)}"
        f"          {element:>2}\n"
    )


def pdb_text(atoms=ATOMS, cell: str = CELL, **kwargs) -> str:
    return cell + "".join(atom_line(i + 1, *a, **kwargs) for i, a in enumerate(atoms)) + "END\n"


def changed(index: int, **fields) -> list[tuple]:
    """ATOMS with atom ``index`` changed (fields by name: x, y, z, occ, b, element, name)."""
    keys = ("name", "resname", "seq", "x", "y", "z", "occ", "b", "element")
    atoms = [list(a) for a in ATOMS]
    for key, value in fields.items():
        atoms[index][keys.index(key)] = value
    return [tuple(a) for a in atoms]


def cell_line(a=5.0, b=5.0, c=5.0, alpha=90.0, beta=90.0, gamma=90.0) -> str:
    edges = "".join(fmt_num(v, 9, 3) for v in (a, b, c))
    angles = "".join(fmt_num(v, 7, 2) for v in (alpha, beta, gamma))
    return f"CRYST1{edges}{angles} P 1           1\n"


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "s.pdb"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def simulate(path, tmp_path, *extra):
    out = tmp_path / "out"
    rc = cli.main(["simulate", str(path), *SMALL_ARGS, "--quiet", "--out", str(out), *extra])
    return rc, out


# --------------------------------------------------------------------------- a valid structure


def test_valid_structure_is_silent_and_gives_a_finite_map(write, tmp_path, capsys):
    path = write(pdb_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = OnePhonon(str(path), *SMALL, progress=False)
        I = model.apply_disorder()
    bragg = (model.hkl_grid == model.hkl_grid.round()).all(dim=1)
    assert torch.equal(I.isnan(), bragg) and bool((I[~bragg] > 0).all())
    rc, out = simulate(path, tmp_path)
    assert rc == 0 and capsys.readouterr().err == ""
    assert np.isfinite(np.load(out / "onephonon.npy")).sum() == int((~bragg).sum())


def test_bundled_and_test_structures_raise_no_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AtomicModel(str(cli.demo_structure()), expand_p1=True)


# --------------------------------------------------------------------------- refused


REFUSED = {
    "nan coordinate": (lambda: pdb_text(changed(1, x="nan")), r"ATOM 2 A/ALA 1/CA has a non-finite coordinate"),
    "inf coordinate": (lambda: pdb_text(changed(2, z="-inf")), r"ATOM 3 A/ALA 1/C has a non-finite coordinate"),
    "nan B-factor": (lambda: pdb_text(changed(1, b="nan")), r"ATOM 2 A/ALA 1/CA has a non-finite B-factor \(B=nan\)"),
    "inf B-factor": (lambda: pdb_text(changed(4, b="inf")), r"ATOM 5 A/ALA 1/CB has a non-finite B-factor"),
    "nan occupancy": (lambda: pdb_text(changed(0, occ="nan")), r"ATOM 1 A/ALA 1/N has a non-finite occupancy"),
    "zero edges": (lambda: pdb_text(cell=cell_line(0.0, 0.0, 0.0)), r"cell edges must be positive"),
    "negative edge": (lambda: pdb_text(cell=cell_line(b=-5.0)), r"cell edges must be positive.*b=-5"),
    "nan edge": (lambda: pdb_text(cell=cell_line(c="nan")), r"non-finite parameter"),
    "angle of 190 degrees": (lambda: pdb_text(cell=cell_line(alpha=190.0)), r"alpha=190 is not between 0 and 180"),
    "zero angle": (lambda: pdb_text(cell=cell_line(gamma=0.0)), r"gamma=0 is not between 0 and 180"),
    "flat cell": (lambda: pdb_text(cell=cell_line(alpha=120.0, beta=120.0, gamma=120.0)), r"do not form a cell \(volume \(nearly\) zero"),
    "imaginary volume": (lambda: pdb_text(cell=cell_line(alpha=30.0, beta=30.0, gamma=100.0)), r"do not form a cell \(volume imaginary"),
    "absurd B-factor": (lambda: pdb_text(changed(0, b="-1e+30")), r"ATOM 1 A/ALA 1/N has a B-factor beyond \+-10000 A\^2 \(B=-1e\+30"),
    "far coordinates": (lambda: pdb_text(changed(3, x="2.0e+06")), r"ATOM 4 A/ALA 1/O lies at 2e\+06 Angstrom, beyond"),
    "waters only": (
        lambda: CELL + atom_line(1, "O", "HOH", 1, 1.0, 1.0, 1.0, 1.0, 10.0, "O", record="HETATM") + "END\n",
        r"no atoms left after removing waters, hydrogens and ligands \(the file holds only 1 water atom\)",
    ),
    "hydrogens only": (
        lambda: pdb_text([("H", "ALA", 1, 1.0, 1.0, 1.0, 1.0, 10.0, "H"), ("HA", "ALA", 1, 2.0, 1.0, 1.0, 1.0, 10.0, "H")]),
        r"no atoms left .*\(the file holds only 2 hydrogens\)",
    ),
}


def _models(first: list[tuple], second: list[tuple]) -> str:
    text = CELL
    for number, atoms in ((1, first), (2, second)):
        text += f"MODEL     {number:4d}\n" + "".join(atom_line(i + 1, *a) for i, a in enumerate(atoms)) + "ENDMDL\n"
    return text + "END\n"


REFUSED["SMTRY not a rotation"] = (
    lambda: CELL
    + "".join(f"REMARK 290   SMTRY{i}   1  {'  '.join('2.000000' if j == i - 1 else '0.000000' for j in range(3))}        0.00000\n"
              for i in (1, 2, 3))
    + "".join(atom_line(i + 1, *a) for i, a in enumerate(ATOMS)) + "END\n",
    r"SMTRY operator 1 is not a rotation",
)
REFUSED["SMTRY row missing"] = (
    lambda: CELL + "REMARK 290   SMTRY1   1  1.000000  0.000000  0.000000        0.00000\n"
    + "".join(atom_line(i + 1, *a) for i, a in enumerate(ATOMS)) + "END\n",
    r"SMTRY operator 1 has 1 row of 4 numbers",
)
REFUSED["models differ in number"] = (lambda: _models(ATOMS, ATOMS[:-1]), r"model 2 has 5 atoms but model 1 has 6")
REFUSED["models differ in atoms"] = (
    lambda: _models(ATOMS, changed(2, name="CG")),
    r"atom 3 of model 2 is CG \(C\) where model 1 has C \(C\)",
)


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_by_the_api(case, write):
    text, match = REFUSED[case]
    path = write(text(), "bad.pdb")
    with pytest.raises(StructureError, match=match) as info:
        AtomicModel(str(path), expand_p1=True)
    assert "bad.pdb" in str(info.value) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("case", ["nan B-factor", "zero edges", "angle of 190 degrees", "waters only", "models differ in number"])
def test_refused_by_the_command_line(case, write, tmp_path, capsys):
    text, match = REFUSED[case]
    path = write(text(), "bad.pdb")
    rc, out = simulate(path, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("eryx-port: error: ") and "Traceback" not in err
    assert "bad.pdb" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.pdb"]


def test_multi_model_file_with_equal_models_is_read(write):
    model = AtomicModel(str(write(_models(ATOMS, ATOMS))), frame=-1)
    assert tuple(model.xyz.shape) == (2, 6, 3)


# --------------------------------------------------------------------------- rigid bodies


@pytest.mark.parametrize(
    "atoms, match",
    [
        (ATOMS[:1], "single atom"),
        ([("N", "ALA", 1, 1.0, 1.0, 1.0, 1.0, 10.0, "N"), ("CA", "ALA", 1, 2.0, 1.5, 1.0, 1.0, 10.0, "C"),
          ("C", "ALA", 1, 3.0, 2.0, 1.0, 1.0, 10.0, "C")], "lie on a line"),
    ],
)
def test_asu_without_rotational_inertia_is_refused(atoms, match, write, tmp_path, capsys):
    path = write(pdb_text(atoms, cell=cell_line(4.0, 4.0, 4.0)))
    with pytest.raises(StructureError, match=f"mass matrix of ASU 0 is singular: .*{match}"):
        OnePhonon(str(path), *SMALL, progress=False)
    rc, _ = simulate(path, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and match in err and err.count("\n") == 1


# --------------------------------------------------------------------------- the network


def test_network_without_contacts_between_asus_is_refused_with_numbers(write, tmp_path, capsys):
    path = write(pdb_text(cell=cell_line(50.0, 50.0, 50.0)))
    with pytest.raises(StructureError) as info:
        OnePhonon(str(path), *SMALL, progress=False)
    message = str(info.value)
    assert "does not hold the crystal together" in message
    assert "with gnm_cutoff 4 A the network has 30 contacts, 0 of them between different ASUs or cells" in message
    assert "the smallest distance between neighbouring ASUs is 48.60 A" in message
    assert "a cutoff of at least 48.60 A" in message
    # the cutoff it names does connect the lattice: a map without extra NaN, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = OnePhonon(str(path), *SMALL, gnm_cutoff=48.6, progress=False)
    assert int(model.Winv.isnan().sum()) == 3
    rc, out = simulate(path, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "48.60 A" in err and not out.exists()


def test_network_floppy_along_one_axis_warns_in_the_api_and_is_refused_by_the_command(write, tmp_path, capsys):
    # no contact between cells along c (9 A apart): zero modes at k = (0, 0, 1/2), a NaN class of the map
    path = write(pdb_text(cell=cell_line(5.0, 5.0, 9.0)))
    with pytest.warns(FloppyNetworkWarning, match=r"at 1 of 8 k-vectors, where the map is NaN") as record:
        model = OnePhonon(str(path), *SMALL, progress=False)
    message = str(record[0].message)
    assert "a cutoff of at least 7.60 A" in message
    assert int(model.Winv.isnan().sum()) == 6  # eryx's map, NaN where eryx puts it
    rc, out = simulate(path, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "7.60 A" in err and not out.exists()
    assert simulate(path, tmp_path, "--cutoff", "7.6")[0] == 0


# --------------------------------------------------------------------------- warned about


WARNED = {
    "negative B-factors": (
        lambda: pdb_text([*changed(1, b=-12.0)[:2], *changed(2, b=-3.0)[2:]]),
        r"2 atoms with a negative B-factor \(most negative -12 at ATOM 2 A/ALA 1/CA\)",
    ),
    "unknown element": (
        lambda: pdb_text(changed(3, element="Xx")),
        r"1 atom of unknown element 'Xx' \(ATOM 4 A/ALA 1/O\): gemmi reads them as element X",
    ),
    "zero occupancy": (lambda: pdb_text(changed(4, occ=0.0)), r"1 atom with occupancy 0 \(ATOM 5 A/ALA 1/CB\)"),
    "alternate locations": (
        lambda: CELL + "".join(atom_line(i + 1, *a) for i, a in enumerate(ATOMS[:5]))
        + atom_line(6, *ATOMS[5], altloc="B") + atom_line(7, *changed(5, x=2.6)[5], altloc="A") + "END\n",
        r"1 atom dropped as alternative conformations \(ATOM 7 A/GLY 2/N.A\): eryx's reading keeps the first "
        r"conformation listed of each atom \(2 atoms carry altloc letters; kept: altloc B \(1\)\)",
    ),
    "duplicate atoms": (
        lambda: pdb_text([*ATOMS, changed(1, name="CG")[1]]),
        r"1 pair of atoms at the same position \(ATOM 2 A/ALA 1/CA and ATOM 7 A/ALA 1/CG\)",
    ),
    "huge B-factor": (lambda: pdb_text(changed(0, b="5000.0")), r"1 atom with a B-factor above 1000 A\^2"),
}


@pytest.mark.parametrize("case", list(WARNED))
def test_warned_by_the_api_and_the_command_line(case, write, tmp_path, capsys):
    text, match = WARNED[case]
    path = write(text(), "odd.pdb")
    with pytest.warns(StructureWarning, match=match):
        model = OnePhonon(str(path), *SMALL, progress=False)
    I = model.apply_disorder(use_data_adp=True)
    bragg = (model.hkl_grid == model.hkl_grid.round()).all(dim=1)
    assert torch.equal(I.isnan(), bragg)  # still a map: finite wherever eryx's rule says so
    rc, out = simulate(path, tmp_path)
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("eryx-port: warning: odd.pdb: ") and "Traceback" not in err
    assert (out / "onephonon.npy").is_file()


# --------------------------------------------------------------------------- internal failures


def test_linear_algebra_failure_names_the_stage_and_points_to_debug(write, tmp_path, monkeypatch, capsys):
    from eryx_port import models

    def failing(self):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(models.OnePhonon, "compute_gnm_phonons", failing)
    path = write(pdb_text())
    rc, out = simulate(path, tmp_path)
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "stage 'phonons (model setup)'" in err and "likely cause" in err and "rerun with --debug" in err
    assert not out.exists()
    for args in (["--debug", "simulate", str(path)], ["simulate", str(path), "--debug"]):
        with pytest.raises(cli.ComputeError) as info:  # the traceback, down to the library's own error
            cli.main([*args, *SMALL_ARGS, "--quiet", "--out", str(tmp_path / "out")])
        assert isinstance(info.value.__cause__, torch.linalg.LinAlgError)
    assert not out.exists()


def test_internal_error_hint_names_debug(write, tmp_path, monkeypatch, capsys):
    from eryx_port import models

    def broken(self, *args, **kwargs):
        raise KeyError("simulated")

    monkeypatch.setattr(models.OnePhonon, "apply_disorder", broken)
    rc, _ = simulate(write(pdb_text()), tmp_path)
    err = capsys.readouterr().err
    assert rc == 1 and "internal error: KeyError" in err and "--debug" in err and err.count("\n") == 1
