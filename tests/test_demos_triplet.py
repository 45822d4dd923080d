"""course_lib.demos.triplet (lesson 03): states against independent calculations."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import tensorflow as tf

from conftest import finite_difference_gradient
from course_lib import losses, viz
from course_lib.demos import triplet as tri


# ------------------------------------------------------------ references
def loop_distance(x, i, j):
    return float(np.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], x[j]))))


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


# -------------------------------------------------------------- forces
def test_triplet_forces_match_finite_differences():
    points, labels = tri.toy_batch(3, 3, seed=3)
    state = tri.triplet_forces(points, labels, margin=0.8)
    numeric = finite_difference_gradient(lambda x: reference_batch_all(x, labels, 0.8), points, h=1e-5)
    np.testing.assert_allclose(state["force"], -numeric, atol=2e-4)
    assert len(state["gaps"]) == len(reference_triplets(labels))


def test_compute_forces_far_class_only_moved_by_contrastive():
    state = tri.compute_forces(margin=0.5)
    far = state["labels"] == 2
    assert np.abs(state["triplet"]["force"][far]).max() == 0.0
    assert np.linalg.norm(state["contrastive"]["force"][far], axis=1).min() > 1e-4
    assert state["moving_contrastive"] == 12 and state["moving_triplet"] == 12 - far.sum()
    fig = tri.draw_forces(state)
    arrows = [t for t in fig.data if t.name and t.name.startswith("−gradient")]
    assert len(arrows) == 2
    n_arrows = [sum(v is None for v in t.x) for t in arrows]
    assert n_arrows == [state["moving_contrastive"], state["moving_triplet"]]
    assert {t.xaxis for t in arrows} == {"x", "x2"}


# ------------------------------------------------------------ one triplet
def test_single_triplet_active_forces_are_unit_vectors():
    a, p, n = np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([1.0, 0.8])
    state = tri.single_triplet(a, p, n, margin=0.5)
    d_an = np.hypot(1.0, 0.8)
    assert state["loss"] == pytest.approx(1.0 - d_an + 0.5, rel=1e-6)
    assert state["active"]
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(state["forces"][0], unit(p - a) + unit(a - n), atol=1e-6)
    np.testing.assert_allclose(state["forces"][1], unit(a - p), atol=1e-6)
    np.testing.assert_allclose(state["forces"][2], unit(n - a), atol=1e-6)


def test_single_triplet_inactive_has_no_force_and_no_arrows():
    state = tri.compute_triplet(negative_x=2.0, negative_y=0.0, margin=0.5)
    assert not state["active"] and state["loss"] == 0.0
    assert np.all(state["forces"] == 0)
    assert "inactive" in tri.triplet_readout(state)
    fig = tri.draw_triplet(state)
    assert len(fig.data[-1].x) == 0  # no arrowheads
    radii = sorted((s.x1 - s.x0) / 2 for s in fig.layout.shapes)
    assert radii == pytest.approx([1.0, 1.5])  # D(a,p) and D(a,p) + m


def test_triplet_landscape_formula():
    state = tri.triplet_landscape(margin=0.7, extent=2.0, steps=41)
    grid = state["grid"]
    for row, col in [(20, 20), (20, 35), (5, 9), (40, 0)]:
        n = np.array([grid[col], grid[row]])
        assert state["loss"][row, col] == pytest.approx(max(0.0, 1.0 - np.linalg.norm(n) + 0.7))
    fig = tri.draw_triplet_landscape(state)
    assert fig.data[0].type == "heatmap" and len(fig.layout.shapes) == 1


# -------------------------------------------------------- active triplets
@pytest.mark.parametrize("margin", [0.1, 0.5, 1.2])
def test_compute_active_counts_match_triple_loop(margin):
    state = tri.compute_active(margin=margin, per_class=4)
    points, labels = state["points"], state["labels"]
    triplets = reference_triplets(labels)
    gaps = {t: loop_distance(points, t[0], t[2]) - loop_distance(points, t[0], t[1]) for t in triplets}
    assert state["num_triplets"] == len(triplets) == 12 * 3 * 8
    mined = list(zip(*(t.tolist() for t in state["triplets"])))
    assert set(mined) == set(triplets)
    assert state["num_active"] == sum(v < margin for v in gaps.values())
    assert state["loss"] == pytest.approx(reference_batch_all(points, labels, margin), rel=1e-5)
    assert state["mean_active_loss"] == pytest.approx(state["loss"], rel=1e-5)
    assert active_text(state) in tri.active_readout(state)


def active_text(state):
    return f"active triplets: {state['num_active']} of {state['num_triplets']}"


def test_draw_active_colours_and_margin_line():
    state = tri.compute_active(margin=0.5)
    fig = tri.draw_active(state)
    names = [t.name for t in fig.data]
    assert "inactive anchor-negative" in names and "active anchor-negative" in names
    inactive = next(t for t in fig.data if t.name == "inactive anchor-negative")
    assert inactive.line.color == viz.INACTIVE_COLOR
    hists = [t for t in fig.data if t.type == "histogram"]
    assert [len(h.x) for h in hists] == [state["num_triplets"] - state["num_active"], state["num_active"]]
    line = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(line) == 1 and line[0].x0 == 0.5 and line[0].xref == "x2"
    left = [t for t in fig.data if t.xaxis in (None, "x")]
    assert left[-1].mode == "markers" and left[0].mode == "lines"  # points drawn over the lines


def test_gap_histogram_has_margin_on_a_bin_edge():
    fig = tri.gap_histogram({"x": np.linspace(-0.93, 1.71, 50)}, margin=0.37)
    bins = fig.data[0].xbins
    steps = (0.37 - bins.start) / bins.size
    assert steps == pytest.approx(round(steps)) and bins.start <= -0.93


def test_real_batch_gaps_counts():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 10)
    model = lambda x, training=False: tf.reshape(x, [tf.shape(x)[0], -1])  # noqa: E731
    gaps, batch_labels = tri.real_batch_gaps(model, images, labels, classes_per_batch=3, samples_per_class=4)
    assert len(batch_labels) == 12 and len(np.unique(batch_labels)) == 3
    assert len(gaps) == 12 * 3 * 8
    fig = tri.draw_real_gaps({"pixels": gaps}, margin=0.5)
    assert "active" in fig.data[0].name


# ---------------------------------------------------------- noisy labels
def test_flip_labels_counts_and_nesting():
    labels = np.repeat(np.arange(4), 25)
    noisy10, f10 = tri.flip_labels(labels, 0.1, 4, seed=3)
    noisy30, f30 = tri.flip_labels(labels, 0.3, 4, seed=3)
    assert f10.sum() == 10 and f30.sum() == 30
    assert np.all(noisy30[f30] != labels[f30]) and np.all(noisy30[~f30] == labels[~f30])
    assert np.all(f30[f10])  # nested
    np.testing.assert_array_equal(noisy10[f10], noisy30[f10])
    assert noisy10.min() >= 0 and noisy10.max() <= 3
    with pytest.raises(ValueError):
        tri.flip_labels(labels, 1.5)


def test_noise_clean_batch_has_no_active_triplet_and_every_active_one_is_caused_by_a_flip():
    clean = tri.compute_noise(flip_fraction=0.0)
    assert clean["num_flipped"] == 0 and clean["num_active"] == 0 and clean["hard_active"] == 0
    for fraction in (0.1, 0.3):
        state = tri.compute_noise(flip_fraction=fraction)
        assert state["num_flipped"] == round(fraction * 24)
        assert state["num_active"] > 0
        assert state["active_with_flip"] == state["num_active"]
        # batch hard, by a loop: farthest positive and closest negative per anchor
        d = viz.distances_numpy(state["points"])
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
    text = tri.noise_readout(state)
    assert f"flipped labels: {state['num_flipped']} of 24" in text


def test_draw_noise():
    state = tri.compute_noise(flip_fraction=0.2)
    fig = tri.draw_noise(state)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2
    assert bars[0].y[0] == pytest.approx(state["active_with_flip"] / state["num_triplets"])
    rings = next(t for t in fig.data if t.name == "flipped label")
    assert len(rings.x) == state["num_flipped"]


# -------------------------------------------- loss and slope against the gap
@pytest.mark.parametrize("margin", [0.05, 0.2, 1.0])
def test_triplet_profile_hinge_and_soft_margin(margin):
    state = tri.triplet_profile(margin=margin, steps=3001)
    g = state["x"]
    (hinge, hinge_slope, _), (soft, soft_slope, _) = state["curves"].values()
    np.testing.assert_allclose(hinge, np.maximum(0.0, margin - g))
    np.testing.assert_allclose(soft, np.log1p(np.exp(-g)), rtol=1e-12)
    # slopes against central differences of the losses (away from the hinge's kink)
    away = np.abs(g - margin) > 0.01
    np.testing.assert_allclose(np.abs(np.gradient(hinge, g))[away][1:-1], hinge_slope[away][1:-1], atol=1e-9)
    np.testing.assert_allclose(np.abs(np.gradient(soft, g))[1:-1], soft_slope[1:-1], atol=1e-5)
    # the hinge switches off at g = m; the soft margin never does, and ignores m
    assert np.all(hinge_slope[g >= margin] == 0) and np.all(hinge_slope[g < margin] == 1)
    assert np.all(soft_slope > 0) and state["soft_slope_at_margin"] == pytest.approx(1 / (1 + np.exp(margin)))
    assert f"{margin:.2f}" in tri.triplet_profile_readout(state)


def test_soft_margin_profile_is_the_librarys_soft_triplet_loss():
    """Three points on a line: losses.triplet_loss(soft=True) is the mean of softplus(-gap) terms."""
    for gap in (-0.5, 0.0, 0.3, 1.5):
        # a = 0, p = -1 (D(a,p) = 1), n = 1 + gap (D(a,n) = 1 + gap); with batch hard each of the
        # two anchors 0 and 1 has exactly one positive and one negative: one term each.
        x = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0 + gap, 0.0]], dtype=np.float32)
        value = float(losses.triplet_loss([0, 0, 1], x, mining="hard", soft=True))
        # batch hard: anchors 0 and 1 (anchor 2 has no positive); mean of their two terms
        d = viz.distances_numpy(x)
        expected = np.mean([np.log1p(np.exp(d[0, 1] - d[0, 2])), np.log1p(np.exp(d[1, 0] - d[1, 2]))])
        assert value == pytest.approx(expected, rel=1e-5)
        profile = tri.triplet_profile(gap_min=gap, gap_max=gap + 1, steps=2)
        assert profile["curves"]["soft margin: ln(1 + e^(−g))"][0][0] == pytest.approx(np.log1p(np.exp(d[0, 1] - d[0, 2])))


def test_facenet_gap_squared_margin():
    d_ap = np.array([0.0, 0.4, 1.0, 1.4])
    gap = tri.facenet_gap(d_ap, alpha=0.2)
    # D(a,n) = D(a,p) + gap satisfies FaceNet's squared constraint with equality
    np.testing.assert_allclose((d_ap + gap) ** 2 - d_ap**2, 0.2)
    assert gap[0] == pytest.approx(np.sqrt(0.2))
    assert gap[1] == pytest.approx(0.2)  # the one D(a,p) where both readings of "0.2" agree
    assert gap[2] < 0.2 < gap[0] and np.all(np.diff(gap) < 0)


def test_single_triplet_force_lengths_and_angle():
    """p and n always get unit forces; the anchor's is 2 sin(theta / 2), zero when n is on the ray a->p."""
    for angle in (10.0, 60.0, 90.0, 170.0):
        t = np.radians(angle)
        state = tri.single_triplet((0, 0), (1.0, 0.0), (0.9 * np.cos(t), 0.9 * np.sin(t)), margin=2.0)
        assert state["active"] and state["angle"] == pytest.approx(angle, abs=1e-3)
        np.testing.assert_allclose(state["force_norms"], [2 * np.sin(t / 2), 1.0, 1.0], atol=1e-5)
    between = tri.single_triplet((0, 0), (1.0, 0.0), (0.5, 0.0), margin=0.5)
    assert between["active"] and between["force_norms"][0] < 1e-6
    assert "|force| on a, p, n" in tri.triplet_readout(between)


def test_triplet_arrows_keep_one_scale():
    state = tri.compute_triplet(negative_x=0.2, negative_y=0.9, margin=1.0)
    fig = tri.draw_triplet(state, scale=0.6)
    heads = fig.data[-1]
    ends = np.stack([heads.x, heads.y], 1)
    np.testing.assert_allclose(ends, state["points"] + 0.6 * state["forces"], atol=1e-6)


def test_force_panels_keep_one_scale_across_margins():
    for margin in (0.5, 2.0):
        state = tri.compute_forces(margin=margin)
        fig = tri.draw_forces(state)
        for kind, axis in (("contrastive", "x"), ("triplet", "x2")):
            line = next(t for t in fig.data if t.name and t.name.startswith(f"−gradient, {kind}"))
            assert line.xaxis == axis and f"×{tri.FORCE_ARROW_SCALES[kind]:g}" in line.name
            x, y = np.array(line.x, dtype=float), np.array(line.y, dtype=float)
            drawn = np.hypot(x[1::3] - x[0::3], y[1::3] - y[0::3])
            forces = np.linalg.norm(state[kind]["force"], axis=1)
            np.testing.assert_allclose(np.sort(drawn), np.sort(tri.FORCE_ARROW_SCALES[kind] * forces[forces > 1e-7]),
                                       rtol=1e-5)
