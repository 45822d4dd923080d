"""A thin binding from ipywidgets controls to pure ``compute`` / ``draw`` functions.

Every interactive figure of the course is built the same way
(PythonDataScienceHandbook style): a pure function ``compute(**params) ->
state`` does the work, a pure function ``draw(state) -> go.Figure`` makes the
picture, and :class:`Interactive` only connects sliders to them. Tests call
``compute`` and ``draw`` directly; a lesson cell can move a slider and
assert on the new state:

    demo = Interactive(compute, draw, margin=widgets.FloatSlider(...))
    demo.controls["margin"].value = 0.5
    assert demo.state["active"] == ...
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go


class Interactive(widgets.VBox):
    """Controls, a text readout and a plotly ``FigureWidget`` updated in place.

    ``compute(**values)`` -> state, ``draw(state)`` -> ``go.Figure`` and
    ``readout(state)`` -> short text (e.g. "active triplets: 12") shown
    above the figure. ``controls`` are keyword arguments: ipywidgets whose
    ``value`` is passed to ``compute`` under the same name.
    """

    def __init__(self, compute, draw, readout=None, **controls):
        self.compute, self.draw, self.readout_text = compute, draw, readout
        self.controls = controls
        self.state = compute(**self.values)
        self.figure = go.FigureWidget(as_nested_lists(draw(self.state)))
        self.readout = widgets.HTML(self._readout_html())
        self.readout.add_class("course-readout")
        for control in controls.values():
            control.observe(self.update, names="value")
        super().__init__([widgets.HBox(list(controls.values())), self.readout, self.figure])

    @property
    def values(self):
        return {name: control.value for name, control in self.controls.items()}

    def update(self, change=None):
        """Recompute the state and redraw the figure in place (no new output)."""
        self.state = self.compute(**self.values)
        replace_figure(self.figure, self.draw(self.state))
        self.readout.value = self._readout_html()

    def _readout_html(self):
        if self.readout_text is None:
            return ""
        return f"<code>{html.escape(self.readout_text(self.state))}</code>"


def replace_figure(target, figure):
    """Make the ``FigureWidget`` ``target`` show ``figure``: its traces and layout.

    Assigning a layout sends only the keys the new layout has, so a key the
    new figure lacks (a title, a shape) would stay on the page while Python
    thinks it is gone: those keys are cleared first (tests/ui catches this).
    """
    figure = as_nested_lists(figure)
    stale = _stale_paths(target.layout.to_plotly_json(), figure.layout.to_plotly_json())
    if stale:
        target.plotly_relayout({path: None for path in stale})
    with target.batch_update():
        target.data = []
        target.add_traces(list(figure.data))
        target.layout = figure.layout
    return target


def as_nested_lists(figure):
    """``figure`` with every array of rank >= 2 in its traces as nested lists.

    plotly sends NumPy arrays as binary typed arrays; a FigureWidget in
    JupyterLab draws one of rank >= 2 (a heat map's or an image's ``z``) as
    an empty plot, seconds after a correct first view or not at all (found
    by tests/ui). Nested lists always render; 1-D arrays stay binary (fast).
    """
    return go.Figure(data=[_lists(trace.to_plotly_json()) for trace in figure.data], layout=figure.layout)


def _lists(value):
    if isinstance(value, np.ndarray) and value.ndim >= 2:
        return value.tolist()
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    return value


def _stale_paths(old, new, prefix=""):
    """Dotted paths of the keys in layout ``old`` that layout ``new`` lacks."""
    paths = []
    for key, value in old.items():
        path = f"{prefix}{key}"
        if key not in new:
            paths.append(path)
        elif isinstance(value, dict) and isinstance(new[key], dict):
            paths += _stale_paths(value, new[key], path + ".")
    return paths


def slider(value, low, high, step, description, integer=False):
    """A slider with a readable label width; integer sliders for counts."""
    kind = widgets.IntSlider if integer else widgets.FloatSlider
    return kind(
        value=value, min=low, max=high, step=step, description=description,
        continuous_update=False, style={"description_width": "initial"},
    )


def dropdown(value, options, description):
    return widgets.Dropdown(value=value, options=options, description=description,
                            style={"description_width": "initial"})
