"""Tests of course_lib.demos.spaces: projections, figures and the hover binding."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from plotly.callbacks import InputDeviceState, Points

from course_lib import projection, viz, widgets
from course_lib.demos import spaces as demo

NAMES = [f"c{i}" for i in range(5)]


def data(n_per_class=8, num_classes=5, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(num_classes), n_per_class))
    scales = np.linspace(3, 0.5, dim)  # distinct variances: a well-defined PCA
    x = (rng.normal(size=(num_classes, dim))[labels] + rng.normal(size=(len(labels), dim))) * scales
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    return labels, x.astype(np.float32), images


def svd_share(x, dim):
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    return np.sum(s[:dim] ** 2) / np.sum(s**2)


@pytest.mark.parametrize("shape", [(40, 6), (5, 30)])  # more points than dimensions, and fewer
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_explained_variance_matches_the_singular_values(shape, dim):
    x = np.random.default_rng(1).normal(size=shape) * np.linspace(4, 1, shape[1])
    assert np.isclose(demo.explained_variance(x, dim), svd_share(x, dim))


def test_explained_variance_of_constant_points_is_zero():
    assert demo.explained_variance(np.ones((5, 3)), 2) == 0.0


@pytest.mark.parametrize("shape", [(40, 6), (5, 30)])
def test_variance_spectrum_is_the_squared_singular_values_share(shape):
    x = np.random.default_rng(2).normal(size=shape) * np.linspace(4, 1, shape[1])
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    spectrum = demo.variance_spectrum(x)
    assert len(spectrum) == min(shape)
    assert np.allclose(spectrum[: len(s)], s**2 / np.sum(s**2)) and np.isclose(spectrum.sum(), 1)
    assert np.all(np.diff(spectrum) <= 1e-12)  # largest first


def test_directions_needed_counts_the_directions_that_reach_the_share():
    # Points on the corners of a simplex: C classes span C - 1 directions, whatever the dimension.
    rng = np.random.default_rng(3)
    corners = rng.normal(size=(7, 64))
    x = corners[rng.integers(0, 7, size=500)]
    assert demo.directions_needed(x, 0.9) <= 6 and demo.directions_needed(x, 1.0) == 6
    # Variances 4, 1, 1 (axis-aligned, exactly centred): 1 direction holds 4/6, 2 hold 5/6, 3 all.
    y = np.concatenate([np.diag([2.0, 1.0, 1.0]), -np.diag([2.0, 1.0, 1.0])])
    assert [demo.directions_needed(y, share) for share in (0.6, 0.67, 0.8, 0.84, 1.0)] == [1, 2, 2, 3, 3]
    assert demo.directions_needed(np.ones((4, 3))) == 0


@pytest.mark.parametrize("share", [0, -0.1, 1.5])
def test_directions_needed_rejects_a_bad_share(share):
    with pytest.raises(ValueError, match="share"):
        demo.directions_needed(np.eye(3), share)


def test_variance_spectrum_rejects_a_vector():
    with pytest.raises(ValueError, match="`x`"):
        demo.variance_spectrum(np.ones(3))


def test_draw_spectrum_one_line_per_space_with_its_count():
    labels, x, _ = data()
    fig = demo.draw_spectrum({"a": x, "b": x[:, :2]}, share=0.9)
    assert [t.name for t in fig.data] == [f"a: {demo.directions_needed(x)} directions hold 90%",
                                         f"b: {demo.directions_needed(x[:, :2])} directions hold 90%"]
    assert np.allclose(fig.data[0].y, np.cumsum(demo.variance_spectrum(x)))
    assert list(fig.data[1].x) == [1, 2]


def test_compute_projects_with_pca_and_caches():
    labels, x, _ = data()
    spaces = {"a": x, "b": x[:, :3]}
    cache = {}
    state = demo.compute("a", 3, "pca", spaces=spaces, labels=labels, class_names=NAMES, cache=cache)
    assert np.array_equal(state["coords"], projection.project(x, "pca", 3))
    # PCA coordinates by hand: distances between the projected points are those along the top 3 axes.
    centred = x - x.mean(axis=0)
    vt = np.linalg.svd(centred, full_matrices=False)[2]
    by_hand = centred @ vt[:3].T
    assert np.allclose(np.abs(state["coords"]), np.abs(by_hand), atol=1e-3)
    assert np.isclose(state["explained"], svd_share(x, 3))
    assert state["input_dim"] == 6 and state["class_names"] == NAMES
    again = demo.compute("a", 3, "pca", spaces=spaces, labels=labels, cache=cache)
    assert again["coords"] is state["coords"]  # served from the cache
    assert np.array_equal(demo.compute("a", 3, "pca", spaces=spaces, labels=labels)["coords"], state["coords"])
    other = demo.compute("b", 3, "pca", spaces=spaces, labels=labels, cache=cache)
    assert other["coords"] is not state["coords"] and other["input_dim"] == 3
    assert "3-d" in demo.readout(state) and "a" in demo.readout(state)


def test_the_cached_2d_pca_is_the_start_of_the_3d_one():
    labels, x, _ = data(seed=2)
    cache = {}
    flat = demo.compute("a", 2, "pca", spaces={"a": x}, labels=labels, cache=cache)
    assert np.allclose(flat["coords"], projection.project(x, "pca", 2), atol=1e-5)
    assert list(cache) == [("a", "pca", 3, 0), ("a", "explained", 2, None)]  # one PCA for both views
    deep = demo.compute("a", 3, "pca", spaces={"a": x}, labels=labels, cache=cache)
    assert np.array_equal(deep["coords"][:, :2], flat["coords"])


def test_compute_rejects_bad_input():
    labels, x, _ = data()
    with pytest.raises(ValueError, match="space"):
        demo.compute("z", spaces={"a": x}, labels=labels)
    with pytest.raises(ValueError, match="labels"):
        demo.compute("a", spaces={"a": x}, labels=labels[:-1])


@pytest.mark.parametrize("dim,kind", [(2, "scatter"), (3, "scatter3d")])
def test_draw_has_one_trace_per_class_in_the_class_colours(dim, kind):
    labels, x, _ = data()
    state = demo.compute("a", dim, spaces={"a": x}, labels=labels, class_names=NAMES)
    fig = demo.draw(state)
    assert [t.type for t in fig.data] == [kind] * 5
    assert [t.name for t in fig.data] == NAMES
    for label, trace in enumerate(fig.data):
        rows = np.asarray(trace.customdata)
        assert np.all(labels[rows] == label)
        assert np.allclose(trace.x, state["coords"][rows, 0])
        assert trace.marker.color == viz.class_color(label)
    assert sum(len(t.x) for t in fig.data) == len(labels)


def test_draw_side_by_side_shares_one_legend():
    labels, x, _ = data()
    spaces = {"a": x, "b": x[:, ::-1] ** 2}
    states = [demo.compute(s, 2, spaces=spaces, labels=labels, class_names=NAMES) for s in spaces]
    fig = demo.draw_side_by_side(states)
    assert len(fig.data) == 10
    assert [t.showlegend for t in fig.data] == [True] * 5 + [False] * 5
    assert {t.xaxis for t in fig.data[5:]} == {"x2"}
    with pytest.raises(ValueError, match="2-D"):
        demo.draw_side_by_side([demo.compute("a", 3, spaces=spaces, labels=labels)])


def test_inspect_finds_the_nearest_neighbour_in_the_full_space():
    labels, x, images = data(seed=3)
    state = demo.inspect(6, "a", 2, spaces={"a": x}, labels=labels, images=images, class_names=NAMES)
    d = np.linalg.norm(x.astype(np.float64) - x[6], axis=1)
    d[6] = np.inf
    assert state["nearest"] == int(np.argmin(d)) and state["nearest_label"] == labels[np.argmin(d)]
    assert state["point"] == 6 and state["label"] == labels[6]
    assert np.array_equal(state["image"], images[6])
    assert f"#{state['nearest']}" in demo.readout_inspect(state)
    with pytest.raises(ValueError, match="point"):
        demo.inspect(len(labels), "a", spaces={"a": x}, labels=labels, images=images)


@pytest.mark.parametrize("dim", [2, 3])
def test_draw_inspect_rings_the_point_and_shows_its_image(dim):
    labels, x, images = data(seed=4)
    state = demo.inspect(9, "a", dim, spaces={"a": x}, labels=labels, images=images, class_names=NAMES)
    fig = demo.draw_inspect(state)
    image = [t for t in fig.data if t.type == "image"]
    assert len(image) == 1 and np.array_equal(np.asarray(image[0].z)[..., 0], 255 - images[9])
    ring = [t for t in fig.data if t.name == "selected: #9"][0]
    assert np.allclose([ring.x[0], ring.y[0]], state["coords"][9, :2])
    assert ring.type == ("scatter3d" if dim == 3 else "scatter")
    assert len([t for t in fig.data if t.customdata is not None]) == 5  # the class traces
    assert any(f"#9: {NAMES[labels[9]]}" in a.text for a in fig.layout.annotations)


def test_follow_hover_selects_the_hovered_point_also_after_a_redraw():
    labels, x, images = data(seed=5)
    spaces = {"a": x, "b": x * 2}
    demo_widget = widgets.Interactive(
        functools.partial(demo.inspect, spaces=spaces, labels=labels, images=images, class_names=NAMES,
                          cache={}),
        demo.draw_inspect, readout=demo.readout_inspect,
        point=widgets.slider(0, 0, len(labels) - 1, 1, "point", integer=True),
        space=widgets.dropdown("a", ["a", "b"], "space"),
        dim=widgets.dropdown(2, [2, 3], "dim"),
    )
    demo.follow_hover(demo_widget)

    def hover(trace_number, point_number):
        trace = demo_widget.figure.data[trace_number]
        trace._dispatch_on_hover(
            Points(point_inds=[point_number], xs=[0], ys=[0], trace_name=trace.name,
                   trace_index=trace_number), InputDeviceState())
        return int(trace.customdata[point_number])

    target = hover(2, 3)
    assert demo_widget.controls["point"].value == target and demo_widget.state["point"] == target
    demo_widget.controls["dim"].value = 3          # a redraw replaces the traces ...
    target = hover(4, 1)                           # ... and hovering still selects
    assert demo_widget.state["point"] == target and demo_widget.state["dim"] == 3
    assert f"#{target}" in demo_widget.readout.value
