"""SupCon, NT-Xent and multi-similarity: course_lib.losses against loop-by-loop NumPy references.

The three references below are written straight from the library contract
(issue 13, also in ``docs/definitions.md``), one Python loop per sum, in
float64, with nothing shared with ``course_lib``:

* embeddings are L2-normalised first; an all-zero row stays zero (its
  cosine similarity with everything, itself included, is 0);
* s_ij = u_i . u_j; P(a) = {p != a : y_p = y_a}; N(a) = {n : y_n != y_a};
* every log of a sum of exponentials is computed as max + log(sum exp(z - max)).

Then: random batches (seeds, sizes, numbers of classes, int/float labels,
(B,) and (B, 1) labels, option values), small cases worked out by hand,
degenerate batches, gradients (finite, and equal to finite differences of
the reference), eager vs tf.function vs XLA, the Keras classes (config,
Keras serialisation, a compiled model saved and loaded), bad options, and
hypothesis properties (scale, permutation and relabelling invariance).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from conftest import finite_difference_gradient, make_clustered_batch

from course_lib import losses as L

RTOL, ATOL = 1e-4, 1e-5


# ---------------------------------------------------------------------------
# references (float64, explicit loops)
# ---------------------------------------------------------------------------
def _unit_rows(embeddings):
    """u_i = x_i / ||x_i||, and u_i = 0 when x_i = 0 (finite, no NaN)."""
    x = np.asarray(embeddings, dtype=np.float64)
    units = []
    for row in x:
        norm = math.sqrt(sum(float(v) * float(v) for v in row))
        units.append([float(v) / norm for v in row] if norm > 0.0 else [0.0] * len(row))
    return units


def _similarity(units, i, j):
    return sum(a * b for a, b in zip(units[i], units[j]))


def _log_sum_exp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _labels(labels):
    return np.asarray(labels).reshape(-1).tolist()  # (B,) or (B, 1)


def ref_supcon(labels, embeddings, temperature=0.1):
    """Khosla et al. 2020, L_out: mean over anchors with a positive of
    -(1/|P(a)|) sum_p [s_ap/t - log sum_{k != a} exp(s_ak/t)]; 0 when none."""
    y, u = _labels(labels), _unit_rows(embeddings)
    b = len(y)
    per_anchor = []
    for a in range(b):
        positives = [p for p in range(b) if p != a and y[p] == y[a]]
        if not positives:
            continue
        log_denominator = _log_sum_exp([_similarity(u, a, k) / temperature for k in range(b) if k != a])
        total = 0.0
        for p in positives:
            total += _similarity(u, a, p) / temperature - log_denominator
        per_anchor.append(-total / len(positives))
    return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0


def ref_nt_xent(labels, embeddings, temperature=0.1):
    """Mean over ordered positive pairs (a, p) of
    -log(exp(s_ap/t) / (exp(s_ap/t) + sum_{n in N(a)} exp(s_an/t))); 0 when none."""
    y, u = _labels(labels), _unit_rows(embeddings)
    b = len(y)
    per_pair = []
    for a in range(b):
        for p in range(b):
            if p == a or y[p] != y[a]:
                continue
            logits = [_similarity(u, a, p) / temperature]
            for n in range(b):
                if y[n] != y[a]:
                    logits.append(_similarity(u, a, n) / temperature)
            per_pair.append(_log_sum_exp(logits) - logits[0])
    return sum(per_pair) / len(per_pair) if per_pair else 0.0


def _log1p_sum_exp(values):
    """log(1 + sum exp(v)), stable: the log-sum-exp of [0] + values."""
    return _log_sum_exp([0.0] + list(values))


def ref_multi_similarity(labels, embeddings, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
    """Wang et al. 2019 with pair mining; mean of l_a over all B anchors."""
    y, u = _labels(labels), _unit_rows(embeddings)
    b = len(y)
    total = 0.0
    for a in range(b):
        positives = [p for p in range(b) if p != a and y[p] == y[a]]
        negatives = [n for n in range(b) if y[n] != y[a]]
        if not positives or not negatives:
            continue  # l_a = 0
        s_pos = [_similarity(u, a, p) for p in positives]
        s_neg = [_similarity(u, a, n) for n in negatives]
        kept_neg = [s for s in s_neg if s > min(s_pos) - epsilon]
        kept_pos = [s for s in s_pos if s < max(s_neg) + epsilon]
        total += _log1p_sum_exp([-alpha * (s - base) for s in kept_pos]) / alpha
        total += _log1p_sum_exp([beta * (s - base) for s in kept_neg]) / beta
    return total / b


REFERENCES = {"supcon": ref_supcon, "nt_xent": ref_nt_xent, "multi_similarity": ref_multi_similarity}


def _library(name):
    return {"supcon": L.supcon_loss, "nt_xent": L.nt_xent_loss, "multi_similarity": L.multi_similarity_loss}[name]


def value(loss):
    assert isinstance(loss, tf.Tensor) and loss.dtype == tf.float32 and loss.shape == ()
    return float(loss.numpy())


def gradient(fn, labels, x):
    xt = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = fn(labels, xt)
    g = tape.gradient(loss, xt)
    return value(loss), np.zeros(x.shape) if g is None else g.numpy()


def batch(b, n_classes, dim, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=b).astype(np.int32)
    return labels, (scale * rng.normal(size=(b, dim))).astype(np.float32)


def views_batch(n_images, dim, seed):
    """Two noisy 'views' per image, label = image index (the self-supervised case)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_images, dim))
    labels = np.repeat(np.arange(n_images), 2).astype(np.int64)
    x = centres[labels] + 0.3 * rng.normal(size=(2 * n_images, dim))
    order = rng.permutation(2 * n_images)
    return labels[order], x[order].astype(np.float32)


# (B, classes, dim, seed): tiny, typical, unbalanced with singletons, many classes
GRID = [(4, 2, 3, 0), (12, 3, 8, 1), (16, 4, 5, 2), (9, 6, 4, 3), (24, 12, 16, 4), (20, 2, 2, 5)]
GRID_IDS = [f"B{b}-c{c}-d{d}-s{s}" for b, c, d, s in GRID]

OPTIONS = {
    "supcon": [{}, {"temperature": 0.05}, {"temperature": 0.5}, {"temperature": 2.0}],
    "nt_xent": [{}, {"temperature": 0.05}, {"temperature": 0.5}, {"temperature": 2.0}],
    "multi_similarity": [
        {}, {"alpha": 1.0, "beta": 10.0}, {"base": 0.0}, {"base": 0.8, "epsilon": 0.0},
        {"epsilon": 0.5, "alpha": 5.0}, {"epsilon": 3.0, "beta": 2.0},  # epsilon 3: every pair kept
    ],
}
CASES = [(name, opts) for name, options in OPTIONS.items() for opts in options]
CASE_IDS = [f"{name}-" + ("-".join(f"{k}={v}" for k, v in opts.items()) or "defaults") for name, opts in CASES]


# ---------------------------------------------------------------------------
# the references themselves, on cases worked out by hand
# ---------------------------------------------------------------------------
E1, E2 = [1.0, 0.0], [0.0, 1.0]
TWO_PAIRS = (np.array([0, 0, 1, 1]), np.array([E1, E1, E2, E2], np.float32))


def hand_values():
    """Two classes on orthogonal axes, two identical points each: s = 1 within, 0 across.

    supcon, t = 1:  l_a = -(1 - log(e + 1 + 1))           = log(e + 2) - 1
    nt_xent, t = 1: l_ap = -log(e / (e + 1 + 1))           = log(1 + 2/e)
    multi-sim, eps = 0.1: min s_ap - eps = 0.9 > 0 = every s_an, and max s_an + eps = 0.1 < 1: nothing kept, 0
    multi-sim, eps = 2 (all kept), alpha 2, beta 50, base 0.5:
                    l_a = (1/2) log(1 + e^-1) + (1/50) log(1 + 2 e^-25)
    """
    return [
        ("supcon", {"temperature": 1.0}, math.log(math.e + 2) - 1),
        ("nt_xent", {"temperature": 1.0}, math.log(1 + 2 / math.e)),
        ("supcon", {"temperature": 0.5}, math.log(math.exp(2) + 2) - 2),
        ("nt_xent", {"temperature": 0.5}, math.log(1 + 2 / math.exp(2))),
        ("multi_similarity", {}, 0.0),
        ("multi_similarity", {"epsilon": 2.0},
         0.5 * math.log(1 + math.exp(-1)) + math.log(1 + 2 * math.exp(-25)) / 50),
    ]


def angled_case():
    """Three unit vectors: 0 and 1 (class 0) at 60 degrees, 2 (class 1) at 90 degrees from 0, 30 from 1.

    s_01 = 1/2, s_02 = 0, s_12 = cos 30 = sqrt(3)/2, t = 1:
      nt_xent: pairs (0,1): log(1 + e^{0 - 1/2}); (1,0): log(1 + e^{sqrt3/2 - 1/2}); mean of the two.
      supcon:  anchors 0 and 1; the denominator of anchor a runs over the two other points.
    """
    c = math.sqrt(3) / 2
    x = np.array([[1.0, 0.0], [0.5, c], [0.0, 1.0]], np.float32) * np.array([[2.0], [0.3], [5.0]], np.float32)
    labels = np.array([0, 0, 1])
    nt = 0.5 * (math.log(1 + math.exp(-0.5)) + math.log(1 + math.exp(c - 0.5)))
    sup = 0.5 * ((math.log(math.exp(0.5) + math.exp(0.0)) - 0.5) + (math.log(math.exp(0.5) + math.exp(c)) - 0.5))
    # multi-sim (defaults, eps 0.1): anchor 0: min s_ap - eps = 0.4 > s_02 = 0, so no negative is kept;
    # its positive is kept only when s_01 = 0.5 < max s_an + eps = 0.1: no -> l_0 = 0.
    # anchor 1: s_12 = 0.866 > 0.5 - 0.1 -> kept; s_10 = 0.5 < 0.866 + 0.1 -> kept.
    ms = (0.5 * math.log(1 + math.exp(-2 * (0.5 - 0.5))) + math.log(1 + math.exp(50 * (c - 0.5))) / 50) / 3
    return labels, x, {"nt_xent": nt, "supcon": sup, "multi_similarity": ms}


@pytest.mark.parametrize("name, options, expected", hand_values(), ids=lambda v: str(v))
def test_reference_by_hand(name, options, expected):
    labels, x = TWO_PAIRS
    assert math.isclose(REFERENCES[name](labels, x, **options), expected, rel_tol=1e-12, abs_tol=1e-12)


def test_reference_angled_case_by_hand():
    labels, x, expected = angled_case()
    ms_options = {}
    for name, want in expected.items():
        options = {"temperature": 1.0} if name != "multi_similarity" else ms_options
        assert math.isclose(REFERENCES[name](labels, x, **options), want, rel_tol=1e-6), name  # float32 input


def test_nt_xent_reference_is_simclr_with_two_views():
    # With two samples per label, N(a) is everything but a and its partner:
    # the row's softmax over the 2N - 1 others, SimCLR's NT-Xent.
    labels, x = views_batch(5, 4, seed=7)
    u = np.asarray(_unit_rows(x))
    s = u @ u.T / 0.3
    losses = []
    for a in range(len(labels)):
        p = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]][0]
        others = [k for k in range(len(labels)) if k != a]
        losses.append(-(s[a, p] - np.log(np.sum(np.exp(s[a, others])))))
    assert math.isclose(ref_nt_xent(labels, x, 0.3), float(np.mean(losses)), rel_tol=1e-12)


# ---------------------------------------------------------------------------
# library against the references
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, options, expected", hand_values(), ids=lambda v: str(v))
def test_library_by_hand(name, options, expected):
    labels, x = TWO_PAIRS
    np.testing.assert_allclose(value(_library(name)(labels, x, **options)), expected, rtol=RTOL, atol=ATOL)


def test_library_angled_case():
    labels, x, expected = angled_case()
    for name, want in expected.items():
        options = {"temperature": 1.0} if name != "multi_similarity" else {}
        np.testing.assert_allclose(value(_library(name)(labels, x, **options)), want, rtol=RTOL, atol=ATOL,
                                   err_msg=name)


@pytest.mark.parametrize("b, n_classes, dim, seed", GRID, ids=GRID_IDS)
@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_matches_reference_on_random_batches(name, options, b, n_classes, dim, seed):
    labels, x = batch(b, n_classes, dim, seed)
    expected = REFERENCES[name](labels, x, **options)
    got = value(_library(name)(labels, x, **options))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("seed", [20, 21, 22])
def test_matches_reference_on_two_views_per_image(name, options, seed):
    labels, x = views_batch(8, 6, seed)
    np.testing.assert_allclose(value(_library(name)(labels, x, **options)),
                               REFERENCES[name](labels, x, **options), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("form", ["int32", "int64", "float32", "float64", "column-int", "column-float"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_label_dtypes_and_shapes(name, form):
    labels, x = batch(14, 4, 5, seed=30)
    expected = REFERENCES[name](labels, x)
    dtype = {"column-int": "int64", "column-float": "float32"}.get(form, form)
    y = labels.astype(dtype)
    if form.startswith("column"):
        y = y[:, None]
    np.testing.assert_allclose(value(_library(name)(y, x)), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_large_and_small_embedding_norms(name):
    # the loss only sees directions: norms from 1e-3 to 1e3 give the same value
    labels, x = batch(10, 3, 4, seed=31)
    norms = np.logspace(-3, 3, len(x))[:, None].astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(value(_library(name)(labels, unit * norms)), REFERENCES[name](labels, unit),
                               rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------
# degenerate batches
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_no_positive_pair_gives_zero(name, options):
    labels = np.arange(6)
    x = np.random.default_rng(40).normal(size=(6, 3)).astype(np.float32)
    assert REFERENCES[name](labels, x, **options) == 0.0
    loss, grad = gradient(lambda y, e: _library(name)(y, e, **options), labels, x)
    assert loss == 0.0
    assert np.all(np.isfinite(grad)) and np.allclose(grad, 0.0)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_single_example_gives_zero(name):
    assert value(_library(name)(np.array([3]), np.ones((1, 4), np.float32))) == 0.0


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_single_class_batch(name, options):
    # No negative at all: NT-Xent's fraction is exp/exp = 1 (loss 0), multi-similarity
    # has no anchor with both sets (0); SupCon still has its denominator over the others.
    labels = np.full(7, 4)
    x = np.random.default_rng(41).normal(size=(7, 3)).astype(np.float32)
    expected = REFERENCES[name](labels, x, **options)
    if name != "supcon":
        assert expected == 0.0
    else:
        assert expected > 0.0
    loss, grad = gradient(lambda y, e: _library(name)(y, e, **options), labels, x)
    np.testing.assert_allclose(loss, expected, rtol=RTOL, atol=ATOL)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_duplicate_embeddings_finite(name, options):
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = np.repeat(np.random.default_rng(42).normal(size=(3, 4)), 2, axis=0).astype(np.float32)
    x[4] = x[0]  # a duplicate across classes too
    loss, grad = gradient(lambda y, e: _library(name)(y, e, **options), labels, x)
    np.testing.assert_allclose(loss, REFERENCES[name](labels, x, **options), rtol=RTOL, atol=ATOL)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_all_zero_row_finite(name, options):
    labels, x = batch(8, 3, 4, seed=43)
    x[2] = 0.0
    expected = REFERENCES[name](labels, x, **options)
    loss, grad = gradient(lambda y, e: _library(name)(y, e, **options), labels, x)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_extreme_temperature_or_beta_stays_finite(name):
    # logits of +-1 / 0.01 = 100 or beta 200: exp overflows float32 without log-sum-exp
    labels, x = views_batch(6, 5, seed=44)
    options = {"beta": 200.0, "alpha": 50.0, "epsilon": 3.0} if name == "multi_similarity" else {"temperature": 0.01}
    loss, grad = gradient(lambda y, e: _library(name)(y, e, **options), labels, x)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, REFERENCES[name](labels, x, **options), rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_gradient_matches_finite_differences(name, options):
    labels, x = batch(7, 3, 3, seed=50)
    _, grad = gradient(lambda y, e: _library(name)(y, e, **options), labels, x)
    x64 = x.astype(np.float64)
    numeric = finite_difference_gradient(lambda e: REFERENCES[name](labels, e, **options), x64, h=1e-6)
    assert np.abs(numeric).max() > 1e-4 or name == "multi_similarity"  # the case does exercise the loss
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4)


def test_multi_similarity_gradient_is_not_trivial():
    labels, x = batch(10, 2, 3, seed=51)
    numeric = finite_difference_gradient(lambda e: ref_multi_similarity(labels, e, epsilon=3.0),
                                         x.astype(np.float64), h=1e-6)
    _, grad = gradient(lambda y, e: L.multi_similarity_loss(y, e, epsilon=3.0), labels, x)
    assert np.abs(numeric).max() > 1e-3
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4)


# ---------------------------------------------------------------------------
# eager, tf.function, XLA
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_eager_graph_and_xla_agree(name, options):
    labels, x = batch(12, 3, 5, seed=60)
    fn = _library(name)

    def step(y, e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            loss = fn(y, e, **options)
        return loss, tape.gradient(loss, e)

    y, e = tf.constant(labels), tf.constant(x)
    results = [step(y, e), tf.function(step)(y, e), tf.function(step, jit_compile=True)(y, e)]
    expected = REFERENCES[name](labels, x, **options)
    for loss, grad in results:
        np.testing.assert_allclose(float(loss), expected, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(grad.numpy(), results[0][1].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_graph_with_unknown_batch_size(name):
    fn = tf.function(_library(name), input_signature=[tf.TensorSpec([None], tf.int32),
                                                      tf.TensorSpec([None, None], tf.float32)])
    for b in (4, 9):
        labels, x = batch(b, 2, 3, seed=61 + b)
        np.testing.assert_allclose(float(fn(labels, x)), REFERENCES[name](labels, x), rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------------------
# Keras classes
# ---------------------------------------------------------------------------
KERAS = [
    ("SupConLoss", "supcon", {"temperature": 0.3}),
    ("NTXentLoss", "nt_xent", {"temperature": 0.5}),
    ("MultiSimilarityLoss", "multi_similarity", {"alpha": 3.0, "beta": 40.0, "base": 0.4, "epsilon": 0.2}),
]
DEFAULTS = {
    "SupConLoss": {"temperature": 0.1},
    "NTXentLoss": {"temperature": 0.1},
    "MultiSimilarityLoss": {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
}


@pytest.mark.parametrize("cls_name, name, options", KERAS, ids=[k[0] for k in KERAS])
def test_keras_class_defaults_and_call(cls_name, name, options):
    cls = getattr(L, cls_name)
    config = cls().get_config()
    for key, default in DEFAULTS[cls_name].items():
        assert config[key] == default, key
    labels, x = batch(10, 3, 4, seed=70)
    np.testing.assert_allclose(float(cls(**options)(labels[:, None], x)), REFERENCES[name](labels, x, **options),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls_name, name, options", KERAS, ids=[k[0] for k in KERAS])
def test_keras_class_serialises(cls_name, name, options):
    cls = getattr(L, cls_name)
    loss = cls(**options)
    config = loss.get_config()
    for key, val in options.items():
        assert config[key] == val
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls and restored.get_config() == config
    assert type(keras.losses.deserialize(keras.losses.serialize(loss))) is cls
    labels, x = batch(9, 3, 4, seed=71)
    np.testing.assert_allclose(float(restored(labels, x)), REFERENCES[name](labels, x, **options), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls_name, name, options", KERAS, ids=[k[0] for k in KERAS])
def test_compiled_model_saves_and_loads(cls_name, name, options, tmp_path):
    labels, x = views_batch(6, 5, seed=72)
    keras.utils.set_random_seed(72)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=getattr(L, cls_name)(**options))
    expected = model.evaluate(x, labels, batch_size=len(x), verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")  # registered: no custom_objects
    assert type(loaded.loss) is getattr(L, cls_name)
    got = loaded.evaluate(x, labels, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    emb = keras.ops.convert_to_numpy(loaded(x))
    np.testing.assert_allclose(got, REFERENCES[name](labels, emb, **options), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cls_name, name, options", KERAS, ids=[k[0] for k in KERAS])
def test_fit_lowers_the_loss(cls_name, name, options):
    labels, x = make_clustered_batch(p=4, k=6, dim=6, spread=0.7, seed=73)
    keras.utils.set_random_seed(73)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    loss = getattr(L, cls_name)(**options)
    before = float(loss(labels, model(x)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, labels[:, None], batch_size=len(x), epochs=20, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert float(loss(labels, model(x))) < 0.9 * before


# ---------------------------------------------------------------------------
# bad options
# ---------------------------------------------------------------------------
BAD = [
    ("supcon", {"temperature": 0.0}, "temperature"),
    ("supcon", {"temperature": -0.5}, "temperature"),
    ("nt_xent", {"temperature": 0.0}, "temperature"),
    ("nt_xent", {"temperature": -1.0}, "temperature"),
    ("multi_similarity", {"alpha": 0.0}, "alpha"),
    ("multi_similarity", {"alpha": -2.0}, "alpha"),
    ("multi_similarity", {"beta": 0.0}, "beta"),
    ("multi_similarity", {"beta": -50.0}, "beta"),
    ("multi_similarity", {"epsilon": -0.1}, "epsilon"),
]
KERAS_OF = {"supcon": "SupConLoss", "nt_xent": "NTXentLoss", "multi_similarity": "MultiSimilarityLoss"}


@pytest.mark.parametrize("name, options, word", BAD, ids=[f"{n}-{o}" for n, o, _ in BAD])
def test_bad_option_raises_value_error_naming_it(name, options, word):
    labels, x = batch(6, 2, 3, seed=80)
    with pytest.raises(ValueError, match=word):
        _library(name)(labels, x, **options)
    with pytest.raises(ValueError, match=word):
        getattr(L, KERAS_OF[name])(**options)(labels, x)


def test_epsilon_zero_is_allowed():
    labels, x = batch(8, 2, 3, seed=81)
    np.testing.assert_allclose(value(L.multi_similarity_loss(labels, x, epsilon=0.0)),
                               ref_multi_similarity(labels, x, epsilon=0.0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_shape_errors(name):
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="batch size"):
        _library(name)(np.arange(5), x)
    with pytest.raises(ValueError, match="embeddings"):
        _library(name)(np.arange(4), np.ones((4, 3, 1), np.float32))
    with pytest.raises(ValueError, match="labels"):
        _library(name)(np.zeros((4, 2)), x)


# ---------------------------------------------------------------------------
# properties (hypothesis)
# ---------------------------------------------------------------------------
@st.composite
def similarity_cases(draw):
    name = draw(st.sampled_from(list(REFERENCES)))
    b = draw(st.integers(2, 10))
    n_classes = draw(st.integers(1, 5))
    labels = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=b, max_size=b)), np.int32)
    x = np.random.default_rng(draw(st.integers(0, 2**31))).normal(size=(b, draw(st.integers(2, 5))))
    options = draw(st.sampled_from(OPTIONS[name]))
    return name, options, labels, x.astype(np.float32)


@given(similarity_cases(), st.floats(1e-2, 1e2), st.randoms(use_true_random=False))
def test_invariant_to_scale_and_permutation(case, scale, random):
    name, options, labels, x = case
    fn = _library(name)
    base = value(fn(labels, x, **options))
    assert np.isfinite(base) and base >= 0.0
    np.testing.assert_allclose(value(fn(labels, x * np.float32(scale), **options)), base, rtol=1e-4, atol=1e-5)
    order = list(range(len(labels)))
    random.shuffle(order)
    np.testing.assert_allclose(value(fn(labels[order], x[order], **options)), base, rtol=1e-4, atol=1e-5)


@given(similarity_cases())
def test_invariant_to_renaming_the_classes_and_matches_reference(case):
    name, options, labels, x = case
    fn = _library(name)
    renamed = (labels.astype(np.float32) * -3.5 + 1000.0)  # a bijection, and float ids
    got = value(fn(labels, x, **options))
    np.testing.assert_allclose(value(fn(renamed, x, **options)), got, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, REFERENCES[name](labels, x, **options), rtol=RTOL, atol=ATOL)


@given(st.integers(2, 8), st.integers(0, 2**31), st.sampled_from([0.05, 0.1, 0.5, 1.0]))
def test_nt_xent_perfect_views_reach_their_floor(n_images, seed, temperature):
    # Views exactly on top of each other and images orthogonal: every row's softmax
    # is exp(1/t) / (exp(1/t) + 2(N - 1)), the smallest NT-Xent a batch of orthogonal images allows.
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(n_images, n_images)))[0]
    labels = np.repeat(np.arange(n_images), 2)
    x = basis[labels].astype(np.float32)
    floor = math.log(1 + 2 * (n_images - 1) * math.exp(-1 / temperature))
    np.testing.assert_allclose(value(L.nt_xent_loss(labels, x, temperature=temperature)), floor, rtol=1e-4, atol=1e-6)
