"""`eryx-port run -c CONFIG -t TASK` for eryx's grid-scan tasks: the config sections, files and refusals of
eryx's scripts/tasks.py, on a measured map made by the model itself with known parameters."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from eryx_port.cli import main
from eryx_port.models import LiquidLikeMotions, RigidBodyTranslations

from structures import structure

GRID = dict(hsampling=[-2, 2, 2], ksampling=[-2, 2, 2], lsampling=[-2, 2, 2])


def _config(tmp_path, section: dict, task: str, exp_map) -> str:
    setup = dict(root_dir=str(tmp_path / "out"), pdb_path=structure("5zck"), exp_map=str(exp_map), res_limit=0,
                 batch_size=10000, n_processes=1, **GRID)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"setup": setup, task: section}))
    return str(path)


def test_rigid_body_translations_task_finds_the_sigma_of_the_measured_map(tmp_path, capsys):
    model = RigidBodyTranslations(structure("5zck"), (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), expand_friedel=False)
    measured = model.apply_disorder(0.5)[0].reshape(model.map_shape).numpy()
    np.save(tmp_path / "exp.npy", measured)
    cfg = _config(tmp_path, dict(sigmas_min=0.1, sigmas_max=0.9, n_search=9, expand_friedel=False),
                  "RigidBodyTranslations", tmp_path / "exp.npy")
    assert main(["run", "-c", cfg, "-t", "RigidBodyTranslations", "--quiet"]) == 0
    out = tmp_path / "out"
    best = np.load(out / "models" / "rigidbodytranslations.npy")
    np.testing.assert_allclose(best, measured, rtol=1e-12)  # sigma 0.5 is on the scan's grid
    transform = np.load(out / "base" / "mtransform.npy")
    assert transform.shape == measured.shape and np.isfinite(transform).sum() > 0
    assert (out / "figs" / "scan_rigidbodytranslations.png").stat().st_size > 1000


def test_liquid_like_motions_task_writes_eryx_files(tmp_path):
    model = LiquidLikeMotions(structure("5zck"), (-2, 2, 2), (-2, 2, 2), (-2, 2, 2), asu_confined=True)
    inside = model.mask.reshape(-1) == 1
    measured = model.apply_disorder(0.3, 20.0)[0][inside].reshape(model.map_shape_nopad).numpy()
    np.save(tmp_path / "exp.npy", measured)
    section = dict(sigmas_min=0.2, sigmas_max=0.4, gammas_min=10.0, gammas_max=30.0, ns_search=3, ng_search=3,
                   asu_confined=True)
    cfg = _config(tmp_path, section, "LiquidLikeMotions", tmp_path / "exp.npy")
    assert main(["run", "-c", cfg, "-t", "LiquidLikeMotions", "--quiet"]) == 0
    out = tmp_path / "out"
    best = np.load(out / "models" / "liquidlikemotions_asuconfined.npy")
    np.testing.assert_allclose(best, measured, rtol=1e-12)  # (0.3, 20) is on the scan's grid
    assert np.load(out / "base" / "mtransform.npy").shape == tuple(model.map_shape)
    assert (out / "figs" / "scan_liquidlikemotions_asuconfined.png").is_file()


def test_measured_map_on_another_grid_is_refused_in_one_line(tmp_path, capsys):
    np.save(tmp_path / "exp.npy", np.ones((3, 3, 3)))
    cfg = _config(tmp_path, dict(sigmas_min=0.1, sigmas_max=0.9, n_search=3), "RigidBodyTranslations",
                  tmp_path / "exp.npy")
    assert main(["run", "-c", cfg, "-t", "RigidBodyTranslations"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "setup.exp_map has 27 values" in err
    assert not (tmp_path / "out" / "models" / "rigidbodytranslations.npy").exists()


@pytest.mark.parametrize(
    "section,message",
    [
        (dict(sigmas_min=0.1, sigmas_max=0.9), "lacks 'n_search'"),
        (dict(sigmas_min=0.9, sigmas_max=0.1, n_search=3), "sigmas_min 0.9 is larger than sigmas_max 0.1"),
        (dict(sigmas_min=-1.0, sigmas_max=0.1, n_search=3), "sigmas_min must be > 0"),
        (dict(sigmas_min=0.1, sigmas_max=0.9, n_search=0), "n_search must be a positive integer"),
    ],
)
def test_bad_task_sections_are_refused_by_name(tmp_path, capsys, section, message):
    np.save(tmp_path / "exp.npy", np.ones((3, 3, 3)))
    cfg = _config(tmp_path, section, "RigidBodyTranslations", tmp_path / "exp.npy")
    assert main(["run", "-c", cfg, "-t", "RigidBodyTranslations"]) == 2
    assert message in capsys.readouterr().err


def test_missing_measured_map_is_refused(tmp_path, capsys):
    cfg = _config(tmp_path, dict(sigmas_min=0.1, sigmas_max=0.9, n_search=3), "RigidBodyTranslations",
                  tmp_path / "absent.npy")
    assert main(["run", "-c", cfg, "-t", "RigidBodyTranslations"]) == 2
    err = capsys.readouterr().err
    assert "setup.exp_map" in err and "does not exist" in err


# ---------------------------------------------------------------- simulate --model


def _simulate(tmp_path, model, *extra, pdb=None):
    out = tmp_path / model
    argv = ["simulate", pdb or structure("5zck"), "--model", model, "--hsampling", "-2", "2", "2", "--ksampling",
            "-1", "1", "2", "--lsampling", "-1", "1", "2", "--out", str(out), "--quiet", *extra]
    return main(argv), out


def test_simulate_translations_map_is_the_models_map_with_its_grid(tmp_path):
    rc, out = _simulate(tmp_path, "translations", "--sigma", "0.3", "0.4", "0.5")
    assert rc == 0
    model = RigidBodyTranslations(structure("5zck"), (-2, 2, 2), (-1, 1, 2), (-1, 1, 2), expand_friedel=False)
    expected = model.apply_disorder([[0.3, 0.4, 0.5]])[0].reshape(model.map_shape).numpy()
    np.testing.assert_allclose(np.load(out / "translations.npy"), expected, rtol=1e-12)
    meta = np.load(out / "translations.npz")
    assert tuple(meta["map_shape"]) == expected.shape and (out / "translations.ccp4").stat().st_size > 0


def test_simulate_liquid_map_covers_the_padded_grid(tmp_path):
    rc, out = _simulate(tmp_path, "liquid", "--sigma", "0.3", "--gamma", "15")
    assert rc == 0
    intensity = np.load(out / "liquid.npy")
    assert intensity.shape == (13, 9, 9)  # one Miller index of padding per side, as eryx's model
    hkl = np.load(out / "liquid.npz")["hkl_grid"]
    assert hkl[:, 0].min() == -3 and hkl[:, 0].max() == 3 and np.isfinite(intensity).all() and intensity.max() > 0


def test_simulate_rotations_is_reproducible_with_its_seed(tmp_path):
    rc1, out1 = _simulate(tmp_path / "a", "rotations", "--sigma", "2", "--num-rot", "8", "--seed", "3")
    rc2, out2 = _simulate(tmp_path / "b", "rotations", "--sigma", "2", "--num-rot", "8", "--seed", "3")
    assert rc1 == rc2 == 0
    a, b = np.load(out1 / "rotations.npy"), np.load(out2 / "rotations.npy")
    assert np.isfinite(a).all() and a.max() > 0
    np.testing.assert_array_equal(a, b)


def test_simulate_ensemble_of_a_multi_model_file(tmp_path):
    from eryx_port.multimodel import write_perturbed_models

    pdb = write_perturbed_models(structure("5zck"), tmp_path / "ens.pdb", n_models=3)
    rc, out = _simulate(tmp_path, "ensemble", "--weights", "1", "2", "1", pdb=str(pdb))
    assert rc == 0
    from eryx_port.models import Ensemble

    model = Ensemble(str(pdb), (-2, 2, 2), (-1, 1, 2), (-1, 1, 2))
    expected = model.apply_disorder(weights=np.array([0.25, 0.5, 0.25]))[0].reshape(model.map_shape).numpy()
    got = np.load(out / "ensemble.npy")
    assert np.nanmin(got) >= 0 and np.nanmax(got) > 0  # a variance: never negative with probabilities
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_simulate_other_model_refuses_bad_options_in_one_line(tmp_path, capsys):
    rc, _ = _simulate(tmp_path, "rotations", "--sigma", "1", "2", "3")
    assert rc == 2 and "--sigma takes one value for --model rotations" in capsys.readouterr().err
    rc, _ = _simulate(tmp_path, "liquid", "--gamma", "-1")
    assert rc == 2 and "--gamma must be > 0" in capsys.readouterr().err
    rc, _ = _simulate(tmp_path, "translations", "--sigma", "-1")
    assert rc == 2 and "--sigma must be >= 0" in capsys.readouterr().err
