"""course_lib.demos.contrastive (lesson 02): states against independent calculations."""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go
import pytest
import tensorflow as tf

from conftest import finite_difference_gradient
from course_lib import losses
from course_lib.demos import contrastive as con


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


# ------------------------------------------------------------- toy data
def test_toy_batch_is_seeded_and_grouped():
    p1, l1 = con.toy_batch(3, 5, seed=4)
    p2, l2 = con.toy_batch(3, 5, seed=4)
    p3, _ = con.toy_batch(3, 5, seed=5)
    assert p1.shape == (15, 2) and p1.dtype == np.float32
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)
    np.testing.assert_array_equal(l1, np.repeat([0, 1, 2], 5))


def test_toy_batch_explicit_centres():
    points, labels = con.toy_batch(per_class=200, spread=0.01, centres=[(5.0, 0.0), (0.0, -3.0)])
    np.testing.assert_allclose(points[labels == 0].mean(0), [5, 0], atol=0.01)
    np.testing.assert_allclose(points[labels == 1].mean(0), [0, -3], atol=0.01)


# ------------------------------------------------------------ contrastive
def test_contrastive_term_cases():
    assert con.contrastive_term(0.6, True, 1.0) == pytest.approx(0.18)
    assert con.contrastive_term(0.6, False, 1.0) == pytest.approx(0.08)
    assert con.contrastive_term(1.2, False, 1.0) == 0.0


@pytest.mark.parametrize("margin", [0.3, 1.0, 1.7])
def test_contrastive_state_matches_loop_reference(margin):
    points, labels = con.toy_batch(3, 4, seed=1)
    state = con.contrastive_state(points, labels, margin)
    expected = reference_contrastive(points, labels, margin)
    assert state["loss"] == pytest.approx(expected, rel=1e-5)
    assert state["mean_of_terms"] == pytest.approx(expected, rel=1e-9)
    b = len(labels)
    for i, j in itertools.permutations(range(b), 2):
        d = loop_distance(points, i, j)
        assert state["terms"][i, j] == pytest.approx(con.contrastive_term(d, labels[i] == labels[j], margin))
    inside = {(i, j) for i, j in itertools.combinations(range(b), 2)
              if labels[i] != labels[j] and loop_distance(points, i, j) < margin}
    assert set(state["inside"]) == inside
    assert state["inside_terms"] == sorted(state["inside_terms"], reverse=True)
    assert len(state["positive_pairs"]) == 3 * 6 and len(state["negative_pairs"]) == 48
    # the two sums split the loss: (positive_sum + negative_sum) / (B (B - 1))
    assert (state["positive_sum"] + state["negative_sum"]) / (b * (b - 1)) == pytest.approx(expected, rel=1e-9)


def test_compute_contrastive_focus_and_margin_monotone():
    counts = [len(con.compute_contrastive(margin=m)["inside"]) for m in (0.25, 0.5, 1.0, 1.5)]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    state = con.compute_contrastive(margin=1.5, focus=16)  # wraps around: 16 % 15 = 1
    assert state["focus"] == 1
    expected = sorted(j for j in range(15) if state["labels"][j] != state["labels"][1]
                      and state["distances"][1, j] < 1.5)
    assert state["focus_inside"] == expected
    text = con.contrastive_readout(state)
    assert f"{len(state['inside'])} of 75" in text


def test_draw_contrastive_traces():
    state = con.compute_contrastive(margin=1.0, focus=3)
    fig = con.draw_contrastive(state)
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
    points, labels = con.toy_batch(3, 3, seed=2)
    state = con.contrastive_forces(points, labels, margin=1.2)
    numeric = finite_difference_gradient(lambda x: reference_contrastive(x, labels, 1.2), points, h=1e-5)
    np.testing.assert_allclose(state["force"], -numeric, atol=2e-5)
    np.testing.assert_allclose(state["pull"] + state["push"], state["force"], atol=1e-6)


def test_negative_pair_alone_is_pushed_apart_symmetrically():
    points = np.array([[0.0, 0.0], [0.3, 0.4]], dtype=np.float32)  # D = 0.5
    state = con.contrastive_forces(points, [0, 1], margin=1.0)
    # L = 1/2 (1 - D)^2 (mean of the two ordered pairs): -dL/dx_1 = (m - D) * unit(x_1 - x_0)
    np.testing.assert_allclose(state["force"][1], 0.5 * np.array([0.6, 0.8]), atol=1e-6)
    np.testing.assert_allclose(state["force"][0], -state["force"][1], atol=1e-6)


def test_force_batch_centre_point_feels_only_the_push():
    state = con.compute_contrastive_forces(margin=0.5)
    c, i = state["centre"], state["intruder"]
    labels, points = state["labels"], state["points"]
    np.testing.assert_allclose(points[c], points[labels == labels[c]][1:].mean(0), atol=1e-6)
    assert np.linalg.norm(state["pull"][c]) < 1e-7
    assert np.linalg.norm(state["force"][c]) > 1e-4
    assert c in state["pushed"] and i in state["pushed"]
    away = points[c] - points[i]
    assert float(state["force"][c] @ away) > 0  # pushed away from the intruder
    assert "centre point" in con.contrastive_forces_readout(state)
    # Below D(centre, intruder) the centre point is not pushed any more.
    d = np.linalg.norm(points[c] - points[i])
    assert c not in con.compute_contrastive_forces(margin=0.9 * d)["pushed"]


# ------------------------------------------------------- label-free pairs
def test_augment_identity_and_shift():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 10, 12] = 255
    same = con.augment(image, rng, max_shift=0, erase=0)
    np.testing.assert_array_equal(same, image)
    shifted = con.augment(image, np.random.default_rng(1), max_shift=3, erase=0)
    (y,), (x,) = np.nonzero(shifted[0])
    assert abs(y - 10) <= 3 and abs(x - 12) <= 3 and shifted.dtype == np.uint8


def test_two_view_batch_and_pair_statistics():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 5
    batch = con.two_view_batch(images, labels, num_images=10, seed=1)
    assert batch["views"].shape == (20, 28, 28)
    np.testing.assert_array_equal(batch["image_ids"], np.repeat(np.arange(10), 2))
    assert np.all(batch["classes"][0::2] == batch["classes"][1::2])
    stats = con.pair_statistics(batch["views"], batch["image_ids"], batch["classes"])
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
    fig = con.draw_pair_statistics(stats)
    assert list(fig.data[0].y) == [stats["false_negative_share"], stats["hardest_negative_same_class"]]


def test_negative_shares_distances_match_the_differences():
    rng = np.random.default_rng(3)
    views = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    shares = con.negative_shares(views, np.repeat(np.arange(6), 2), np.repeat([0, 1, 0, 1, 2, 2], 2))
    x = views.reshape(12, -1).astype(np.float64) / 255
    np.testing.assert_allclose(shares["distances"], np.linalg.norm(x[:, None] - x[None], axis=-1), atol=1e-4)
    # 6 images, classes 0 1 0 1 2 2: same-class image pairs (0,2), (1,3), (4,5), 4 view pairs each
    assert shares["false_negatives"] == 3 * 4
    assert shares["false_negative_share"] == pytest.approx(12 / (12 * 10 / 2))


# ------------------------------------------------ loss and slope against D
@pytest.mark.parametrize("margin", [0.3, 1.0, 1.7])
def test_contrastive_profile_slopes_are_the_derivatives(margin):
    state = con.contrastive_profile(margin=margin, d_max=2.0, steps=2001)
    d = state["x"]
    (pos_loss, pos_slope, _), (neg_loss, neg_slope, _) = state["curves"].values()
    np.testing.assert_allclose(pos_loss, [con.contrastive_term(v, True, margin) for v in d])
    np.testing.assert_allclose(neg_loss, [con.contrastive_term(v, False, margin) for v in d])
    # |dl/dD| against central differences of the loss itself
    np.testing.assert_allclose(np.abs(np.gradient(pos_loss, d))[1:-1], pos_slope[1:-1], atol=1e-3)
    np.testing.assert_allclose(np.abs(np.gradient(neg_loss, d))[1:-1], neg_slope[1:-1], atol=2e-3)
    # the negative pair's push switches off exactly at D = m; the positive pull only at D = 0
    assert np.all(neg_slope[d >= margin] == 0) and np.all(neg_slope[d < margin] > 0)
    assert state["switch_off"] == margin and np.all(pos_slope[d > 0] > 0)
    assert f"{margin:.2f}" in con.profile_readout(state)


def test_contrastive_profile_matches_the_library_on_a_two_point_batch():
    """One negative pair at distance D: the library's loss and dL/dD are the profile's."""
    margin = 1.0
    state = con.contrastive_profile(margin=margin, d_max=2.0, steps=9)  # D = 0, 0.25, ..., 2
    _, (neg_loss, neg_slope, _) = list(state["curves"].values())
    for d, loss, slope in zip(state["x"], neg_loss, neg_slope):
        far = tf.Variable([[float(d), 0.0]])
        with tf.GradientTape() as tape:
            value = losses.contrastive_loss([0, 1], tf.concat([tf.zeros([1, 2]), far], 0), margin=margin)
        grad = tape.gradient(value, far).numpy()[0, 0]  # d/dD of the loss: x moves along the pair
        assert float(value) == pytest.approx(loss, abs=1e-6)
        if d > 0:
            assert abs(grad) == pytest.approx(slope, abs=1e-5)


def test_draw_profile_has_both_panels_and_the_margin_line():
    state = con.contrastive_profile(margin=0.8)
    fig = con.draw_profile(state)
    assert len(fig.data) == 4 and {t.xaxis for t in fig.data} == {"x", "x2"}
    assert [t.showlegend for t in fig.data] == [True, False, True, False]  # one legend entry per curve
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 2 and all(s.x0 == 0.8 for s in lines)
    assert fig.layout.title.xanchor == "left"  # clear of the modebar


# --------------------------------------------- false negatives without labels
def _digits(n=2000, seed=0):
    """Random 'images' whose class shows in the pixels: a bright block at a class-specific row."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for k, c in enumerate(labels):
        images[k, 2 + 2 * c: 4 + 2 * c, 4:24] = 255
    return images, labels


def test_false_negative_curve_random_share_follows_one_over_c():
    images, labels = _digits()
    curve = con.false_negative_curve(images, labels, class_counts=(2, 5, 10), num_images=40, seeds=(0, 1))
    np.testing.assert_array_equal(curve["class_counts"], [2, 5, 10])
    np.testing.assert_allclose(curve["analytic"], [0.5, 0.2, 0.1])
    # measured share of same-class pairs among random negatives ~ 1/C (sampling noise only)
    np.testing.assert_allclose(curve["random"], curve["analytic"], atol=0.06)
    # the class shows in the pixels, so the closest other image is the same class far more often
    assert np.all(curve["hardest"] > curve["random"] + 0.2)


def test_false_negative_curve_counts_by_a_loop():
    images, labels = _digits(300)
    curve = con.false_negative_curve(images, labels, class_counts=(3,), num_images=12, seeds=(4,))
    order = np.random.default_rng(0).permutation(np.arange(10))
    rows = np.flatnonzero(np.isin(labels, order[:3]))
    batch = con.two_view_batch(images[rows], labels[rows], 12, seed=4)
    ids, classes = batch["image_ids"], batch["classes"]
    pairs = [(i, j) for i in range(24) for j in range(i + 1, 24) if ids[i] != ids[j]]
    assert curve["random"][0] == pytest.approx(np.mean([classes[i] == classes[j] for i, j in pairs]))
    x = batch["views"].reshape(24, -1).astype(np.float64) / 255
    hardest = [min((j for j in range(24) if ids[j] != ids[i]), key=lambda j: np.linalg.norm(x[i] - x[j]))
               for i in range(24)]
    assert curve["hardest"][0] == pytest.approx(np.mean(classes[hardest] == classes))


def test_compute_and_draw_false_negatives():
    images, labels = _digits()
    curve = con.false_negative_curve(images, labels, class_counts=(2, 4, 10), num_images=20, seeds=(0,))
    state = con.compute_false_negatives(4, curve=curve)
    assert state["random_share"] == curve["random"][1] and state["hardest_share"] == curve["hardest"][1]
    assert state["ratio"] == pytest.approx(state["hardest_share"] / state["random_share"])
    assert "C = 4" in con.false_negatives_readout(state)
    fig = con.draw_false_negatives(state)
    names = [t.name for t in fig.data if t.type == "scatter"]
    assert any("1/C" in n for n in names) and len(names) == 3
    bars = [t for t in fig.data if t.type == "bar"][0]
    assert list(bars.y) == [state["random_share"], state["hardest_share"]]
    assert [s.x0 for s in fig.layout.shapes] == [4]  # the chosen C
    with pytest.raises(ValueError, match="num_classes"):
        con.compute_false_negatives(7, curve=curve)
    with pytest.raises(ValueError, match="curve"):
        con.compute_false_negatives(4)


# ------------------------------------------------------------ one arrow scale
def test_contrastive_force_arrows_keep_one_scale_across_margins():
    """The arrows grow with the margin: length = FORCE_ARROW_SCALE x |force| for every m."""
    lengths = []
    for margin in (0.5, 1.0, 1.5):
        state = con.compute_contrastive_forces(margin=margin)
        fig = con.draw_contrastive_forces(state)
        push = next(t for t in fig.data if t.name and t.name.startswith("push"))
        x, y = np.array(push.x, dtype=float), np.array(push.y, dtype=float)  # start, end, None, ...
        drawn = np.hypot(x[1::3] - x[0::3], y[1::3] - y[0::3])
        forces = np.linalg.norm(state["push"][state["pushed"]], axis=1)
        np.testing.assert_allclose(drawn, con.FORCE_ARROW_SCALE * forces, rtol=1e-5)
        lengths.append(drawn.max())
        assert f"×{con.FORCE_ARROW_SCALE:g}" in push.name
    assert lengths == sorted(lengths) and lengths[-1] > 2 * lengths[0]


def test_lesson_02_force_batch_is_the_first_two_classes_of_lesson_03s():
    two = con.compute_contrastive_forces(margin=0.5)
    three, labels, _, _ = con.force_batch()
    np.testing.assert_array_equal(two["points"], three[labels < 2])
    assert set(two["labels"]) == {0, 1}
