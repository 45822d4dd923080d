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
