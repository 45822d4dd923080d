"""Retrieval metrics: how good is an embedding at finding same-class items?

Every query ranks the gallery by distance (ties by gallery index, lower
first). With ``match_i`` = 1 when the i-th neighbour has the query's label
and R = the number of gallery items with that label (docs/definitions.md,
section 5; Musgrave, Belongie, Lim, "A Metric Learning Reality Check", 2020)::

    precision@1 = match_1
    recall@k    = 1 if match_1 + ... + match_k >= 1 else 0    (papers' "R@k")
    R-precision = (match_1 + ... + match_R) / R
    MAP@R       = (1 / R) * sum_{i=1..R} P(i) * match_i,  P(i) = (match_1 + ... + match_i) / i

each averaged over the queries. MAP@R is 1 only when the R same-class items
are the R nearest neighbours and rewards putting them early; recall@k is
already 1 when one of them sneaks into the top k.

* Leave-one-out (no gallery): every embedding is a query against all the
  *others*, removed by *index*, so an exact duplicate of the query still counts.
* Queries with R = 0 are left out of *every* average (as pytorch-metric-learning
  does); ``num_queries`` says how many were scored, NaN if none.
* The search is exact, in chunks of queries: one [chunk, G] block of
  distances at a time, never the whole 70,000 x 70,000 matrix.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from course_lib._checks import as_label_array, as_points, is_int
from course_lib.options import METRICS, check_choice

__all__ = ["METRICS", "evaluate", "nearest"]

# Default chunk size: as many queries as keep one [chunk, G] float32 block
# of distances near 2**25 entries (128 MiB).
_BLOCK_ENTRIES = 2**25


# ---------------------------------------------------------------- public API
def evaluate(embeddings, labels, gallery_embeddings=None, gallery_labels=None,
             ks=(1, 5, 10), metric="euclidean", chunk_size=None):
    """Precision@1, recall@k, R-precision and MAP@R of a set of embeddings.

    Args:
      embeddings: [N, D] query embeddings (NumPy array, list or tensor).
      labels: [N] (or Keras' [N, 1]) class labels of the queries.
      gallery_embeddings, gallery_labels: [G, D] and [G] gallery to search.
        Leave both as None for leave-one-out on ``embeddings`` itself.
      ks: the k of recall@k (an int or a sequence of ints >= 1, each at most
        the number of neighbours a query has: G, or N - 1 in leave-one-out).
      metric: ``"euclidean"``, ``"squared_euclidean"`` (same ranking) or
        ``"cosine"`` (1 - cosine similarity).
      chunk_size: queries per block of distances; None picks a size that
        keeps a block near 2**25 floats.

    Returns:
      A dict of plain Python numbers::

        {"precision_at_1": float, "recall_at_k": {k: float, ...},
         "r_precision": float, "map_at_r": float, "num_queries": int}

      where ``num_queries`` is the number of queries with R >= 1, the ones
      the averages run over (see the module docstring).
    """
    queries, gallery, leave_one_out = _query_and_gallery(embeddings, gallery_embeddings)
    query_classes, gallery_classes = _classes(labels, gallery_labels, len(queries), len(gallery),
                                               leave_one_out)
    ks = _as_ks(ks, len(gallery) - leave_one_out)
    check_choice("metric", metric, METRICS)
    chunk_size = _as_chunk_size(chunk_size, len(gallery))

    r = np.bincount(gallery_classes, minlength=query_classes.max() + 1)[query_classes]
    r = r - leave_one_out  # leave-one-out: the query is not its own neighbour

    # one row per query: P@1, R-precision, MAP@R, recall@k for every k
    per_query = np.zeros((len(queries), 3 + len(ks)))
    for rows, neighbours, _ in _search(queries, gallery, metric, leave_one_out, chunk_size,
                                       n_neighbours=lambda rows: max(ks[-1], r[rows].max())):
        matches = gallery_classes[neighbours] == query_classes[rows, None]
        per_query[rows] = _query_scores(matches, np.maximum(r[rows], 1), ks)

    scored = r >= 1  # queries with R = 0 are left out of every average
    n = int(scored.sum())
    if n == 0:
        warnings.warn("No query has a same-class item in the gallery (R = 0 for all): "
                      "the retrieval metrics are NaN.", RuntimeWarning, stacklevel=2)
        means = [float("nan")] * per_query.shape[1]
    else:
        means = per_query[scored].mean(axis=0).tolist()
    precision_at_1, r_precision, map_at_r, *recalls = means
    return {
        "precision_at_1": precision_at_1,
        "recall_at_k": dict(zip(ks, recalls)),
        "r_precision": r_precision,
        "map_at_r": map_at_r,
        "num_queries": n,
    }


def nearest(query_embeddings, gallery_embeddings, k, metric="euclidean",
            exclude_self=False, chunk_size=None):
    """The k nearest gallery items of every query, closest first.

    Args:
      query_embeddings: [Q, D]; gallery_embeddings: [G, D].
      k: neighbours per query, 1 <= k <= G (G - 1 with ``exclude_self``).
      metric: one of :data:`METRICS`.
      exclude_self: the queries *are* the gallery (Q == G, query i is
        gallery item i): leave item i out of query i's neighbours (by index,
        so exact duplicates of the query still appear).
      chunk_size: queries per block of distances (None: automatic).

    Returns:
      ``(indices, distances)``: int64 [Q, k] gallery indices and float32
      [Q, k] distances in ``metric``, sorted by distance, ties by index.

    >>> idx, dist = nearest([[0.0], [2.9]], [[0.0], [1.0], [3.0]], k=2)
    >>> idx.tolist(), dist.round(2).tolist()
    ([[0, 1], [2, 1]], [[0.0, 1.0], [0.1, 1.9]])
    """
    queries, gallery, _ = _query_and_gallery(query_embeddings, gallery_embeddings,
                                             "query_embeddings")
    if exclude_self and queries.shape != gallery.shape:
        raise ValueError(
            "`exclude_self=True` means query i is gallery item i, so `query_embeddings` and "
            f"`gallery_embeddings` must have the same shape: got {queries.shape} and "
            f"{gallery.shape}.")
    if not is_int(k):
        raise ValueError(f"`k` must be an integer, got {k!r}.")
    (k,) = _as_ks(k, len(gallery) - bool(exclude_self), name="k")
    check_choice("metric", metric, METRICS)
    chunk_size = _as_chunk_size(chunk_size, len(gallery))

    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for rows, neighbours, block in _search(queries, gallery, metric, bool(exclude_self),
                                           chunk_size, n_neighbours=lambda rows: k):
        indices[rows] = neighbours
        distances[rows] = np.take_along_axis(block, neighbours, axis=1)
    if metric == "euclidean":
        np.sqrt(distances, out=distances)  # blocks hold squared distances
    return indices, distances


# ----------------------------------------------------- the per-query metrics
def _query_scores(matches, r, ks):
    """Per-query metrics from the ranked neighbour lists.

    ``matches[i, j]`` is True when the (j+1)-th neighbour of query i has the
    query's label; every row holds at least max(ks) and R_i >= 1 neighbours.
    Returns a [queries, 3 + len(ks)] array: columns P@1, R-precision, MAP@R,
    then recall@k for each k.
    """
    rank = np.arange(1, matches.shape[1] + 1)          # i = 1, 2, ...
    hits = np.cumsum(matches, axis=1)                   # match_1 + ... + match_i
    precision_at_rank = hits / rank                     # P(i)
    at_r = (np.arange(len(r)), r - 1)                   # the column of rank R
    # Running sums read at rank R add up ranks 1..R in order, so the result
    # does not depend on how many neighbours were fetched beyond R.
    sum_of_precisions = np.cumsum(precision_at_rank * matches, axis=1)[at_r]
    return np.column_stack([
        matches[:, 0],                                          # precision@1
        hits[at_r] / r,                                         # R-precision
        sum_of_precisions / r,                                  # MAP@R
        *[matches[:, :k].any(axis=1) for k in ks],              # recall@k
    ])


# ----------------------------------- exact, chunked nearest-neighbour search
def _search(queries, gallery, metric, leave_one_out, chunk_size, n_neighbours):
    """Yield ``(rows, neighbours, block)`` chunk by chunk.

    ``rows`` is the slice of queries in the chunk, ``block`` their [chunk, G]
    distances (squared for the Euclidean metrics) and ``neighbours`` the
    gallery indices of their ``n_neighbours(rows)`` nearest items, sorted by
    (distance, index).  With ``leave_one_out`` query i is gallery item i and
    is given distance +inf, so it ranks after every other item.
    """
    q, g, q_ids, g_ids = _prepare(queries, gallery, metric)
    g_sq_norms = np.einsum("ij,ij->i", g, g)
    for start in range(0, len(q), chunk_size):
        rows = slice(start, min(start + chunk_size, len(q)))
        block = _distance_block(q[rows], g, g_sq_norms, metric)
        if g_ids is not None:  # exactly equal vectors: distance exactly 0
            block[q_ids[rows, None] == g_ids[None, :]] = 0.0
        if leave_one_out:
            n = block.shape[0]
            block[np.arange(n), np.arange(start, start + n)] = np.inf
        yield rows, _smallest_k(block, n_neighbours(rows)), block


def _prepare(queries, gallery, metric):
    """Vectors ready for the distance blocks, and duplicate ids.

    Euclidean: both sets are shifted by a coordinate-wise median of the
    gallery.  Distances do not change, but the rounding error of the
    expansion in :func:`_distance_block` shrinks with the vectors' norms.
    The shift is made of gallery values, so data on a grid (integers) stay
    on it and their distances, ties included, stay exact.  Cosine:
    rows are L2-normalised like ``tf.math.l2_normalize`` (a zero vector
    stays zero, so its cosine distance to everything is 1).

    ``q_ids``/``g_ids`` give equal rows the same id, or are None when no
    query row equals a gallery row (other than itself, in leave-one-out).
    """
    if queries is gallery:
        n_unique, ids = _row_ids(gallery)
        q_ids = g_ids = ids
        has_duplicates = n_unique < len(gallery)
    else:
        _, ids = _row_ids(np.concatenate([queries, gallery]))
        q_ids, g_ids = ids[:len(queries)], ids[len(queries):]
        has_duplicates = np.intersect1d(q_ids, g_ids).size > 0
    if metric == "cosine":
        queries, gallery = _l2_normalize(queries), _l2_normalize(gallery)
    else:
        centre = np.quantile(gallery, 0.5, axis=0, method="lower")
        queries, gallery = queries - centre, gallery - centre
    if not has_duplicates:
        q_ids = g_ids = None
    return queries, gallery, q_ids, g_ids


def _row_ids(x):
    """Integer ids with ids[i] == ids[j] iff rows i and j are equal.

    Each row is compared as one block of bytes (+ 0.0 turns -0.0 into 0.0;
    rows are finite), ~20x faster than ``np.unique(axis=0)``, which compares
    column by column: that was half the time of scoring 3136-d conv features.
    """
    rows = np.ascontiguousarray(x + np.float32(0.0))
    unique, ids = np.unique(rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel(),
                            return_inverse=True)
    return len(unique), ids.reshape(-1)


def _l2_normalize(x, epsilon=1e-12):
    squared_norms = np.einsum("ij,ij->i", x, x)
    return x / np.sqrt(np.maximum(squared_norms, epsilon))[:, None]


def _distance_block(q, g, g_sq_norms, metric):
    """[len(q), len(g)] float32 distances used for ranking.

    Euclidean metrics: the squared distance by the expansion
    ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b`` (one matrix product),
    clamped at 0 against rounding; ``"euclidean"`` ranks by it too, since
    sqrt keeps the order (and could only merge nearby values into ties).
    Cosine: ``1 - a.b`` on normalised rows, clamped at 0.
    """
    block = q @ g.T
    if metric == "cosine":
        np.subtract(1.0, block, out=block)
    else:
        block *= -2.0
        block += np.einsum("ij,ij->i", q, q)[:, None]
        block += g_sq_norms[None, :]
    return np.maximum(block, 0.0, out=block)


def _smallest_k(block, k):
    """Column indices of the k smallest entries of every row, sorted.

    Order: by value, equal values by column index.  ``np.argpartition``
    alone would pick an arbitrary subset of the values tied with the k-th
    smallest, so the selection is done by hand in O(G) per row:
    every entry below the k-th smallest value, plus the lowest-index
    entries equal to it until there are k.
    """
    n_rows, n_cols = block.shape
    if k >= n_cols:
        columns = np.broadcast_to(np.arange(n_cols), block.shape)
    else:
        kth_value = np.partition(block, k - 1, axis=1)[:, k - 1, None]
        keep = block < kth_value
        tied = block == kth_value
        n_tied_needed = k - keep.sum(axis=1)
        too_many = tied.sum(axis=1) > n_tied_needed
        if too_many.any():  # keep only the first ties, in column order
            sub = tied[too_many]
            sub &= np.cumsum(sub, axis=1) <= n_tied_needed[too_many, None]
            tied[too_many] = sub
        keep |= tied
        columns = np.nonzero(keep)[1].reshape(n_rows, k)  # ascending per row
    values = np.take_along_axis(block, columns, axis=1)
    order = np.argsort(values, axis=1, kind="stable")  # stable: ties stay by index
    return np.take_along_axis(columns, order, axis=1).astype(np.int64)


# ------------------------------------------------- input checks (public edge)
def _query_and_gallery(embeddings, gallery_embeddings, name="embeddings"):
    """(queries, gallery, leave_one_out) as float32 [N, D] / [G, D] arrays."""
    queries = as_points(embeddings, name)
    if gallery_embeddings is None:
        return queries, queries, True
    gallery = as_points(gallery_embeddings, "gallery_embeddings")
    if gallery.shape[1] != queries.shape[1]:
        raise ValueError(
            f"`gallery_embeddings` must have the same dimension as `{name}`: got "
            f"{gallery.shape[1]} and {queries.shape[1]}.")
    return queries, gallery, False


def _classes(labels, gallery_labels, n_queries, n_gallery, leave_one_out):
    """Class ids 0..C-1 of the queries and of the gallery (the queries' own in leave-one-out)."""
    labels = as_label_array(labels, n_queries)
    if leave_one_out:
        if gallery_labels is not None:
            raise ValueError("`gallery_labels` was given without `gallery_embeddings`.")
        gallery_labels = labels
    elif gallery_labels is None:
        raise ValueError("`gallery_labels` is required when `gallery_embeddings` is given.")
    else:
        gallery_labels = as_label_array(gallery_labels, n_gallery, "gallery_labels", "gallery_embeddings")
    _, codes = np.unique(np.concatenate([labels, gallery_labels]), return_inverse=True)
    codes = codes.reshape(-1)
    return codes[:n_queries], codes[n_queries:]


def _as_ks(ks, n_candidates, name="ks"):
    """Sorted unique ints in [1, n_candidates] (the neighbours a query has)."""
    values = [ks] if isinstance(ks, numbers.Number) else list(ks)
    if not values:
        raise ValueError(f"`{name}` must hold at least one k.")
    for k in values:
        if not is_int(k) or k < 1:
            raise ValueError(f"`{name}` must be integers >= 1, got {k!r}.")
        if k > n_candidates:
            raise ValueError(f"`{name}`: k={k} is larger than the {n_candidates} gallery "
                             "items a query can be matched with.")
    return sorted({int(k) for k in values})


def _as_chunk_size(chunk_size, n_gallery):
    """Queries per [chunk, G] block; None: as many as keep it near _BLOCK_ENTRIES floats."""
    if chunk_size is None:
        return max(1, _BLOCK_ENTRIES // n_gallery)
    if not is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be an integer >= 1, got {chunk_size!r}.")
    return int(chunk_size)
