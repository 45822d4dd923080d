"""Distances between embeddings: every loss starts from ``D[i, j] = d(x_i, x_j)``.

``"euclidean"`` ||x_i - x_j||, ``"squared_euclidean"`` ||x_i - x_j||^2 and
``"cosine"`` 1 - x_i.x_j / (||x_i|| ||x_j||) (docs/definitions.md, section 2).
The squared distance uses the expansion ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b,
one matrix product instead of a [B, B, D] tensor of differences, with two traps:
rounding can make it slightly negative (clamped at 0), and sqrt's infinite
derivative at 0 turns two identical embeddings into NaN gradients unless the
zeros are masked before the sqrt (tensorflow/tensorflow#30199).
"""

from __future__ import annotations

import tensorflow as tf

from course_lib._checks import as_embeddings
from course_lib.options import METRICS, check_choice

__all__ = ["METRICS", "pairwise_distances", "cross_distances", "paired_distances"]


def _squared_norms(x):
    return tf.reduce_sum(tf.square(x), axis=1)


def _squared_euclidean(a, b):
    """||a_i - b_j||^2 via the expansion, clamped at 0."""
    sq = (
        _squared_norms(a)[:, None]
        + _squared_norms(b)[None, :]
        - 2.0 * tf.matmul(a, b, transpose_b=True)
    )
    return tf.maximum(sq, 0.0)


def _safe_sqrt(squared):
    """sqrt with a zero (not infinite) gradient where ``squared == 0``."""
    is_zero = tf.equal(squared, 0.0)
    safe = tf.where(is_zero, tf.ones_like(squared), squared)
    return tf.where(is_zero, tf.zeros_like(squared), tf.sqrt(safe))


def _unit_rows(x):
    return tf.math.l2_normalize(x, axis=1, epsilon=1e-12)


def _cosine(a, b):
    return tf.maximum(1.0 - tf.matmul(_unit_rows(a), _unit_rows(b), transpose_b=True), 0.0)


def cross_distances(queries, gallery, metric="euclidean"):
    """Distances between every query and every gallery item: [Q, G] float32.

    ``queries`` is [Q, D] and ``gallery`` is [G, D]. No entry is forced to
    zero: use :func:`pairwise_distances` for a batch against itself.
    """
    check_choice("metric", metric, METRICS)
    a = as_embeddings(queries, name="queries")
    b = as_embeddings(gallery, name="gallery")
    if metric == "cosine":
        return _cosine(a, b)
    squared = _squared_euclidean(a, b)
    if metric == "squared_euclidean":
        return squared
    return _safe_sqrt(squared)


def paired_distances(a, b, metric="euclidean"):
    """Row by row distances ``d(a_i, b_i)``: [N] float32 for ``a``, ``b`` [N, D].

    Computed from the difference ``a_i - b_i`` itself (no expansion), so
    identical rows give exactly 0, with a zero gradient. The triplet loss uses
    it to differentiate only the pairs a miner picked, O(N D) instead of the
    whole [B, B] matrix.
    """
    check_choice("metric", metric, METRICS)
    a, b = as_embeddings(a, name="a"), as_embeddings(b, name="b")
    if a.shape.is_fully_defined() and b.shape.is_fully_defined() and a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have the same shape [N, D], got {a.shape} and {b.shape}.")
    return _paired(a, b, metric)


def _paired(a, b, metric):
    if metric == "cosine":
        return tf.maximum(1.0 - tf.reduce_sum(_unit_rows(a) * _unit_rows(b), axis=1), 0.0)
    squared = _squared_norms(a - b)
    return squared if metric == "squared_euclidean" else _safe_sqrt(squared)


def pairwise_distances(embeddings, metric="euclidean"):
    """All pairwise distances of a batch: [B, B] float32.

    ``D[i, j] = d(x_i, x_j)`` for ``metric`` in :data:`METRICS`. The
    diagonal is exactly 0, no entry is negative, and the gradient is finite
    everywhere, also when the batch holds identical embeddings.

    >>> pairwise_distances([[0.0, 0.0], [3.0, 4.0]]).numpy()
    array([[0., 5.],
           [5., 0.]], dtype=float32)
    """
    check_choice("metric", metric, METRICS)
    return _pairwise(as_embeddings(embeddings), metric)


def _pairwise(x, metric):
    distances = _cosine(x, x) if metric == "cosine" else _squared_euclidean(x, x)
    # Zero the diagonal *before* the sqrt: it removes rounding noise and
    # keeps sqrt's infinite derivative at 0 out of the gradient.
    distances = distances * (1.0 - tf.eye(tf.shape(x)[0], dtype=x.dtype))
    return _safe_sqrt(distances) if metric == "euclidean" else distances
