"""course_lib.demos.npairs (lesson 07) against the pure-Python reference, TF and hand calculations."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import tensorflow as tf

import reference
from conftest import all_batches
from course_lib import losses
from course_lib.demos import npairs as dn


# ------------------------------------------------------------ pair selection
@pytest.mark.parametrize("labels, x", all_batches())
def test_select_pairs_matches_reference(labels, x):
    anchors, positives = dn.select_pairs(labels)
    assert list(zip(anchors.tolist(), positives.tolist())) == reference.npairs_pairs(labels)


def test_select_pairs_rules_by_hand():
    labels = [5, 3, 5, 9, 3, 5, 3, 1]   # 5: 0, 2 (5 unused); 3: 1, 4 (6 unused); 9 and 1: single
    anchors, positives = dn.select_pairs(labels)
    assert anchors.tolist() == [0, 1] and positives.tolist() == [2, 4]
    # Keras' (B, 1) labels give the same pairs.
    a2, p2 = dn.select_pairs(np.array(labels)[:, None])
    assert a2.tolist() == [0, 1] and p2.tolist() == [2, 4]
    assert [len(z) for z in dn.select_pairs([1, 2, 3])] == [0, 0]


# ------------------------------------------------------------ the loss
@pytest.mark.parametrize("l2_reg", [0.0, 0.002, 0.5])
@pytest.mark.parametrize("labels, x", all_batches())
def test_npairs_numpy_matches_reference_and_library(labels, x, l2_reg):
    ours = dn.npairs_numpy(labels, x, l2_reg)
    assert math.isclose(ours["loss"], reference.npairs_loss(labels, x, l2_reg), rel_tol=1e-9, abs_tol=1e-12)
    library = float(losses.npairs_loss(labels, x, l2_reg=l2_reg))
    assert math.isclose(ours["loss"], library, rel_tol=1e-5, abs_tol=1e-6)


@pytest.mark.parametrize("labels, x", all_batches())
def test_rows_are_tuplet_losses_and_softmaxes(labels, x):
    state = dn.npairs_numpy(labels, x, 0.0)
    if state["num_pairs"] < 2:
        return
    a, p = x[state["anchors"]].astype(np.float64), x[state["positives"]].astype(np.float64)
    np.testing.assert_allclose(state["similarity"], a @ p.T)
    np.testing.assert_allclose(state["probabilities"].sum(axis=1), 1.0)
    for i in range(state["num_pairs"]):
        expected = dn.tuplet_loss(a[i], p[i], np.delete(p, i, axis=0))
        assert math.isclose(state["cross_entropy"][i], expected, rel_tol=1e-9)
        assert math.isclose(state["cross_entropy"][i], -math.log(state["probabilities"][i, i]), rel_tol=1e-6)


def test_two_pairs_by_hand():
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    state = dn.npairs_numpy([0, 0, 1, 1], x, l2_reg=0.1)
    ce = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))) / 2
    l2 = 0.1 * 0.25 * ((1 + 1) / 2 + (4 + 1) / 2)
    assert math.isclose(state["mean_cross_entropy"], ce, rel_tol=1e-12)
    assert math.isclose(state["l2_term"], l2, rel_tol=1e-12)
    assert math.isclose(state["loss"], ce + l2, rel_tol=1e-12)


def test_tuplet_loss_with_one_negative_is_softplus():
    a, p, n = np.array([1.0, 2.0]), np.array([0.5, 1.0]), np.array([-1.0, 3.0])
    assert math.isclose(dn.tuplet_loss(a, p, n), math.log1p(math.exp(a @ n - a @ p)), rel_tol=1e-12)


def test_degenerate_batches_are_zero():
    x = np.eye(4)
    for labels in ([0, 1, 2, 3], [0, 0, 1, 2]):
        state = dn.npairs_numpy(labels, x, 0.5)
        assert state["loss"] == 0.0 and state["l2_term"] == 0.0 and state["mean_cross_entropy"] == 0.0


def test_cross_entropy_is_accurate_far_below_rounding():
    # Gaps of -40: the loss is ~exp(-40) ~ 4e-18, which 1 - softmax would round to 0.
    x = np.array([[20.0, 0.0], [20.0, 0.0], [0.0, 20.0], [0.0, 20.0]]) / math.sqrt(10)
    state = dn.npairs_numpy([0, 0, 1, 1], x, 0.0)
    expected = math.log1p(math.exp(-40.0))
    np.testing.assert_allclose(state["cross_entropy"], [expected, expected], rtol=1e-9)


# ------------------------------------------------------------ gradient and training
@pytest.mark.parametrize("l2_reg", [0.0, 0.01])
@pytest.mark.parametrize("labels, x", all_batches())
def test_gradient_matches_tensorflow(labels, x, l2_reg):
    variable = tf.Variable(x.astype(np.float64))
    with tf.GradientTape() as tape:
        value = losses.npairs_loss(labels, variable, l2_reg=l2_reg)
    tf_grad = tape.gradient(value, variable)
    loss, grad = dn.npairs_gradient(labels, x, l2_reg)
    expected = np.zeros_like(grad) if tf_grad is None else tf_grad.numpy()
    np.testing.assert_allclose(grad, expected, atol=2e-5)
    assert math.isclose(loss, float(value), rel_tol=1e-5, abs_tol=1e-6)


def test_descend_norms_grow_without_the_l2_term_only():
    free = dn.descend(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, l2_reg=0.0, steps=600, record_every=50)
    held = dn.descend(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, l2_reg=0.05, steps=600, record_every=50)
    assert free["steps"].tolist() == list(range(0, 601, 50))
    assert np.all(np.diff(free["mean_norm"][4:]) > 0)
    assert free["mean_norm"][-1] > held["mean_norm"][-1]
    assert free["loss"][-1] < free["loss"][0]
    sgd = dn.descend(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, 0.0, steps=50, learning_rate=0.5, optimizer="sgd")
    assert sgd["loss"][-1] < sgd["loss"][0]
    with pytest.raises(ValueError):
        dn.descend(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, optimizer="rmsprop")


# ------------------------------------------------------------ toy batch, sweep, widget state
def test_toy_batch_properties():
    labels, x = dn.TOY_LABELS, dn.TOY_EMBEDDINGS
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    counts = np.bincount(labels)
    assert sorted(counts.tolist()) == [1, 2, 2, 2, 3, 3, 3]
    s = dn.npairs_numpy(labels, x)["similarity"]
    assert np.all(s.argmax(axis=1) == np.arange(len(s)))   # every anchor's own positive wins its row


def test_scale_sweep():
    scales = np.geomspace(0.25, 30, 40)
    free = dn.scale_sweep(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, scales, 0.0)
    assert np.all(np.diff(free["loss"]) < 0) and free["best_scale"] == scales[-1]
    reg = dn.scale_sweep(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, scales, 0.002)
    np.testing.assert_allclose(reg["l2_term"], 0.002 * scales**2 / 2)   # unit vectors: 1/4 (s^2 + s^2)
    assert scales[0] < reg["best_scale"] < scales[-1]
    assert reg["best_scale"] == scales[np.argmin(reg["cross_entropy"] + reg["l2_term"])]


def test_compute_state():
    state = dn.compute(scale=4.0, anchor=3, l2_reg=0.01)
    direct = dn.npairs_numpy(dn.TOY_LABELS, 4.0 * dn.TOY_EMBEDDINGS, 0.01)
    assert math.isclose(state["loss"], direct["loss"])
    assert state["anchor"] == 3 and math.isclose(state["mean_norm"], 4.0)
    np.testing.assert_allclose(state["row"], direct["similarity"][3])
    assert math.isclose(state["target_probability"], direct["probabilities"][3, 3])
    assert dn.compute(anchor=99)["anchor"] == 5                    # clipped to the pairs present
    assert "pairs N = 6" in dn.readout(state)
    empty = dn.compute(labels=[0, 1, 2], embeddings=np.eye(3))
    assert empty["num_pairs"] == 0 and empty["loss"] == 0.0 and math.isnan(empty["target_probability"])


# ------------------------------------------------------------ figures
def test_draw_traces_follow_the_state():
    state = dn.compute(scale=2.0, anchor=1)
    fig = dn.draw(state)
    assert isinstance(fig, go.Figure)
    heatmap, bars = fig.data
    assert heatmap.type == "heatmap" and bars.type == "bar"
    np.testing.assert_allclose(np.asarray(heatmap.z), state["similarity"])
    np.testing.assert_allclose(bars.y, state["row_probabilities"])
    colors = list(bars.marker.color)
    assert colors[1] == dn.POSITIVE_COLOR and colors.count(dn.NEGATIVE_COLOR) == 5
    assert any(shape.type == "rect" for shape in fig.layout.shapes)


def test_draw_pair_selection_roles():
    fig = dn.draw_pair_selection(dn.TOY_LABELS)
    names = [t.name for t in fig.data]
    assert names == ["anchor", "positive", "unused (3rd+)", "ignored (single)"]
    anchors, positives = dn.select_pairs(dn.TOY_LABELS)
    assert list(fig.data[0].x) == anchors.tolist() and list(fig.data[1].x) == sorted(positives.tolist())
    assert len(fig.data[2].x) == 3 and len(fig.data[3].x) == 1
    assert sum(len(t.x) for t in fig.data) == len(dn.TOY_LABELS)


def test_sweep_and_descent_figures():
    scales = np.geomspace(0.5, 10, 5)
    sweeps = [dn.scale_sweep(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, scales, r) for r in (0.0, 0.01)]
    fig = dn.draw_scale_sweep(*sweeps)
    assert len(fig.data) == 6 and [t.name for t in fig.data[:3]] == ["cross entropy", "l2 term", "loss"]
    runs = [dn.descend(dn.TOY_LABELS, dn.TOY_EMBEDDINGS, r, steps=20, record_every=10) for r in (0.0, 0.01)]
    fig = dn.draw_descent(*runs)
    assert [t.name for t in fig.data] == ["l2_reg = 0", "l2_reg = 0.01"]
    np.testing.assert_allclose(fig.data[0].y, runs[0]["mean_norm"])
