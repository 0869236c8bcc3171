"""The progress dashboard: renderers (snapshots), the rules behind it, and the command."""

from __future__ import annotations

import argparse
import copy
import json
import textwrap
from xml.etree import ElementTree

import numpy as np
import pytest

from trace_tools import progress
from trace_tools import progress_facts as pf
from trace_tools import registry as reg
from trace_tools.progress_render import (
    STAMP_PREFIX,
    render_html,
    render_markdown,
    svg_completion,
    svg_error_distribution,
)
from trace_tools.values import Call, Trace

TODAY = "2026-01-02"
STAMP = "2026-01-02 03:04 UTC"


def _entry(port, *, grad=(), rtol=1e-10, atol=None, reason="", notes=""):
    return {
        "port": port,
        "rtol": rtol,
        "atol": atol,
        "tolerance_reason": reason,
        "notes": notes,
        "grad_inputs": list(grad),
    }


def _res(function, case, outcome="passed", err=1e-15, kind="parity"):
    return {
        "function": function,
        "kind": kind,
        "case": case,
        "outcome": outcome,
        "max_abs_err": err,
        "max_rel_err": err,
        "max_scaled_err": err,
        "message": None if outcome == "passed" else "differs",
    }


GRID = "eryx.map_utils.generate_grid"
RES = "eryx.map_utils.compute_resolution"
SF = "eryx.scatter.structure_factors"
SYM = "eryx.pdb.sym_str_as_matrix"
DIS = "eryx.models.OnePhonon.apply_disorder"


@pytest.fixture
def raw():
    """A small, fixed set of raw facts: one function of each status."""
    functions = [
        {"name": GRID, "phase": "core functions", "notes": "hkl grid"},
        {"name": RES, "phase": "core functions", "notes": ""},
        {"name": SF, "phase": "core functions", "notes": ""},
        {"name": SYM, "phase": "core utilities", "notes": "rotation part only"},
        {"name": DIS, "phase": "integration", "notes": ""},
    ]
    results = [
        _res(GRID, "5zck-s1-call0", err=3e-16),
        _res(GRID, "7n2h-s1-call0", err=2.5e-13),
        _res(RES, "5zck-s1-call0", err=4e-12),
        _res(SF, "5zck-s1-call0", err=6e-12),
        _res(SF, "7n2h-s2-call0", err=4e-10),
        _res(SF, "xyz:5zck-s1-call0", kind="gradcheck", err=None),
        _res(SF, "U:5zck-s1-call0", kind="gradcheck", err=None),
        _res(SYM, "5zck-s1-call0", outcome="xfailed", err=None),
    ]
    return {
        "function_list": {
            "package": "eryx",
            "functions": functions,
            "seed_only": [
                {
                    "name": "EigenOps.svd_decomposition",
                    "phase": "core utilities",
                    "notes": "torch.linalg; no NumPy counterpart",
                }
            ],
        },
        "registry": {
            GRID: _entry("eryx_port.map_utils.generate_grid"),
            RES: _entry("eryx_port.map_utils.compute_resolution"),
            SF: _entry(
                "eryx_port.scatter.structure_factors",
                grad=("xyz", "U"),
                rtol=1e-9,
                reason="sum over many atoms",
                notes="batched",
            ),
            DIS: _entry("eryx_port.models.OnePhonon.apply_disorder"),
        },
        "traces": {
            GRID: {
                "calls": 2,
                "scenarios": ["5zck-s1", "7n2h-s1"],
                "truncated": False,
                "commit": "cc96863",
            },
            RES: {
                "calls": 1,
                "scenarios": ["5zck-s1"],
                "truncated": False,
                "commit": "cc96863",
            },
            SF: {
                "calls": 2,
                "scenarios": ["5zck-s1", "7n2h-s2"],
                "truncated": True,
                "commit": "cc96863",
            },
            SYM: {
                "calls": 1,
                "scenarios": ["5zck-s1"],
                "truncated": False,
                "commit": "cc96863",
            },
        },
        "trace_problems": [],
        "results": results,
        "coverage": {
            "eryx_port.map_utils.generate_grid": 100,
            "eryx_port.scatter.structure_factors": 87,
        },
        "benchmarks": {
            "machine": "test box",
            "date": "2026-01-01",
            "command": "eryx-port bench",
            "torch": "2.13.0",
            "numpy": "2.4.0",
            "cases": [
                {
                    "case": "5zck",
                    "stage": "apply_disorder",
                    "eryx_s": 12.3456,
                    "port_s": 0.5,
                    "ratio": 24.69,
                }
            ],
            "max_rel_err": {"5zck": 3e-13},
        },
        "inventory": [
            {"name": GRID, "kind": "function", "module": "eryx.map_utils"},
            {
                "name": "eryx.map_utils.cos_sq",
                "kind": "function",
                "module": "eryx.map_utils",
            },
            {"name": "eryx.models.OnePhonon", "kind": "class", "module": "eryx.models"},
            {"name": DIS, "kind": "method", "module": "eryx.models"},
            {
                "name": "eryx.models.OnePhonon.__init__",
                "kind": "method",
                "module": "eryx.models",
            },
        ],
        "history": {"CP4": "2025-12-01"},
    }


def _by_name(facts):
    return {r["name"]: r for p in facts["phases"] for r in p["rows"]}


def _cp(facts, cp_id):
    return next(c for c in facts["checkpoints"] if c["id"] == cp_id)


# ---------------------------------------------------------------- renderers


def test_markdown_snapshot(raw, snapshot):
    assert render_markdown(pf.derive(raw, TODAY), STAMP) == snapshot


def test_html_snapshot(raw, snapshot):
    page = render_html(pf.derive(raw, TODAY), STAMP)
    assert page == snapshot
    # one self-contained file: no scripts, stylesheets or images fetched from anywhere
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page and "src=" not in page


def test_rendering_is_deterministic_and_stamp_is_one_line(raw):
    facts = pf.derive(raw, TODAY)
    shuffled = copy.deepcopy(raw)
    shuffled["results"].reverse()
    shuffled["function_list"]["functions"].reverse()
    again = pf.derive(shuffled, TODAY)
    assert render_markdown(facts, STAMP) == render_markdown(again, STAMP)
    assert render_html(facts, STAMP) == render_html(again, STAMP)
    for page in (render_markdown(facts, STAMP), render_html(facts, STAMP)):
        assert sum(STAMP_PREFIX in line for line in page.splitlines()) == 1



def test_benchmark_peak_memory_and_extrapolated_eryx_are_shown(raw):
    """Fresh-process cases add peak memory; eryx's extrapolated figures are labelled in both pages."""
    raw["benchmarks"]["cases"].append(
        {"case": "paper", "stage": "total", "eryx_s": 7e4, "port_s": 300.0, "ratio": 233.0, "eryx_extrapolated": True}
    )
    raw["benchmarks"]["peak_rss_mib"] = {"paper": {"eryx": 20480.0, "port": 6144.0, "eryx_extrapolated": True}}
    facts = pf.derive(raw, TODAY)
    md, html = render_markdown(facts, STAMP), render_html(facts, STAMP)
    assert "| paper | total | 7e+04 (extrapolated) | 300 | 233x (extrapolated) |" in md
    for page in (md, html):
        assert "paper: eryx 20.00 GiB (extrapolated), port 6.00 GiB" in page
        assert "| 5zck | apply_disorder | 12.3 | 0.5 | 24.7x |" in md  # rows without the flag unchanged


def test_benchmark_blas_of_each_side_is_shown_when_recorded(raw):
    """Results recorded with each side's BLAS name them on both pages; older results show no BLAS line."""
    assert "BLAS:" not in render_markdown(pf.derive(raw, TODAY), STAMP)
    raw["benchmarks"].update(torch_blas="MKL 2024.2; ATen CPU capability AVX2", eryx_numpy="2.3.5",
                             eryx_blas="scipy-openblas 0.3.30")
    facts = pf.derive(raw, TODAY)
    expected = "BLAS: port: MKL 2024.2; ATen CPU capability AVX2; eryx: NumPy 2.3.5 with scipy-openblas 0.3.30."
    for page in (render_markdown(facts, STAMP), render_html(facts, STAMP)):
        assert expected in page

def test_error_picture_counts_cases_per_decade(raw):
    facts = pf.derive(raw, TODAY)
    svg = svg_error_distribution(facts)
    for picture in (svg, svg_completion(facts)):
        # well-formed SVG
        assert ElementTree.fromstring(picture).tag == "{http://www.w3.org/2000/svg}svg"
    assert ">map_utils.generate_grid<" in svg
    assert 'fill="#c62828"' not in svg  # red marks failed cases only
    raw["results"].append(_res(RES, "7n2h-s1-call0", outcome="failed", err=3e-6))
    assert 'fill="#c62828"' in svg_error_distribution(pf.derive(raw, TODAY))


# ---------------------------------------------------------------- rules


@pytest.mark.parametrize(
    "err,bucket",
    [
        (None, "—"),
        (0.0, "<1e-14"),
        (9.9e-15, "<1e-14"),
        (1e-14, "1e-14"),
        (1.000000001e-12, "1e-12"),
        (3e-13, "1e-12"),
        (1e-12, "1e-12"),
        (5e-3, "1e-2"),
        (2.0, "1e1"),
        (float("nan"), "nan"),
    ],
)
def test_error_bucket(err, bucket):
    assert pf.error_bucket(err) == bucket


@pytest.mark.parametrize(
    "err,passed,rtol,bucket",
    [
        (
            3e-7,
            True,
            1e-10,
            ">1e-10",
        ),  # near the absolute floor: noise, one stable label
        (3e-7, False, 1e-10, "1e-6"),  # a failure shows its decade
        (4e-10, True, 1e-9, "1e-9"),
        (5e-12, True, 1e-10, "1e-11"),
    ],
)
def test_case_bucket(err, passed, rtol, bucket):
    assert pf.case_bucket(err, passed, rtol) == bucket


def test_statuses_follow_the_rules(raw):
    rows = _by_name(pf.derive(raw, TODAY))
    assert (
        rows[GRID]["status"] == pf.DONE
        and rows[GRID]["parity"]["max_rel_err"] == "2.5e-13"
    )
    assert rows[GRID]["grad"]["status"] == "n/a" and rows[GRID]["coverage"] == 100
    assert rows[RES]["status"] == pf.DONE
    assert rows[SF]["status"] == pf.DONE  # loose tolerance registered with a reason
    assert rows[SF]["grad"]["status"] == "pass" and rows[SF]["grad"]["passed"] == 2
    assert "sum over many atoms" in rows[SF]["tolerance"]
    assert rows[DIS]["status"] == pf.UNTESTED  # ported, but no recorded call to replay


def test_failing_parity_case_fails_function_phase_and_checkpoint(raw):
    before = pf.derive(raw, TODAY)
    assert _cp(before, "CP3")["passed"] and _cp(before, "CP3")["first_passed"] == TODAY
    raw["results"].append(_res(RES, "7n2h-s1-call0", outcome="failed", err=3e-6))
    facts = pf.derive(raw, TODAY)
    row = _by_name(facts)[RES]
    assert row["status"] == pf.FAILING and row["parity"]["status"] == "fail"
    assert row["parity"]["max_rel_err"] == "3.0e-06"  # the number itself, not its decade
    cp3 = _cp(facts, "CP3")
    assert (
        not cp3["passed"] and cp3["blocking"] == [RES] and cp3["first_passed"] is None
    )
    phase = next(p for p in facts["phases"] if p["name"] == "core functions")
    assert phase["failing"] == 1 and phase["completion"] == 66
    assert "CP3" not in facts["history_new"]


def test_failing_gradcheck_fails_the_function(raw):
    raw["results"].append(
        _res(SF, "U:7n2h-s2-call0", outcome="failed", kind="gradcheck", err=None)
    )
    facts = pf.derive(raw, TODAY)
    assert _by_name(facts)[SF]["status"] == pf.FAILING
    assert not _cp(facts, "CP4")["passed"]
    assert (
        _cp(facts, "CP4")["first_passed"] == "2025-12-01"
    )  # a date, once earned, is kept


def test_function_without_port_is_not_ported(raw):
    del raw["registry"][GRID]
    raw["results"] = [r for r in raw["results"] if r["function"] != GRID]
    facts = pf.derive(raw, TODAY)
    row = _by_name(facts)[GRID]
    assert (
        row["status"] == pf.NOT_PORTED
        and row["port"] is None
        and row["parity"]["status"] == "not ported"
    )
    assert _by_name(facts)[SYM]["status"] == pf.NOT_PORTED
    assert facts["overall"]["not_ported"] == 2
    assert not _cp(facts, "CP3")["passed"]
    assert "not ported" in render_markdown(facts, STAMP)


def test_missing_trace_is_listed(raw):
    facts = pf.derive(raw, TODAY)
    assert facts["missing_traces"] == [DIS]
    md = render_markdown(facts, STAMP)
    assert f"- `{DIS}`" in md.split("## Missing traces", 1)[1].split("##", 1)[0]


def test_history_records_first_pass_only(raw):
    facts = pf.derive(raw, TODAY)
    assert facts["history_new"]["CP4"] == "2025-12-01"
    assert facts["history_new"]["CP3"] == TODAY
    assert "CP10" not in facts["history_new"]  # apply_disorder is untested


def test_unported_surface(raw):
    surface = pf.derive(raw, TODAY)["surface"]
    mods = {m["module"]: m for m in surface["modules"]}
    assert (
        mods["eryx.map_utils"]["ported"] == 1 and mods["eryx.map_utils"]["total"] == 2
    )
    assert [u["name"] for u in mods["eryx.models"]["unported"]] == [
        "eryx.models.OnePhonon.__init__"
    ]
    assert surface["total"] == 4 and surface["ported"] == 2


def test_results_loader_rejects_bad_lines(tmp_path):
    assert pf.load_results(tmp_path) is None
    (tmp_path / "gw0.jsonl").write_text('{"function": "f", "kind": "parity"}\n')
    with pytest.raises(ValueError, match="gw0.jsonl line 1"):
        pf.load_results(tmp_path)


def test_port_coverage_of_a_function_body(tmp_path, monkeypatch):
    import coverage
    pkg = tmp_path / "covdemo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        textwrap.dedent('''\
        def half(x):
            """Half of x, or zero for negatives."""
            if x < 0:
                return 0
            y = x / 2
            return y


        class Box:
            def __init__(self):
                self.a = 1

            @staticmethod
            def never():
                a = 1
                return a
        ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / ".coverage"
    cov = coverage.Coverage(data_file=str(data), source=[str(pkg)], config_file=False)
    cov.start()
    try:
        from covdemo_pkg import mod

        mod.half(4)
        mod.Box()
    finally:
        cov.stop()
    cov.save()
    names = [
        "covdemo_pkg.mod.half",
        "covdemo_pkg.mod.Box.never",
        "covdemo_pkg.mod.Box",
        "covdemo_pkg.mod.gone",
    ]
    got = pf.port_coverage(names, data)
    expected = {
        "half": 75,
        "Box.never": 0,
        "Box": 100,
        "gone": None,
    }  # a class stands for its __init__
    assert got == {f"covdemo_pkg.mod.{k}": v for k, v in expected.items()}


# ---------------------------------------------------------------- the command


FUNCTIONS_TOML = """\
[meta]
package = "eryx"

[[function]]
name = "eryx.map_utils.generate_grid"
phase = "core functions"

[[function]]
name = "eryx.map_utils.compute_resolution"
phase = "core functions"

[[function]]
name = "eryx.pdb.sym_str_as_matrix"
phase = "core utilities"

[[seed_only]]
name = "FFTOps.fft_3d"
phase = "core utilities"
notes = "torch.fft"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny project: function list, two recorded traces, a registry module, an output folder."""
    from trace_tools import store

    (tmp_path / "functions.toml").write_text(FUNCTIONS_TOML)
    for function, scenarios in (
        (GRID, ["5zck-s1", "7n2h-s1"]),
        (SYM, ["5zck-s1", "2ol9-s1"]),
    ):
        calls = [
            Call(
                function=function,
                scenario=s,
                index=0,
                args={"x": np.arange(3.0)},
                passed=("x",),
                result=np.ones(2),
            )
            for s in scenarios
        ]
        store.save_trace(
            Trace(function=function, provenance={"package": "eryx"}, calls=calls),
            store.trace_path(function, tmp_path / "data"),
        )
    module = f"fakeports_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(f'''\
        from trace_tools.registry import parity

        @parity("{GRID}", port="{module}.generate_grid")
        def _(call):
            return call.result, call.result

        @parity("{RES}", port="{module}.compute_resolution")
        def _(call):
            return call.result, call.result
        ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        reg, "REGISTRY", {}
    )  # the fake module registers into a fresh registry
    results = tmp_path / "results"
    results.mkdir()
    return {
        "root": tmp_path,
        "module": module,
        "results": results,
        "out": tmp_path / "progress",
    }


def _write_results(folder, records_by_worker):
    for worker, records in records_by_worker.items():
        with open(folder / f"{worker}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(rec, sort_keys=True) + "\n" for rec in records)


def _run(project, *extra, today=TODAY):
    parser = argparse.ArgumentParser()
    progress.configure_progress(parser)
    root = project["root"]
    args = parser.parse_args(
        [
            "--out",
            str(project["out"]),
            "--results",
            str(project["results"]),
            "--functions",
            str(root / "functions.toml"),
            "--traces",
            str(root / "data"),
            "--registry",
            project["module"],
            "--coverage",
            str(root / "none.coverage"),
            "--benchmarks",
            str(root / "none.json"),
            "--inventory",
            str(root / "none-api.json"),
            "--today",
            today,
            *extra,
        ]
    )
    return progress.run_progress(args)


def _pytest_like_results(project, grid_outcome="passed", grid_err=1e-15):
    _write_results(
        project["results"],
        {
            "gw0": [
                _res(GRID, "5zck-s1-call0", err=1e-16),
                _res(SYM, "5zck-s1-call0", outcome="xfailed", err=None),
            ],
            "gw1": [
                _res(
                    GRID,
                    "7n2h-s1-call0",
                    outcome=grid_outcome,
                    err=2e-9 if grid_outcome == "failed" else grid_err,
                ),
                _res(SYM, "2ol9-s1-call0", outcome="xfailed", err=None),
            ],
        },
    )


def test_command_writes_dashboard_from_pytest_results(project, capsys):
    _pytest_like_results(project)
    assert _run(project) == 0
    out = project["out"]
    md = (out / "PROGRESS.md").read_text()
    assert (
        "| eryx.map_utils.generate_grid | "
        + project["module"]
        + ".generate_grid | done | 2 calls, 2 scenarios "
        "| pass 2/2 | 1.0e-15 | n/a | — |" in md
    )
    assert "| eryx.pdb.sym_str_as_matrix | not ported | not ported |" in md
    assert (
        "- `eryx.map_utils.compute_resolution`" in md
    )  # listed, ported, never recorded
    assert "| FFTOps.fft_3d | core utilities | torch.fft |" in md
    assert (
        str(project["root"]) not in md
        and str(project["root"]) not in (out / "index.html").read_text()
    )
    assert (out / "completion.svg").read_text().startswith(
        "<svg"
    ) and "(completion.svg)" in md
    assert ">map_utils.generate_grid<" in (out / "parity-errors.svg").read_text()
    history = json.loads((out / "history.json").read_text())
    assert history == {"first_passed": {}}  # CP3 needs compute_resolution too
    assert "1/3 functions done" in capsys.readouterr().out


def test_check_passes_on_fresh_and_fails_on_stale_dashboard(project, capsys):
    _pytest_like_results(project)
    assert _run(project) == 0
    # the stamp line is ignored
    md_path = project["out"] / "PROGRESS.md"
    md_path.write_text(
        md_path.read_text().replace(
            STAMP_PREFIX, STAMP_PREFIX + "1999-01-01 00:00 UTC, was "
        )
    )
    capsys.readouterr()
    assert _run(project, "--check") == 0
    assert "up to date" in capsys.readouterr().out

    _pytest_like_results(project, grid_outcome="failed")
    assert _run(project, "--check") == 1
    err = capsys.readouterr().err
    assert (
        "stale" in err and "PROGRESS.md differs" in err and "index.html differs" in err
    )
    assert "+| core functions | 2 | 0 | 1 | 1 | 0 | In Progress | 0% |" in err

    assert _run(project) == 0
    assert _run(project, "--check") == 0


def test_check_fails_when_a_worst_error_grows_tenfold(project, capsys):
    _pytest_like_results(project)
    assert _run(project) == 0
    assert json.loads((project["out"] / "errors.json").read_text())[GRID]["max_rel_err"] == 1e-15
    _pytest_like_results(project, grid_err=9e-15)  # within tenfold: the same page once masked
    capsys.readouterr()
    assert _run(project, "--check") == 0
    _pytest_like_results(project, grid_err=3e-13)  # still passing, but 300 times worse
    assert _run(project, "--check") == 1
    err = capsys.readouterr().err
    assert f"{GRID}: max_rel_err grew from 1.0e-15 to 3.0e-13" in err


def test_error_regressions_count_rounding_noise_as_no_regression():
    from trace_tools.progress import error_regressions

    assert error_regressions({"f": {"max_rel_err": 0.0}}, {"f": {"max_rel_err": 5e-15}}) == []
    assert error_regressions({"f": {"max_rel_err": 0.0}}, {"f": {"max_rel_err": 2e-14}}) != []
    assert error_regressions({}, {"f": {"max_rel_err": 1.0}}) == []  # new function: nothing to compare


def test_check_without_results_asks_for_a_test_run(project, capsys):
    assert _run(project) == 0  # writing works (with a warning on the page)
    assert "No test results" in (project["out"] / "PROGRESS.md").read_text()
    capsys.readouterr()
    assert _run(project, "--check") == 2
    assert "run the tests first" in capsys.readouterr().err


def test_checkpoint_date_is_kept_once_earned(project, capsys):
    _pytest_like_results(project)
    _write_results(project["results"], {"gw2": [_res(RES, "5zck-s1-call0")]})
    assert _run(project, today="2026-03-03") == 0
    assert json.loads((project["out"] / "history.json").read_text())[
        "first_passed"
    ] == {"CP3": "2026-03-03"}
    assert _run(project, today="2026-04-04") == 0
    assert json.loads((project["out"] / "history.json").read_text())[
        "first_passed"
    ] == {"CP3": "2026-03-03"}
    assert (
        "| CP3 | Map Utils Complete |" in (project["out"] / "PROGRESS.md").read_text()
    )
    # the check does not write history: a checkpoint passing for the first time makes the dashboard stale
    (project["out"] / "history.json").write_text('{"first_passed": {}}\n')
    assert _run(project, "--check") == 1


def test_bad_results_file_is_one_clear_error(project, capsys):
    (project["results"] / "gw0.jsonl").write_text("not json\n")
    assert _run(project) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("trace-tools progress: gw0.jsonl line 1: not JSON")
        and "Traceback" not in err
    )


def test_committed_inventory_lists_the_public_api():
    inventory = pf.load_inventory()
    if inventory is None:
        pytest.fail(
            "traces/eryx_api.json is missing: make it with `trace-tools progress --inventory-from`"
        )
    names = {i["name"] for i in inventory}
    assert {
        "eryx.models.OnePhonon.apply_disorder",
        "eryx.scatter.structure_factors",
        "eryx.pdb.GaussianNetworkModel.__init__",
    } <= names
    assert all(i["kind"] in ("function", "method", "class") for i in inventory)


# ---------------------------------------------------------------- the coverage plugin


def _pytest_in(folder, *args):
    import os
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "ERYX_PORT_COVERAGE", "COV_"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "trace_tools.coverage_plugin",
        "-W",
        "ignore::pytest.PytestUnknownMarkWarning",
        *args,
    ]
    return subprocess.run(
        cmd,
        check=False,
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_coverage_plugin_measures_xdist_workers_and_keeps_the_last_parity_run(tmp_path):
    import coverage
    import xdist  # noqa: F401  (the test runs pytest -n 2)
    # A stand-in package named like the port, first on the path of the child runs (no torch import).
    (tmp_path / "eryx_port").mkdir()
    (tmp_path / "eryx_port" / "__init__.py").write_text(
        "def pick(x):\n    if x:\n        return 1\n    return 2\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_demo.py").write_text(
        textwrap.dedent("""\
        import pytest

        @pytest.mark.parity
        def test_case():
            import eryx_port
            assert eryx_port.pick(1) == 1

        def test_other():
            import eryx_port
            assert eryx_port.pick(0) == 2
        """)
    )
    data_file = tmp_path / "build" / "coverage" / ".coverage"

    def executed():
        data = coverage.CoverageData(basename=str(data_file))
        data.read()
        (measured,) = [f for f in data.measured_files() if f.endswith("__init__.py")]
        return set(data.lines(measured))

    run = _pytest_in(tmp_path, "-n", "2", "test_demo.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert {3, 4} <= executed()  # both branches, run in two workers
    # the workers' parts are combined and removed
    assert [p.name for p in data_file.parent.iterdir()] == [".coverage"]

    stamp = data_file.stat().st_mtime_ns
    # a run without parity cases keeps the last coverage
    run = _pytest_in(tmp_path, "-k", "other", "test_demo.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert data_file.stat().st_mtime_ns == stamp

    # a parity run (here without xdist) replaces it
    run = _pytest_in(tmp_path, "-k", "case", "test_demo.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert 3 in executed() and 4 not in executed()


def test_inventory_lists_public_functions_classes_and_methods(
    tmp_path, monkeypatch, capsys
):
    pkg = tmp_path / "src" / "invdemo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text(
        textwrap.dedent("""\
        from math import sqrt

        def grid(n):
            return n

        def _hidden():
            pass

        class Model:
            def __init__(self):
                pass

            def run(self):
                pass

            @staticmethod
            def helper():
                pass

            def _private(self):
                pass
        """)
    )
    (pkg / "broken.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "functions.toml").write_text('[meta]\npackage = "invdemo"\n')
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    parser = argparse.ArgumentParser()
    progress.configure_progress(parser)
    out = tmp_path / "api.json"
    args = parser.parse_args(
        [
            "--inventory-from",
            str(tmp_path / "src"),
            "--functions",
            str(tmp_path / "functions.toml"),
            "--inventory",
            str(out),
        ]
    )
    assert progress.run_progress(args) == 0
    data = json.loads(out.read_text())
    assert [(n["name"], n["kind"]) for n in data["names"]] == [
        ("invdemo.core.Model", "class"),
        ("invdemo.core.Model.__init__", "method"),
        ("invdemo.core.Model.helper", "method"),
        ("invdemo.core.Model.run", "method"),
        ("invdemo.core.grid", "function"),
    ]
    assert data["skipped_modules"] == ["invdemo.broken: ModuleNotFoundError"]
    assert str(tmp_path) not in out.read_text()
    assert "modules not importable: invdemo.broken" in capsys.readouterr().out
