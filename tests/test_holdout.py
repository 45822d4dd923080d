"""Tests of the held-out-class protocol (course_lib.holdout) and ``train --holdout-classes``."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from course_lib import cli, holdout, retrieval


def run_main(argv):
    """``cli.main(argv)`` -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def flat(metrics):
    """A metrics dict with recall@k spread into top-level keys (pytest.approx takes no nesting)."""
    recall = {f"recall_at_{k}": v for k, v in metrics["recall_at_k"].items()}
    return {**{k: v for k, v in metrics.items() if k != "recall_at_k"}, **recall}


def toy_items(seed=0, n=120, num_classes=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    embeddings = rng.normal(size=(n, 4)).astype(np.float32) + labels[:, None]
    return embeddings, images, labels


# ----------------------------------------------------------------- split
def test_seen_only_drops_every_held_out_class():
    images = np.arange(40 * 28 * 28, dtype=np.int64).reshape(40, 28, 28).astype(np.uint8)
    labels = np.tile(np.arange(10), 4)
    kept_images, kept_labels = holdout.seen_only(images, labels, [6, 7, 8, 9])
    assert set(kept_labels) == set(range(6))
    assert len(kept_labels) == 24
    np.testing.assert_array_equal(kept_images, images[labels < 6])


def test_query_gallery_halves_are_disjoint_and_the_gallery_holds_every_class():
    labels = np.random.default_rng(1).integers(0, 10, size=501)
    is_query = holdout.query_gallery_split(labels)
    queries, gallery = np.flatnonzero(is_query), np.flatnonzero(~is_query)
    assert len(np.intersect1d(queries, gallery)) == 0 and len(queries) + len(gallery) == len(labels)
    assert set(labels[gallery]) == set(labels)
    for c in np.unique(labels):  # half of each class each, an odd count gives the queries one more
        n_query, n_gallery = is_query[labels == c].sum(), (~is_query[labels == c]).sum()
        assert n_query - n_gallery in (0, 1)


@pytest.mark.parametrize("classes, message", [
    ([10], "not a class id"), ([-1], "not a class id"), ([2.5], "not a class id"),
    ([3, 3], "twice"), ([], "at least one"), (list(range(9)), "at least 2 must stay"),
])
def test_bad_holdout_classes_are_refused(classes, message):
    with pytest.raises(ValueError, match="holdout_classes") as error:
        holdout.check_holdout_classes(classes)
    assert message in str(error.value)


# ---------------------------------------------------------------- report
def test_report_matches_evaluate_computed_directly():
    embeddings, images, labels = toy_items()
    report = holdout.holdout_report(embeddings, images, labels, [3, 1], metric="cosine")
    assert report["classes"] == [1, 3]
    assert set(report) == {"classes", "seen", "unseen", "pixels"}
    assert set(report["pixels"]) == {"seen", "unseen"}
    is_query = labels == labels  # rebuild the protocol by hand: alternate items of each class
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        is_query[rows[1::2]] = False
    gallery = ~is_query
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    for group, in_group in (("seen", ~np.isin(labels, [1, 3])), ("unseen", np.isin(labels, [1, 3]))):
        q = is_query & in_group
        expected = retrieval.evaluate(embeddings[q], labels[q], embeddings[gallery], labels[gallery],
                                      metric="cosine")
        assert report[group] == expected  # the same computation: equal to the last bit
        expected = retrieval.evaluate(pixels[q], labels[q], pixels[gallery], labels[gallery])
        assert report["pixels"][group] == expected
    assert report["unseen"]["num_queries"] == is_query[np.isin(labels, [1, 3])].sum()


def test_report_refuses_mismatched_rows():
    embeddings, images, labels = toy_items()
    with pytest.raises(ValueError, match="one row per item"):
        holdout.holdout_report(embeddings[:-1], images, labels, [1])


# -------------------------------------------------------------------- CLI
def test_help_explains_the_option():
    status, out, _ = run_main(["train", "--help"])
    assert status == 0
    assert "--holdout-classes" in out and "unseen" in out


@pytest.mark.parametrize("classes, message", [
    (["10"], "not a class id"), (["3", "3"], "twice"), ([str(c) for c in range(9)], "at least 2 must stay"),
])
def test_cli_refuses_bad_holdout_classes(classes, message):
    status, _, err = run_main(["train", "--dataset", "mnist", "--holdout-classes", *classes])
    assert status == 2
    assert "--holdout-classes" in err and message in err


def test_cli_refuses_more_classes_per_batch_than_are_left():
    status, _, err = run_main(["train", "--holdout-classes", "0", "1", "2", "3", "--classes-per-batch", "7"])
    assert status == 2 and "--classes-per-batch 7" in err


def test_small_holdout_run_and_evaluate_reproduces_it(tmp_path):
    out = tmp_path / "run"
    status, printed, err = run_main([
        "train", "--dataset", "mnist", "--source", "bundled", "--holdout-classes", "7", "8", "9",
        "--epochs", "1", "--steps-per-epoch", "3", "--eval-limit", "500", "--plot-points", "10",
        "--out", str(out)])
    assert status == 0, err
    saved = json.loads((out / "metrics.json").read_text())
    section = saved["holdout"]
    assert section["classes"] == [7, 8, 9] and saved["settings"]["holdout_classes"] == [7, 8, 9]
    assert saved["settings"]["classes_per_batch"] == 7  # P = the 7 classes left
    assert saved["settings"]["holdout_features"] == "conv"
    labels = np.load(out / "labels.npy")
    assert section["unseen"]["num_queries"] == holdout.query_gallery_split(labels)[labels >= 7].sum()
    assert set(section) == {"classes", "seen", "unseen", "pixels", "projection", "untrained"}
    assert "Held-out classes [7, 8, 9]" in printed
    for row in ("trained", "projection", "untrained", "pixels"):  # the printed table has all four rows
        assert f"\n  {row} " in printed
    assert section["untrained"]["unseen"] != section["unseen"]  # 3 steps of training changed the features
    for flags in ([], ["--from-embeddings"]):
        status, printed, err = run_main(["evaluate", str(out), *flags])
        assert status == 0, err
        assert "\n  untrained " in printed
        again = cli.recompute_metrics(out, from_embeddings=bool(flags))["holdout"]
        for group in ("seen", "unseen"):
            assert flat(again[group]) == pytest.approx(flat(section[group]), abs=1e-6)
            for row in ("pixels", "projection", "untrained"):  # untrained: rebuilt from the saved seed
                assert flat(again[row][group]) == pytest.approx(flat(section[row][group]), abs=1e-6)
        assert "Held-out classes [7, 8, 9]" in printed


# ---------------------------------------------------------------- recipe
def test_feature_model_layers():
    from course_lib import models

    model = models.embedding_network(16, seed=0)
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    assert models.feature_model(model, "conv")(x).shape == (3, 3136)
    assert models.feature_model(model, "backbone")(x).shape == (3, 128)
    np.testing.assert_allclose(models.feature_model(model, "embedding")(x), model(x), rtol=1e-6)
    classifier = models.classifier_network(seed=0)
    assert models.feature_model(classifier, "embedding")(x).shape == (3, 128)
    with pytest.raises(ValueError, match="features"):
        models.feature_model(model, "pixels")


def test_holdout_runs_default_to_the_recipe():
    args = cli.build_parser().parse_args(["train", "--dataset", "mnist", "--holdout-classes", "9", "6", "7", "8"])
    settings = cli.train_settings(args)
    assert settings["holdout_classes"] == [6, 7, 8, 9] and settings["epochs"] == holdout.EPOCHS
    assert settings["classes_per_batch"] == 6
    assert (settings["holdout_features"], settings["holdout_metric"]) == ("conv", "cosine")
    plain = cli.train_settings(cli.build_parser().parse_args(["train", "--dataset", "mnist"]))
    assert plain["holdout_classes"] is None and plain["epochs"] == cli.DEFAULT_EPOCHS["mnist"]


def test_network_report_scores_the_output_and_the_untrained_twin_on_the_same_queries():
    from course_lib import models, training

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    images = (rng.random((40, 28, 28)) * 255 * (1 + labels[:, None, None]) / 4).astype(np.uint8)
    trained, untrained = models.embedding_network(8, seed=1), models.embedding_network(8, seed=2)
    report = holdout.network_report(trained, untrained, images, labels, [3], "backbone", "cosine", "euclidean")
    assert set(report) == {"classes", "seen", "unseen", "pixels", "projection", "untrained"}
    is_query = holdout.query_gallery_split(labels)
    expected = holdout.holdout_report(holdout.holdout_embeddings(trained, images, "backbone"), images, labels,
                                      [3], "cosine")
    assert {key: report[key] for key in expected} == expected
    output = training.embed(trained, images)
    assert report["projection"] == holdout.seen_unseen_metrics(output, labels, [3], is_query, metric="euclidean")
    features = holdout.holdout_embeddings(untrained, images, "backbone")
    assert report["untrained"] == holdout.seen_unseen_metrics(features, labels, [3], is_query, metric="cosine")
    assert "untrained" not in holdout.network_report(trained, None, images, labels, [3], "conv", "cosine",
                                                     "euclidean")


def test_build_model_gives_the_same_untrained_weights_for_the_same_seed():
    args = cli.build_parser().parse_args(["train", "--dataset", "mnist", "--holdout-classes", "8", "9",
                                          "--seed", "3"])
    settings = cli.train_settings(args)
    first = holdout.build_model(settings).get_weights()
    np.random.default_rng().random(5)  # unrelated random draws in between change nothing
    import keras
    keras.random.normal((3,))
    again = holdout.build_model(settings).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = holdout.build_model({**settings, "seed": 4}).get_weights()
    assert not np.array_equal(first[0], other[0])
