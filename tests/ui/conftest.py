"""Fixtures for the browser tests: one JupyterLab server and one headless Chromium per session.

The tests need Debian's ``chromium`` (Playwright's own browser download does
not work on these machines).  Without it every test here is skipped with one
line saying how to install it; under ``CI=true`` a missing Chromium fails
``test_chromium_is_available`` (the other browser tests are deselected).

Settings (environment variables: COURSE_UI_CELLS, COURSE_UI_PARALLEL,
COURSE_UI_TIMEOUT, ...) and how to run: tests/ui/README.md.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

import pytest

import labdriver
from labdriver import CHROMIUM, IN_CI, VIEWPORT, WORK_DIR, failure_screenshot, record_console_errors

HERE = Path(__file__).resolve().parent
SCREENSHOTS = Path(os.environ.get("COURSE_UI_SCREENSHOTS", labdriver.REPO / "artifacts" / "ui-screenshots"))


def pytest_collection_modifyitems(config, items):
    """CI=true and no Chromium: keep only ``test_chromium_is_available`` (it fails and says why).

    Without CI the test module skips itself at import, which ``pytest -ra``
    reports on one line with the install command.
    """
    if CHROMIUM or not IN_CI:
        return
    ours = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    dropped = [item for item in ours if item.name != "test_chromium_is_available"]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("FAILED-*.png"):  # from an earlier session
        old.unlink()
    return SCREENSHOTS


_SESSION = {"seconds": 0.0}   # time spent in the browser tests, for the summary line


def pytest_runtest_logreport(report):
    # setup + call + teardown of each browser test, server start and stop
    # included; not the other tests that run while the server idles
    if "tests/ui/" in report.nodeid.replace("\\", "/"):
        _SESSION["seconds"] += report.duration


def pytest_terminal_summary(terminalreporter):
    if "start" in _SESSION:
        minutes = _SESSION["seconds"] / 60
        shots = SCREENSHOTS.relative_to(labdriver.REPO) if SCREENSHOTS.is_relative_to(labdriver.REPO) else SCREENSHOTS
        terminalreporter.write_line(f"browser tests (tests/ui): {minutes:.1f} min, server start included "
                                    f"(budget 5 min); screenshots in {shots}/")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """JupyterLab on a free loopback port with a random token; always stopped at the end."""
    _SESSION["start"] = time.monotonic()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    log = WORK_DIR / "jupyterlab.log"
    log.unlink(missing_ok=True)
    server = labdriver.LabServer(tmp_path_factory.mktemp("jupyter"), log_path=log)
    atexit.register(server.close)  # also on an interrupted session
    try:
        server.start()
        yield server
    finally:
        server.close()
        atexit.unregister(server.close)
        _SESSION["end"] = time.monotonic()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=labdriver.CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"ui_report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, lab_server, screenshot_dir, request):
    """A fresh browser context (no shared storage) and page; kernels are shut down after."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    record_console_errors(new_page)
    try:
        yield new_page
        failure_screenshot(new_page, request, screenshot_dir)
    finally:
        context.close()
        lab_server.shutdown_kernels()


LESSON_ORDER = pytest.StashKey[list]()


def pytest_collection_finish(session):
    """The lessons this session will check, in order: the runner opens them ahead of their test."""
    session.config.stash[LESSON_ORDER] = [
        item.callspec.params["path"] for item in session.items
        if getattr(item, "callspec", None) is not None and "path" in item.callspec.params
        and item.originalname == "test_lesson_in_the_browser"
    ]


@pytest.fixture(scope="session")
def lesson_runner(browser, lab_server, request):
    """Opens and runs lessons ``COURSE_UI_PARALLEL`` (2) at a time, ahead of their tests."""
    runner = labdriver.LessonRunner(
        browser, lab_server, request.config.stash.get(LESSON_ORDER, []),
        through=labdriver.run_through, parallel=labdriver.PARALLEL,
        timeout_s=labdriver.RUN_TIMEOUT, viewport=VIEWPORT, on_page=record_console_errors,
    )
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture
def lesson(request, lesson_runner, screenshot_dir):
    """The lesson ``path`` (the test's parameter) with its cells run; closed after the test."""
    path = request.node.callspec.params["path"]
    try:
        taken = lesson_runner.take(path)
        yield taken
        failure_screenshot(taken.page, request, screenshot_dir)
    finally:
        lesson_runner.release(path)
