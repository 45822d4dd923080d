"""Keras 3 loss classes: call, config round trip, training, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import reference as ref
from conftest import make_clustered_batch, make_pk_batch, make_random_batch

from course_lib import losses as L

# (class, keyword options, reference function) -- non-default options, so a
# config that forgets an option shows up.
CASES = [
    (L.ContrastiveLoss, {"margin": 0.5, "metric": "cosine"}, ref.contrastive_loss),
    (L.TripletLoss, {"margin": 0.3, "mining": "hard", "metric": "squared_euclidean"}, ref.triplet_loss),
    (L.TripletLoss, {"mining": "all", "soft": True}, ref.triplet_loss),
    (L.TripletLoss, {"margin": 0.5, "mining": "semi-hard", "metric": "euclidean"}, ref.triplet_loss),
    (L.NPairsLoss, {"l2_reg": 0.01}, ref.npairs_loss),
    (L.AngularLoss, {"alpha_degrees": 40.0}, ref.angular_loss),
]
IDS = [f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw, _ in CASES]

DEFAULTS = {
    L.ContrastiveLoss: {"margin": 1.0, "metric": "euclidean"},
    L.TripletLoss: {"margin": 0.2, "mining": "semi-hard", "metric": "euclidean", "soft": False},
    L.NPairsLoss: {"l2_reg": 0.002},
    L.AngularLoss: {"alpha_degrees": 45.0},
    L.SupConLoss: {"temperature": 0.1},
    L.NTXentLoss: {"temperature": 0.1},
    L.MultiSimilarityLoss: {"alpha": 2.0, "beta": 50.0, "base": 0.5, "epsilon": 0.1},
}
FUNCTIONS = {
    L.ContrastiveLoss: L.contrastive_loss,
    L.TripletLoss: L.triplet_loss,
    L.NPairsLoss: L.npairs_loss,
    L.AngularLoss: L.angular_loss,
    L.SupConLoss: L.supcon_loss,
    L.NTXentLoss: L.nt_xent_loss,
    L.MultiSimilarityLoss: L.multi_similarity_loss,
}


@pytest.mark.parametrize("cls", list(FUNCTIONS), ids=lambda c: c.__name__)
def test_class_defaults_are_the_functions_own(cls):
    # one default per option: the function's signature; the class and its config read it
    assert {k: v for k, v in cls().get_config().items() if k not in ("name", "reduction")} == L.defaults(FUNCTIONS[cls])


def loss_value(t):
    return float(keras.ops.convert_to_numpy(t))


@pytest.mark.parametrize("cls, kwargs, reference", CASES, ids=IDS)
@pytest.mark.parametrize("column", [False, True], ids=["labels(B,)", "labels(B,1)"])
def test_call_matches_reference(cls, kwargs, reference, column):
    labels, x = make_random_batch(14, 3, 5, seed=50)
    y = labels[:, None] if column else labels
    got = cls(**kwargs)(y, x)
    np.testing.assert_allclose(loss_value(got), reference(labels, x, **kwargs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", list(DEFAULTS), ids=lambda c: c.__name__)
def test_defaults_match_functional(cls):
    config = cls().get_config()
    for key, default in DEFAULTS[cls].items():
        assert config[key] == default
    labels, x = make_pk_batch(3, 3, 4, seed=51)
    fn = FUNCTIONS[cls]
    np.testing.assert_allclose(loss_value(cls()(labels, x)), float(fn(labels, x)), rtol=1e-6)


@pytest.mark.parametrize("cls, kwargs, reference", CASES, ids=IDS)
def test_config_round_trip(cls, kwargs, reference):
    loss = cls(**kwargs)
    config = loss.get_config()
    for key, val in kwargs.items():
        assert config[key] == val
    clone = cls.from_config(config)
    assert type(clone) is cls
    assert clone.get_config() == config
    # through Keras' registry as well (registered serializable)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is cls
    assert restored.get_config() == config
    labels, x = make_pk_batch(3, 3, 4, seed=52)
    expected = reference(labels, x, **kwargs)
    np.testing.assert_allclose(loss_value(clone(labels, x)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss_value(restored(labels, x)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs, word", [
    (L.TripletLoss, {"mining": "hardest"}, "mining"),
    (L.TripletLoss, {"metric": "l1"}, "metric"),
    (L.TripletLoss, {"margin": 0.0}, "margin"),
    (L.ContrastiveLoss, {"margin": -1.0}, "margin"),
    (L.AngularLoss, {"alpha_degrees": 90.0}, "alpha"),
    (L.NPairsLoss, {"l2_reg": -1.0}, "l2_reg"),
])
def test_bad_options_name_the_argument(cls, kwargs, word):
    labels, x = make_pk_batch(2, 2, 3)
    # at construction or at the latest on the first call
    with pytest.raises((ValueError, TypeError), match=word):
        cls(**kwargs)(labels, x)


def _embedding_model(in_dim, out_dim=4, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((in_dim,)), keras.layers.Dense(out_dim)])


FIT_CASES = [
    (L.TripletLoss, {"mining": "semi-hard", "margin": 0.5}),
    (L.TripletLoss, {"mining": "hard", "margin": 0.5}),
    (L.TripletLoss, {"mining": "all", "soft": True}),
    (L.TripletLoss, {"mining": "random", "margin": 0.5}),
    (L.ContrastiveLoss, {"margin": 1.0}),
    (L.NPairsLoss, {}),
    (L.AngularLoss, {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("cls, kwargs", FIT_CASES,
                         ids=[f"{c.__name__}-{'-'.join(map(str, kw.values()))}" for c, kw in FIT_CASES])
def test_fit_reduces_loss(cls, kwargs):
    labels, x = make_clustered_batch(p=4, k=6, dim=6, spread=0.7, seed=53)
    model = _embedding_model(x.shape[1], seed=53)
    loss = cls(**kwargs)
    before = loss_value(loss(labels, model(x)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    # Keras hands y_true over as given: here (B, 1), the shape of the pitfall
    history = model.fit(x, labels[:, None], batch_size=len(x), epochs=15, shuffle=False, verbose=0)
    after = loss_value(loss(labels, model(x)))
    assert np.all(np.isfinite(history.history["loss"]))
    assert before > 0.0
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("cls, kwargs, reference", CASES, ids=IDS)
def test_saved_model_loads_with_same_loss(cls, kwargs, reference, tmp_path):
    labels, x = make_clustered_batch(p=3, k=4, dim=5, seed=54)
    model = _embedding_model(x.shape[1], seed=54)
    model.compile(optimizer="sgd", loss=cls(**kwargs))
    expected = model.evaluate(x, labels, batch_size=len(x), verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: registered
    assert type(loaded.loss) is cls
    for key, val in kwargs.items():
        assert loaded.loss.get_config()[key] == val
    got = loaded.evaluate(x, labels, batch_size=len(x), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # and the evaluated value is the loss of the batch's embeddings
    emb = keras.ops.convert_to_numpy(loaded(x))
    np.testing.assert_allclose(got, reference(labels, emb, **kwargs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs, reference", CASES, ids=IDS)
def test_evaluate_under_xla_matches_reference(cls, kwargs, reference):
    # Keras may compile the train/test step with XLA: the losses (while
    # loops, budget asserts, masks) must compile and give the same value.
    labels, x = make_clustered_batch(p=3, k=4, dim=5, seed=55)
    model = _embedding_model(x.shape[1], seed=55)
    model.compile(optimizer="sgd", loss=cls(**kwargs), jit_compile=True)
    got = model.evaluate(x, labels[:, None], batch_size=len(x), verbose=0)
    emb = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(got, reference(labels, emb, **kwargs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs, reference", CASES, ids=IDS)
def test_train_step_under_xla_matches_plain_graph(cls, kwargs, reference):
    # Keras compiles the *train* step with XLA on GPU: the gradient the
    # losses carry out of their loops must compile and give the same update.
    labels, x = make_clustered_batch(p=3, k=4, dim=5, seed=57)
    weights = {}
    for jit in (False, True):
        model = _embedding_model(x.shape[1], seed=57)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=cls(**kwargs), jit_compile=jit)
        history = model.fit(x, labels[:, None], batch_size=len(x), epochs=2, shuffle=False, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        weights[jit] = [keras.ops.convert_to_numpy(w) for w in model.weights]
    start = _embedding_model(x.shape[1], seed=57).weights[0]
    assert not np.allclose(weights[True][0], keras.ops.convert_to_numpy(start))  # it did train
    for plain, xla in zip(weights[False], weights[True]):
        np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_model_loss_is_float32(policy):
    # embeddings come out in half precision; the loss is computed in float32
    labels, x = make_clustered_batch(p=3, k=4, dim=5, seed=56)
    keras.utils.set_random_seed(56)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, dtype=policy)])
    emb = model(x)
    assert emb.dtype != tf.float32
    loss = L.TripletLoss(mining="hard")(labels, emb)
    assert loss.dtype == tf.float32
    expected = ref.triplet_loss(labels, keras.ops.convert_to_numpy(tf.cast(emb, tf.float32)), mining="hard")
    np.testing.assert_allclose(loss_value(loss), expected, rtol=1e-4, atol=1e-5)
    model.compile(optimizer="sgd", loss=L.TripletLoss(mining="hard"))
    history = model.fit(x, labels, batch_size=len(x), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize("cls, kwargs, reference", CASES, ids=IDS)
def test_large_integer_class_ids_stay_distinct(cls, kwargs, reference):
    # Class ids are compared for equality: 2**24 and 2**24 + 1 are different
    # classes (hashed / database ids), although float32 cannot tell them apart.
    # The Keras wrapper must not cast y_true to float32 before comparing.
    base = 2**24
    labels = np.array([0, 1, 0, 1, 3, 3, 0, 1], np.int64) + base
    x = np.random.default_rng(57).normal(size=(len(labels), 3)).astype(np.float32)
    expected = reference(labels, x, **kwargs)
    merged = reference(labels.astype(np.float32), x, **kwargs)
    assert abs(expected - merged) > 1e-3  # the case does tell the two apart
    functional = FUNCTIONS[cls](labels, x, **kwargs)
    np.testing.assert_allclose(loss_value(functional), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loss_value(cls(**kwargs)(labels, x)), expected, rtol=1e-4, atol=1e-5)


def test_triplet_random_class_matches_function_and_round_trips():
    labels, x = make_random_batch(14, 3, 5, seed=57)
    loss = L.TripletLoss(mining="random", margin=0.5)
    expected = L.triplet_loss(labels, x, mining="random", margin=0.5)
    np.testing.assert_allclose(loss_value(loss(labels[:, None], x)), float(expected), rtol=1e-6)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.options["mining"] == "random"
    np.testing.assert_allclose(loss_value(again(labels, x)), float(expected), rtol=1e-6)
