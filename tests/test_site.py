"""The static site of the course (``make site``, scripts/build_site.py).

Fast tests check the pieces without a kernel: formulas become MathML, widget and plotly
outputs become static HTML, links are rewritten, and a page holds nothing remote. One
test runs a small notebook in a kernel to check that a widget appears in its state at
the *end* of the run. The browser tests (marked ``ui``) build the whole site, which runs
every lesson again (a few minutes), and open each page in Chromium with every request
that is not ``file:`` refused.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

REPO = Path(__file__).resolve().parents[1]
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("build_site", REPO / "scripts" / "build_site.py")
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)

REMOTE = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def lesson_formulas():
    """Every ``$...$`` and ``$$...$$`` in the lessons' markdown, as (lesson, markdown source)."""
    found = []
    for path in LESSONS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown" and "$" in cell.source:
                found.append((path.name, cell.source))
    return found


def test_formulas_become_mathml():
    page = build_site.markdown_html(r"The margin $m > 0$ and $$L = \tfrac12 \max(0, m - D)^2 .$$")
    assert page.count("<math") == 2
    assert 'display="block"' in page and 'display="inline"' in page
    assert "$" not in page


@pytest.mark.parametrize("lesson, source", lesson_formulas(), ids=lambda value: str(value)[:20])
def test_every_lesson_formula_converts(lesson, source):
    page = build_site.markdown_html(source)
    assert "course-tex" not in page, f"{lesson}: a formula latex2mathml could not convert"
    text_outside_code = re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", page, flags=re.S)
    assert "$$" not in text_outside_code, f"{lesson}: a formula was left as TeX"


def test_texttt_underscores_lose_their_backslash():
    assert "l2_reg" in build_site.markdown_html(r"$\lambda = \texttt{l2\_reg}$")


def _widget_output(model_id):
    return nbformat.v4.new_output(
        "display_data",
        data={build_site.WIDGET_MIME: {"model_id": model_id, "version_major": 2, "version_minor": 0},
              "text/plain": "Interactive(children=(...))"},
    )


def test_widget_output_becomes_its_final_figure_with_a_note():
    figure = go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name="final"))
    state = {"figure": figure.to_plotly_json(), "controls": [["margin", "0.5"], ["class", "Trouser"]],
             "readout": "<code>active: 3</code>"}
    output = _widget_output("abc")
    assert build_site.static_output(output, {"abc": state}) == 1
    page = output["data"]["text/html"]
    assert list(output["data"]) == ["text/html"]
    assert "Plotly.newPlot" in page and '"name":"final"' in page.replace(" ", "")
    assert "<b>margin</b> = 0.5" in page and "<code>active: 3</code>" in page
    assert "live in JupyterLab" in page
    assert not REMOTE.search(page)


def test_other_widgets_become_static_html_and_closed_ones_disappear():
    bar, closed = _widget_output("bar"), _widget_output("closed")
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [bar, closed]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    states = {"bar": {"html": 'train 5/5 <progress value="5" max="5"></progress>'}}
    assert build_site.make_static(notebook, states) == 0
    assert cell.outputs == [bar]
    assert bar["data"] == {"text/html": '<div class="course-static-widget">train 5/5 <progress value="5" max="5">'
                                        '</progress></div>'}


def test_plotly_output_is_drawn_by_the_local_plotly_js():
    output = nbformat.v4.new_output(
        "display_data", data={build_site.PLOTLY_MIME: go.Figure(go.Bar(y=[1, 2])).to_plotly_json(),
                              "text/html": '<script src="https://cdn.plot.ly/plotly.js"></script>'})
    build_site.static_output(output, {})
    assert list(output["data"]) == ["text/html"]
    assert "Plotly.newPlot" in output["data"]["text/html"]
    assert not REMOTE.search(output["data"]["text/html"])


def test_links_to_lessons_and_repository_files(tmp_path):
    page = ('<a href="02_contrastive_loss.ipynb#The-margin">x</a> <a href="../docs/definitions.md">d</a> '
            '<a href="#top">t</a> <a href="https://arxiv.org/abs/1703.07737">p</a> '
            '<script src="assets/plotly.min.js"></script> <a href="index.html">i</a>')
    fixed = build_site.fix_links(page, REPO / "site")
    assert 'href="02_contrastive_loss.html#The-margin"' in fixed
    assert 'href="../docs/definitions.md"' in fixed
    for kept in ('href="#top"', 'href="https://arxiv.org/abs/1703.07737"', 'src="assets/plotly.min.js"',
                 'href="index.html"'):
        assert kept in fixed
    elsewhere = build_site.fix_links(page, tmp_path / "out")
    assert Path(tmp_path / "out" / re.search(r'href="([^"]*definitions.md)"', elsewhere)[1]).resolve() == \
        (REPO / "docs" / "definitions.md").resolve()


def _page_of(cells, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=cells)
    lessons = [dict(number="99", title="Test", summary="", notebook="99_test.ipynb", page="99_test.html",
                    seconds=1.0, widgets=0, error=None)]
    build_site.write_lesson_page(tmp_path, lessons, 0, notebook, "today")
    return (tmp_path / "99_test.html").read_text()


def test_a_page_fetches_nothing_remote_and_keeps_collapsed_cells_collapsed(tmp_path):
    check = nbformat.v4.new_code_cell("assert True", metadata={"tags": ["ci-check"], "jupyter": {"source_hidden": True}})
    shown = nbformat.v4.new_code_cell("x = 1")
    bar = nbformat.v4.new_output("display_data", data={"text/html": build_site.plotly_html(go.Figure(go.Bar(y=[1])))})
    shown.outputs = [bar, _widget_output("gone")]
    build_site.make_static(nbformat.v4.new_notebook(cells=[shown]), {})
    page = _page_of([nbformat.v4.new_markdown_cell(r"# 99 · Test" "\n\n" r"$D(a,p) + m$"), shown, check], tmp_path)
    assert not REMOTE.search(page), REMOTE.search(page)
    assert re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", page) == ["assets/plotly.min.js"]
    assert "mathjax" not in page.lower() and "require.js" not in page and "mermaid.esm" not in page
    assert "<math" in page
    assert re.search(r'<details class="course-collapsed"><summary>Check run by CI', page)
    assert "Course map" in page and "make lab" in page


def test_the_widget_state_is_read_at_the_end_of_the_run(tmp_path):
    """A slider moved by a later cell: the page shows the figure after the move."""
    cells = [
        nbformat.v4.new_code_cell(
            "import plotly.graph_objects as go\n"
            "from course_lib.widgets import Interactive, slider\n"
            "demo = Interactive(lambda n: {'n': n}, lambda s: go.Figure(go.Bar(y=[s['n']], name=f\"n={s['n']}\")),\n"
            "                   readout=lambda s: f\"n is {s['n']}\", n=slider(1, 0, 9, 1, 'n', integer=True))\n"
            "demo"),
        nbformat.v4.new_code_cell("demo.controls['n'].value = 7"),
        nbformat.v4.new_code_cell("from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass"),
    ]
    path = tmp_path / "99_test.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    notebook, states, _, error = build_site.run_lesson(path, timeout=120)
    assert error is None
    assert len(notebook.cells) == 3, "the harvesting cell must not stay in the page"
    (state,) = [state for state in states.values() if "figure" in state]
    assert state["controls"] == [["n", "7"]]
    assert state["readout"] == "<code>n is 7</code>"
    assert state["figure"]["data"][0]["name"] == "n=7"
    assert build_site.make_static(notebook, states) == 1
    (progress,) = notebook.cells[2].outputs
    assert "steps" in progress["data"]["text/html"] and "3/3" in progress["data"]["text/html"]
    assert "<progress" in progress["data"]["text/html"]


# --------------------------------------------------------------------- in the browser


def _chromium():
    override = os.environ.get("COURSE_UI_CHROMIUM")
    candidates = [override] if override else ["/usr/bin/chromium", shutil.which("chromium"),
                                              shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).exists()), None)


CHROMIUM = _chromium()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The whole site, built by scripts/build_site.py (every lesson runs), or $COURSE_SITE_DIR."""
    prebuilt = os.environ.get("COURSE_SITE_DIR")
    if prebuilt:
        return Path(prebuilt).resolve()
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "build_site.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=40 * 60)
    assert result.returncode == 0, f"make site failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_offline(browser, path):
    """Open a file with every non-file: request refused; returns (page, context, problems)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = []

    def route(request_route):
        if request_route.request.url.startswith("file:"):
            request_route.continue_()
        else:
            problems.append(f"refused {request_route.request.url}")
            request_route.abort()

    page.route("**/*", route)
    page.on("requestfailed", lambda request: problems.append(f"failed {request.url}"))
    page.on("pageerror", lambda error: problems.append(f"page error {error}"))
    page.goto(path.as_uri(), wait_until="load")
    return page, context, problems


@pytest.mark.ui
@pytest.mark.slow
@needs_chromium
def test_course_map_links_every_lesson(site, browser):
    page, context, problems = open_offline(browser, site / "index.html")
    try:
        links = page.eval_on_selector_all(".course-lessons a", "links => links.map(a => a.getAttribute('href'))")
        assert links == [path.stem + ".html" for path in LESSONS]
        assert all((site / link).is_file() for link in links)
        assert problems == []
    finally:
        context.close()


@pytest.mark.ui
@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_lesson_page_offline(lesson, site, browser):
    record = {entry["notebook"]: entry for entry in json.loads((site / "build.json").read_text())}[lesson.name]
    assert record["error"] is None, f"{lesson.name} failed to run: {record['error']}"
    page, context, problems = open_offline(browser, site / (lesson.stem + ".html"))
    try:
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0",
                               timeout=30_000)
        figures = page.locator(".js-plotly-plot").count()
        drawn = page.evaluate("[...document.querySelectorAll('.js-plotly-plot')]"
                              ".filter(p => p.querySelector('.main-svg')).length")
        text = page.inner_text("body")
        outputs = "\n".join(page.locator(".jp-OutputArea").all_inner_texts())
        assert problems == [], problems
        assert figures >= 1 and drawn == figures, f"{drawn} of {figures} plotly figures drawn"
        assert page.locator(".course-widget .js-plotly-plot").count() == record["widgets"]
        if "Interactive(" in lesson.read_text():
            assert record["widgets"] >= 1, "the lesson builds an Interactive but the page shows none"
        for placeholder in ("Loading widget", "widget-view+json", "Interactive(children", "FigureWidget(",
                            "HBox(children", "VBox(children"):
            assert placeholder not in outputs, f"unrendered widget text in an output: {placeholder!r}"
        if "$" in "".join(cell.source for cell in nbformat.read(lesson, 4).cells if cell.cell_type == "markdown"):
            assert page.locator("math").count() >= 1
        assert "$$" not in text
    finally:
        context.close()
