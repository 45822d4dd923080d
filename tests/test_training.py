"""The embedding network, the training loop and its diagnostics."""

import math
import warnings

import numpy as np
import pytest
import tensorflow as tf

from course_lib import data, losses, models, training
from course_lib.training import EpochRecord, detect_collapse


@pytest.fixture(scope="module")
def mnist_small():
    images, labels = data.load_dataset("mnist", "train", source="bundled", verbose=False)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(images), 1200, replace=False))
    test_images, test_labels = data.load_dataset("mnist", "test", source="bundled", verbose=False)
    return images[keep], labels[keep], test_images[:400], test_labels[:400]


def record(**changes):
    base = dict(epoch=1, loss=0.05, active_fraction=0.3, mean_positive_distance=0.5,
                mean_negative_distance=1.3, spread=0.9, metrics={}, seconds=1.0)
    return EpochRecord(**{**base, **changes})


# ------------------------------------------------------------------- models
def test_embedding_network_outputs_unit_vectors():
    model = models.embedding_network(embedding_dim=16, seed=0)
    out = model(np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32))
    assert out.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_embedding_network_without_normalisation_and_bad_dim():
    model = models.embedding_network(embedding_dim=8, l2_normalize=False, seed=0)
    out = model(np.ones((2, 28, 28, 1), np.float32))
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)
    with pytest.raises(ValueError, match="embedding_dim"):
        models.embedding_network(embedding_dim=0)


def test_classifier_shares_the_backbone_architecture():
    clf = models.classifier_network(num_classes=10, seed=0)
    emb = models.embedding_network(embedding_dim=64, seed=0)
    assert clf.get_layer("backbone").count_params() == emb.get_layer("backbone").count_params()
    assert clf.output_shape == (None, 10)


# ------------------------------------------------------------- diagnostics
@pytest.mark.parametrize("objective", [False, True], ids=["loss", "training-objective"])
def test_batch_statistics_match_a_direct_computation(objective):
    # The statistics come from the loss's own mining pass (what training reports).
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 3)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    if objective:
        value, (active, mean_pos, mean_neg) = training.make_objective("triplet", margin=0.5, mining="all")(labels, x)
    else:
        value, active, mean_pos, mean_neg = losses.triplet_loss_and_statistics(labels, x, margin=0.5, mining="all")
    mean_pos, mean_neg, active = float(mean_pos), float(mean_neg), float(active)
    assert float(value) == pytest.approx(float(losses.triplet_loss(labels, x, margin=0.5, mining="all")))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    same = labels[:, None] == labels[None]
    pos = same & ~np.eye(12, dtype=bool)
    np.testing.assert_allclose(mean_pos, d[pos].mean(), rtol=1e-5)
    np.testing.assert_allclose(mean_neg, d[~same].mean(), rtol=1e-5)
    gaps = [d[a, p] - d[a, n] + 0.5 for a in range(12) for p in range(12) for n in range(12) if pos[a, p] and not same[a, n]]
    np.testing.assert_allclose(active, np.mean(np.array(gaps) > 0), rtol=1e-6)


@pytest.mark.parametrize("mining, soft", [("hard", False), ("semi-hard", False), ("semi-hard", True), ("all", True)])
def test_active_fraction_counts_the_mined_triplets(mining, soft):
    # active = share of the loss's own triplets with gap + m > 0 (gap > 0 with the soft margin)
    import reference as ref

    rng = np.random.default_rng(4)
    labels = rng.permutation(np.repeat(np.arange(4), 4))
    x = rng.normal(size=(16, 5)).astype(np.float32)
    d = ref.pairwise_distances(x)
    triplets = ref.mine_triplets(labels, x, mining)
    threshold = 0.0 if soft else 0.3
    expected = np.mean([d[a, p] - d[a, n] + threshold > 0 for a, p, n in triplets])
    stats = losses.triplet_loss_and_statistics(labels, x, margin=0.3, mining=mining, soft=soft)
    np.testing.assert_allclose(float(stats.active_fraction), expected, rtol=1e-6)


def test_spread_is_zero_for_identical_points_and_scales_linearly():
    assert training.spread(np.ones((10, 3), np.float32)) == 0.0
    x = np.random.default_rng(0).normal(size=(50, 4))
    assert math.isclose(training.spread(3 * x), 3 * training.spread(x), rel_tol=1e-9)


def test_detect_collapse_on_shrunken_spread():
    assert detect_collapse(record(spread=0.9), initial_spread=1.0) is None
    reason = detect_collapse(record(spread=0.01), initial_spread=1.0)
    assert reason and "spread" in reason


def test_detect_collapse_on_loss_stuck_at_margin():
    stuck = record(loss=0.2, mean_positive_distance=0.3, mean_negative_distance=0.3, spread=0.5)
    assert "stuck" in detect_collapse(stuck, initial_spread=1.0, stuck_at=0.2)
    healthy = record(loss=0.2, mean_positive_distance=0.3, mean_negative_distance=1.0, spread=0.5)
    assert detect_collapse(healthy, initial_spread=1.0, stuck_at=0.2) is None
    soft = record(loss=math.log(2), mean_positive_distance=0.1, mean_negative_distance=0.1)
    assert detect_collapse(soft, initial_spread=1.0, stuck_at=math.log(2))


def test_make_loss_rejects_unknown_names_and_bad_options():
    with pytest.raises(ValueError, match="loss="):
        training.make_loss("arcface")
    with pytest.raises(ValueError, match="mining"):
        training.make_loss("triplet", mining="hardest")
    with pytest.raises(ValueError, match="margin"):
        training.make_loss("contrastive", margin=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        training.make_objective("supcon", temperature=0.0)
    with pytest.raises(ValueError, match="mining"):
        training.make_objective("triplet", mining="hardest")


# ------------------------------------------------------------------- train
def test_training_improves_retrieval_and_records_every_field(mnist_small):
    x, y, tx, ty = mnist_small
    model = models.embedding_network(32, seed=0)
    before = training.embed(model, tx)
    history = training.train(model, x, y, loss="triplet", loss_options={"margin": 0.2}, eval_images=tx,
                             eval_labels=ty, epochs=2, steps_per_epoch=15, eval_size=None,
                             snapshot_size=50, progress=False)
    from course_lib.retrieval import evaluate

    assert len(history.records) == 2
    assert history["precision_at_1"][-1] > evaluate(before, ty)["precision_at_1"]
    assert history.final_metrics["precision_at_1"] >= 0.8
    for field in ("loss", "active_fraction", "mean_positive_distance", "mean_negative_distance", "spread", "seconds"):
        assert all(np.isfinite(history[field])), field
    assert history["mean_negative_distance"][-1] > history["mean_positive_distance"][-1]
    assert len(history.snapshots) == 3 and history.snapshots[0].shape == (50, 32)
    assert history.snapshot_labels.shape == (50,)
    np.testing.assert_array_equal(history.snapshot_labels, ty[history.snapshot_indices])
    assert history.collapse is None
    assert set(history.to_dict()) >= {"records", "final_metrics", "options"}


@pytest.mark.parametrize("loss, options", [
    ("contrastive", {"margin": 0.5}), ("npairs", {}), ("angular", {"alpha_degrees": 40.0}),
    ("triplet", {"mining": "hard", "soft": True}), ("supcon", {"temperature": 0.2}), ("nt-xent", {}),
    ("multi-similarity", {}),
])
def test_every_loss_trains_a_few_steps(mnist_small, loss, options):
    x, y, tx, ty = mnist_small
    model = models.embedding_network(16, seed=1)
    history = training.train(model, x, y, loss=loss, loss_options=options, eval_images=tx, eval_labels=ty,
                             epochs=1, steps_per_epoch=5, eval_size=100, progress=False)
    assert np.isfinite(history["loss"][0])
    assert 0 <= history.final_metrics["precision_at_1"] <= 1
    assert history.options == {**losses.defaults(loss), **options}  # the loss's defaults, filled in
    assert np.isfinite(history["mean_positive_distance"][0]) and np.isfinite(history["spread"][0])


def test_cross_entropy_baseline_uses_backbone_features(mnist_small):
    x, y, tx, ty = mnist_small
    model = models.classifier_network(seed=0)
    history = training.train(model, x, y, loss="cross_entropy", eval_images=tx, eval_labels=ty,
                             epochs=1, steps_per_epoch=10, eval_size=None, snapshot_size=20, progress=False)
    assert history.snapshots[0].shape == (20, 128)  # backbone features, not logits
    assert history.final_metrics["precision_at_1"] > 0.5


def test_collapse_is_detected_and_warned(mnist_small):
    # A learning rate of 1.0 with hard mining drives the embedding to one point.
    x, y, tx, ty = mnist_small
    model = models.embedding_network(16, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = training.train(model, x, y, loss="triplet", loss_options={"mining": "hard", "margin": 0.5},
                                 eval_images=tx, eval_labels=ty, epochs=2, steps_per_epoch=20,
                                 learning_rate=1.0, eval_size=200, progress=False)
    if history.collapse is None:
        pytest.fail(f"expected a collapse; spreads {history['spread']}, losses {history['loss']}")
    assert any("collapsed" in str(w.message) for w in caught)


def test_training_is_deterministic_for_a_seed(mnist_small):
    x, y, tx, ty = mnist_small
    runs = []
    for _ in range(2):
        model = models.embedding_network(8, seed=5)
        h = training.train(model, x, y, epochs=1, steps_per_epoch=5, seed=5, progress=False)
        runs.append(h["loss"][0])
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_train_works_under_a_distribution_strategy_scope(mnist_small):
    x, y, _, _ = mnist_small
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = models.embedding_network(8, seed=0)
    history = training.train(model, x, y, epochs=1, steps_per_epoch=3, strategy=strategy, progress=False)
    assert np.isfinite(history["loss"][0])


# ------------------------------------------------------ train without labels
@pytest.mark.parametrize("loss, kwargs, temperature", [
    ("nt-xent", {}, 0.5),  # train_self_supervised's own default, not the loss's 0.1
    ("supcon", {"temperature": 0.3}, 0.3),
    ("nt-xent", {"temperature": 0.3, "loss_options": {"temperature": 0.2}}, 0.2),  # loss_options win
    ("contrastive", {"temperature": 0.3}, None),  # a loss without a temperature ignores it
])
def test_self_supervised_temperature_has_one_default(mnist_small, loss, kwargs, temperature):
    from course_lib.options import defaults_of

    owner = defaults_of(training.train_self_supervised)["temperature"]
    assert training.self_supervised_defaults("nt-xent") == {"temperature": owner} == {"temperature": 0.5}
    x = mnist_small[0][:64]
    history = training.train_self_supervised(models.embedding_network(8, width=4, seed=0), x, loss=loss,
                                             batch_size=16, epochs=1, steps_per_epoch=1, progress=False, **kwargs)
    assert history.options.get("temperature") == temperature
    assert history.options == {**losses.defaults(loss), **({"temperature": temperature} if temperature else {})}
    assert np.isfinite(history["loss"][0])
