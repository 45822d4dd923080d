"""course_lib.widgets: the binding of controls to pure compute/draw functions."""

from __future__ import annotations

import plotly.graph_objects as go

from course_lib import widgets


def compute(margin=1.0, focus=0):
    return dict(margin=margin, focus=focus, calls=compute.calls.append((margin, focus)))


compute.calls = []


def draw(state):
    fig = go.Figure(go.Scatter(x=[0, state["margin"]], y=[state["focus"], state["focus"]], name="line"))
    if state["margin"] > 1:  # a title only for large margins: a key the next figure may drop
        fig.update_layout(title="large margin")
    return fig


def readout(state):
    return f"m = {state['margin']:.2f} <focus {state['focus']}>"


def test_interactive_computes_from_the_controls_and_redraws_in_place():
    compute.calls.clear()
    demo = widgets.Interactive(compute, draw, readout=readout,
                               margin=widgets.slider(1.0, 0.1, 2.0, 0.1, "margin"),
                               focus=widgets.slider(0, 0, 5, 1, "focus", integer=True))
    assert demo.values == {"margin": 1.0, "focus": 0} and compute.calls == [(1.0, 0)]
    figure = demo.figure
    demo.controls["margin"].value = 1.5
    assert demo.state["margin"] == 1.5 and demo.figure is figure  # the same FigureWidget, updated
    assert list(figure.data[0].x) == [0, 1.5] and figure.layout.title.text == "large margin"
    demo.controls["focus"].value = 3
    assert list(figure.data[0].y) == [3, 3]
    assert demo.readout.value == "<code>m = 1.50 &lt;focus 3&gt;</code>"  # escaped HTML
    assert "course-readout" in demo.readout._dom_classes


def test_replace_figure_drops_layout_keys_the_new_figure_lacks():
    target = go.FigureWidget(draw(dict(margin=1.5, focus=0)))
    assert target.layout.title.text == "large margin"
    widgets.replace_figure(target, draw(dict(margin=0.5, focus=1)))
    assert target.layout.title.text is None
    assert len(target.data) == 1 and list(target.data[0].x) == [0, 0.5]


def test_stale_paths_are_dotted_and_nested():
    old = {"title": {"text": "a", "x": 0.1}, "height": 3, "xaxis": {"range": [0, 1]}}
    new = {"title": {"text": "b"}, "xaxis": {"range": [0, 2]}}
    assert sorted(widgets._stale_paths(old, new)) == ["height", "title.x"]


def test_slider_and_dropdown_kinds():
    assert isinstance(widgets.slider(3, 1, 5, 1, "k", integer=True), widgets.widgets.IntSlider)
    s = widgets.slider(0.5, 0.0, 1.0, 0.05, "m")
    assert isinstance(s, widgets.widgets.FloatSlider) and s.continuous_update is False
    d = widgets.dropdown("hard", ["all", "hard"], "mining")
    assert d.value == "hard" and list(d.options) == ["all", "hard"]
