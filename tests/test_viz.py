"""course_lib.viz: the drawing primitives the demos share."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib import viz


def test_distances_numpy_matches_a_loop():
    x = np.random.default_rng(0).normal(size=(6, 3))
    d = viz.distances_numpy(x)
    for i in range(6):
        for j in range(6):
            assert d[i, j] == pytest.approx(np.sqrt(sum((x[i, k] - x[j, k]) ** 2 for k in range(3))))
    assert np.all(np.diag(d) == 0.0) and d.dtype == np.float64


def test_add_segments_one_trace_none_separated_and_empty_when_none():
    fig = viz.add_segments(go.Figure(), [[0, 0], [1, 1]], [[1, 0], [2, 3]], "red", "pairs", width=2)
    trace = fig.data[0]
    assert list(trace.x) == [0.0, 1.0, None, 1.0, 2.0, None]
    assert list(trace.y) == [0.0, 0.0, None, 1.0, 3.0, None]
    assert trace.name == "pairs" and trace.line.color == "red" and trace.line.width == 2
    empty = viz.add_segments(go.Figure(), np.zeros((0, 2)), np.zeros((0, 2)), "red", "none")
    assert len(empty.data) == 1 and len(empty.data[0].x) == 0


def test_add_triplets_draws_positive_and_negative_segments():
    points = np.array([[0, 0], [1, 0], [0, 1]], dtype=float)
    fig = viz.add_triplets(go.Figure(), points, ([0], [1], [2]))
    assert [t.name for t in fig.data] == ["anchor-positive", "anchor-negative"]
    assert list(fig.data[0].x) == [0.0, 1.0, None] and list(fig.data[1].y) == [0.0, 1.0, None]


def test_arrowheads_point_along_the_vectors():
    fig = go.Figure()
    viz.add_scaled_arrows(fig, [[0, 0], [1, 1], [2, 2]], [[1, 0], [0, 0], [0, -2]], length=1.0)
    heads = fig.data[-1]
    assert heads.marker.angleref == "up"
    # right, down: clockwise from up (plotly stores angles in [-180, 180))
    np.testing.assert_allclose(np.mod(heads.marker.angle, 360.0), [90.0, 180.0])
    # the longest vector (norm 2) is drawn 1 long, so every vector is halved
    np.testing.assert_allclose(heads.x, [0.5, 2.0])
    np.testing.assert_allclose(heads.y, [0.0, 1.0])


def test_fixed_arrow_scale_grows_with_the_vectors():
    """Under a slider one fixed scale keeps arrow length proportional to the force."""
    small, large = go.Figure(), go.Figure()
    viz.add_scaled_arrows(small, [[0, 0]], [[0.1, 0]], scale=2.0)
    viz.add_scaled_arrows(large, [[0, 0]], [[0.3, 0]], scale=2.0)
    assert small.data[-1].x[0] == pytest.approx(0.2) and large.data[-1].x[0] == pytest.approx(0.6)
    assert "×2" in small.data[0].name
    none = viz.add_scaled_arrows(go.Figure(), [[0, 0]], [[0, 0]], scale=2.0)
    assert len(none.data) == 2 and len(none.data[-1].x) == 0  # two traces, empty


def test_points_on_top_moves_the_first_traces_last():
    fig = go.Figure([go.Scatter(name=n) for n in ("a", "b", "line1", "line2")])
    assert [t.name for t in viz.points_on_top(fig, 2).data] == ["line1", "line2", "a", "b"]


def test_titles_are_left_aligned_clear_of_the_modebar():
    fig = viz.side_by_side([go.Figure(), go.Figure()], ["a", "b"])
    assert fig.layout.title.x == 0.01 and fig.layout.title.xanchor == "left"


def test_side_by_side_moves_shapes_and_annotations():
    left, right = go.Figure(go.Scatter(x=[0], y=[0])), go.Figure(go.Scatter(x=[1], y=[1], name="r"))
    right.add_shape(type="line", x0=0, x1=0, y0=0, y1=1, yref="y domain")
    right.add_annotation(x=0, y=1, text="m", yref="y domain")
    fig = viz.side_by_side([left, right], ["a", "b"], equal_aspect=(True, False))
    assert fig.data[1].xaxis == "x2" and fig.data[1].showlegend is False
    assert (fig.layout.shapes[0].xref, fig.layout.shapes[0].yref) == ("x2", "y2 domain")
    assert any(a.text == "m" and a.xref == "x2" for a in fig.layout.annotations)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis2.scaleanchor is None
