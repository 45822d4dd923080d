"""The lessons in a real browser: JupyterLab, ipywidgets and plotly in headless Chromium.

nbval proves the kernel side; these tests prove what a learner sees.  A
widget that does not render (ipywidgets / jupyterlab_widgets or plotly /
anywidget version skew) leaves every kernel-side test green and breaks the
course: here it fails.

For every lesson that builds a ``course_lib.widgets.Interactive``: open it,
run its cells from the Run menu, then check that no cell shows an error, that
every widget and plotly output is rendered in the page, and that moving a
slider with the keyboard changes the readout and the figure.  A screenshot of
each interactive figure goes to ``artifacts/ui-screenshots/``.

Run only these:  .venv/bin/python -m pytest tests/ui -v     (see tests/ui/README.md)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import labdriver
from labdriver import CHROMIUM, CI_MISSING_MESSAGE, IN_CI, MISSING_REASON, WORK_DIR

if not CHROMIUM and not IN_CI:  # one line under pytest -ra; under CI, see test_chromium_is_available
    pytest.skip(MISSING_REASON, allow_module_level=True)
pytestmark = pytest.mark.ui

REPO = labdriver.REPO
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
INTERACTIVE_LESSONS = [p for p in NOTEBOOKS if labdriver.interactive_cells(p)]
# The lessons as they were on disk before any browser run: a learner's working copy may hold
# outputs (JupyterLab autosaves); what must not happen is the test run changing the file.
ON_DISK = {p: p.read_bytes() for p in NOTEBOOKS}


def expect(condition, message: str) -> None:
    """Fail with ``message`` alone (it carries the page state; no assertion-rewriting noise)."""
    if not condition:
        pytest.fail(message, pytrace=False)


def test_chromium_is_available():
    expect(CHROMIUM, CI_MISSING_MESSAGE if IN_CI else MISSING_REASON)


def test_lab_starts_and_lists_the_lessons(page, lab_server, screenshot_dir):
    """The launcher opens, offers the Python 3 kernel, and the file browser lists every lesson."""
    page.goto(f"{lab_server.url}/lab/tree/notebooks?reset&token={lab_server.token}")
    page.wait_for_selector(".jp-Launcher", timeout=60_000)
    expect(page.locator(".jp-LauncherCard", has_text="Python 3").first.is_visible(),
           "the launcher shows no Python 3 notebook card")
    listing = page.locator(".jp-DirListing-content")
    for path in NOTEBOOKS:
        listing.locator(".jp-DirListing-itemText", has_text=path.name).first.wait_for(timeout=15_000)
    page.screenshot(path=screenshot_dir / "launcher.png")


# ------------------------------------------------------------------ checks
def check_cells_ran(page, result: labdriver.RunResult, name: str) -> None:
    """No error output; every cell ran; every widget and plotly output rendered."""
    state = result.state
    expect(not result.errors, f"{name}: error output in the page:\n" + "\n---\n".join(result.errors)
           + (f"\nbrowser console: {page.console_errors[:5]}" if page.console_errors else ""))
    expect(state.get("busy") == 0,
           f"{name}: cells still running after {result.seconds:.0f} s: {state.get('prompts')}")
    expect(result.complete, f"{name}: only {state.get('numbered')} of {result.expected_cells} code cells "
                            f"ran (prompts {state.get('prompts')})")
    expect(state["widgetRendered"] == state["widgetOutputs"], (
        f"{name}: {state['widgetOutputs'] - state['widgetRendered']} of {state['widgetOutputs']} widget "
        "outputs did not render in the page (ipywidgets / jupyterlab_widgets mismatch?); "
        f"console: {page.console_errors[:5]}"))
    expect(state["plotlyRendered"] == state["plotlyOutputs"], (
        f"{name}: {state['plotlyOutputs'] - state['plotlyRendered']} of {state['plotlyOutputs']} plotly "
        f"outputs did not render in the page; console: {page.console_errors[:5]}"))


def check_interactives(page, name: str, expected: int, screenshot_dir: Path) -> list:
    """Each ``Interactive`` is rendered and a slider move changes its readout and figure.

    Sliders are tried first (the keyboard, as a learner would), then dropdowns
    for an Interactive that has no slider.  One screenshot per Interactive,
    after the move: ``<name>.png``, ``<name>-2.png``, ...
    """
    boxes = labdriver.interactives(page)
    expect(boxes.count() >= max(expected, 1), (
        f"{name}: {expected} cells build an Interactive, {boxes.count()} rendered in the page; "
        f"console: {page.console_errors[:5]}"))
    moves = []
    for k in range(boxes.count()):
        box = boxes.nth(k)
        box.evaluate("b => b.scrollIntoView({block: 'start'})")
        label = f"{name} Interactive #{k + 1}"
        sliders, dropdowns = box.locator(".widget-slider"), box.locator(".widget-dropdown")
        expect(sliders.count() + dropdowns.count() >= 1, f"{label}: no slider or dropdown rendered")
        first = sliders.first if sliders.count() else dropdowns.first
        expect(first.is_visible(), f"{label}: the controls are not visible")
        plot = box.locator(".js-plotly-plot .main-svg").first
        expect(plot.count() and plot.is_visible(),
               f"{label}: the plotly figure is not rendered; console: {page.console_errors[:5]}")
        # a FigureWidget's traces can reach the page after its view (the kernel sends them when it
        # gets to it: seconds on a loaded machine), so wait for them before calling the figure empty
        before = labdriver.wait_for_traces(box)
        expect(before["traces"] + before["points"] > 0,
               f"{label}: the figure has no traces drawn; browser console: {page.console_errors[:5]}; "
               f"plotly data in the page (None: no data arrived): {str(before['data'])[:300]}")

        controls = [sliders.nth(i) for i in range(sliders.count())]
        controls += [dropdowns.nth(i) for i in range(dropdowns.count())]
        tried = []
        for control in controls:
            move = labdriver.nudge_control(page, box, control)
            tried.append(move)
            readout_ok = move["readout_changed"] or not move["before"]["readout"]
            if move["svg_changed"] and readout_ok:
                break
        else:
            summary = [{key: m[key] for key in ("action", "value_before", "value_after",
                                                "readout_changed", "svg_changed")} for m in tried]
            expect(False, f"{label}: no control changed both the readout and the figure: {summary}; "
                          f"readout {tried[0]['before']['readout']!r}")
        moves.append((tried[-1]["before"]["readout"], tried[-1]["after"]["readout"]))
        labdriver.wait_until_idle(page)   # the screenshot shows the figure of the slider's last value
        box.evaluate("b => b.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=screenshot_dir / (f"{name}.png" if k == 0 else f"{name}-{k + 1}.png"))
    return moves


def check_file_untouched(path: Path, name: str) -> None:
    """The browser must not save the lesson (autosave is off in the test server)."""
    expect(path.read_bytes() == ON_DISK[path],
           f"{name}: {path.name} changed on disk during the browser run: it was saved"
           + (" with outputs" if labdriver.has_outputs(path) else ""))


# ------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def smoke(browser, lab_server):
    """The generated one-Interactive notebook, opened and run once for the two tests below."""
    path = labdriver.write_smoke_notebook(WORK_DIR / "widget_smoke.ipynb")
    context = browser.new_context(viewport=labdriver.VIEWPORT)
    context.set_default_timeout(30_000)
    page = context.new_page()
    labdriver.record_console_errors(page)
    try:
        labdriver.open_notebook(page, lab_server, path.relative_to(REPO).as_posix())
        result = labdriver.run_cells(page, path, timeout_s=labdriver.RUN_TIMEOUT)
        yield dict(page=page, result=result, moves=[])
    finally:
        context.close()
        lab_server.shutdown_kernels(path=path.relative_to(REPO).as_posix())


@pytest.fixture
def smoke_page(smoke, request, screenshot_dir):
    yield smoke["page"]
    labdriver.failure_screenshot(smoke["page"], request, screenshot_dir)


def test_widgets_and_plotly_render_in_a_minimal_notebook(smoke, smoke_page, screenshot_dir):
    """The browser stack on its own, in seconds: one Interactive with two sliders."""
    check_cells_ran(smoke_page, smoke["result"], "widget_smoke")
    smoke["moves"] = check_interactives(smoke_page, "widget_smoke", 1, screenshot_dir)
    (before, after), = smoke["moves"]
    expect(before.startswith("active triplets:") and after != before,
           f"the readout did not change as expected: {before!r} -> {after!r}")


def test_a_figure_update_leaves_no_stale_layout_in_the_page(smoke, smoke_page):
    """draw() sets a title for margins < 0.3 only: once the slider is past 0.3, the
    kernel's FigureWidget has no title, and the page must not show the old one."""
    check_cells_ran(smoke_page, smoke["result"], "widget_smoke")
    box = labdriver.interactives(smoke_page).first
    margin = box.locator(".widget-slider").first
    for _ in range(4):   # run alone, or after the test above: move until margin >= 0.3
        if float(labdriver.control_value(margin) or 0) >= 0.3:
            break
        labdriver.nudge_control(smoke_page, box, margin)
    titles = box.evaluate("b => [...b.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)")
    expect(not any("small margin" in t for t in titles), (
        f"stale layout in the page: at margin {labdriver.control_value(margin)} the figure still shows "
        f"the title {titles} that draw() no longer sets. course_lib.widgets.replace_figure assigns "
        "FigureWidget.layout, which sends only the keys of the new layout to the browser; keys the "
        "new figure lacks stay on screen (clear them first: figure.plotly_relayout({key: None}))."))


@pytest.mark.parametrize("path", INTERACTIVE_LESSONS, ids=lambda p: p.stem)
def test_lesson_in_the_browser(path, lesson, screenshot_dir, record_property):
    """Run the lesson's cells (all of them, or up to its last Interactive: COURSE_UI_CELLS),
    then check errors, rendering and one control move per Interactive."""
    name, page = path.stem, lesson.page
    check_cells_ran(page, lesson.run.result, name)
    t0 = time.monotonic()
    through = lesson.through
    expected = len([i for i in labdriver.interactive_cells(path) if through is None or i <= through])
    check_interactives(page, name, expected, screenshot_dir)
    check_file_untouched(path, name)
    timings = dict(open=lesson.opened_s, run=lesson.run.result.seconds, controls=time.monotonic() - t0)
    record_property("timings", timings)
    state = lesson.run.result.state
    print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + f"; rendered: widget outputs {state['widgetRendered']}/{state['widgetOutputs']}, static plotly "
          f"figures {state['plotlyRendered']}/{state['plotlyOutputs']}, figures in widgets "
          f"{state['figuresInWidgets']}; slowest: {lesson.run.result.slowest()}")
