"""Lesson 10's pure functions: view grid, temperature row, similarity matrix, training helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from course_lib.demos import self_supervised as ssl


def digits(n=6, seed=0):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        top, left = rng.integers(4, 12, size=2)
        images[i, top:top + 10 + i % 4, left:left + 3 + 2 * (i % 5)] = 200 + i
    return images


# ------------------------------------------------------------- view pairs
def test_view_grid_strength_zero_is_the_images():
    images = digits(4)
    state = ssl.view_grid(0.0, images=images)
    np.testing.assert_array_equal(state["view_a"], images)
    np.testing.assert_array_equal(state["view_b"], images)
    assert state["changed"] == 0.0
    assert "0.0%" in ssl.readout_view_grid(state)


def test_view_grid_changes_grow_with_strength_and_draw():
    images = digits(5)
    weak, strong = ssl.view_grid(0.5, images=images), ssl.view_grid(1.5, images=images)
    assert 0.0 < weak["changed"] < strong["changed"]
    assert not np.array_equal(strong["view_a"], strong["view_b"])
    assert strong["view_a"].dtype == np.uint8 and strong["view_a"].shape == images.shape
    fig = ssl.draw_view_grid(strong)
    assert sum(t.type == "image" for t in fig.data) == 3 * len(images)
    assert "1.50" in fig.layout.title.text
    # the same seed gives the same views (the widget redraws what the text describes)
    np.testing.assert_array_equal(ssl.view_grid(1.5, images=images)["view_a"], strong["view_a"])


# ------------------------------------------------------ temperature on a row
@pytest.mark.parametrize("t", [0.05, 0.1, 0.5, 1.0, 5.0])
def test_temperature_row_is_the_nt_xent_row(t):
    state = ssl.temperature_row(t)
    s, p = ssl.TOY_SIMILARITIES, state["probabilities"]
    assert math.isclose(p.sum(), 1.0, rel_tol=1e-12)
    # -log( exp(s_p / t) / sum_k exp(s_k / t) ), written out
    expected = -(s[0] / t - math.log(sum(math.exp(v / t) for v in s)))
    assert math.isclose(state["loss"], expected, rel_tol=1e-9)


def test_temperature_sharpens_the_softmax():
    cold, warm = ssl.temperature_row(0.05), ssl.temperature_row(5.0)
    # cold: almost all weight on the most similar item, here the hardest negative (s = 0.9 > 0.8)
    assert cold["probabilities"].argmax() == 1 and cold["hardest_share"] > 0.85
    # warm: close to uniform over the 8 candidates
    np.testing.assert_allclose(warm["probabilities"], 1 / 8, atol=0.03)
    assert warm["hardest_share"] < 0.2
    # entropy falls as t falls
    entropy = [-(p * np.log(p)).sum() for p in (ssl.temperature_row(t)["probabilities"] for t in (5.0, 0.5, 0.05))]
    assert entropy[0] > entropy[1] > entropy[2]


def test_row_softmax_is_stable():
    p = ssl.row_softmax([1.0, -1.0, 0.5], 1e-3)  # logits of 1000: exp overflows without the shift
    assert np.all(np.isfinite(p)) and p[0] == pytest.approx(1.0)


def test_draw_temperature_row():
    state = ssl.temperature_row(0.5)
    fig = ssl.draw_temperature_row(state)
    bar = fig.data[0]
    assert bar.type == "bar" and len(bar.y) == len(ssl.TOY_SIMILARITIES)
    assert bar.marker.color[0] != bar.marker.color[1]  # the positive stands out
    assert "positive" in bar.x[0] and "0.50" in fig.layout.title.text
    assert "loss" in ssl.readout_temperature_row(state)


# ------------------------------------------------------ similarity matrix
def matrix_batch():
    # 3 images x 2 views; images 0 and 2 share a class; view 5 is a zero row
    image_ids = np.array([0, 1, 2, 0, 1, 2])
    classes = np.array([7, 8, 7, 7, 8, 7])
    x = np.array([[1, 0], [0, 1], [1, 0.2], [1, 0.05], [0.1, 1], [0, 0]], float)
    return x, image_ids, classes


def test_similarity_matrix_positives_image_vs_class():
    x, ids, classes = matrix_batch()
    by_image = ssl.similarity_matrix("image", embeddings=x, image_ids=ids, class_labels=classes)
    by_class = ssl.similarity_matrix("class", embeddings=x, image_ids=ids, class_labels=classes)
    assert by_image["mask"].sum() == 6 and by_image["positives_per_view"] == 1.0
    assert by_class["mask"].sum() == 4 * 3 + 2  # class 7: 4 views, 12 ordered pairs; class 8: 2
    assert not by_image["mask"].diagonal().any() and not by_class["mask"].diagonal().any()
    assert np.all(by_image["mask"] <= by_class["mask"])  # every image positive is a class positive
    s = by_image["similarities"]
    assert np.all(np.isfinite(s)) and np.all(s[5] == 0.0)  # the zero row: similarity 0, no NaN
    np.testing.assert_allclose(s[0, 3], 1 / math.hypot(1, 0.05))
    # most similar other view: 0 -> 3 (yes), 1 -> 4 (yes), 2 -> 0 (image: no, class: yes), 3 -> 0, 4 -> 1,
    # 5 (all zero) -> 0 (argmax of ties: image no, class yes)
    assert by_image["top1"] == pytest.approx(4 / 6)
    assert by_class["top1"] == pytest.approx(1.0)


def test_similarity_matrix_softmax_rows():
    x, ids, classes = matrix_batch()
    state = ssl.similarity_matrix("image", 0.5, embeddings=x, image_ids=ids, class_labels=classes)
    shown = state["shown"]
    assert np.all(np.isnan(shown.diagonal()))
    np.testing.assert_allclose(np.nansum(shown, axis=1), 1.0)
    s = state["similarities"]
    a, k = 0, 3
    np.testing.assert_allclose(shown[a, k], math.exp(s[a, k] / 0.5) / sum(math.exp(s[a, j] / 0.5) for j in range(6) if j != a))


def test_draw_similarity_matrix():
    x, ids, classes = matrix_batch()
    state = ssl.similarity_matrix("class", embeddings=x, image_ids=ids, class_labels=classes)
    fig = ssl.draw_similarity_matrix(state)
    heat, marks = fig.data
    assert heat.type == "heatmap" and marks.name == "positive pair" and len(marks.x) == state["mask"].sum()
    assert "same class" in ssl.readout_similarity_matrix(state)
    assert "softmax" in ssl.draw_similarity_matrix(
        ssl.similarity_matrix("image", 0.1, embeddings=x, image_ids=ids, class_labels=classes)).layout.title.text


# ---------------------------------------------------------------- training
@pytest.mark.slow
def test_train_contrastive_small_run():
    images = np.concatenate([digits(16, seed=s) for s in range(2)])
    model, history = ssl.train_contrastive(images, epochs=2, batch_size=8, temperature=0.5, width=4,
                                           embedding_dim=8, progress=False)
    assert len(history["loss"]) == len(history["seconds"]) == 2
    assert all(np.isfinite(history["loss"])) and 0 < history["loss"][0] < math.log(15) + 1e-3
    z = ssl.embed(model, images)
    assert z.shape == (32, 8)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    features = ssl.embed(model, images, layer="backbone")
    assert features.shape == (32, 128)
    labels = np.arange(32) % 4
    table = ssl.spaces_table({"embedding": z, "backbone": features}, labels)
    assert set(table) == {"embedding", "backbone"} and 0.0 <= table["embedding"]["MAP@R"] <= 1.0
    # with class labels the same helper trains SupCon
    _, supcon = ssl.train_contrastive(images, epochs=1, batch_size=8, width=4, embedding_dim=8,
                                      labels=labels, progress=False)
    assert np.isfinite(supcon["loss"][0])


# ------------------------------------------ the library loop behind train_contrastive
def tiny_self_supervised(images, **options):
    from course_lib import models, training

    model = models.embedding_network(8, width=4, seed=0)
    return training.train_self_supervised(model, images, epochs=2, batch_size=8, progress=False, **options)


def test_train_self_supervised_refuses_what_it_cannot_serve():
    from course_lib import models, training

    model = models.embedding_network(8, width=4, seed=0)
    with pytest.raises(ValueError, match="loss"):
        training.train_self_supervised(model, digits(16), loss="cross_entropy")
    with pytest.raises(ValueError, match="class_labels"):
        training.train_self_supervised(model, digits(16), batch_size=8, class_labels=np.zeros(15, int))
    assert training.self_supervised_defaults("nt-xent") == {"temperature": 0.5}
    assert training.self_supervised_defaults("contrastive") == training.losses.defaults("contrastive")


@pytest.mark.slow
def test_train_self_supervised_uses_no_class_labels():
    images = np.concatenate([digits(16, seed=s) for s in range(2)])
    labels = np.arange(32) % 4
    base = tiny_self_supervised(images, eval_images=images, eval_labels=labels, eval_size=32)
    # the class labels only score retrieval: other labels, the same training
    shuffled = tiny_self_supervised(images, eval_images=images, eval_labels=labels[::-1], eval_size=32)
    assert base["loss"] == shuffled["loss"] and len(base.records) == 2
    # each index labels exactly two views, so SupCon's positives are NT-Xent's: the same losses
    supcon = tiny_self_supervised(images, loss="supcon")
    np.testing.assert_allclose(supcon["loss"], base["loss"], rtol=1e-5)
    # class labels (SupCon's supervised variant) change the positives, and the loss
    by_class = tiny_self_supervised(images, loss="supcon", class_labels=labels)
    assert abs(by_class["loss"][0] - base["loss"][0]) > 1e-3
    # train_contrastive is this loop
    _, history = ssl.train_contrastive(images, epochs=2, batch_size=8, width=4, embedding_dim=8, progress=False)
    np.testing.assert_allclose(history["loss"], base["loss"], rtol=1e-5)
