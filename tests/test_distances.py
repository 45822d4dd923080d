"""course_lib.distances against the float64 loop reference and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from conftest import all_batches, finite_difference_gradient, make_pk_batch

from course_lib import distances as dist_mod
from course_lib.distances import cross_distances, paired_distances, pairwise_distances

METRICS = ref.METRICS
RTOL, ATOL = 1e-4, 1e-5


def test_metrics_constant():
    assert tuple(dist_mod.METRICS) == ("euclidean", "squared_euclidean", "cosine")


# ---------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("labels, x", all_batches())
def test_pairwise_matches_reference(labels, x, metric):
    got = pairwise_distances(x, metric=metric)
    assert got.dtype == tf.float32
    assert got.shape == (len(x), len(x))
    np.testing.assert_allclose(got.numpy(), ref.pairwise_distances(x, metric), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1])
def test_cross_distances_match_reference(metric, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(5, 7)).astype(np.float32)
    g = rng.normal(size=(9, 7)).astype(np.float32)
    got = cross_distances(q, g, metric=metric)
    assert got.dtype == tf.float32
    assert got.shape == (5, 9)
    np.testing.assert_allclose(got.numpy(), ref.cross_distances(q, g, metric), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("metric", METRICS)
def test_cross_distances_of_batch_with_itself_agree_off_diagonal(metric):
    _, x = make_pk_batch(3, 3, 5, seed=4)
    cross = cross_distances(x, x, metric=metric).numpy()
    pair = pairwise_distances(x, metric=metric).numpy()
    off = ~np.eye(len(x), dtype=bool)
    np.testing.assert_allclose(cross[off], pair[off], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1])
def test_paired_distances_are_the_diagonal_of_cross_distances(metric, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(6, 7)).astype(np.float32)
    b = rng.normal(size=(6, 7)).astype(np.float32)
    b[2] = a[2]  # an identical pair: exactly 0
    got = paired_distances(a, b, metric=metric)
    assert got.dtype == tf.float32 and got.shape == (6,)
    np.testing.assert_allclose(got.numpy(), np.diag(ref.cross_distances(a, b, metric)), rtol=RTOL, atol=ATOL)
    assert got.numpy()[2] == 0.0


@pytest.mark.parametrize("metric", METRICS)
def test_paired_distances_gradient_matches_pairwise(metric):
    # the losses differentiate mined pairs with paired_distances: same
    # derivative as the pairwise matrix, and 0 (not NaN) for identical rows
    _, x = make_pk_batch(3, 3, 5, seed=5)
    x[4] = x[1]
    i, j = np.array([0, 1, 2, 4]), np.array([3, 4, 7, 6])
    weights = tf.constant([0.5, -1.0, 2.0, 1.5])
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        paired = tf.reduce_sum(weights * paired_distances(tf.gather(xt, i), tf.gather(xt, j), metric))
        matrix = tf.reduce_sum(weights * tf.gather_nd(pairwise_distances(xt, metric), np.stack([i, j], 1)))
    np.testing.assert_allclose(paired.numpy(), matrix.numpy(), rtol=RTOL, atol=ATOL)
    got = tf.convert_to_tensor(tape.gradient(paired, xt)).numpy()
    expected = tape.gradient(matrix, xt).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_paired_distances_need_the_same_shape():
    with pytest.raises(ValueError, match="same shape"):
        paired_distances(np.ones((3, 2), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match="metric"):
        paired_distances(np.ones((3, 2), np.float32), np.ones((3, 2), np.float32), metric="l1")


# ---------------------------------------------------------------------------
# by hand
# ---------------------------------------------------------------------------
def test_hand_computed_values():
    # x0 = (0, 0), x1 = (3, 4), x2 = (0, 2)
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 2.0]], np.float32)
    # euclidean: |x0 x1| = 5, |x0 x2| = 2, |x1 x2| = sqrt(9 + 4) = sqrt(13)
    e = pairwise_distances(x, "euclidean").numpy()
    np.testing.assert_allclose(e[0, 1], 5.0, rtol=1e-6)
    np.testing.assert_allclose(e[0, 2], 2.0, rtol=1e-6)
    np.testing.assert_allclose(e[1, 2], math.sqrt(13.0), rtol=1e-6)
    s = pairwise_distances(x, "squared_euclidean").numpy()
    np.testing.assert_allclose([s[0, 1], s[0, 2], s[1, 2]], [25.0, 4.0, 13.0], rtol=1e-6)
    # cosine between (3, 4) and (0, 2): cos = 8 / (5 * 2) = 0.8 -> 0.2
    y = np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 2.0], [-2.0, 0.0]], np.float32)
    c = pairwise_distances(y, "cosine").numpy()
    np.testing.assert_allclose(c[1, 2], 0.2, atol=1e-6)
    np.testing.assert_allclose(c[0, 2], 1.0, atol=1e-6)  # orthogonal
    np.testing.assert_allclose(c[0, 3], 2.0, atol=1e-6)  # opposite
    np.testing.assert_allclose(c[0, 1], 1.0 - 0.6, atol=1e-6)  # cos = 3 / 5


# ---------------------------------------------------------------------------
# structural properties and degenerate inputs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_diagonal_exactly_zero_symmetric_non_negative(metric):
    # large offset: the expansion ||a||^2 + ||b||^2 - 2ab has its worst
    # cancellation on the diagonal and for near-duplicate rows.
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(12, 6)) + 30.0).astype(np.float32)
    x[3] = x[7]  # duplicate rows
    d = pairwise_distances(x, metric=metric).numpy()
    assert np.all(np.diag(d) == 0.0)
    assert np.all(d >= 0.0)
    assert np.all(np.isfinite(d))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("labels, x", all_batches()[:3])
def test_symmetric(labels, x, metric):
    d = pairwise_distances(x, metric=metric).numpy()
    np.testing.assert_allclose(d, d.T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_duplicate_rows_are_at_distance_about_zero(metric):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(6, 8)).astype(np.float32)
    x[4] = x[1]
    d = pairwise_distances(x, metric=metric).numpy()
    # the expanded form leaves ~eps * ||x||^2 of noise before the sqrt
    tol = 3e-3 if metric == "euclidean" else 1e-5
    assert abs(d[1, 4]) <= tol and abs(d[4, 1]) <= tol
    # row 4 is row 1: both see every other point at the same distance
    np.testing.assert_allclose(d[1], d[4], rtol=1e-4, atol=tol)


@pytest.mark.parametrize("metric", METRICS)
def test_gradient_matches_finite_differences(metric):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 3))
    w = rng.uniform(0.5, 1.5, size=(5, 5))

    def f(v):
        return float(np.sum(w * ref.pairwise_distances(v, metric)))

    expected = finite_difference_gradient(f, x)
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(tf.constant(w, tf.float32) * pairwise_distances(xt, metric=metric))
    got = tape.gradient(y, xt).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("case", ["all_identical", "duplicate_rows", "single_row"])
def test_gradient_finite_for_identical_embeddings(metric, case):
    rng = np.random.default_rng(8)
    if case == "all_identical":
        x = np.tile(rng.normal(size=(1, 4)), (6, 1))
    elif case == "duplicate_rows":
        x = rng.normal(size=(6, 4))
        x[2] = x[0]
        x[5] = x[0]
    else:
        x = rng.normal(size=(1, 4))
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        d = pairwise_distances(xt, metric=metric)
        y = tf.reduce_sum(d)
    g = tape.gradient(y, xt)
    assert np.all(np.isfinite(d.numpy()))
    assert g is not None and np.all(np.isfinite(g.numpy()))


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean"])
def test_gradient_finite_at_all_zero_embeddings(metric):
    xt = tf.zeros((4, 3), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(pairwise_distances(xt, metric=metric))
    assert np.all(np.isfinite(tape.gradient(y, xt).numpy()))


# ---------------------------------------------------------------------------
# dtypes, graph mode, bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
@pytest.mark.parametrize("metric", METRICS)
def test_other_precisions_computed_in_float32(dtype, metric):
    _, x = make_pk_batch(3, 3, 6, seed=9)
    xd = tf.cast(tf.constant(x), dtype)
    got = pairwise_distances(xd, metric=metric)
    assert got.dtype == tf.float32
    # same values as the float32 computation on the (rounded) input
    expected = pairwise_distances(tf.cast(xd, tf.float32), metric=metric)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_tf_function_with_unknown_batch_size_matches_eager(metric):
    _, x = make_pk_batch(4, 2, 5, seed=10)
    fn = tf.function(
        lambda e: pairwise_distances(e, metric=metric),
        input_signature=[tf.TensorSpec([None, None], tf.float32)],
    )
    np.testing.assert_allclose(fn(x).numpy(), pairwise_distances(x, metric=metric).numpy(), rtol=1e-6, atol=1e-6)


def test_unknown_metric_names_the_argument():
    x = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="metric"):
        pairwise_distances(x, metric="manhattan")
    with pytest.raises(ValueError, match="metric"):
        cross_distances(x, x, metric="cos")


@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_embeddings_must_be_rank_2(shape):
    with pytest.raises(ValueError, match="embeddings"):
        pairwise_distances(np.ones(shape, np.float32))
