"""Ranking losses under tf.distribute: two replicas on two logical CPUs.

Why a child process. TensorFlow can split the CPU into logical devices only
before it initialises, once per process, and the rest of the suite has
initialised it with one CPU long before this module runs (and must keep it
that way). So the tests that need two replicas run in a fresh interpreter:
in the main pytest process they are skipped and one test,
``test_two_replica_tests_in_a_fresh_process``, runs this file again with
``COURSE_LIB_TWO_CPUS=1``, where the lines below create the two devices
first. To see those tests one by one::

    COURSE_LIB_TWO_CPUS=1 python -m pytest tests/test_distributed.py -v

The batch: P = 4 classes x K = 4 samples, 2 replicas, so each replica gets
2 whole classes (8 samples) and sees 4 negatives per anchor instead of 12.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TWO_CPUS = os.environ.get("COURSE_LIB_TWO_CPUS") == "1"
if TWO_CPUS:
    from course_lib.distributed import use_logical_cpus

    use_logical_cpus(2)  # before anything else touches TensorFlow

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib import data, distributed, losses, models, training  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
needs_two_cpus = pytest.mark.skipif(
    not TWO_CPUS, reason="runs in the two-CPU child process (test_two_replica_tests_in_a_fresh_process)"
)

# Every loss and mining strategy of course_lib.training.LOSSES.
LOSS_CASES = {
    "contrastive": ("contrastive", {}),
    "triplet-all": ("triplet", {"mining": "all"}),
    "triplet-hard": ("triplet", {"mining": "hard"}),
    "triplet-semi-hard": ("triplet", {"mining": "semi-hard"}),
    "triplet-soft-hard": ("triplet", {"mining": "hard", "soft": True}),
    "triplet-soft-semi-hard": ("triplet", {"mining": "semi-hard", "soft": True}),
    "npairs": ("npairs", {}),
    "angular": ("angular", {}),
    "supcon": ("supcon", {}),
    "nt-xent": ("nt-xent", {"temperature": 0.5}),
    "multi-similarity": ("multi-similarity", {}),
}


def global_batch(seed=0):
    """P x K inputs [16, 12] and labels, class after class as pk_batch_plan lays them out."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([7, 3, 11, 5], 4).astype(np.int64)
    inputs = rng.normal(size=(16, 12)).astype(np.float32)
    return inputs, labels


def small_network():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(8),
    ])


def one_device(model, loss_fn, inputs, labels):
    """Loss and gradients of a batch on one device: the reference."""
    with tf.GradientTape() as tape:
        value = loss_fn(labels, model(inputs, training=True))
    grads = tape.gradient(value, model.trainable_variables)
    return float(value), [g.numpy() for g in grads]


def relative_difference(grads, reference):
    """||grads - reference|| / ||reference|| over all weights."""
    diff = sum(np.sum((g - r) ** 2) for g, r in zip(grads, reference))
    return float(np.sqrt(diff / sum(np.sum(r**2) for r in reference)))


# ============================================ the main process, one device
def test_two_replica_tests_in_a_fresh_process():
    if TWO_CPUS:
        pytest.skip("already in the two-CPU process")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-W", "ignore"],
        cwd=REPO, env={**os.environ, "COURSE_LIB_TWO_CPUS": "1"},
        capture_output=True, text=True, timeout=600,
    )
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]


def test_negatives_seen_in_a_pk_batch():
    counts = distributed.negatives_seen(np.repeat([7, 3, 11, 5], 4), num_replicas=2)
    assert counts["negatives_global"] == 12  # B - K
    assert counts["negatives_per_replica"] == 4  # B/R - K
    assert counts["positives_global"] == counts["positives_per_replica"] == 3  # K - 1: whole classes
    assert counts["replica_batch_size"] == 8


def test_negatives_seen_when_classes_are_split_across_replicas():
    # The other layout: every class cut in two, K/R = 2 samples on each replica.
    counts = distributed.negatives_seen(np.tile(np.repeat([7, 3, 11, 5], 2), 2), num_replicas=2)
    assert counts["negatives_per_replica"] == 6  # more negatives ...
    assert counts["positives_per_replica"] == 1  # ... but K/R - 1 positives


def test_mining_report_finds_negatives_on_the_other_replica():
    # 1-D embeddings. Replica 0: classes 0 and 1; replica 1: classes 2 and 3.
    # Each class's nearest other class (0.1 away) lives on the other replica.
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    positions = np.array([0.0, 0.01, 10.0, 10.01, 0.1, 0.11, 10.1, 10.11], np.float32)
    report = distributed.per_replica_mining_report(labels, positions[:, None], num_replicas=2)
    assert report["hardest_negative_elsewhere"] == 1.0
    assert report["semi_hard_negative_elsewhere"] == 1.0
    assert report["hardest_positive_elsewhere"] == 0.0
    # Swap classes 1 and 2 between the replicas: every hardest negative is local.
    order = [0, 1, 4, 5, 2, 3, 6, 7]
    report = distributed.per_replica_mining_report(labels[order], positions[order, None], 2)
    assert report["hardest_negative_elsewhere"] == 0.0


def test_mining_report_on_random_embeddings():
    _, labels = global_batch()
    embeddings = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    report = distributed.per_replica_mining_report(labels, embeddings, num_replicas=2)
    # 8 of an anchor's 12 negatives are on the other replica: about 2/3 of the
    # hardest ones too, when nothing is learned yet.
    assert 0.3 < report["hardest_negative_elsewhere"] < 0.95
    assert 0.3 < report["semi_hard_negative_elsewhere"] < 0.95


def test_mining_report_against_loops():
    """Every number and per-anchor array of the report, recomputed anchor by anchor."""
    labels = np.repeat(np.arange(8), 4)
    x = np.random.default_rng(3).normal(size=(32, 5))
    d = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
    negatives = [[j for j in range(32) if labels[j] != labels[i]] for i in range(32)]
    for r in (1, 2, 4, 8):
        report = distributed.per_replica_mining_report(labels, x, num_replicas=r)
        arrays, shard = report["per_anchor"], 32 // r
        gaps, elsewhere = [], []
        for i in range(32):
            mine = range((i // shard) * shard, (i // shard + 1) * shard)
            local = [j for j in negatives[i] if j in mine]
            hardest = min(negatives[i], key=lambda j: d[i, j])
            assert arrays["negatives_global"][i] == 28 and arrays["negatives_per_replica"][i] == len(local)
            assert arrays["positives_per_replica"][i] == 3  # whole classes
            assert arrays["hardest_negative"][i] == hardest
            assert arrays["hardest_negative_elsewhere"][i] == (hardest not in mine)
            elsewhere.append(hardest not in mine)
            if local:
                gaps.append(min(d[i, j] for j in local) - d[i, hardest])
        assert report["negatives_per_replica"] == max(shard - 4, 0)
        assert report["hardest_negative_elsewhere"] == pytest.approx(np.mean(elsewhere))
        assert report["missed_gap"] == pytest.approx(np.mean(gaps) if gaps else 0.0, abs=1e-5)
    assert distributed.per_replica_mining_report(labels, x, 1)["hardest_negative_elsewhere"] == 0.0
    assert distributed.per_replica_mining_report(labels, x, 8)["hardest_negative_elsewhere"] == 1.0


def test_replica_of_cuts_contiguous_slices():
    np.testing.assert_array_equal(distributed.replica_of(6, 3), [0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="equal slices"):
        distributed.replica_of(7, 2)


def test_plan_gives_every_replica_whole_classes():
    labels = np.repeat(np.arange(10), 30)
    plan = data.pk_batch_plan(labels, classes_per_batch=6, samples_per_class=4, seed=0, num_replicas=3)
    for batch in plan:
        slices = labels[batch].reshape(3, 8)  # replica r gets row r
        classes = [set(row) for row in slices]
        assert all(len(c) == 2 for c in classes)  # P/R = 2 classes ...
        assert all(np.all(np.unique(row, return_counts=True)[1] == 4) for row in slices)  # ... of K = 4
        assert len(set.union(*classes)) == 6  # no class on two replicas


def test_plan_refuses_p_not_a_multiple_of_the_replicas():
    with pytest.raises(ValueError, match="not a multiple of num_replicas=2"):
        data.pk_batch_plan(np.repeat(np.arange(5), 10), 3, 4, num_replicas=2)


def test_replica_slices_order():
    plan = np.arange(2 * 8).reshape(2, 8)  # 2 batches of 8, 4 replicas of 2
    np.testing.assert_array_equal(data.replica_slices(plan, 4, [1, 2]), [[2, 3], [4, 5], [10, 11], [12, 13]])
    with pytest.raises(ValueError, match="replicas must lie in"):
        data.replica_slices(plan, 4, [4])


def test_one_replica_gets_the_usual_batches():
    """With the default strategy, train's input is exactly pk_batches (as before)."""
    images = np.random.default_rng(0).integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(6), 10)
    expected = list(data.pk_batches(images, labels, 4, 2, seed=3, num_batches=3))
    batches = distributed.distribute_pk_batches(tf.distribute.get_strategy(), images, labels, 4, 2, seed=3, num_batches=3)
    got = list(batches)
    assert len(got) == 3
    for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(y, ey)
        np.testing.assert_array_equal(x, ex)


# ===================================================== two replicas (child)
@pytest.fixture(scope="module")
def strategy():
    strategy = distributed.mirrored_strategy()
    assert strategy.num_replicas_in_sync == 2
    return strategy


def split_batch(strategy, inputs, labels):
    """One global batch cut into contiguous per-replica slices, as ``tf.distribute`` does."""
    replica = distributed.replica_of(len(labels), strategy.num_replicas_in_sync)

    def slice_for(context):
        mine = np.flatnonzero(replica == context.replica_id_in_sync_group)
        return tf.gather(inputs, mine), tf.gather(labels, mine)

    return strategy.experimental_distribute_values_from_function(slice_for)


@pytest.fixture(scope="module")
def networks(strategy):
    """The same small network twice: on one device, and mirrored on both replicas."""
    single = small_network()
    with strategy.scope():
        mirrored = small_network()
    mirrored.set_weights(single.get_weights())
    return single, mirrored


def summed_gradients(strategy, model, loss_fn, inputs, labels, cross_replica):
    """The loss and the gradient of the training step, without applying it.

    Runs :func:`course_lib.distributed.replica_gradients` (the replica's part of
    ``make_train_step``) on every replica, then reduces as the step does: the
    loss averaged over replicas, the gradients summed (what Keras' optimizer
    applies). No optimizer and no weight update: one trace per loss, cheap.
    """
    images, labels = split_batch(strategy, inputs, labels)
    values, _, grads = strategy.run(distributed.replica_gradients,
                                    args=(model, loss_fn, images, labels, cross_replica))
    return (float(strategy.reduce("MEAN", values, axis=None)),
            [strategy.reduce("SUM", g, axis=None).numpy() for g in grads])


@needs_two_cpus
def test_all_gather_gradient_sums_over_replicas(strategy):
    """Why each replica divides by R even when all compute the same global loss.

    Every replica computes L = sum(w * gathered): dL/dx of its own slice is
    w[slice]. The gather's gradient adds the replicas' gradients before
    slicing, so each replica receives R * w[slice].
    """
    w = tf.constant([1.0, 2.0, 3.0, 4.0])

    def replica_fn():
        context = tf.distribute.get_replica_context()
        x = tf.ones([2]) * tf.cast(context.replica_id_in_sync_group, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_sum(w * context.all_gather(x, axis=0))
        return tape.gradient(value, x)

    grads = strategy.experimental_local_results(strategy.run(replica_fn))
    np.testing.assert_allclose(grads[0], [2.0, 4.0])  # 2 * w[0:2]
    np.testing.assert_allclose(grads[1], [6.0, 8.0])  # 2 * w[2:4]


@needs_two_cpus
@pytest.mark.parametrize("case", LOSS_CASES)
def test_cross_replica_step_equals_one_device(case, strategy, networks):
    name, options = LOSS_CASES[case]
    loss_fn = training.make_loss(name, **options)
    inputs, labels = global_batch()
    single, mirrored = networks
    expected_loss, expected_grads = one_device(single, loss_fn, inputs, labels)
    loss, grads = summed_gradients(strategy, mirrored, loss_fn, inputs, labels, cross_replica=True)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6, atol=1e-6)
    for g, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)


@needs_two_cpus
@pytest.mark.parametrize("case", LOSS_CASES)
def test_without_cross_replica_each_replica_sees_only_its_slice(case, strategy, networks):
    """The per-replica step is the mean of two half-batch steps, not the global step.

    Each replica mines and compares only inside its 8 samples (2 classes):
    hard and semi-hard triplets take the hardest of 4 negatives, not of 12,
    and no pair crosses the replicas. The loss and the gradient are then
    exactly the average of the two slices' own, and far from the global
    batch's: a different objective, not a rounding error.
    """
    name, options = LOSS_CASES[case]
    loss_fn = training.make_loss(name, **options)
    inputs, labels = global_batch()
    single, mirrored = networks
    global_loss, global_grads = one_device(single, loss_fn, inputs, labels)
    halves = [one_device(single, loss_fn, inputs[s], labels[s]) for s in (slice(0, 8), slice(8, 16))]
    loss, grads = summed_gradients(strategy, mirrored, loss_fn, inputs, labels, cross_replica=False)

    np.testing.assert_allclose(loss, np.mean([h[0] for h in halves]), rtol=1e-5, atol=1e-6)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, (halves[0][1][i] + halves[1][1][i]) / 2, rtol=1e-5, atol=1e-6)
    print(f"{case}: loss {loss:.4f} per replica vs {global_loss:.4f} global, "
          f"gradient off by {relative_difference(grads, global_grads):.0%}")
    assert abs(loss - global_loss) > 1e-3
    assert relative_difference(grads, global_grads) > 0.05


@needs_two_cpus
@pytest.mark.parametrize("cross_replica", [True, False])
def test_train_step_applies_the_summed_gradient(cross_replica, strategy):
    """End to end: the compiled step ``training.train`` runs, with SGD(1), moves the weights by
    minus the gradient, and reports the statistics of the loss's own mining pass (``make_objective``):
    of the global batch across replicas, the mean of the two slices' without."""
    loss_fn = training.make_loss("triplet", mining="semi-hard")
    inputs, labels = global_batch()
    single = small_network()
    with strategy.scope():
        mirrored = small_network()
        optimizer = keras.optimizers.SGD(learning_rate=1.0)
    mirrored.set_weights(single.get_weights())
    parts = [(inputs, labels)] if cross_replica else [(inputs[s], labels[s]) for s in (slice(0, 8), slice(8, 16))]
    expected = [np.mean(g, axis=0) for g in zip(*(one_device(single, loss_fn, x, y)[1] for x, y in parts))]
    objective = training.make_objective("triplet", mining="semi-hard")
    step = distributed.make_train_step(strategy, mirrored, objective, optimizer, cross_replica)
    before = mirrored.get_weights()
    reported = step(*split_batch(strategy, inputs, labels))
    for w0, w1, g in zip(before, mirrored.get_weights(), expected):
        np.testing.assert_allclose(w0 - w1, g, rtol=1e-5, atol=1e-6)
    # loss, active fraction, mean D(a, p), mean D(a, n)
    stats = np.mean([[float(v) for v in losses.triplet_loss_and_statistics(y, single(x), mining="semi-hard")]
                     for x, y in parts], axis=0)
    np.testing.assert_allclose([float(v) for v in reported], stats, rtol=1e-5, atol=1e-6)


@needs_two_cpus
def test_distributed_batches_give_each_replica_its_slice(strategy):
    images = np.random.default_rng(0).integers(0, 256, size=(80, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(8), 10)
    plan = data.pk_batch_plan(labels, 4, 3, seed=2, num_batches=3, num_replicas=2)
    batches = distributed.distribute_pk_batches(strategy, images, labels, 4, 3, seed=2, num_batches=3)
    for indices, (x, y) in zip(plan, batches):
        for replica, (x_r, y_r) in enumerate(zip(strategy.experimental_local_results(x),
                                                 strategy.experimental_local_results(y))):
            mine = indices[replica * 6 : (replica + 1) * 6]  # 2 whole classes of 3
            np.testing.assert_array_equal(y_r, labels[mine])
            np.testing.assert_array_equal(x_r.numpy()[..., 0], images[mine] / np.float32(255))


@needs_two_cpus
def test_short_training_run_matches_one_device(strategy):
    """MNIST subset, 2 x 25 steps of semi-hard triplets: the same run, on 1 device or 2 replicas."""
    train_images, train_labels = data.load_dataset("mnist", "train", source="bundled")
    test_images, test_labels = data.load_dataset("mnist", "test", source="bundled")
    settings = dict(
        loss="triplet", loss_options={"mining": "semi-hard", "margin": 0.2},
        eval_images=test_images[:1000], eval_labels=test_labels[:1000], eval_size=1000,
        epochs=2, steps_per_epoch=25, classes_per_batch=8, samples_per_class=4,
        learning_rate=3e-3, progress=False,
    )
    single = models.embedding_network(embedding_dim=16, width=8, seed=0)
    one = training.train(single, train_images, train_labels, **settings)
    with strategy.scope():
        mirrored = models.embedding_network(embedding_dim=16, width=8, seed=0)
    two = training.train(mirrored, train_images, train_labels, strategy=strategy, cross_replica=True, **settings)

    print("P@1 one device", one.final_metrics["precision_at_1"], "two replicas", two.final_metrics["precision_at_1"])
    assert one.final_metrics["precision_at_1"] > 0.8
    assert abs(two.final_metrics["precision_at_1"] - one.final_metrics["precision_at_1"]) <= 0.02
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=0.05)


@needs_two_cpus
def test_train_refuses_classes_that_would_straddle_replicas(strategy):
    images = np.zeros((60, 28, 28), np.uint8)
    labels = np.repeat(np.arange(6), 10)
    with strategy.scope():
        model = models.embedding_network(embedding_dim=4, width=4, seed=0)
    with pytest.raises(ValueError, match="classes_per_batch=3 is not a multiple of num_replicas=2"):
        training.train(model, images, labels, classes_per_batch=3, samples_per_class=2,
                       strategy=strategy, cross_replica=True, progress=False)
