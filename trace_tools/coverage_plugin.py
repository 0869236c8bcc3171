"""pytest plugin: line coverage of the port (``eryx_port``) during the ordinary test run.

Enabled unless ``ERYX_PORT_COVERAGE=0``. Each test run measures into its own
folder ``build/coverage/.session-<id>/`` (every pytest-xdist worker, or the only
process, writes a part there). When the run ends, the controller combines the
parts and, if the run replayed any parity or gradcheck case, moves the result to
``build/coverage/.coverage``, which ``trace-tools progress`` reads. This follows
the rule of the results files (trace_tools.pytest_plugin): runs of other test
files leave the last coverage alone, and concurrent runs in one checkout don't mix.

Workers save in ``pytest_sessionfinish``, which xdist runs before telling the
controller that the worker is done, so the controller never combines a
half-written part. Only function bodies count on the dashboard, so port modules
imported before measuring starts lose nothing that matters.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

ENV = "ERYX_PORT_COVERAGE"
_SESSION = "eryx_port_coverage_session"  # workerinput key: the run's folder name


def _enabled() -> bool:
    if os.environ.get(ENV, "1") == "0":
        return False
    try:
        import coverage  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    if not _enabled():
        return
    worker = hasattr(config, "workerinput")
    if worker and _SESSION not in config.workerinput:
        return  # the controller has coverage off
    sid = config.workerinput[_SESSION] if worker else f"{os.getpid()}-{time.time_ns()}"
    config.pluginmanager.register(
        _CoverageRun(config, sid, worker), "eryx-port-coverage-run"
    )


class _CoverageRun:
    """One process's part of a run's measurement; the controller's instance also combines."""

    def __init__(self, config, sid: str, worker: bool):
        self.config = config
        self.sid = sid
        self.worker = worker
        self.folder = Path(config.rootpath) / "build" / "coverage"
        self.session_dir = self.folder / f".session-{sid}"
        self.ran_cases = False
        self.cov = None
        if not worker and config.getoption("numprocesses", None) not in (None, 0, "0"):
            return  # an xdist controller runs no tests; its workers measure
        import coverage

        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.cov = coverage.Coverage(
            data_file=str(self.session_dir / ".coverage"),
            data_suffix=True,
            source=["eryx_port"],
            config_file=False,
        )
        # A run that imports no port code (e.g. only trace-tools tests) is fine.
        self.cov.set_option(
            "run:disable_warnings", ["module-not-imported", "no-data-collected"]
        )
        self.cov.start()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(
        self, node
    ) -> None:  # pytest-xdist: hand the run's folder to each worker
        node.workerinput[_SESSION] = self.sid

    def pytest_runtest_logreport(self, report) -> None:
        # In the xdist controller this sees every worker's reports too.
        if report.when == "call" and (
            "parity" in report.keywords or "gradcheck" in report.keywords
        ):
            self.ran_cases = True

    def _stop(self) -> None:
        if self.cov is None:
            return
        cov, self.cov = self.cov, None
        cov.stop()
        from coverage.exceptions import CoverageException

        try:
            cov.save()
        except (
            OSError,
            CoverageException,
        ) as exc:  # coverage is lost, the tests are not
            self._warn(f"could not save coverage data: {exc}")

    def _warn(self, message: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"eryx-port coverage: {message}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        self._stop()
        if self.worker:
            return
        from coverage.exceptions import CoverageException

        try:
            parts = sorted(str(p) for p in self.session_dir.glob(".coverage.*"))
            if parts and self.ran_cases:
                import coverage

                combined = coverage.Coverage(
                    data_file=str(self.session_dir / ".coverage"), config_file=False
                )
                combined.combine(parts, keep=False)
                combined.save()
                (self.session_dir / ".coverage").replace(self.folder / ".coverage")
        except (
            OSError,
            CoverageException,
        ) as exc:  # never fail a test run over coverage data
            self._warn(f"could not combine coverage data: {exc}")
        finally:
            shutil.rmtree(self.session_dir, ignore_errors=True)

    def pytest_unconfigure(self, config) -> None:
        # A session that ended before sessionfinish (e.g. a usage error) still stops measuring.
        self._stop()
