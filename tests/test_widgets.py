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


def test_arrays_of_rank_two_or_more_reach_the_widget_as_nested_lists():
    """A FigureWidget in JupyterLab draws a binary 2-D (or 3-D) typed array as an empty plot
    (tests/ui found it for heat maps and images); Interactive sends such arrays as lists."""
    import numpy as np
    import plotly.io as pio

    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)

    def draw_image(state):
        return go.Figure([go.Image(z=image * state["k"]),
                          go.Heatmap(z=np.eye(3) * state["k"]),
                          go.Scatter(x=np.arange(3), y=np.arange(3.0))])

    demo = widgets.Interactive(lambda k: {"k": k}, draw_image, k=widgets.slider(1, 1, 2, 1, "k", integer=True))
    for _ in range(2):
        data = pio.to_json(demo.figure)
        z_image, z_heat = (demo.figure.data[i].to_plotly_json()["z"] for i in (0, 1))
        assert not isinstance(z_image, np.ndarray) and not isinstance(z_heat, np.ndarray)
        assert np.array_equal(np.asarray(z_image), image * demo.state["k"])
        assert np.array_equal(np.asarray(z_heat), np.eye(3) * demo.state["k"])
        assert '"z":{"dtype"' not in data.replace(" ", "")  # no binary z left
        demo.controls["k"].value = 2
