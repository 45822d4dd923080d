"""course_lib.losses (functional API) against the loop reference and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from conftest import all_batches, finite_difference_gradient, make_pk_batch, make_random_batch

from course_lib import losses as L
from course_lib import mining as course_mining

RTOL, ATOL = 1e-4, 1e-5


def softplus(z):
    return math.log1p(math.exp(z))


def value(loss):
    """A scalar float32 tensor -> python float."""
    assert isinstance(loss, tf.Tensor)
    assert loss.dtype == tf.float32
    assert loss.shape == ()
    return float(loss.numpy())


def grad_of(fn, x):
    """(loss value, d loss / d embeddings) with a GradientTape."""
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = fn(xt)
    g = tape.gradient(loss, xt)
    return value(loss), (np.zeros(x.shape) if g is None else g.numpy())


# Each loss as a callable (labels, embeddings) -> loss, for generic tests.
LOSS_CASES = {
    "contrastive": lambda y, x: L.contrastive_loss(y, x),
    "contrastive-cos": lambda y, x: L.contrastive_loss(y, x, margin=0.5, metric="cosine"),
    "triplet-all": lambda y, x: L.triplet_loss(y, x, mining="all"),
    "triplet-hard": lambda y, x: L.triplet_loss(y, x, mining="hard", metric="squared_euclidean"),
    "triplet-semi-hard": lambda y, x: L.triplet_loss(y, x, mining="semi-hard"),
    "triplet-semi-hard-soft-cos": lambda y, x: L.triplet_loss(y, x, metric="cosine", soft=True),
    "npairs": lambda y, x: L.npairs_loss(y, x),
    "angular": lambda y, x: L.angular_loss(y, x),
}
REF_CASES = {
    "contrastive": lambda y, x: ref.contrastive_loss(y, x),
    "contrastive-cos": lambda y, x: ref.contrastive_loss(y, x, margin=0.5, metric="cosine"),
    "triplet-all": lambda y, x: ref.triplet_loss(y, x, mining="all"),
    "triplet-hard": lambda y, x: ref.triplet_loss(y, x, mining="hard", metric="squared_euclidean"),
    "triplet-semi-hard": lambda y, x: ref.triplet_loss(y, x, mining="semi-hard"),
    "triplet-semi-hard-soft-cos": lambda y, x: ref.triplet_loss(y, x, metric="cosine", soft=True),
    "npairs": lambda y, x: ref.npairs_loss(y, x),
    "angular": lambda y, x: ref.angular_loss(y, x),
}
NAMES = list(LOSS_CASES)


# ---------------------------------------------------------------------------
# against the reference on random batches
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("margin", [0.2, 1.0])
@pytest.mark.parametrize("metric", ref.METRICS)
@pytest.mark.parametrize("labels, x", all_batches())
def test_contrastive_matches_reference(labels, x, metric, margin):
    got = value(L.contrastive_loss(labels, x, margin=margin, metric=metric))
    np.testing.assert_allclose(got, ref.contrastive_loss(labels, x, margin, metric), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("margin, soft", [(0.2, False), (1.0, False), (1.0, True)], ids=["m0.2", "m1", "soft"])
@pytest.mark.parametrize("mining", ref.STRATEGIES)
@pytest.mark.parametrize("metric", ref.METRICS)
@pytest.mark.parametrize("labels, x", all_batches())
def test_triplet_matches_reference(labels, x, metric, mining, margin, soft):
    got = value(L.triplet_loss(labels, x, margin=margin, mining=mining, metric=metric, soft=soft))
    expected = ref.triplet_loss(labels, x, margin=margin, mining=mining, metric=metric, soft=soft)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mining", ref.STRATEGIES)
def test_soft_margin_ignores_margin(mining):
    labels, x = make_pk_batch(4, 3, 6, seed=30)
    a = value(L.triplet_loss(labels, x, margin=0.1, mining=mining, soft=True))
    b = value(L.triplet_loss(labels, x, margin=5.0, mining=mining, soft=True))
    hinge = value(L.triplet_loss(labels, x, margin=5.0, mining=mining, soft=False))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert abs(hinge - b) > 1e-3  # the option does switch the loss


@pytest.mark.parametrize("metric", ref.METRICS)
def test_soft_all_averages_over_every_triplet_even_far_ones(metric):
    # softplus(z) > 0 for every z, so with soft=True "mean over triplets with
    # loss > 0" is the mean over *all* valid triplets.  Unnormalised
    # embeddings with squared distances give gaps z of several hundred:
    # softplus(-300) underflows to 0 in float32, and such a triplet must
    # still count in the denominator (it contributes ~0 to the sum).
    labels, x = make_pk_batch(4, 3, 8, seed=1)
    x = 5.0 * x
    got = value(L.triplet_loss(labels, x, mining="all", metric=metric, soft=True))
    expected = ref.triplet_loss(labels, x, mining="all", metric=metric, soft=True)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("l2_reg", [0.0, 0.002, 0.1])
@pytest.mark.parametrize("labels, x", all_batches())
def test_npairs_matches_reference(labels, x, l2_reg):
    got = value(L.npairs_loss(labels, x, l2_reg=l2_reg))
    np.testing.assert_allclose(got, ref.npairs_loss(labels, x, l2_reg), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("scale", [10.0, 30.0])
def test_npairs_large_logits_stay_finite_and_exact(scale):
    # logits of several hundred: a naive exp() overflows float32
    labels, x = make_pk_batch(5, 2, 8, seed=31)
    x = x * scale
    got = value(L.npairs_loss(labels, x))
    np.testing.assert_allclose(got, ref.npairs_loss(labels, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("alpha", [30.0, 45.0, 60.0])
@pytest.mark.parametrize("labels, x", all_batches())
def test_angular_matches_reference(labels, x, alpha):
    got = value(L.angular_loss(labels, x, alpha_degrees=alpha))
    np.testing.assert_allclose(got, ref.angular_loss(labels, x, alpha), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("alpha", [80.0, 89.0])
def test_angular_steep_angle_stays_finite_and_exact(alpha):
    # t = tan^2(89 deg) ~ 3282: exponents of thousands, exp() overflows
    labels, x = make_pk_batch(3, 3, 4, seed=32)
    got, g = grad_of(lambda e: L.angular_loss(labels, e, alpha_degrees=alpha), x)
    np.testing.assert_allclose(got, ref.angular_loss(labels, x, alpha), rtol=RTOL, atol=ATOL)
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------
# gradients against finite differences of the float64 reference
# ---------------------------------------------------------------------------
GRAD_CASES = [
    ("contrastive", "euclidean", {}),
    ("contrastive", "cosine", {"margin": 0.5}),
    ("contrastive", "squared_euclidean", {"margin": 2.0}),
    ("npairs", None, {"l2_reg": 0.1}),
    ("angular", None, {"alpha_degrees": 40.0}),
] + [
    ("triplet", metric, {"mining": mining, "soft": soft})
    for metric in ref.METRICS
    for mining in ref.STRATEGIES
    for soft in (False, True)
]


GRAD_IDS = [f"{n}-{m}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, m, kw in GRAD_CASES]


@pytest.mark.parametrize("name, metric, kwargs", GRAD_CASES, ids=GRAD_IDS)
def test_gradient_matches_finite_differences(name, metric, kwargs):
    labels, x = make_random_batch(9, 3, 3, seed=33)
    x = x.astype(np.float64)
    if metric is not None:
        kwargs = dict(kwargs, metric=metric)
    lib = getattr(L, f"{name}_loss")
    reference = getattr(ref, f"{name}_loss")
    expected = finite_difference_gradient(lambda v: reference(labels, v, **kwargs), x)
    _, got = grad_of(lambda e: lib(labels, e, **kwargs), x)
    assert np.abs(expected).max() > 1e-3  # the case does have a gradient
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=2e-3)


# ---------------------------------------------------------------------------
# small cases computed by hand
# ---------------------------------------------------------------------------
# Points on a line (see test_mining.py): A = 0 and P = 1 in class 0,
# negatives x2 = 0.5, x3 = 1.6, x4 = 3, each alone in its class.
# From A: D(A,P) = 1, negatives at 0.5, 1.6, 3.  From P: 0.5, 0.6, 2.
HAND_X = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [1.6, 0.0], [3.0, 0.0]], np.float32)
HAND_Y = np.array([0, 0, 1, 2, 3])


@pytest.mark.parametrize("mining, margin, soft, expected", [
    # semi-hard: A -> x3: [1 - 1.6 + 1]+ = 0.4 ; P -> x4: [1 - 2 + 1]+ = 0 ; mean 0.2
    ("semi-hard", 1.0, False, 0.2),
    # m = 0.2: A: [1 - 1.6 + 0.2]+ = 0 ; P: [1 - 2 + 0.2]+ = 0
    ("semi-hard", 0.2, False, 0.0),
    # hard: A -> x2: [1 - 0.5 + 1] = 1.5 ; P -> x2: [1 - 0.5 + 1] = 1.5
    ("hard", 1.0, False, 1.5),
    ("hard", 0.2, False, 0.7),
    # all, m = 1: A: 1.5, 0.4, 0 ; P: 1.5, 1.4, 0 -> mean of the 4 active = 4.8 / 4
    ("all", 1.0, False, 1.2),
    # all, m = 0.2: A: 0.7, 0, 0 ; P: 0.7, 0.6, 0 -> 2.0 / 3
    ("all", 0.2, False, 2.0 / 3.0),
    # soft: softplus(D(a,p) - D(a,n)) on the same triplets
    ("semi-hard", 1.0, True, (softplus(1 - 1.6) + softplus(1 - 2)) / 2),
    ("hard", 1.0, True, softplus(0.5)),
    ("all", 1.0, True, sum(softplus(z) for z in [0.5, -0.6, -2.0, 0.5, 0.4, -1.0]) / 6),
])
def test_triplet_by_hand(mining, margin, soft, expected):
    got = value(L.triplet_loss(HAND_Y, HAND_X, margin=margin, mining=mining, soft=soft))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_triplet_by_hand_squared_euclidean():
    # squared distances from A: P 1, negatives 0.25, 2.56, 9 -> x3;
    # from P: A 1, negatives 0.25, 0.36, 4 -> x4.  m = 2:
    # A: [1 - 2.56 + 2] = 0.44 ; P: [1 - 4 + 2]+ = 0 -> 0.22
    got = value(L.triplet_loss(HAND_Y, HAND_X, margin=2.0, mining="semi-hard", metric="squared_euclidean"))
    np.testing.assert_allclose(got, 0.22, rtol=1e-5)


def test_semi_hard_fallback_by_hand():
    # A = (0,0), P = (2,0) in class 0; negatives (1,0) and (1,0.5) are both
    # closer than D(A,P) = 2 to A and to P, so semi-hard falls back to the
    # farthest one, at sqrt(1.25): [2 - sqrt(1.25) + 1]+ = 3 - sqrt(1.25)
    # for both pairs.  Hard mining takes the closest: [2 - 1 + 1] = 2.
    x = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 0.5]], np.float32)
    y = np.array([0, 0, 1, 2])
    got = value(L.triplet_loss(y, x, margin=1.0, mining="semi-hard"))
    np.testing.assert_allclose(got, 3.0 - math.sqrt(1.25), rtol=1e-5)
    np.testing.assert_allclose(value(L.triplet_loss(y, x, margin=1.0, mining="hard")), 2.0, rtol=1e-5)


@pytest.mark.parametrize("metric, margin, expected", [
    # D01 = 0.5 (same class), D02 = 0.8, D12 = sqrt(0.09 + 0.16) = 0.5 (different)
    # (0,1): 0.5 * 0.5^2 = 0.125 ; (0,2): 0.5 * (1 - 0.8)^2 = 0.02 ;
    # (1,2): 0.5 * (1 - 0.5)^2 = 0.125 ; each twice over 6 ordered pairs -> 0.27 / 3
    ("euclidean", 1.0, 0.09),
    # m = 0.7: (0,2) beyond the margin -> 0 ; (1,2): 0.5 * 0.2^2 = 0.02 -> 0.145 / 3
    ("euclidean", 0.7, 0.145 / 3.0),
    # squared: D01 = 0.25, D02 = 0.64, D12 = 0.25
    # 0.5 * 0.0625 + 0.5 * 0.36^2 + 0.5 * 0.75^2 = 0.03125 + 0.0648 + 0.28125
    ("squared_euclidean", 1.0, (0.03125 + 0.0648 + 0.28125) / 3.0),
])
def test_contrastive_by_hand(metric, margin, expected):
    x = np.array([[0.0, 0.0], [0.3, 0.4], [0.0, 0.8]], np.float32)
    y = np.array([1, 1, 0])
    got = value(L.contrastive_loss(y, x, margin=margin, metric=metric))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_contrastive_cosine_by_hand():
    # (1,0) and (0,1) same class: cosine distance 1 -> 0.5 ;
    # (1,0) and (-1,0) different: D = 2 >= m -> 0 ;
    # (0,1) and (-1,0) different: D = 1, m = 1.5 -> 0.5 * 0.25 = 0.125
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-3.0, 0.0]], np.float32)
    y = np.array([0, 0, 1])
    got = value(L.contrastive_loss(y, x, margin=1.5, metric="cosine"))
    np.testing.assert_allclose(got, 2 * (0.5 + 0.0 + 0.125) / 6, rtol=1e-5)


def test_npairs_by_hand():
    # batch order:  0: a0 (1,0) c10 | 1: a1 (0,1) c20 | 2: p0 (2,0) c10 |
    #               3: (5,5) c10, a 3rd occurrence, unused | 4: p1 (1,1) c20 |
    #               5: (3,3) c30, a singleton, unused
    # S = A P^T = [[2, 1], [0, 1]]
    # row 0, target 0: log(e^2 + e^1) - 2 = log(1 + e^-1)
    # row 1, target 1: log(e^0 + e^1) - 1 = log(1 + e^-1)
    # l2: mean ||a||^2 = 1, mean ||p||^2 = (4 + 2) / 2 = 3 -> 0.25 * l2_reg * 4
    x = np.array([[1, 0], [0, 1], [2, 0], [5, 5], [1, 1], [3, 3]], np.float32)
    y = np.array([10, 20, 10, 10, 20, 30])
    expected = math.log1p(math.exp(-1.0)) + 0.1
    np.testing.assert_allclose(value(L.npairs_loss(y, x, l2_reg=0.1)), expected, rtol=1e-5)
    np.testing.assert_allclose(value(L.npairs_loss(y, x, l2_reg=0.0)), math.log1p(math.exp(-1.0)), rtol=1e-5)


@pytest.mark.parametrize("alpha, expected", [
    # x_a = (1,0) [from (2,0)], x_p = (0.6,0.8) [from (3,4)], x_n = (-1,0) [from (-0.5,0)]
    # (x_a + x_p).x_n = -1.6, x_a.x_p = 0.6; the pair (p, a) gives the same.
    # alpha = 30: t = 1/3: 4/3 * -1.6 - 2 * 4/3 * 0.6 = -32/15 - 24/15 = -56/15
    (30.0, math.log1p(math.exp(-56.0 / 15.0))),
    # alpha = 45: t = 1: -6.4 - 2.4 = -8.8
    (45.0, math.log1p(math.exp(-8.8))),
    # alpha = 60: t = 3: 12 * -1.6 - 8 * 0.6 = -24
    (60.0, math.log1p(math.exp(-24.0))),
])
def test_angular_by_hand(alpha, expected):
    x = np.array([[2.0, 0.0], [3.0, 4.0], [-0.5, 0.0]], np.float32)
    y = np.array([0, 0, 1])
    got = value(L.angular_loss(y, x, alpha_degrees=alpha))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-9)


def test_angular_by_hand_two_negatives():
    # unit vectors: x_a = (1,0), x_p = (0,1); negatives (0,-1) and (1,-1)/sqrt(2)
    # alpha = 45 (t = 1), x_a.x_p = 0:  (x_a + x_p).n1 = -1 -> exp(-4);
    # (x_a + x_p).n2 = 0 -> exp(0); same for the pair (p, a).
    x = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, -1.0], [3.0, -3.0]], np.float32)
    y = np.array([0, 0, 1, 2])
    got = value(L.angular_loss(y, x, alpha_degrees=45.0))
    np.testing.assert_allclose(got, math.log(1 + math.exp(-4.0) + 1.0), rtol=1e-5)


# ---------------------------------------------------------------------------
# degenerate batches: finite values (0 where defined) and finite gradients
# ---------------------------------------------------------------------------
DEGENERATE = {
    "no_positive_pair": np.array([0, 1, 2, 3, 4]),
    "single_class": np.array([3, 3, 3, 3]),
    "one_sample": np.array([5]),
    "one_pair_plus_singletons": np.array([1, 2, 1, 3]),
}
# Expected exact zeros (docs/definitions.md, "degenerate batch")
ZERO_WHEN = {
    "triplet": {"no_positive_pair", "single_class", "one_sample"},
    "angular": {"no_positive_pair", "single_class", "one_sample"},
    "npairs": {"no_positive_pair", "single_class", "one_sample", "one_pair_plus_singletons"},
}


def _degenerate_params():
    params = []
    for case, labels in DEGENERATE.items():
        for name in NAMES:
            if name.startswith("contrastive") and len(labels) < 2:
                continue  # contrastive is defined for B >= 2 only
            params.append(pytest.param(name, labels, id=f"{name}-{case}"))
    return params


@pytest.mark.parametrize("name, labels", _degenerate_params())
def test_degenerate_batch_finite_and_matches_definition(name, labels):
    case = next(k for k, v in DEGENERATE.items() if v is labels)
    x = np.random.default_rng(34).normal(size=(len(labels), 3)).astype(np.float32)
    got, g = grad_of(lambda e: LOSS_CASES[name](labels, e), x)
    assert math.isfinite(got) and np.all(np.isfinite(g))
    family = name.split("-")[0]
    if case in ZERO_WHEN.get(family, ()):
        assert got == 0.0
        assert np.all(g == 0.0)
    else:
        np.testing.assert_allclose(got, REF_CASES[name](labels, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("vector", ["exact", "random"])
def test_identical_embeddings_finite(name, vector):
    # every embedding the same: the collapse (docs/definitions.md)
    labels, _ = make_pk_batch(3, 3, 4, seed=35)
    if vector == "exact":
        row = np.array([0.5, -1.0, 2.0, 0.25], np.float32)  # exact squares and sums
    else:
        row = np.random.default_rng(35).normal(size=4).astype(np.float32)
    x = np.tile(row, (len(labels), 1))
    got, g = grad_of(lambda e: LOSS_CASES[name](labels, e), x)
    assert math.isfinite(got) and np.all(np.isfinite(g))
    # the expansion ||a||^2 + ||b||^2 - 2ab leaves ~1e-3 of noise after sqrt
    atol = 1e-5 if vector == "exact" else 5e-3
    np.testing.assert_allclose(got, REF_CASES[name](labels, x), rtol=RTOL, atol=atol)


@pytest.mark.parametrize("mining", ref.STRATEGIES)
@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_collapse_sits_at_the_margin(mining, margin):
    # collapse (docs/definitions.md): every embedding the same -> loss = m (ln 2 when soft)
    labels, _ = make_pk_batch(4, 2, 3, seed=36)
    x = np.ones((len(labels), 3), np.float32)
    np.testing.assert_allclose(value(L.triplet_loss(labels, x, margin=margin, mining=mining)), margin, rtol=1e-5)
    np.testing.assert_allclose(value(L.triplet_loss(labels, x, mining=mining, soft=True)), math.log(2.0), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_duplicate_rows_finite_gradient(name):
    labels, x = make_pk_batch(3, 3, 4, seed=37)
    x[4] = x[0]
    x[7] = x[0]
    x[5] = x[2]
    got, g = grad_of(lambda e: LOSS_CASES[name](labels, e), x)
    assert math.isfinite(got) and np.all(np.isfinite(g))


# ---------------------------------------------------------------------------
# label formats, graph mode, precision
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("variant", ["column", "float", "float_column", "int64_tensor"])
def test_label_formats_agree(name, variant):
    labels, x = make_random_batch(12, 3, 5, seed=38)
    v = {
        "column": labels[:, None],  # what Keras passes
        "float": labels.astype(np.float32),
        "float_column": labels.astype(np.float32)[:, None],
        "int64_tensor": tf.constant(labels, tf.int64),
    }[variant]
    np.testing.assert_allclose(
        value(LOSS_CASES[name](v, x)), value(LOSS_CASES[name](labels, x)), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("name", NAMES)
def test_tf_function_matches_eager(name):
    labels, x = make_random_batch(14, 4, 5, seed=39)
    fn = tf.function(
        LOSS_CASES[name],
        input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)],
    )
    np.testing.assert_allclose(value(fn(labels, x)), value(LOSS_CASES[name](labels, x)), rtol=1e-5, atol=1e-6)
    # the same trace on another batch size, and on a batch with no positive pair
    labels2, x2 = make_pk_batch(3, 2, 5, seed=40)
    np.testing.assert_allclose(value(fn(labels2, x2)), REF_CASES[name](labels2, x2), rtol=RTOL, atol=ATOL)
    labels3 = np.arange(4, dtype=np.int32)
    x3 = x2[:4]
    np.testing.assert_allclose(value(fn(labels3, x3)), REF_CASES[name](labels3, x3), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name, metric, kwargs", GRAD_CASES, ids=GRAD_IDS)
def test_gradient_under_xla_matches_eager(name, metric, kwargs):
    # Keras compiles the train step with XLA on GPU: the loops, and the
    # gradient that semi-hard carries out of its loop, must compile and agree.
    labels, x = make_random_batch(12, 3, 4, seed=43)
    if metric is not None:
        kwargs = dict(kwargs, metric=metric)
    lib = getattr(L, f"{name}_loss")

    def step(e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = lib(labels, e, **kwargs)
        return loss, tape.gradient(loss, e)

    eager_value, eager_grad = step(tf.constant(x))
    xla_value, xla_grad = tf.function(step, jit_compile=True)(tf.constant(x))
    assert np.abs(eager_grad.numpy()).max() > 1e-3
    np.testing.assert_allclose(value(xla_value), value(eager_value), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xla_grad.numpy(), eager_grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_tf_function_gradient_finite_on_degenerate_batch(name):
    fn_grad = tf.function(
        lambda y, e: tf.gradients(LOSS_CASES[name](y, e), e)[0],
        input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)],
    )
    x = np.random.default_rng(41).normal(size=(4, 3)).astype(np.float32)
    for labels in ([0, 1, 2, 3], [2, 2, 2, 2]):
        g = fn_grad(np.array(labels, np.int32), x)
        assert g is None or np.all(np.isfinite(g.numpy()))


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_input_computed_in_float32(name, dtype):
    labels, x = make_pk_batch(4, 3, 6, seed=42)
    x_low = tf.cast(tf.constant(x), dtype)
    got = LOSS_CASES[name](labels, x_low)
    assert got.dtype == tf.float32
    # exactly the float32 computation on the rounded input ...
    same_input = LOSS_CASES[name](labels, tf.cast(x_low, tf.float32))
    np.testing.assert_allclose(value(got), value(same_input), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["contrastive", "contrastive-cos", "triplet-hard", "npairs", "angular"])
def test_float16_input_close_to_float32_input(name):
    # ... and close to the full-precision result for losses that are
    # continuous in the embeddings (mining choices can flip under rounding)
    labels, x = make_pk_batch(4, 3, 6, seed=43)
    got = value(LOSS_CASES[name](labels, tf.constant(x, tf.float16)))
    np.testing.assert_allclose(got, value(LOSS_CASES[name](labels, x)), rtol=5e-3, atol=1e-3)


def test_float64_input_gives_float32():
    labels, x = make_pk_batch(3, 3, 4, seed=44)
    for name in NAMES:
        got = LOSS_CASES[name](labels, x.astype(np.float64))
        assert got.dtype == tf.float32


# ---------------------------------------------------------------------------
# bad input: ValueError / TypeError naming the argument
# ---------------------------------------------------------------------------
ALL_FUNCS = {
    "contrastive": L.contrastive_loss,
    "triplet": L.triplet_loss,
    "npairs": L.npairs_loss,
    "angular": L.angular_loss,
    "supcon": L.supcon_loss,
    "nt_xent": L.nt_xent_loss,
    "multi_similarity": L.multi_similarity_loss,
}


@pytest.mark.parametrize("fname", list(ALL_FUNCS))
def test_length_mismatch(fname):
    _, x = make_pk_batch(2, 3, 4)
    with pytest.raises((ValueError, TypeError), match="labels|embeddings"):
        ALL_FUNCS[fname](np.array([0, 1, 0, 1]), x)


@pytest.mark.parametrize("fname", list(ALL_FUNCS))
@pytest.mark.parametrize("shape", [(6,), (6, 2, 2)])
def test_embeddings_not_rank_2(fname, shape):
    with pytest.raises((ValueError, TypeError), match="embeddings"):
        ALL_FUNCS[fname](np.array([0, 0, 1, 1, 2, 2]), np.ones(shape, np.float32))


@pytest.mark.parametrize("fname", list(ALL_FUNCS))
def test_labels_rank_2_wrong_second_dim(fname):
    _, x = make_pk_batch(2, 3, 4)
    with pytest.raises((ValueError, TypeError), match="labels"):
        ALL_FUNCS[fname](np.zeros((6, 2), np.int32), x)


@pytest.mark.parametrize("kwargs, word", [
    ({"mining": "hardest"}, "mining"),
    ({"mining": "semi_hard"}, "mining"),
    ({"metric": "manhattan"}, "metric"),
    ({"margin": 0.0}, "margin"),
    ({"margin": -0.5}, "margin"),
])
def test_triplet_bad_options(kwargs, word):
    labels, x = make_pk_batch(2, 2, 3)
    with pytest.raises((ValueError, TypeError), match=word):
        L.triplet_loss(labels, x, **kwargs)


@pytest.mark.parametrize("kwargs, word", [
    ({"metric": "dot"}, "metric"),
    ({"margin": 0.0}, "margin"),
    ({"margin": -1.0}, "margin"),
])
def test_contrastive_bad_options(kwargs, word):
    labels, x = make_pk_batch(2, 2, 3)
    with pytest.raises((ValueError, TypeError), match=word):
        L.contrastive_loss(labels, x, **kwargs)


@pytest.mark.parametrize("alpha", [0.0, 90.0, -10.0, 120.0])
def test_angular_alpha_out_of_range(alpha):
    labels, x = make_pk_batch(2, 2, 3)
    with pytest.raises((ValueError, TypeError), match="alpha"):
        L.angular_loss(labels, x, alpha_degrees=alpha)


@pytest.mark.parametrize("fname, kwargs, error", [
    ("supcon", {"temperature": 0.0}, ValueError),
    ("supcon", {"temperature": -0.1}, ValueError),
    ("supcon", {"temperature": "0.1"}, TypeError),
    ("nt_xent", {"temperature": 0.0}, ValueError),
    ("nt_xent", {"temperature": True}, TypeError),
    ("multi_similarity", {"alpha": 0.0}, ValueError),
    ("multi_similarity", {"beta": -1.0}, ValueError),
    ("multi_similarity", {"epsilon": -0.01}, ValueError),
    ("multi_similarity", {"base": None}, TypeError),
])
def test_similarity_losses_bad_options_name_the_argument(fname, kwargs, error):
    labels, x = make_pk_batch(2, 2, 3)
    (word,) = kwargs
    with pytest.raises(error, match=word):
        ALL_FUNCS[fname](labels, x, **kwargs)


def test_similarity_losses_accept_zero_epsilon_and_any_base():
    labels, x = make_pk_batch(3, 2, 4, seed=60)
    for options in ({"epsilon": 0.0}, {"base": -0.5}, {"base": 2.0}):
        assert math.isfinite(value(L.multi_similarity_loss(labels, x, **options)))


SIMILARITY = {"supcon": L.supcon_loss, "nt_xent": L.nt_xent_loss, "multi_similarity": L.multi_similarity_loss}


@pytest.mark.parametrize("fname", list(SIMILARITY))
@pytest.mark.parametrize("case", ["zero-rows", "duplicates", "single-class", "one-sample", "no-positive"])
@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_similarity_losses_finite_on_degenerate_batches(fname, case, mode):
    labels, x = make_pk_batch(3, 2, 4, seed=61)
    if case == "zero-rows":
        x[[0, 3]] = 0.0  # L2-normalising an all-zero row must not divide by zero
    elif case == "duplicates":
        x[1] = x[0] = x[4]
    elif case == "single-class":
        labels = np.zeros_like(labels)
    elif case == "one-sample":
        labels, x = labels[:1], x[:1]
    else:
        labels = np.arange(len(labels), dtype=np.int32)

    def step(e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = SIMILARITY[fname](labels, e, temperature=0.05) if fname != "multi_similarity" else \
                SIMILARITY[fname](labels, e)
        return loss, tape.gradient(loss, e)

    got, g = (tf.function(step, jit_compile=True) if mode == "xla" else step)(tf.constant(x))
    assert math.isfinite(value(got)) and np.all(np.isfinite(g.numpy()))
    if case in ("one-sample", "no-positive") or (case == "single-class" and fname != "supcon"):
        assert value(got) == 0.0 and np.all(g.numpy() == 0.0)  # no positive pair, or no negative


def test_supcon_single_class_keeps_the_positives_in_the_denominator():
    # SupCon's denominator runs over every k != a, positives included: one
    # class of K points all at the same place gives l_a = log(K - 1), not 0.
    labels, x = np.zeros(4, np.int32), np.tile([[1.0, 2.0]], (4, 1)).astype(np.float32)
    np.testing.assert_allclose(value(L.supcon_loss(labels, x)), math.log(3.0), rtol=1e-6)


def test_npairs_negative_l2_reg():
    labels, x = make_pk_batch(2, 2, 3)
    with pytest.raises((ValueError, TypeError), match="l2_reg"):
        L.npairs_loss(labels, x, l2_reg=-0.01)


# ---------------------------------------------------------------------------
# MAX_TRIPLET_ELEMENTS bounds the "all" miner (test_mining.py), not the losses
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_budget_does_not_limit_the_losses(name, monkeypatch):
    # every loss is O(B^2) memory, batch-all and angular included: the limit
    # on enumerated triplets is only for mine_triplets(strategy="all")
    labels, x = make_pk_batch(4, 3, 4, seed=45)
    monkeypatch.setattr(course_mining, "MAX_TRIPLET_ELEMENTS", 1)
    np.testing.assert_allclose(value(LOSS_CASES[name](labels, x)), REF_CASES[name](labels, x), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------
# "random": the loss over the triplets the miner drew (same batch, same draw)
# ---------------------------------------------------------------------------
def drawn(labels, x, metric="euclidean"):
    """The random triplets the loss draws from this batch, as a list of (a, p, n)."""
    return list(zip(*(t.numpy().tolist() for t in course_mining.mine_triplets(labels, x, "random", metric))))


@pytest.mark.parametrize("margin, soft", [(0.2, False), (1.0, False), (1.0, True)], ids=["m0.2", "m1", "soft"])
@pytest.mark.parametrize("metric", ref.METRICS)
@pytest.mark.parametrize("labels, x", all_batches())
def test_random_matches_reference_on_its_own_triplets(labels, x, metric, margin, soft):
    triplets = drawn(labels, x, metric)
    assert len(triplets) == len(ref.random_candidates(labels))
    got = L.triplet_loss_and_statistics(labels, x, margin=margin, mining="random", metric=metric, soft=soft)
    expected = ref.triplet_loss_of_triplets(labels, x, triplets, margin, metric, soft)
    np.testing.assert_allclose(value(got.loss), expected, rtol=RTOL, atol=ATOL)
    active = [ref.triplet_loss_of_triplets(labels, x, [t], margin, metric, soft=False) > 0 if not soft else
              ref.distance(x[t[0]], x[t[1]], metric) > ref.distance(x[t[0]], x[t[2]], metric) for t in triplets]
    np.testing.assert_allclose(value(got.active_fraction), np.mean(active) if active else 0.0, atol=1e-6)


def test_random_averages_easy_triplets_too():
    # unlike batch-all (mean over the active ones), easy random triplets count as 0 in the mean
    labels, x = make_pk_batch(4, 4, 6, seed=60)
    stats = L.triplet_loss_and_statistics(labels, x, margin=0.5, mining="random")
    hinges = [ref.triplet_loss_of_triplets(labels, x, [t], 0.5) for t in drawn(labels, x)]
    assert 0 < value(stats.active_fraction) < 1  # this batch has both kinds
    np.testing.assert_allclose(value(stats.loss), np.mean(hinges), rtol=RTOL)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("metric", ref.METRICS)
def test_random_gradient_matches_finite_differences(metric, soft):
    labels, x = make_random_batch(9, 3, 3, seed=33)
    triplets = drawn(labels, x, metric)  # held fixed: the draw is not differentiated
    expected = finite_difference_gradient(
        lambda v: ref.triplet_loss_of_triplets(labels, v, triplets, 1.0, metric, soft), x.astype(np.float64))
    _, got = grad_of(lambda e: L.triplet_loss(labels, e, margin=1.0, mining="random", metric=metric, soft=soft), x)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=2e-3)


@pytest.mark.parametrize("jit", [False, True], ids=["tf.function", "xla"])
def test_random_loss_and_gradient_in_graph_and_xla(jit):
    from course_lib.distances import pairwise_distances

    labels, x = make_random_batch(12, 3, 4, seed=43)

    def step(y, e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = L.triplet_loss(y, e, margin=1.0, mining="random")
        d = pairwise_distances(e)  # the same distances, the same draw, as inside the loss
        a, p, n, valid = course_mining.over_mined_triplets(
            y, d, "random", lambda t, v, _: (*t, v), (0, 0, 0, False))
        return loss, tape.gradient(loss, e), a, p, n, valid

    loss, grad, a, p, n, valid = tf.function(step, jit_compile=jit)(tf.constant(labels), tf.constant(x))
    triplets = [t for t, v in zip(zip(a.numpy(), p.numpy(), n.numpy()), valid.numpy()) if v]
    assert len(triplets) == len(ref.random_candidates(labels))
    np.testing.assert_allclose(value(loss), ref.triplet_loss_of_triplets(labels, x, triplets, 1.0), rtol=RTOL)
    expected = finite_difference_gradient(
        lambda v: ref.triplet_loss_of_triplets(labels, v, triplets, 1.0), x.astype(np.float64))
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-2, atol=2e-3)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [2, 2, 2, 2], [5]], ids=["no_positive", "single_class", "one"])
@pytest.mark.parametrize("jit", [None, False, True], ids=["eager", "tf.function", "xla"])
def test_random_degenerate_batch_is_zero_with_finite_gradient(labels, jit):
    x = np.random.default_rng(41).normal(size=(len(labels), 3)).astype(np.float32)

    def step(y, e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = L.triplet_loss(y, e, mining="random")
        return loss, tape.gradient(loss, e)

    run = step if jit is None else tf.function(step, jit_compile=jit)
    loss, grad = run(tf.constant(labels, tf.int32), tf.constant(x))
    assert value(loss) == 0.0
    assert grad is None or np.all(np.isfinite(grad.numpy()))


def test_random_collapse_sits_at_the_margin_and_column_labels_agree():
    labels, x = make_pk_batch(4, 2, 3, seed=36)
    same = np.ones((len(labels), 3), np.float32)
    np.testing.assert_allclose(value(L.triplet_loss(labels, same, margin=0.7, mining="random")), 0.7, rtol=1e-5)
    np.testing.assert_allclose(value(L.triplet_loss(labels, same, mining="random", soft=True)), math.log(2.0),
                               rtol=1e-5)
    column = value(L.triplet_loss(labels[:, None], x, mining="random"))
    assert column == value(L.triplet_loss(labels, x, mining="random"))


# ---------------------------------------------------------------------------
# batch-all and angular a block of anchors at a time
# ---------------------------------------------------------------------------
BLOCKED_CASES = [
    ("triplet", {"mining": "all"}), ("triplet", {"mining": "all", "soft": True}),
    ("triplet", {"mining": "all", "metric": "cosine"}), ("angular", {"alpha_degrees": 40.0}),
]


@pytest.mark.parametrize("mode", ["eager", "graph-unknown-shape", "xla"])
@pytest.mark.parametrize("name, kwargs", BLOCKED_CASES, ids=[f"{n}-{kw}" for n, kw in BLOCKED_CASES])
def test_blocks_of_anchors_match_reference(monkeypatch, name, kwargs, mode):
    # 14 anchors, 50 // 14 = 3 rows per block: 5 blocks, the last one padded
    # (unbalanced labels: singletons and anchors without a positive included).
    monkeypatch.setattr(L, "BLOCK_VALUES", 50)
    labels, x = make_random_batch(14, 3, 4, seed=61)
    lib, reference = getattr(L, f"{name}_loss"), getattr(ref, f"{name}_loss")

    def step(y, e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = lib(y, e, **kwargs)
        return loss, tape.gradient(loss, e)

    if mode == "graph-unknown-shape":
        spec = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, None], tf.float32)]
        step = tf.function(step, input_signature=spec)
    elif mode == "xla":
        step = tf.function(step, jit_compile=True)
    got, g = step(tf.constant(labels), tf.constant(x))
    expected = finite_difference_gradient(lambda v: reference(labels, v, **kwargs), x.astype(np.float64))
    np.testing.assert_allclose(value(got), reference(labels, x, **kwargs), rtol=RTOL, atol=ATOL)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-2, atol=2e-3)
