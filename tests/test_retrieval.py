"""Tests for course_lib.retrieval.

The reference below is written straight from the definitions
(docs/definitions.md; Musgrave, Belongie, Lim 2020): for every query, compute the
distance to every candidate in float64, sort the whole row by (distance,
gallery index), and score the ranked labels with plain Python loops.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from course_lib import retrieval
from course_lib.retrieval import evaluate, nearest

METRICS = ("euclidean", "squared_euclidean", "cosine")


# ---------------------------------------------------------------------------
# loop-by-loop reference
# ---------------------------------------------------------------------------
def ref_distance(u, v, metric):
    if metric in ("euclidean", "squared_euclidean"):
        squared = sum((float(a) - float(b)) ** 2 for a, b in zip(u, v))
        return math.sqrt(squared) if metric == "euclidean" else squared
    dot = sum(float(a) * float(b) for a, b in zip(u, v))
    norm_u = math.sqrt(sum(float(a) ** 2 for a in u))
    norm_v = math.sqrt(sum(float(b) ** 2 for b in v))
    return 1.0 - dot / (norm_u * norm_v)


def ref_ranking(queries, gallery, i, metric, leave_one_out):
    """Gallery indices sorted by (distance to query i, index); the query
    itself left out by index in leave-one-out."""
    candidates = [j for j in range(len(gallery)) if not (leave_one_out and j == i)]
    distance = {j: ref_distance(queries[i], gallery[j], metric) for j in candidates}
    return sorted(candidates, key=lambda j: (distance[j], j)), distance


def ref_evaluate(x, y, gx=None, gy=None, ks=(1, 5, 10), metric="euclidean"):
    leave_one_out = gx is None
    if leave_one_out:
        gx, gy = x, y
    y, gy = list(np.asarray(y).reshape(-1)), list(np.asarray(gy).reshape(-1))
    p1 = rp = ap = 0.0
    recall = {k: 0.0 for k in ks}
    n = 0
    for i in range(len(x)):
        ranking, _ = ref_ranking(x, gx, i, metric, leave_one_out)
        match = [gy[j] == y[i] for j in ranking]
        r = sum(match)  # same-class items among the candidates
        if r == 0:
            continue  # a query that cannot be answered is left out
        n += 1
        p1 += match[0]
        for k in ks:
            recall[k] += any(match[:k])
        rp += sum(match[:r]) / r
        hits, total = 0, 0.0
        for rank in range(1, r + 1):
            if match[rank - 1]:
                hits += 1
                total += hits / rank  # P(rank) * match_rank
        ap += total / r
    if n == 0:
        nan = float("nan")
        return {"precision_at_1": nan, "recall_at_k": {k: nan for k in ks},
                "r_precision": nan, "map_at_r": nan, "num_queries": 0}
    return {"precision_at_1": p1 / n, "recall_at_k": {k: v / n for k, v in recall.items()},
            "r_precision": rp / n, "map_at_r": ap / n, "num_queries": n}


def assert_same_metrics(got, want):
    assert set(got) == {"precision_at_1", "recall_at_k", "r_precision", "map_at_r",
                        "num_queries"}
    assert got["num_queries"] == want["num_queries"]
    for name in ("precision_at_1", "r_precision", "map_at_r"):
        assert type(got[name]) is float
        assert got[name] == pytest.approx(want[name], abs=1e-12, nan_ok=True), name
    assert list(got["recall_at_k"]) == sorted(want["recall_at_k"])
    for k, value in want["recall_at_k"].items():
        assert type(got["recall_at_k"][k]) is float
        assert got["recall_at_k"][k] == pytest.approx(value, abs=1e-12, nan_ok=True), k


# ---------------------------------------------------------------------------
# random data against the reference
# ---------------------------------------------------------------------------
def random_set(n, n_classes, dim, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    # a few class centres + noise: the metrics land well between 0 and 1
    centres = rng.normal(size=(n_classes, dim))
    x = centres[labels] + 0.9 * rng.normal(size=(n, dim))
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def loo_data():
    x, y = random_set(45, 4, 5, seed=0)
    y[7] = 99  # a class with a single member: R = 0 in leave-one-out
    return x, y


@pytest.fixture(scope="module")
def gallery_data():
    x, y = random_set(37, 5, 6, seed=1)
    gx, gy = random_set(50, 5, 6, seed=2)
    gy[gy == 4] = 3  # class 4 has queries but no gallery item: R = 0
    return x, y, gx, gy


_reference_cache = {}


def cached_reference(key, *args, **kwargs):
    if key not in _reference_cache:
        _reference_cache[key] = ref_evaluate(*args, **kwargs)
    return _reference_cache[key]


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 45, None])
@pytest.mark.parametrize("metric", METRICS)
def test_leave_one_out_matches_reference(loo_data, metric, chunk_size):
    x, y = loo_data
    ks = (1, 2, 5, 11, 44)  # 44 = N - 1, every other item
    want = cached_reference(("loo", metric), x, y, ks=ks, metric=metric)
    assert want["num_queries"] == 44  # the singleton is left out
    got = evaluate(x, y, ks=ks, metric=metric, chunk_size=chunk_size)
    assert_same_metrics(got, want)
    for name in ("precision_at_1", "r_precision", "map_at_r"):
        assert 0.1 < got[name] < 1.0  # neither trivial nor perfect


@pytest.mark.parametrize("chunk_size", [1, 5, 36, 37, 1000])
@pytest.mark.parametrize("metric", METRICS)
def test_gallery_matches_reference(gallery_data, metric, chunk_size):
    x, y, gx, gy = gallery_data
    ks = (3, 1, 10, 50)  # any order; 50 = G
    want = cached_reference(("gallery", metric), x, y, gx, gy, ks=(1, 3, 10, 50), metric=metric)
    assert 0 < want["num_queries"] < len(x)  # some queries have no class in the gallery
    got = evaluate(x, y, gx, gy, ks=ks, metric=metric, chunk_size=chunk_size)
    assert_same_metrics(got, want)


@pytest.mark.parametrize("metric", METRICS)
def test_nearest_matches_reference(gallery_data, metric):
    x, _, gx, _ = gallery_data
    indices, distances = nearest(x, gx, k=8, metric=metric, chunk_size=6)
    assert indices.dtype == np.int64 and indices.shape == (37, 8)
    assert distances.dtype == np.float32 and distances.shape == (37, 8)
    for i in range(len(x)):
        ranking, distance = ref_ranking(x, gx, i, metric, leave_one_out=False)
        assert indices[i].tolist() == ranking[:8]
        np.testing.assert_allclose(distances[i], [distance[j] for j in ranking[:8]],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_nearest_exclude_self_matches_reference(loo_data, metric):
    x, _ = loo_data
    indices, distances = nearest(x, x, k=44, metric=metric, exclude_self=True, chunk_size=10)
    for i in range(len(x)):
        ranking, distance = ref_ranking(x, x, i, metric, leave_one_out=True)
        assert indices[i].tolist() == ranking
        np.testing.assert_allclose(distances[i], [distance[j] for j in ranking],
                                   rtol=1e-4, atol=1e-5)


def test_large_offset_does_not_spoil_the_ranking():
    """Embeddings far from the origin (e.g. after a ReLU): the expansion
    ||a||^2 + ||b||^2 - 2 a.b cancels catastrophically unless shifted first."""
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(40, 8)) + 3000.0).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    indices, distances = nearest(x, x, k=39, exclude_self=True)
    for i in range(len(x)):
        ranking, distance = ref_ranking(x, x, i, "euclidean", leave_one_out=True)
        assert indices[i].tolist() == ranking
        np.testing.assert_allclose(distances[i], [distance[j] for j in ranking], rtol=1e-3)
    assert_same_metrics(evaluate(x, y, ks=(1, 5)), ref_evaluate(x, y, ks=(1, 5)))


def test_many_same_class_neighbours_against_full_sort():
    """MAP@R with R in the hundreds, against a vectorised full argsort."""
    x, y = random_set(1200, 3, 8, seed=3)  # R ~ 400 per query
    # On a grid of 1/8 every float32 operation is exact: same distances and
    # ties as the float64 check (else near-ties 1e-8 apart could swap).
    x = np.round(x * 8) / 8
    got = evaluate(x, y, ks=(1, 10, 100), chunk_size=257)
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :-1]  # drop the query (last)
    match = y[order] == y[:, None]
    r = match.sum(1)
    rank = np.arange(1, match.shape[1] + 1)
    in_r = rank <= r[:, None]
    precision = np.cumsum(match, 1) / rank
    assert got["precision_at_1"] == pytest.approx(match[:, 0].mean(), abs=1e-12)
    assert got["recall_at_k"][100] == pytest.approx(match[:, :100].any(1).mean(), abs=1e-12)
    assert got["r_precision"] == pytest.approx(((match & in_r).sum(1) / r).mean(), abs=1e-12)
    assert got["map_at_r"] == pytest.approx(((precision * match * in_r).sum(1) / r).mean(),
                                            abs=1e-12)


# ---------------------------------------------------------------------------
# ties, determinism, chunking
# ---------------------------------------------------------------------------
@st.composite
def grid_sets(draw):
    """Small integer-valued sets: many exact ties and duplicates."""
    n = draw(st.integers(2, 12))
    dim = draw(st.integers(1, 3))
    values = draw(st.lists(st.integers(-2, 2), min_size=n * dim, max_size=n * dim))
    labels = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    chunk_size = draw(st.integers(1, n))
    x = np.array(values, dtype=np.float32).reshape(n, dim)
    return x, np.array(labels), chunk_size


@given(grid_sets(), st.sampled_from(["euclidean", "squared_euclidean"]))
def test_ties_are_broken_by_gallery_index(data, metric):
    x, y, chunk_size = data
    n = len(x)
    indices, _ = nearest(x, x, k=n - 1, metric=metric, exclude_self=True, chunk_size=chunk_size)
    for i in range(n):
        assert indices[i].tolist() == ref_ranking(x, x, i, metric, leave_one_out=True)[0]
    # gallery mode: the query set against itself, nothing excluded
    indices, distances = nearest(x, x, k=n, metric=metric, chunk_size=chunk_size)
    for i in range(n):
        assert indices[i].tolist() == ref_ranking(x, x, i, metric, leave_one_out=False)[0]
    assert (distances[:, 0] == 0).all()
    ks = sorted({1, n - 1})
    want = ref_evaluate(x, y, ks=ks, metric=metric)
    if want["num_queries"] == 0:
        with pytest.warns(RuntimeWarning):
            got = evaluate(x, y, ks=ks, metric=metric, chunk_size=chunk_size)
    else:
        got = evaluate(x, y, ks=ks, metric=metric, chunk_size=chunk_size)
    assert_same_metrics(got, want)


def test_chunk_sizes_give_identical_results(loo_data):
    x, y = loo_data
    results = [evaluate(x, y, ks=(1, 3), chunk_size=c) for c in (1, 4, 13, 45, None)]
    assert all(r == results[0] for r in results)
    neighbours = [nearest(x, x, k=9, exclude_self=True, chunk_size=c) for c in (1, 4, 13)]
    for indices, distances in neighbours[1:]:
        np.testing.assert_array_equal(indices, neighbours[0][0])
        # BLAS may round a 1-row product differently from a 13-row one
        np.testing.assert_allclose(distances, neighbours[0][1], rtol=1e-6)


def test_distance_blocks_are_chunk_by_gallery(monkeypatch, loo_data):
    """Never more than chunk_size x G distances at once."""
    x, y = loo_data
    shapes = []
    original = retrieval._distance_block

    def spy(q, g, g_sq_norms, metric):
        block = original(q, g, g_sq_norms, metric)
        shapes.append(block.shape)
        return block

    monkeypatch.setattr(retrieval, "_distance_block", spy)
    evaluate(x, y, chunk_size=10)
    assert shapes == [(10, 45)] * 4 + [(5, 45)]


def test_default_chunk_size_bounds_the_block():
    assert retrieval._as_chunk_size(None, 70_000) * 70_000 <= 2**25
    assert retrieval._as_chunk_size(None, 10**9) == 1


def test_euclidean_and_squared_rank_alike(gallery_data):
    x, y, gx, gy = gallery_data
    assert evaluate(x, y, gx, gy, metric="euclidean") == \
        evaluate(x, y, gx, gy, metric="squared_euclidean")
    i_e, d_e = nearest(x, gx, k=5, metric="euclidean")
    i_s, d_s = nearest(x, gx, k=5, metric="squared_euclidean")
    np.testing.assert_array_equal(i_e, i_s)
    np.testing.assert_allclose(d_e**2, d_s, rtol=1e-5)


def test_smallest_k_with_many_ties():
    block = np.array([[3, 1, 1, 1, 0, 1, 2],
                      [1, 1, 1, 1, 1, 1, 1],
                      [5, 4, 3, 2, 1, 0, 0]], dtype=np.float32)
    got = retrieval._smallest_k(block, 3)
    assert got.tolist() == [[4, 1, 2], [0, 1, 2], [5, 6, 4]]
    assert retrieval._smallest_k(block, 7)[0].tolist() == [4, 1, 2, 3, 5, 6, 0]


# ---------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------
def test_hand_computed_gallery_map_at_r():
    # Gallery on a line: x = 1 2 3 4 5 with labels A B A A B.
    gx = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    gy = ["A", "B", "A", "A", "B"]
    x = np.array([[0.0], [5.5], [2.0]])
    y = ["A", "B", "C"]
    # Query 0 (x=0, A): ranking 1 2 3 4 5 -> labels A B A A B, match 1 0 1 1 0.
    #   R = 3 (three A's). R-precision = (1+0+1)/3 = 2/3.
    #   MAP@R = 1/3 * (P(1)*1 + P(2)*0 + P(3)*1) = 1/3 * (1/1 + 2/3) = 5/9.
    #   (the A at rank 4 is outside the top R and does not count).
    # Query 1 (x=5.5, B): distances 4.5 3.5 2.5 1.5 0.5 -> ranking 5 4 3 2 1,
    #   labels B A A B A, match 1 0 0 1 0. R = 2.
    #   R-precision = (1+0)/2 = 1/2; MAP@R = 1/2 * (1/1 + 0) = 1/2.
    # Query 2 (C): no C in the gallery, R = 0: left out of every average.
    got = evaluate(x, y, gx, gy, ks=(1, 2, 3))
    assert got["num_queries"] == 2
    assert got["precision_at_1"] == pytest.approx(1.0)
    assert got["recall_at_k"] == {1: 1.0, 2: 1.0, 3: 1.0}
    assert got["r_precision"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # 7/12
    assert got["map_at_r"] == pytest.approx((5 / 9 + 1 / 2) / 2)  # 19/36


def test_hand_computed_leave_one_out():
    # x = 0 1 3 4 6 with labels A A B A B (indices 0..4). A: R = 2, B: R = 1.
    x = np.array([0, 1, 3, 4, 6], dtype=np.float32)[:, None]
    y = np.array([0, 0, 1, 0, 1])
    # q0 (0, A): neighbours 1(A, d1) 2(B, d3) 3(A, d4) 4(B, d6): match 1 0 1 0
    #   P@1 = 1, RP = 1/2, MAP@R = 1/2 * (1) = 1/2, first match at rank 1.
    # q1 (1, A): 0(A, d1) 2(B, d2) 3(A, d3) 4(B, d5): same as q0.
    # q2 (3, B): 3(A, d1) 1(A, d2) then 0(A) and 4(B) both at d3: the tie goes
    #   to the lower index 0. match 0 0 0 1 -> P@1 = RP = MAP@R = 0, first match at rank 4.
    # q3 (4, A): 2(B, d1) 4(B, d2) 1(A, d3) 0(A, d4): match 0 0 1 1 -> RP =
    #   MAP@R = 0 (the A's are at ranks 3-4, beyond R = 2), first match at rank 3.
    # q4 (6, B): 3(A, d2) 2(B, d3) 1(A) 0(A): match 0 1 0 0 -> P@1 = RP = MAP@R = 0,
    #   first match at rank 2.
    got = evaluate(x, y, ks=(1, 2, 3, 4))
    assert got["num_queries"] == 5
    assert got["precision_at_1"] == pytest.approx(2 / 5)
    assert got["r_precision"] == pytest.approx((1 / 2 + 1 / 2) / 5)  # 0.2
    assert got["map_at_r"] == pytest.approx((1 / 2 + 1 / 2) / 5)
    # first matches at ranks 1 1 4 3 2
    assert got["recall_at_k"] == pytest.approx({1: 2 / 5, 2: 3 / 5, 3: 4 / 5, 4: 1.0})


def test_map_at_r_rewards_early_matches():
    # One query (x=0, label 1) and its R = 2 same-class items at ranks 1 and 3
    # or at ranks 2 and 3: same R-precision (1/2), different MAP@R.
    gy = np.array([1, 0, 1])
    gx = np.array([[1.0], [2.0], [3.0]])
    early = evaluate([[0.0]], [1], gx, gy, ks=1)
    # match 1 0 (1): MAP@R = 1/2 * (1/1 + 0) = 1/2
    assert (early["r_precision"], early["map_at_r"]) == (0.5, 0.5)
    late = evaluate([[0.0]], [1], gx, gy[[1, 0, 2]], ks=1)
    # match 0 1 (1): MAP@R = 1/2 * (0 + 1/2) = 1/4
    assert (late["r_precision"], late["map_at_r"]) == (0.5, 0.25)


# ---------------------------------------------------------------------------
# special cases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_separated_clusters_score_one(metric):
    rng = np.random.default_rng(4)
    centres = 100.0 * np.eye(6)[:4] + 50.0  # far apart, and in different directions
    y = rng.permutation(np.repeat(np.arange(4), 9))
    x = centres[y] + rng.uniform(-0.5, 0.5, size=(len(y), 6))
    got = evaluate(x, y, ks=(1, 8), metric=metric, chunk_size=5)
    assert got == {"precision_at_1": 1.0, "recall_at_k": {1: 1.0, 8: 1.0},
                   "r_precision": 1.0, "map_at_r": 1.0, "num_queries": 36}
    gy = np.arange(4).repeat(3)
    gx = centres[gy] + rng.uniform(-0.5, 0.5, size=(12, 6))
    got = evaluate(x, y, gx, gy, ks=(1, 3), metric=metric)
    assert got["map_at_r"] == got["r_precision"] == got["precision_at_1"] == 1.0


def test_duplicates_of_the_query_are_neighbours():
    # Items 0, 2 and 3 are the same point. Leave-one-out removes the query by
    # index only: its duplicates stay, at distance exactly 0.
    x = np.array([[1.0, 2.0], [5.0, 5.0], [1.0, 2.0], [1.0, 2.0], [5.0, 6.0]])
    y = np.array([0, 1, 0, 2, 1])
    indices, distances = nearest(x, x, k=3, exclude_self=True)
    assert indices[0].tolist() == [2, 3, 1]
    assert indices[2].tolist() == [0, 3, 1]
    assert indices[3].tolist() == [0, 2, 1]
    assert distances[:, :2][[0, 2, 3]].tolist() == [[0.0, 0.0]] * 3
    # q0: duplicates 2 (label 0) and 3 (label 2) come first: R = 1, match 1 -> 1.
    # q2: 0 (label 0) first -> 1.  q3 (label 2) is alone: left out.
    # q1 (5,5) and q4 (5,6): each other's nearest neighbour, label 1 -> 1.
    got = evaluate(x, y, ks=1)
    assert got["num_queries"] == 4
    assert got["precision_at_1"] == got["map_at_r"] == 1.0


@pytest.mark.parametrize("metric", METRICS)
def test_exact_duplicates_are_at_distance_zero(metric):
    # Large, offset values: the expansion alone would leave rounding noise.
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(20, 16)) * 3 + 1000).astype(np.float32)
    x[11] = x[4]
    indices, distances = nearest(x, x, k=2, metric=metric)
    assert (indices[:, 0] == np.where(np.arange(20) == 11, 4, np.arange(20))).all()
    assert (distances[:, 0] == 0).all()
    assert indices[4].tolist() == [4, 11] and distances[4, 1] == 0
    indices, distances = nearest(x, x, k=1, metric=metric, exclude_self=True)
    assert indices[4, 0] == 11 and indices[11, 0] == 4 and distances[4, 0] == 0


def test_single_member_class_is_left_out():
    # Class 7 has one member: in leave-one-out its R is 0.
    x = np.array([[0.0], [0.1], [5.0], [5.1], [0.05]])
    y = np.array([1, 1, 2, 2, 7])
    got = evaluate(x, y, ks=1)
    # q0 (0): neighbours 4 (d 0.05, label 7), then 1 (d 0.1, label 1): match 0 1.
    #   R = 1: P@1 = RP = MAP@R = 0.  q1 (0.1): 4 (d 0.05) before 0 (d 0.1): also 0.
    # q2, q3: their partner first: 1 each.  q4: R = 0, left out.
    # Averages over the 4 scored queries: 2/4.  (q4 still *is* a neighbour of the others.)
    assert got["num_queries"] == 4
    assert got["precision_at_1"] == got["r_precision"] == got["map_at_r"] == 0.5
    assert got["recall_at_k"] == {1: 0.5}


def test_no_query_can_be_scored_gives_nan():
    with pytest.warns(RuntimeWarning, match="R = 0"):
        got = evaluate([[0.0], [1.0]], [1, 2], [[0.0], [1.0]], [3, 4], ks=1)
    assert got["num_queries"] == 0
    assert math.isnan(got["precision_at_1"]) and math.isnan(got["map_at_r"])
    assert math.isnan(got["recall_at_k"][1]) and math.isnan(got["r_precision"])


def test_cosine_zero_vector_is_at_distance_one():
    indices, distances = nearest([[0.0, 0.0]], [[1.0, 0.0], [0.0, 3.0]], k=2, metric="cosine")
    assert indices.tolist() == [[0, 1]] and distances.tolist() == [[1.0, 1.0]]
    _, distances = nearest([[2.0, 0.0]], [[1.0, 0.0], [0.0, 3.0], [-1.0, 0.0]], k=3,
                           metric="cosine")
    np.testing.assert_allclose(distances, [[0.0, 1.0, 2.0]], atol=1e-6)


def test_nearest_doctest_example():
    indices, distances = nearest([[0.0], [2.9]], [[0.0], [1.0], [3.0]], k=2)
    assert indices.tolist() == [[0, 1], [2, 1]]
    np.testing.assert_allclose(distances, [[0.0, 1.0], [0.1, 1.9]], rtol=1e-5)


class ArrayLike:
    """Anything with ``__array__`` (a tf.Tensor, a torch tensor on CPU...)."""

    def __init__(self, values):
        self.values = np.asarray(values)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_accepts_keras_labels_lists_and_tensors():
    x, y = random_set(30, 3, 4, seed=6)
    want = evaluate(x, y, ks=(1, 5))
    assert evaluate(x.tolist(), y[:, None], ks=[5, 1]) == want
    assert evaluate(x, y, ks=np.array([1, 5])) == want
    assert evaluate(ArrayLike(x), ArrayLike(y[:, None]), ks=(1, 5)) == want
    assert evaluate(x.astype(np.float64), y.astype(str), ks=(1, 5)) == want
    indices, _ = nearest(ArrayLike(x), ArrayLike(x[:3]), k=2)
    assert indices.shape == (30, 2)
    tf = sys.modules.get("tensorflow")  # checked only when loaded: the import takes seconds
    if tf is not None:
        assert evaluate(tf.constant(x), tf.constant(y[:, None]), ks=(1, 5)) == want


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
X = np.zeros((4, 2), dtype=np.float32) + np.arange(4)[:, None]
Y = np.array([0, 0, 1, 1])

BAD_EVALUATE = [
    ("rank-1 embeddings", dict(embeddings=np.arange(4.0), labels=Y), "`embeddings`"),
    ("rank-3 embeddings", dict(embeddings=X[None], labels=Y), "`embeddings`"),
    ("empty embeddings", dict(embeddings=np.zeros((0, 2)), labels=[]), "`embeddings`"),
    ("NaN embedding", dict(embeddings=np.where(X == 3, np.nan, X), labels=Y), "`embeddings`"),
    ("strings", dict(embeddings=[["a", "b"]] * 4, labels=Y), "`embeddings`"),
    ("too few labels", dict(embeddings=X, labels=Y[:3]), "`labels`"),
    ("labels (N, 2)", dict(embeddings=X, labels=np.stack([Y, Y], 1)), "`labels`"),
    ("gallery without labels", dict(embeddings=X, labels=Y, gallery_embeddings=X),
     "`gallery_labels`"),
    ("gallery labels without gallery", dict(embeddings=X, labels=Y, gallery_labels=Y),
     "`gallery_labels`"),
    ("gallery dimension", dict(embeddings=X, labels=Y, gallery_embeddings=np.zeros((4, 3)),
                               gallery_labels=Y), "`gallery_embeddings`"),
    ("gallery rank", dict(embeddings=X, labels=Y, gallery_embeddings=np.zeros(4),
                          gallery_labels=Y), "`gallery_embeddings`"),
    ("gallery labels length", dict(embeddings=X, labels=Y, gallery_embeddings=X,
                                   gallery_labels=Y[:2]), "`gallery_labels`"),
    ("k = 0", dict(embeddings=X, labels=Y, ks=(0, 1)), "`ks`"),
    ("k > N - 1 in leave-one-out", dict(embeddings=X, labels=Y, ks=(1, 4)), "`ks`"),
    ("k > G", dict(embeddings=X, labels=Y, gallery_embeddings=X[:2], gallery_labels=Y[:2],
                   ks=3), "`ks`"),
    ("float k", dict(embeddings=X, labels=Y, ks=(1.5,)), "`ks`"),
    ("no k", dict(embeddings=X, labels=Y, ks=()), "`ks`"),
    ("single item", dict(embeddings=X[:1], labels=Y[:1], ks=1), "`ks`"),
    ("metric", dict(embeddings=X, labels=Y, ks=1, metric="manhattan"), "metric='manhattan'"),
    ("chunk_size", dict(embeddings=X, labels=Y, ks=1, chunk_size=0), "`chunk_size`"),
    ("bool chunk_size", dict(embeddings=X, labels=Y, ks=1, chunk_size=True), "`chunk_size`"),
    ("bool k", dict(embeddings=X, labels=Y, ks=(True,)), "`ks`"),
]


@pytest.mark.parametrize("kwargs, name", [pytest.param(kw, n, id=i) for i, kw, n in BAD_EVALUATE])
def test_evaluate_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        evaluate(**kwargs)


BAD_NEAREST = [
    ("k = 0", dict(query_embeddings=X, gallery_embeddings=X, k=0), "`k`"),
    ("k > G", dict(query_embeddings=X, gallery_embeddings=X, k=5), "`k`"),
    ("k = G with exclude_self", dict(query_embeddings=X, gallery_embeddings=X, k=4,
                                     exclude_self=True), "`k`"),
    ("exclude_self, other shapes", dict(query_embeddings=X[:3], gallery_embeddings=X, k=1,
                                        exclude_self=True), "`exclude_self=True`"),
    ("query rank", dict(query_embeddings=np.arange(3.0), gallery_embeddings=X, k=1),
     "`query_embeddings`"),
    ("gallery rank", dict(query_embeddings=X, gallery_embeddings=X[0], k=1),
     "`gallery_embeddings`"),
    ("dimension", dict(query_embeddings=X, gallery_embeddings=X[:, :1], k=1),
     "`gallery_embeddings`"),
    ("metric", dict(query_embeddings=X, gallery_embeddings=X, k=1, metric="dot"), "metric='dot'"),
    ("list k", dict(query_embeddings=X, gallery_embeddings=X, k=[1, 2]), "`k`"),
    ("float k", dict(query_embeddings=X, gallery_embeddings=X, k=2.0), "`k`"),
    ("chunk_size", dict(query_embeddings=X, gallery_embeddings=X, k=1, chunk_size=2.5),
     "`chunk_size`"),
]


@pytest.mark.parametrize("kwargs, name", [pytest.param(kw, n, id=i) for i, kw, n in BAD_NEAREST])
def test_nearest_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        nearest(**kwargs)


def test_importing_retrieval_does_not_start_tensorflow():
    """The NumPy checks it shares with the losses (course_lib._checks) import TensorFlow lazily."""
    code = "import sys, course_lib.retrieval, course_lib.projection; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# cross-check with pytorch-metric-learning (optional, not installed by default)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_pytorch_metric_learning(loo_data, gallery_data, metric):
    pml_accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    inference = pytest.importorskip("pytorch_metric_learning.utils.inference")
    distances = pytest.importorskip("pytorch_metric_learning.distances")
    torch = pytest.importorskip("torch")
    distance = (distances.LpDistance(normalize_embeddings=False) if metric == "euclidean"
                else distances.CosineSimilarity())
    calculator = pml_accuracy.AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count", device=torch.device("cpu"), knn_func=inference.CustomKNN(distance))
    new_api = "ref_includes_query" in inspect.signature(calculator.get_accuracy).parameters

    def pml(x, y, gx=None, gy=None):
        x, y = torch.tensor(x), torch.tensor(y)
        same = gx is None
        gx, gy = (x, y) if same else (torch.tensor(gx), torch.tensor(gy))
        if new_api:
            return calculator.get_accuracy(x, y, gx, gy, ref_includes_query=same)
        return calculator.get_accuracy(x, gx, y, gy, embeddings_come_from_same_source=same)

    # both sets hold queries with R = 0, which PML also leaves out
    big = random_set(600, 4, 8, seed=8)
    for args in [loo_data, gallery_data, big]:
        want = pml(*args)
        got = evaluate(*args, ks=1, metric=metric)
        # PML's float32 distances round differently: two neighbours 1e-7 apart
        # deep in a ranking may swap, which moves MAP@R by ~1e-8.
        assert got["precision_at_1"] == pytest.approx(want["precision_at_1"], abs=1e-6)
        assert got["r_precision"] == pytest.approx(want["r_precision"], abs=1e-6)
        assert got["map_at_r"] == pytest.approx(want["mean_average_precision_at_r"], abs=1e-6)
