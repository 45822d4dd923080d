"""course_lib.demos.geometry (lessons 02-03): states against independent calculations."""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go
import pytest
import tensorflow as tf

from course_lib.demos import geometry as g


# ------------------------------------------------------------ references
def loop_distance(x, i, j):
    return float(np.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], x[j]))))


def reference_contrastive(points, labels, margin):
    """Mean over ordered pairs i != j, written as a double loop."""
    x = np.asarray(points, dtype=np.float64)
    total, count = 0.0, 0
    for i, j in itertools.permutations(range(len(labels)), 2):
        d = loop_distance(x, i, j)
        total += 0.5 * d**2 if labels[i] == labels[j] else 0.5 * max(0.0, margin - d) ** 2
        count += 1
    return total / count


def reference_triplets(labels):
    """Every valid (a, p, n) by a triple loop."""
    b = len(labels)
    return [(a, p, n) for a in range(b) for p in range(b) for n in range(b)
            if a != p and labels[a] == labels[p] and labels[a] != labels[n]]


def reference_batch_all(points, labels, margin):
    """Mean of [D(a,p) - D(a,n) + m]_+ over the triplets where it is > 0."""
    x = np.asarray(points, dtype=np.float64)
    values = [loop_distance(x, a, p) - loop_distance(x, a, n) + margin for a, p, n in reference_triplets(labels)]
    active = [v for v in values if v > 0]
    return sum(active) / len(active) if active else 0.0


def numerical_gradient(f, points, eps=1e-5):
    x = np.asarray(points, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad


# ------------------------------------------------------------- toy data
def test_toy_batch_is_seeded_and_grouped():
    p1, l1 = g.toy_batch(3, 5, seed=4)
    p2, l2 = g.toy_batch(3, 5, seed=4)
    p3, _ = g.toy_batch(3, 5, seed=5)
    assert p1.shape == (15, 2) and p1.dtype == np.float32
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)
    np.testing.assert_array_equal(l1, np.repeat([0, 1, 2], 5))


def test_toy_batch_explicit_centres():
    points, labels = g.toy_batch(per_class=200, spread=0.01, centres=[(5.0, 0.0), (0.0, -3.0)])
    np.testing.assert_allclose(points[labels == 0].mean(0), [5, 0], atol=0.01)
    np.testing.assert_allclose(points[labels == 1].mean(0), [0, -3], atol=0.01)


# ------------------------------------------------------------ contrastive
def test_contrastive_term_cases():
    assert g.contrastive_term(0.6, True, 1.0) == pytest.approx(0.18)
    assert g.contrastive_term(0.6, False, 1.0) == pytest.approx(0.08)
    assert g.contrastive_term(1.2, False, 1.0) == 0.0


@pytest.mark.parametrize("margin", [0.3, 1.0, 1.7])
def test_contrastive_state_matches_loop_reference(margin):
    points, labels = g.toy_batch(3, 4, seed=1)
    state = g.contrastive_state(points, labels, margin)
    expected = reference_contrastive(points, labels, margin)
    assert state["loss"] == pytest.approx(expected, rel=1e-5)
    assert state["mean_of_terms"] == pytest.approx(expected, rel=1e-9)
    b = len(labels)
    for i, j in itertools.permutations(range(b), 2):
        d = loop_distance(points, i, j)
        assert state["terms"][i, j] == pytest.approx(g.contrastive_term(d, labels[i] == labels[j], margin))
    inside = {(i, j) for i, j in itertools.combinations(range(b), 2)
              if labels[i] != labels[j] and loop_distance(points, i, j) < margin}
    assert set(state["inside"]) == inside
    assert state["inside_terms"] == sorted(state["inside_terms"], reverse=True)
    assert len(state["positive_pairs"]) == 3 * 6 and len(state["negative_pairs"]) == 48
    # the two sums split the loss: (positive_sum + negative_sum) / (B (B - 1))
    assert (state["positive_sum"] + state["negative_sum"]) / (b * (b - 1)) == pytest.approx(expected, rel=1e-9)


def test_compute_contrastive_focus_and_margin_monotone():
    counts = [len(g.compute_contrastive(margin=m)["inside"]) for m in (0.25, 0.5, 1.0, 1.5)]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    state = g.compute_contrastive(margin=1.5, focus=16)  # wraps around: 16 % 15 = 1
    assert state["focus"] == 1
    expected = sorted(j for j in range(15) if state["labels"][j] != state["labels"][1]
                      and state["distances"][1, j] < 1.5)
    assert state["focus_inside"] == expected
    text = g.contrastive_readout(state)
    assert f"{len(state['inside'])} of 75" in text


def test_draw_contrastive_traces():
    state = g.compute_contrastive(margin=1.0, focus=3)
    fig = g.draw_contrastive(state)
    assert isinstance(fig, go.Figure)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 1 and len(bars[0].y) == len(state["inside"])
    red = [t for t in fig.data if t.type == "scatter" and t.name and t.name.startswith("negative pairs")]
    assert len(red) == 1 and sum(v is None for v in red[0].x) == len(state["inside"])
    assert len(fig.layout.shapes) == 1  # the margin circle around the focus point
    circle = fig.layout.shapes[0]
    assert circle.x1 - circle.x0 == pytest.approx(2 * state["margin"])


# -------------------------------------------------------------- forces
def test_contrastive_forces_match_finite_differences_and_split():
    points, labels = g.toy_batch(3, 3, seed=2)
    state = g.contrastive_forces(points, labels, margin=1.2)
    numeric = numerical_gradient(lambda x: reference_contrastive(x, labels, 1.2), points)
    np.testing.assert_allclose(state["force"], -numeric, atol=2e-5)
    np.testing.assert_allclose(state["pull"] + state["push"], state["force"], atol=1e-6)


def test_negative_pair_alone_is_pushed_apart_symmetrically():
    points = np.array([[0.0, 0.0], [0.3, 0.4]], dtype=np.float32)  # D = 0.5
    state = g.contrastive_forces(points, [0, 1], margin=1.0)
    # L = 1/2 (1 - D)^2 (mean of the two ordered pairs): -dL/dx_1 = (m - D) * unit(x_1 - x_0)
    np.testing.assert_allclose(state["force"][1], 0.5 * np.array([0.6, 0.8]), atol=1e-6)
    np.testing.assert_allclose(state["force"][0], -state["force"][1], atol=1e-6)


def test_force_batch_centre_point_feels_only_the_push():
    state = g.compute_contrastive_forces(margin=0.5)
    c, i = state["centre"], state["intruder"]
    labels, points = state["labels"], state["points"]
    np.testing.assert_allclose(points[c], points[labels == labels[c]][1:].mean(0), atol=1e-6)
    assert np.linalg.norm(state["pull"][c]) < 1e-7
    assert np.linalg.norm(state["force"][c]) > 1e-4
    assert c in state["pushed"] and i in state["pushed"]
    away = points[c] - points[i]
    assert float(state["force"][c] @ away) > 0  # pushed away from the intruder
    assert "centre point" in g.contrastive_forces_readout(state)
    # Below D(centre, intruder) the centre point is not pushed any more.
    d = np.linalg.norm(points[c] - points[i])
    assert c not in g.compute_contrastive_forces(margin=0.9 * d)["pushed"]


def test_triplet_forces_match_finite_differences():
    points, labels = g.toy_batch(3, 3, seed=3)
    state = g.triplet_forces(points, labels, margin=0.8)
    numeric = numerical_gradient(lambda x: reference_batch_all(x, labels, 0.8), points)
    np.testing.assert_allclose(state["force"], -numeric, atol=2e-4)
    assert len(state["gaps"]) == len(reference_triplets(labels))


def test_compute_forces_far_class_only_moved_by_contrastive():
    state = g.compute_forces(margin=0.5)
    far = state["labels"] == 2
    assert np.abs(state["triplet"]["force"][far]).max() == 0.0
    assert np.linalg.norm(state["contrastive"]["force"][far], axis=1).min() > 1e-4
    assert state["moving_contrastive"] == 12 and state["moving_triplet"] == 12 - far.sum()
    fig = g.draw_forces(state)
    arrows = [t for t in fig.data if t.name and t.name.startswith("−gradient")]
    assert len(arrows) == 2
    n_arrows = [sum(v is None for v in t.x) for t in arrows]
    assert n_arrows == [state["moving_contrastive"], state["moving_triplet"]]
    assert {t.xaxis for t in arrows} == {"x", "x2"}


def test_arrowheads_point_along_the_vectors():
    fig = go.Figure()
    g.arrows_trace(fig, [[0, 0], [1, 1], [2, 2]], [[1, 0], [0, 0], [0, -2]], length=1.0)
    heads = fig.data[-1]
    assert heads.marker.angleref == "up"
    # right, down: clockwise from up (plotly stores angles in [-180, 180))
    np.testing.assert_allclose(np.mod(heads.marker.angle, 360.0), [90.0, 180.0])
    # the longest vector (norm 2) is drawn 1 long, so every vector is halved
    np.testing.assert_allclose(heads.x, [0.5, 2.0])
    np.testing.assert_allclose(heads.y, [0.0, 1.0])


# ------------------------------------------------------------ one triplet
def test_single_triplet_active_forces_are_unit_vectors():
    a, p, n = np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([1.0, 0.8])
    state = g.single_triplet(a, p, n, margin=0.5)
    d_an = np.hypot(1.0, 0.8)
    assert state["loss"] == pytest.approx(1.0 - d_an + 0.5, rel=1e-6)
    assert state["active"]
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(state["forces"][0], unit(p - a) + unit(a - n), atol=1e-6)
    np.testing.assert_allclose(state["forces"][1], unit(a - p), atol=1e-6)
    np.testing.assert_allclose(state["forces"][2], unit(n - a), atol=1e-6)


def test_single_triplet_inactive_has_no_force_and_no_arrows():
    state = g.compute_triplet(negative_x=2.0, negative_y=0.0, margin=0.5)
    assert not state["active"] and state["loss"] == 0.0
    assert np.all(state["forces"] == 0)
    assert "inactive" in g.triplet_readout(state)
    fig = g.draw_triplet(state)
    assert len(fig.data[-1].x) == 0  # no arrowheads
    radii = sorted((s.x1 - s.x0) / 2 for s in fig.layout.shapes)
    assert radii == pytest.approx([1.0, 1.5])  # D(a,p) and D(a,p) + m


def test_triplet_landscape_formula():
    state = g.triplet_landscape(margin=0.7, extent=2.0, steps=41)
    grid = state["grid"]
    for row, col in [(20, 20), (20, 35), (5, 9), (40, 0)]:
        n = np.array([grid[col], grid[row]])
        assert state["loss"][row, col] == pytest.approx(max(0.0, 1.0 - np.linalg.norm(n) + 0.7))
    fig = g.draw_triplet_landscape(state)
    assert fig.data[0].type == "heatmap" and len(fig.layout.shapes) == 1


# -------------------------------------------------------- active triplets
@pytest.mark.parametrize("margin", [0.1, 0.5, 1.2])
def test_compute_active_counts_match_triple_loop(margin):
    state = g.compute_active(margin=margin, per_class=4)
    points, labels = state["points"], state["labels"]
    triplets = reference_triplets(labels)
    gaps = {t: loop_distance(points, t[0], t[2]) - loop_distance(points, t[0], t[1]) for t in triplets}
    assert state["num_triplets"] == len(triplets) == 12 * 3 * 8
    mined = list(zip(*(t.tolist() for t in state["triplets"])))
    assert set(mined) == set(triplets)
    assert state["num_active"] == sum(v < margin for v in gaps.values())
    assert state["loss"] == pytest.approx(reference_batch_all(points, labels, margin), rel=1e-5)
    assert state["mean_active_loss"] == pytest.approx(state["loss"], rel=1e-5)
    assert active_text(state) in g.active_readout(state)


def active_text(state):
    return f"active triplets: {state['num_active']} of {state['num_triplets']}"


def test_draw_active_colours_and_margin_line():
    state = g.compute_active(margin=0.5)
    fig = g.draw_active(state)
    names = [t.name for t in fig.data]
    assert "inactive anchor-negative" in names and "active anchor-negative" in names
    inactive = next(t for t in fig.data if t.name == "inactive anchor-negative")
    assert inactive.line.color == g.INACTIVE_COLOR
    hists = [t for t in fig.data if t.type == "histogram"]
    assert [len(h.x) for h in hists] == [state["num_triplets"] - state["num_active"], state["num_active"]]
    line = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(line) == 1 and line[0].x0 == 0.5 and line[0].xref == "x2"
    left = [t for t in fig.data if t.xaxis in (None, "x")]
    assert left[-1].mode == "markers" and left[0].mode == "lines"  # points drawn over the lines


def test_gap_histogram_has_margin_on_a_bin_edge():
    fig = g.gap_histogram({"x": np.linspace(-0.93, 1.71, 50)}, margin=0.37)
    bins = fig.data[0].xbins
    steps = (0.37 - bins.start) / bins.size
    assert steps == pytest.approx(round(steps)) and bins.start <= -0.93


def test_real_batch_gaps_counts():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 10)
    model = lambda x, training=False: tf.reshape(x, [tf.shape(x)[0], -1])  # noqa: E731
    gaps, batch_labels = g.real_batch_gaps(model, images, labels, classes_per_batch=3, samples_per_class=4)
    assert len(batch_labels) == 12 and len(np.unique(batch_labels)) == 3
    assert len(gaps) == 12 * 3 * 8
    fig = g.draw_real_gaps({"pixels": gaps}, margin=0.5)
    assert "active" in fig.data[0].name


# ---------------------------------------------------------- noisy labels
def test_flip_labels_counts_and_nesting():
    labels = np.repeat(np.arange(4), 25)
    noisy10, f10 = g.flip_labels(labels, 0.1, 4, seed=3)
    noisy30, f30 = g.flip_labels(labels, 0.3, 4, seed=3)
    assert f10.sum() == 10 and f30.sum() == 30
    assert np.all(noisy30[f30] != labels[f30]) and np.all(noisy30[~f30] == labels[~f30])
    assert np.all(f30[f10])  # nested
    np.testing.assert_array_equal(noisy10[f10], noisy30[f10])
    assert noisy10.min() >= 0 and noisy10.max() <= 3
    with pytest.raises(ValueError):
        g.flip_labels(labels, 1.5)


def test_noise_clean_batch_has_no_active_triplet_and_every_active_one_is_caused_by_a_flip():
    clean = g.compute_noise(flip_fraction=0.0)
    assert clean["num_flipped"] == 0 and clean["num_active"] == 0 and clean["hard_active"] == 0
    for fraction in (0.1, 0.3):
        state = g.compute_noise(flip_fraction=fraction)
        assert state["num_flipped"] == round(fraction * 24)
        assert state["num_active"] > 0
        assert state["active_with_flip"] == state["num_active"]
        # batch hard, by a loop: farthest positive and closest negative per anchor
        d = g.distances_numpy(state["points"])
        y, flipped = state["labels"], state["flipped"]
        active = with_flip = 0
        for a in range(len(y)):
            pos = [j for j in range(len(y)) if j != a and y[j] == y[a]]
            neg = [j for j in range(len(y)) if y[j] != y[a]]
            if not pos or not neg:
                continue
            p, n = max(pos, key=lambda j: d[a, j]), min(neg, key=lambda j: d[a, j])
            if d[a, p] - d[a, n] + state["margin"] > 0:
                active += 1
                with_flip += bool(flipped[a] or flipped[p] or flipped[n])
        assert (state["hard_active"], state["hard_with_flip"]) == (active, with_flip)
    text = g.noise_readout(state)
    assert f"flipped labels: {state['num_flipped']} of 24" in text


def test_draw_noise():
    state = g.compute_noise(flip_fraction=0.2)
    fig = g.draw_noise(state)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2
    assert bars[0].y[0] == pytest.approx(state["active_with_flip"] / state["num_triplets"])
    rings = next(t for t in fig.data if t.name == "flipped label")
    assert len(rings.x) == state["num_flipped"]


# ------------------------------------------------------- label-free pairs
def test_augment_identity_and_shift():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 10, 12] = 255
    same = g.augment(image, rng, max_shift=0, erase=0)
    np.testing.assert_array_equal(same, image)
    shifted = g.augment(image, np.random.default_rng(1), max_shift=3, erase=0)
    (y,), (x,) = np.nonzero(shifted[0])
    assert abs(y - 10) <= 3 and abs(x - 12) <= 3 and shifted.dtype == np.uint8


def test_two_view_batch_and_pair_statistics():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 5
    batch = g.two_view_batch(images, labels, num_images=10, seed=1)
    assert batch["views"].shape == (20, 28, 28)
    np.testing.assert_array_equal(batch["image_ids"], np.repeat(np.arange(10), 2))
    assert np.all(batch["classes"][0::2] == batch["classes"][1::2])
    stats = g.pair_statistics(batch["views"], batch["image_ids"], batch["classes"])
    assert stats["positive_pairs"] == 10 and stats["negative_pairs"] == 20 * 18 // 2
    c = batch["classes"]
    false_negatives = sum(1 for i, j in itertools.combinations(range(20), 2)
                          if batch["image_ids"][i] != batch["image_ids"][j] and c[i] == c[j])
    assert stats["false_negatives"] == false_negatives
    x = batch["views"].reshape(20, -1).astype(np.float64) / 255
    hardest = [min((j for j in range(20) if batch["image_ids"][j] != batch["image_ids"][i]),
                   key=lambda j: np.linalg.norm(x[i] - x[j])) for i in range(20)]
    np.testing.assert_array_equal(stats["hardest_negative"], hardest)
    assert stats["hardest_negative_same_class"] == pytest.approx(np.mean(c[hardest] == c))
    assert stats["contrastive_loss"] == pytest.approx(
        reference_contrastive(x, batch["image_ids"], stats["margin"]), rel=1e-4)
    fig = g.draw_pair_statistics(stats)
    assert list(fig.data[0].y) == [stats["false_negative_share"], stats["hardest_negative_same_class"]]


# ---------------------------------------------------------------- layout
def test_side_by_side_moves_shapes_and_annotations():
    left, right = go.Figure(go.Scatter(x=[0], y=[0])), go.Figure(go.Scatter(x=[1], y=[1], name="r"))
    right.add_shape(type="line", x0=0, x1=0, y0=0, y1=1, yref="y domain")
    right.add_annotation(x=0, y=1, text="m", yref="y domain")
    fig = g.side_by_side([left, right], ["a", "b"], equal_aspect=(True, False))
    assert fig.data[1].xaxis == "x2" and fig.data[1].showlegend is False
    assert (fig.layout.shapes[0].xref, fig.layout.shapes[0].yref) == ("x2", "y2 domain")
    assert any(a.text == "m" and a.xref == "x2" for a in fig.layout.annotations)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis2.scaleanchor is None
