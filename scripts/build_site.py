"""Build the course as a static site that works offline: ``make site``, then open site/index.html.

Every lesson in ``notebooks/`` runs top to bottom in a fresh kernel with its default
profile (as nbval runs it), and becomes one HTML page with its outputs; ``index.html``
is the course map. The site needs no network and no server (it works from ``file://``):

- plotly.js is the copy shipped inside the plotly Python package (``assets/plotly.min.js``);
- formulas are converted to MathML at build time (latex2mathml), which browsers draw
  natively: no MathJax to fetch;
- every ``course_lib.widgets.Interactive`` is replaced by its figure in the state it has
  at the end of the run (read from the kernel after the last cell), as an interactive
  plotly figure (hover, zoom), with the final slider values and a note that the sliders
  are live in JupyterLab. Widgets need a kernel; the site has none.

Usage::

    python scripts/build_site.py                    # every lesson -> site/
    python scripts/build_site.py --out /tmp/site notebooks/00_tour.ipynb

Exits non-zero if a lesson fails to run; its page then shows the outputs up to the error.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import jinja2
import nbclient
import nbformat
import plotly
import plotly.io as pio
from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TEMPLATES = Path(__file__).resolve().parent / "site_templates"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
HARVEST_MIME = "application/x-course-site+json"
COURSE_TITLE = "Retrieval with deep learning: ranking losses, hands on"

# Run in the lesson's kernel after its last cell: the final state of every live widget.
# An Interactive gives its figure, controls and readout; any other widget (tqdm's
# progress bars during training, labels, boxes of them) a static HTML rendering.
HARVEST_CODE = f"""
import html as _html, json as _json
import ipywidgets as _ipw
import plotly.io as _pio
from ipywidgets.widgets.widget import _instances as _live_widgets
from IPython.display import publish_display_data as _publish
from course_lib.widgets import Interactive as _Interactive

def _site_control(control):
    value = getattr(control, "label", None) or control.value
    return [control.description or "", str(value)]

def _site_html(widget):
    if isinstance(widget, _ipw.Box):
        return " ".join(_site_html(child) for child in widget.children)
    if isinstance(widget, (_ipw.FloatProgress, _ipw.IntProgress)):
        return f'<progress value="{{widget.value}}" max="{{widget.max}}"></progress>'
    if isinstance(widget, (_ipw.HTML, _ipw.HTMLMath)):
        return widget.value
    if isinstance(widget, _ipw.DOMWidget) and hasattr(widget, "value"):
        return _html.escape(" ".join(_site_control(widget)).strip())
    return ""

_site = {{}}
for _id, _widget in list(_live_widgets.items()):
    if isinstance(_widget, _Interactive):
        _site[_id] = {{
            "figure": _json.loads(_pio.to_json(_widget.figure, validate=False)),
            "controls": [_site_control(_c) for _c in _widget.controls.values()],
            "readout": _widget.readout.value,
        }}
    elif isinstance(_widget, _ipw.DOMWidget) and _site_html(_widget).strip():
        _site[_id] = {{"html": _site_html(_widget)}}
_publish({{"{HARVEST_MIME}": _site}})
"""


# --------------------------------------------------------------------------- running


def run_lesson(path, timeout):
    """Execute a lesson in a fresh kernel; returns ``(notebook, widget states, seconds, error)``.

    ``error`` is None when every cell ran; otherwise the notebook keeps the outputs up to
    the failing cell (nbclient records the traceback there).
    """
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(HARVEST_CODE))
    client = nbclient.NotebookClient(
        notebook, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    error = None
    try:
        client.execute()
    except Exception as failure:  # a lesson mid-edit must not stop the other pages
        error = f"{type(failure).__name__}: {failure}"
    seconds = time.monotonic() - start
    harvest = notebook.cells.pop()
    states = {}
    for output in harvest.get("outputs", []):
        states.update(output.get("data", {}).get(HARVEST_MIME, {}))
    return notebook, states, seconds, error


# ------------------------------------------------------------------ outputs -> static


def plotly_html(figure):
    """A plotly figure as a ``<div>`` drawn by the page's own plotly.js (no CDN)."""
    return pio.to_html(figure, include_plotlyjs=False, full_html=False, validate=False,
                       config={"displaylogo": False, "responsive": True})


def widget_html(state):
    """The final state of an Interactive: slider values, readout, figure, and a note."""
    controls = " · ".join(
        f"<b>{html.escape(name.rstrip(': '))}</b> = {html.escape(value)}" if name else html.escape(value)
        for name, value in state["controls"]
    )
    return (
        '<div class="course-widget">'
        f'<div class="course-widget-controls">Controls at the end of the run: {controls}</div>'
        f'<div class="course-readout">{state["readout"]}</div>'
        f'{plotly_html(state["figure"])}'
        '<p class="course-widget-note">The figure shows the end of the run (hover and zoom work here); '
        "the sliders are live in JupyterLab: <code>make lab</code>, then run this lesson.</p>"
        "</div>"
    )


def static_output(output, states):
    """A widget or plotly mime bundle as HTML the static page can show.

    Returns the number of Interactive figures it produced (0 or 1), or None when the
    output is a widget that no longer exists at the end of the run (closed, like a
    progress bar with ``leave=False``): JupyterLab shows nothing there either.
    """
    data = output.get("data", {})
    if WIDGET_MIME in data:
        state = states.get(data[WIDGET_MIME].get("model_id"))
        if state is None:
            return None
        if "figure" not in state:
            output["data"] = {"text/html": f'<div class="course-static-widget">{state["html"]}</div>'}
            return 0
        output["data"] = {"text/html": widget_html(state)}
        return 1
    if PLOTLY_MIME in data:
        output["data"] = {"text/html": plotly_html(data[PLOTLY_MIME])}
    return 0


def make_static(notebook, states):
    """Every widget and plotly output of an executed notebook as static HTML; returns #widgets."""
    widgets = 0
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") in ("display_data", "execute_result"):
                count = static_output(output, states)
                if count is None:
                    continue
                widgets += count
            kept.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept
    notebook.metadata.pop("widgets", None)
    return widgets


# ------------------------------------------------------------------------- rendering


class MathMLRenderer(IPythonRenderer):
    """nbconvert's markdown renderer with formulas as MathML instead of TeX left for MathJax."""

    def block_math(self, body):
        return _mathml(body, "block")

    def inline_math(self, body):
        return _mathml(body, "inline")

    def latex_environment(self, name, body):
        return _mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", "block")


def _mathml(tex, display):
    # \texttt{l2\_reg}: latex2mathml keeps the backslash of an escaped underscore in text.
    tex = re.sub(r"\\texttt\{([^}]*)\}", lambda m: "\\texttt{" + m[1].replace("\\_", "_") + "}", tex)
    try:
        return latex_to_mathml(tex.strip(), display=display)
    except Exception:  # show the TeX rather than lose the formula
        return f'<code class="course-tex">{html.escape(tex)}</code>'


def markdown_html(source):
    """Markdown (with $...$ and $$...$$ math) to HTML with MathML formulas."""
    return MarkdownWithMath(renderer=MathMLRenderer(escape=False)).render(source)


class SiteExporter(HTMLExporter):
    """The lab HTML exporter with our offline template and MathML formulas."""

    @jinja2.pass_context
    def markdown2html(self, context, source):
        cell = context.get("cell", {})
        renderer = MathMLRenderer(escape=False, attachments=cell.get("attachments", {}),
                                  anchor_link_text=self.anchor_link_text)
        return MarkdownWithMath(renderer=renderer).render(source)


def exporter():
    return SiteExporter(
        template_name="course_site", extra_template_basedirs=[str(TEMPLATES)],
        exclude_input_prompt=True, exclude_output_prompt=True,
    )


# ----------------------------------------------------------------------------- pages


def lesson_heading(path):
    """``(number, title, summary markdown)`` from a lesson's first markdown cell."""
    notebook = nbformat.read(path, as_version=4)
    first = next(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    heading, _, rest = first.partition("\n")
    title = heading.lstrip("# ").strip()
    number, _, name = title.partition(" · ")
    summary = rest.strip().split("\n\n")[0]
    return (number, name, summary) if name else (path.stem[:2], title, summary)


def navigation(lessons, index):
    """Links at the top and bottom of a lesson page."""
    links = ['<a href="index.html">Course map</a>']
    if index > 0:
        previous = lessons[index - 1]
        links.append(f'<a href="{previous["page"]}">← {previous["number"]} {html.escape(previous["title"])}</a>')
    if index + 1 < len(lessons):
        following = lessons[index + 1]
        links.append(f'<a href="{following["page"]}">{following["number"]} {html.escape(following["title"])} →</a>')
    return f'<nav class="course-nav">{" ".join(links)}</nav>'


def banner(lesson, built):
    text = (
        f"The executed lesson <code>notebooks/{lesson['notebook']}</code> (default profile), as it "
        f"ran on {built} in {lesson['seconds']:.0f} s. To do the exercises and move the sliders, "
        "run it in JupyterLab: <code>make lab</code>."
    )
    if lesson["error"]:
        text += f'<br><span class="course-failed">This run failed: {html.escape(lesson["error"][:500])}</span>'
    return text


def fix_links(text, out):
    """Relative links written for notebooks/: a lesson -> its page, anything else -> the repository file."""
    def relink(match):
        target, anchor = match[2], match[3] or ""
        if target.startswith("assets/") or re.fullmatch(r"(index|[0-9][0-9]_[^/]*)\.html", target):
            return match[0]  # the site's own files
        if re.fullmatch(r"[0-9][0-9]_[^/]*\.ipynb", target):
            return f'{match[1]}="{target[:-len(".ipynb")]}.html{anchor}"'
        return f'{match[1]}="{Path(os.path.relpath(NOTEBOOKS / target, out)).as_posix()}{anchor}"'
    return re.sub(r'\b(href|src)="(?![a-z][a-z0-9+.-]*:|#|/)([^"#]+)(#[^"]*)?"', relink, text)


def write_lesson_page(out, lessons, index, notebook, built):
    lesson = lessons[index]
    site = {"nav": navigation(lessons, index), "banner": banner(lesson, built)}
    resources = {"metadata": {"name": f"{lesson['number']} · {lesson['title']}"}, "site": site}
    body, _ = exporter().from_notebook_node(notebook, resources=resources)
    (out / lesson["page"]).write_text(fix_links(body, out), encoding="utf-8")


def write_course_map(out, lessons, built):
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False)
    page = environment.get_template("course_map.html.j2").render(
        title=COURSE_TITLE,
        intro="A course on the losses that learn an embedding for retrieval: contrastive, triplet "
              "with batch-all, batch-hard and semi-hard mining, N-pairs and angular. Each lesson "
              "below is a JupyterLab notebook, shown here executed, with its figures.",
        banner=f"Built on {built} by <code>make site</code>; read it without installing anything. "
               "To run the lessons, do the exercises and move the sliders: <code>make lab</code>.",
        lessons=[dict(lesson, title=html.escape(lesson["title"]), summary=markdown_html(lesson["summary"]))
                 for lesson in lessons],
    )
    (out / "index.html").write_text(fix_links(page, out), encoding="utf-8")


# ------------------------------------------------------------------------------ main


def build(out, paths, timeout=600, log=print):
    """Run every lesson and write the site to ``out``; returns the lessons' records."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(exist_ok=True)
    shutil.copyfile(PLOTLY_JS, out / "assets" / "plotly.min.js")
    shutil.copyfile(TEMPLATES / "site.css", out / "assets" / "site.css")
    built = datetime.date.today().isoformat()
    lessons, notebooks = [], []
    for path in paths:
        number, title, summary = lesson_heading(path)
        log(f"{path.name}: running ...")
        notebook, states, seconds, error = run_lesson(path, timeout)
        widgets = make_static(notebook, states)
        log(f"{path.name}: {seconds:.0f} s, {widgets} interactive figures" + (f", FAILED: {error}" if error else ""))
        lessons.append(dict(number=number, title=title, summary=summary, notebook=path.name,
                            page=path.stem + ".html", seconds=seconds, widgets=widgets, error=error))
        notebooks.append(notebook)
    for index, notebook in enumerate(notebooks):
        write_lesson_page(out, lessons, index, notebook, built)
    write_course_map(out, lessons, built)
    (out / "build.json").write_text(json.dumps(lessons, indent=1), encoding="utf-8")
    return lessons


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", type=Path, help="notebooks to build (default: every lesson)")
    parser.add_argument("--out", type=Path, default=REPO / "site", help="output folder (default: site/)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = [path.resolve() for path in args.lessons] or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    start = time.monotonic()
    lessons = build(args.out, paths, args.timeout)
    failed = [lesson["notebook"] for lesson in lessons if lesson["error"]]
    print(f"site: {len(lessons)} lessons in {time.monotonic() - start:.0f} s -> {args.out / 'index.html'}")
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
