"""Property-based tests (hypothesis) for distances, miners and losses.

Batches come in two kinds:
  * "gaussian": continuous random embeddings from a drawn seed (tie-free);
  * "grid": small integers, so that duplicates, ties and exact zeros are
    common, and every Euclidean quantity is computed exactly in float32.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as ref

from course_lib import losses as L
from course_lib.distances import pairwise_distances
from course_lib.mining import mine_triplets, mine_triplets_from_distances


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------
@st.composite
def batches(draw, kind=None, min_size=1, max_size=10, min_dim=1):
    b = draw(st.integers(min_size, max_size))
    n_classes = draw(st.integers(1, 4))
    labels = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=b, max_size=b)), np.int32)
    dim = draw(st.integers(min_dim, 4))
    kind = kind or draw(st.sampled_from(["gaussian", "grid"]))
    if kind == "gaussian":
        seed = draw(st.integers(0, 2**32 - 1))
        scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
        x = np.random.default_rng(seed).normal(size=(b, dim)) * scale
    else:
        x = draw(hnp.arrays(np.int8, (b, dim), elements=st.integers(-2, 2))).astype(np.float32)
        x[np.all(x == 0, axis=1), 0] = 1.0  # cosine / angular need non-zero rows
    return labels, x.astype(np.float32)


@st.composite
def loss_configs(draw, family, metrics=ref.METRICS):
    """(family, kwargs) for one of the losses, options drawn."""
    if family == "contrastive":
        return family, {"metric": draw(st.sampled_from(metrics)), "margin": draw(st.sampled_from([0.2, 1.0, 2.0]))}
    if family == "triplet":
        return family, {
            "metric": draw(st.sampled_from(metrics)),
            "mining": draw(st.sampled_from(ref.STRATEGIES)),
            "margin": draw(st.sampled_from([0.2, 1.0])),
            "soft": draw(st.booleans()),
        }
    if family == "npairs":
        return family, {"l2_reg": draw(st.sampled_from([0.0, 0.002, 0.5]))}
    return family, {"alpha_degrees": draw(st.sampled_from([20.0, 45.0, 70.0]))}


FUNCS = {
    "contrastive": L.contrastive_loss,
    "triplet": L.triplet_loss,
    "npairs": L.npairs_loss,
    "angular": L.angular_loss,
}
FAMILIES = list(FUNCS)


def loss_of(config, labels, x):
    family, kwargs = config
    if family == "contrastive" and len(labels) < 2:
        return None  # defined for B >= 2 only
    return float(FUNCS[family](labels, x, **kwargs).numpy())


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@given(data=st.data())
def test_loss_non_negative_finite_with_finite_gradient(family, data):
    config = data.draw(loss_configs(family))
    labels, x = data.draw(batches())
    if family == "contrastive" and len(labels) < 2:
        return
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = FUNCS[family](labels, xt, **config[1])
    g = tape.gradient(loss, xt)
    assert loss.dtype == tf.float32 and loss.shape == ()
    assert np.isfinite(loss.numpy()) and loss.numpy() >= 0.0
    assert g is None or np.all(np.isfinite(g.numpy()))


@pytest.mark.parametrize("family", ["contrastive", "triplet", "angular"])
@given(data=st.data())
def test_loss_invariant_to_permuting_the_batch(family, data):
    kind = data.draw(st.sampled_from(["gaussian", "grid"]))
    # On grid data (ties everywhere) only Euclidean distances are exact:
    # cosine rounding could flip which of two tied negatives is "farther".
    # In one dimension every cosine distance is 0 or 2: ties again.
    labels, x = data.draw(batches(kind=kind, min_dim=2))
    metrics = ref.METRICS if kind == "gaussian" else ("euclidean", "squared_euclidean")
    config = data.draw(loss_configs(family, metrics=metrics))
    perm = np.array(data.draw(st.permutations(range(len(labels)))), dtype=np.int64)
    before = loss_of(config, labels, x)
    if before is None:
        return
    after = loss_of(config, labels[perm], x[perm])
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@given(data=st.data())
def test_loss_invariant_to_renaming_classes(family, data):
    # only equality of labels matters: any injective renaming, int or float
    config = data.draw(loss_configs(family))
    labels, x = data.draw(batches())
    if family == "contrastive" and len(labels) < 2:
        return
    renamed = (labels.astype(np.float32) * -3.0 + 11.0)[:, None]  # (B, 1) floats
    a = loss_of(config, labels, x)
    b = loss_of(config, renamed, x)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family", ["contrastive", "triplet"])
@given(data=st.data())
def test_euclidean_losses_invariant_to_translation_exact_grid(family, data):
    # integer coordinates: every squared distance is exact in float32, so the
    # loss must not move at all when the whole batch is shifted.
    config = data.draw(loss_configs(family, metrics=("euclidean", "squared_euclidean")))
    labels, x = data.draw(batches(kind="grid", min_size=2))
    shift = np.array(data.draw(st.lists(st.integers(-3, 3), min_size=x.shape[1], max_size=x.shape[1])), np.float32)
    np.testing.assert_allclose(loss_of(config, labels, x + shift), loss_of(config, labels, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", ["contrastive", "triplet"])
@given(data=st.data())
def test_euclidean_losses_invariant_to_translation(family, data):
    config = data.draw(loss_configs(family, metrics=("euclidean", "squared_euclidean")))
    labels, x = data.draw(batches(kind="gaussian", min_size=2))
    shift = np.array(data.draw(st.lists(st.floats(-2.0, 2.0), min_size=x.shape[1], max_size=x.shape[1])), np.float32)
    np.testing.assert_allclose(loss_of(config, labels, x + shift), loss_of(config, labels, x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("family", ["contrastive", "triplet", "angular"])
@given(data=st.data())
def test_cosine_losses_invariant_to_rescaling_each_embedding(family, data):
    config = data.draw(loss_configs(family, metrics=("cosine",)))
    # dim >= 2: in one dimension every cosine distance is a tie (0 or 2)
    labels, x = data.draw(batches(kind="gaussian", min_size=2, min_dim=2))
    scales = np.array(data.draw(st.lists(st.floats(0.25, 4.0), min_size=len(x), max_size=len(x))), np.float32)
    np.testing.assert_allclose(
        loss_of(config, labels, x * scales[:, None]), loss_of(config, labels, x), rtol=1e-4, atol=1e-5
    )


@given(data=st.data())
def test_triplet_loss_matches_reference_on_random_batches(data):
    config = data.draw(loss_configs("triplet"))
    labels, x = data.draw(batches(kind="gaussian"))
    np.testing.assert_allclose(
        loss_of(config, labels, x), ref.triplet_loss(labels, x, **config[1]), rtol=1e-4, atol=1e-5
    )


# ---------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------
finite_rows = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=8),
    elements=st.floats(-10.0, 10.0, width=32),
)


@pytest.mark.parametrize("metric", ref.METRICS)
@given(x=finite_rows)
def test_pairwise_symmetric_zero_diagonal_non_negative(metric, x):
    if metric == "cosine":
        x = x.copy()
        x[np.all(np.abs(x) < 1e-3, axis=1), 0] = 1.0  # keep the angle defined
    d = pairwise_distances(x, metric=metric).numpy()
    assert d.shape == (len(x), len(x)) and d.dtype == np.float32
    assert np.all(np.isfinite(d))
    assert np.all(np.diag(d) == 0.0)
    assert np.all(d >= 0.0)
    if metric == "cosine":
        assert np.all(d <= 2.0 + 1e-6)
    scale = 1.0 + float(np.max(np.sum(x.astype(np.float64) ** 2, axis=1)))
    # the expansion ||a||^2 + ||b||^2 - 2ab is accurate to ~eps * ||x||^2
    atol = {"squared_euclidean": 1e-6 * scale, "euclidean": 1e-3 * np.sqrt(scale), "cosine": 1e-5}[metric]
    np.testing.assert_allclose(d, d.T, atol=atol)
    np.testing.assert_allclose(d, ref.pairwise_distances(x, metric), rtol=1e-4, atol=atol)


# ---------------------------------------------------------------------------
# miners: check each mined triplet against the definition (ties allowed)
# ---------------------------------------------------------------------------
@st.composite
def labelled_distance_matrices(draw):
    b = draw(st.integers(1, 9))
    labels = np.array(draw(st.lists(st.integers(0, 3), min_size=b, max_size=b)))
    upper = draw(hnp.arrays(np.int8, (b, b), elements=st.integers(0, 4))).astype(np.float32)
    d = np.triu(upper, 1)
    return labels, d + d.T  # symmetric, zero diagonal, many ties


@pytest.mark.parametrize("strategy", ref.STRATEGIES)
@given(case=labelled_distance_matrices())
def test_mined_triplets_satisfy_definition(strategy, case):
    labels, d = case
    t = mine_triplets_from_distances(labels, d, strategy=strategy)
    got = list(zip(*(v.numpy().tolist() for v in t)))
    expected = ref.mine_triplets_from_distances(labels, d, strategy)
    # same anchors / pairs, in the same order; p (hard) and n may differ
    # from the reference's only among tied distances
    key = (lambda t: t[0]) if strategy == "hard" else (lambda t: t[:2])
    assert [key(t) for t in got] == [key(t) for t in expected]
    for (a, p, n), (_, p_ref, n_ref) in zip(got, expected):
        assert labels[a] == labels[p] and a != p and labels[a] != labels[n]
        if strategy == "all":
            assert n == n_ref
        elif strategy == "hard":
            assert d[a, p] == d[a, p_ref]  # a farthest positive
            assert d[a, n] == d[a, n_ref]  # a closest negative
        else:
            assert d[a, n] == d[a, n_ref]  # the semi-hard (or fallback) distance


@given(case=labelled_distance_matrices())
def test_random_triplets_satisfy_definition(case):
    # "random": exactly one valid (a, p, n) per anchor that has a positive and a negative, in anchor order
    labels, d = case
    got = list(zip(*(v.numpy().tolist() for v in mine_triplets_from_distances(labels, d, strategy="random"))))
    candidates = ref.random_candidates(labels)
    assert [a for a, _, _ in got] == sorted(candidates)
    assert all(p in candidates[a][0] and n in candidates[a][1] for a, p, n in got)


@given(case=batches(), margin=st.sampled_from([0.2, 1.0]), soft=st.booleans())
def test_random_loss_is_the_mean_hinge_of_its_draw(case, margin, soft):
    labels, x = case
    drawn = list(zip(*(v.numpy().tolist() for v in mine_triplets(labels, x, strategy="random"))))
    got = float(L.triplet_loss(labels, x, margin=margin, mining="random", soft=soft).numpy())
    assert math.isfinite(got)
    np.testing.assert_allclose(got, ref.triplet_loss_of_triplets(labels, x, drawn, margin, soft=soft),
                               rtol=1e-4, atol=1e-5)
