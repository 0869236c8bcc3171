"""pytest plugin: line coverage of the port (``eryx_port``) during the ordinary test run.

Enabled unless ``ERYX_PORT_COVERAGE=0``. Every process measures (the controller
and each pytest-xdist worker) into its own ``build/coverage/.coverage.<suffix>``;
the controller erases old data before the workers start and combines all parts
into ``build/coverage/.coverage`` when the session ends, which is what
``trace-tools progress`` reads. Workers save in ``pytest_sessionfinish``, which
xdist runs before telling the controller the worker is done, so the controller
never combines a half-written part.

Modules of ``eryx_port`` imported before this plugin starts (e.g. by a conftest)
still get their function bodies measured: only import-time lines would be missed,
and the dashboard counts function bodies only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "ERYX_PORT_COVERAGE"
_KEY = "_eryx_port_coverage"


def _data_dir(config) -> Path:
    return Path(config.rootpath) / "build" / "coverage"


def _enabled() -> bool:
    if os.environ.get(ENV, "1") == "0":
        return False
    try:
        import coverage  # noqa: F401
    except ImportError:
        return False
    return True


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    if not _enabled():
        return
    import coverage

    folder = _data_dir(config)
    if not _is_worker(config):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(".coverage*"):
            old.unlink(missing_ok=True)
        setattr(config, _KEY + "_combine", True)
        if config.getoption("numprocesses", None) not in (None, 0, "0"):
            return  # the xdist controller runs no tests; its workers measure
    cov = coverage.Coverage(
        data_file=str(folder / ".coverage"),
        data_suffix=True,
        source=["eryx_port"],
        config_file=False,
    )
    # Processes that import no port code (e.g. a run of trace-tools tests only) are fine.
    cov.set_option("run:disable_warnings", ["module-not-imported", "no-data-collected"])
    cov.start()
    setattr(config, _KEY, cov)


def _stop(config):
    cov = getattr(config, _KEY, None)
    if cov is None:
        return None
    setattr(config, _KEY, None)
    cov.stop()
    try:
        cov.save()
    except Exception as exc:  # e.g. another session emptied the folder: coverage is lost, tests are not
        _warn(config, f"could not save coverage data: {exc}")
    return cov


def _warn(config, message: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"eryx-port coverage: {message}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    config = session.config
    _stop(config)
    if not getattr(config, _KEY + "_combine", False):
        return  # a worker, or coverage disabled
    import coverage

    folder = _data_dir(config)
    combined = coverage.Coverage(data_file=str(folder / ".coverage"), config_file=False)
    parts = sorted(str(p) for p in folder.glob(".coverage.*"))
    if not parts:
        return
    try:
        combined.combine(parts, keep=False)
        combined.save()
    except Exception as exc:  # a concurrent session in the same checkout; never fail the run for it
        _warn(config, f"could not combine coverage data: {exc}")


def pytest_unconfigure(config) -> None:
    # A session that ended before sessionfinish (e.g. a usage error) still stops tracing.
    _stop(config)
