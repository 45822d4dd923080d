"""Tests of course_lib.demos.retrieval against brute-force NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import retrieval
from course_lib.demos import retrieval as demo

NAMES = [f"c{i}" for i in range(6)]


def clustered(n_per_class=12, num_classes=6, dim=5, spread=1.0, seed=0):
    """Labels in a shuffled order, embeddings = class centre + noise, and fake uint8 images."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(num_classes), n_per_class))
    centres = rng.normal(size=(num_classes, dim)) * 2.0
    x = (centres[labels] + spread * rng.normal(size=(len(labels), dim))).astype(np.float32)
    images = rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8)
    return labels, x, images


def brute_force_ranking(query, gallery):
    """Gallery indices sorted by Euclidean distance to one query (ties by index)."""
    d = np.sqrt(((gallery.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1))
    return np.argsort(d, kind="stable"), np.sort(d, kind="stable")


def brute_force_scores(queries, query_labels, gallery, gallery_labels):
    """P@1 and MAP@R (Musgrave et al. 2020) written out query by query."""
    p_at_1, map_at_r = [], []
    for q, y in zip(queries, query_labels):
        order, _ = brute_force_ranking(q, gallery)
        r = int(np.sum(gallery_labels == y))
        if r == 0:
            continue
        match = gallery_labels[order] == y
        p_at_1.append(float(match[0]))
        precisions = [match[: i + 1].mean() for i in range(r)]
        map_at_r.append(sum(p * m for p, m in zip(precisions, match[:r])) / r)
    return np.mean(p_at_1), np.mean(map_at_r)


# ------------------------------------------------------------------ embeddings and scores
def test_pixel_embeddings_flatten_and_scale():
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 28, 28) % 256
    x = demo.pixel_embeddings(images.astype(np.uint8))
    assert x.shape == (2, 784) and x.dtype == np.float32
    assert np.allclose(x * 255, images.reshape(2, -1))
    assert x.min() >= 0 and x.max() <= 1


def test_pixel_embeddings_refuse_float_images():
    with pytest.raises(ValueError, match="uint8"):
        demo.pixel_embeddings(np.zeros((2, 28, 28), dtype=np.float32))


def test_compare_is_leave_one_out_evaluate_per_space():
    labels, x, _ = clustered(spread=2.0)
    spaces = {"a": x, "b": x[:, :2]}
    table = demo.compare(spaces, labels)
    assert set(table) == {"a", "b"}
    for name, data in spaces.items():
        # leave-one-out by brute force: query i against all the others
        scores = [brute_force_scores(data[i:i + 1], labels[i:i + 1], np.delete(data, i, axis=0),
                                     np.delete(labels, i)) for i in range(len(data))]
        p1, mapr = np.mean(scores, axis=0)
        assert np.isclose(table[name]["precision_at_1"], p1)
        assert np.isclose(table[name]["map_at_r"], mapr)


def test_query_gallery_split_alternates_within_each_class():
    labels = np.array([0, 1, 0, 0, 1, 2, 0, 2, 2, 1, 0])
    is_query = demo.query_gallery_split(labels)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        assert is_query[rows].tolist() == [i % 2 == 0 for i in range(len(rows))]
    assert np.array_equal(is_query, demo.query_gallery_split(labels))  # deterministic


def test_seen_unseen_metrics_match_brute_force():
    labels, x, _ = clustered(n_per_class=10, spread=2.0, seed=1)
    unseen = (1, 4)
    scores = demo.seen_unseen_metrics(x, labels, unseen)
    is_query = demo.query_gallery_split(labels)
    gallery = ~is_query
    for group, in_group in (("seen", ~np.isin(labels, unseen)), ("unseen", np.isin(labels, unseen))):
        q = is_query & in_group
        p1, mapr = brute_force_scores(x[q], labels[q], x[gallery], labels[gallery])
        assert np.isclose(scores[group]["precision_at_1"], p1)
        assert np.isclose(scores[group]["map_at_r"], mapr)
        assert scores[group]["num_queries"] == q.sum()


def test_seen_unseen_metrics_accept_a_given_split():
    labels, x, _ = clustered(seed=2)
    is_query = np.random.default_rng(0).random(len(labels)) < 0.5
    scores = demo.seen_unseen_metrics(x, labels, [0], is_query=is_query)
    q = is_query & (labels == 0)
    p1, _ = brute_force_scores(x[q], labels[q], x[~is_query], labels[~is_query])
    assert np.isclose(scores["unseen"]["precision_at_1"], p1)


def test_per_class_precision_at_1_and_its_weighted_mean():
    labels, x, _ = clustered(n_per_class=9, spread=2.5, seed=3)
    is_query = demo.query_gallery_split(labels)
    q, g = x[is_query], x[~is_query]
    per_class = demo.per_class_precision_at_1(q, labels[is_query], g, labels[~is_query], num_classes=7)
    assert per_class.shape == (7,) and np.isnan(per_class[6])  # class 6 has no query
    for c in range(6):
        rows = np.flatnonzero(labels[is_query] == c)
        hits = [labels[~is_query][brute_force_ranking(q[i], g)[0][0]] == c for i in rows]
        assert np.isclose(per_class[c], np.mean(hits))
    counts = np.bincount(labels[is_query], minlength=6)
    overall = retrieval.evaluate(q, labels[is_query], g, labels[~is_query])["precision_at_1"]
    assert np.isclose(np.sum(per_class[:6] * counts) / counts.sum(), overall)


def test_neighbour_class_counts():
    labels, x, _ = clustered(spread=3.0, seed=4)
    is_query = demo.query_gallery_split(labels)
    q, g, yq, yg = x[is_query], x[~is_query], labels[is_query], labels[~is_query]
    counts = demo.neighbour_class_counts(q, yq, g, yg, label=2, num_classes=6)
    expected = np.zeros(6, dtype=int)
    for i in np.flatnonzero(yq == 2):
        expected[yg[brute_force_ranking(q[i], g)[0][0]]] += 1
    assert np.array_equal(counts, expected) and counts.sum() == np.sum(yq == 2)
    with pytest.raises(ValueError, match="No query"):
        demo.neighbour_class_counts(q, yq, g, yg, label=9, num_classes=10)


def test_seen_unseen_by_epoch_scores_every_snapshot():
    labels, x, _ = clustered(seed=5)
    rng = np.random.default_rng(0)
    snapshots = [x + rng.normal(size=x.shape).astype(np.float32) * s for s in (3.0, 1.0, 0.1)]
    baseline = rng.normal(size=(len(labels), 3)).astype(np.float32)
    curves = demo.seen_unseen_by_epoch(snapshots, labels, (0, 3), baseline=baseline)
    assert curves["epoch"] == [0, 1, 2]
    for e, snapshot in enumerate(snapshots):
        scores = demo.seen_unseen_metrics(snapshot, labels, (0, 3))
        for group in ("seen", "unseen"):
            for metric in ("precision_at_1", "map_at_r"):
                assert curves[f"{group}_{metric}"][e] == scores[group][metric]
    base = demo.seen_unseen_metrics(baseline, labels, (0, 3))
    assert curves["baseline"]["unseen_map_at_r"] == base["unseen"]["map_at_r"]
    assert demo.seen_unseen_by_epoch(snapshots, labels, (0, 3))["baseline"] is None
    fig = demo.draw_by_epoch(curves)
    assert [t.name for t in fig.data] == ["learned: seen classes", "pixels: seen classes",
                                         "learned: unseen classes", "pixels: unseen classes"]
    assert list(fig.data[0].y) == curves["seen_map_at_r"]
    both = demo.draw_spaces_by_epoch({"head": curves, "backbone": demo.seen_unseen_by_epoch(snapshots[::-1], labels,
                                                                                          (0, 3))})
    assert [t.name for t in both.data] == ["head: unseen classes", "head: seen classes", "backbone: unseen classes",
                                           "backbone: seen classes", "pixels: unseen classes", "pixels: seen classes"]
    assert list(both.data[2].y) == curves["unseen_map_at_r"][::-1]
    assert list(both.data[4].y) == [base["unseen"]["map_at_r"]] * 2


def test_head_stages_recompute_the_network_from_its_backbone():
    from course_lib import models, training

    model = models.embedding_network(embedding_dim=8, seed=0, width=4)
    images = np.random.default_rng(0).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    stages = demo.head_stages(model, images)
    assert list(stages) == ["backbone", "projection", "unit length"]
    assert np.allclose(stages["backbone"], training.embed(model.get_layer("backbone"), images))
    assert stages["projection"].shape == (20, 8)
    assert np.allclose(stages["unit length"], training.embed(model, images), atol=1e-5)  # the network's output
    assert np.allclose(np.linalg.norm(stages["unit length"], axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="projection"):
        demo.head_stages(models.classifier_network(num_classes=3, seed=0, width=4), images)


def test_mean_norm_by_class_and_its_figure():
    labels = np.array([0, 0, 2, 2, 2])
    x = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    norms = demo.mean_norm_by_class(x, labels, num_classes=3)
    assert np.allclose(norms[[0, 2]], [3.0, 1.0]) and np.isnan(norms[1])
    with pytest.raises(ValueError, match="labels"):
        demo.mean_norm_by_class(x, labels[:4], num_classes=3)
    fig = demo.draw_norms({"a": norms, "b": 2 * norms}, ["c0", "c1", "c2"], unseen=(2,))
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[1].x)[2] == "c2 (unseen)"
    assert fig.layout.yaxis.title.text == "mean length ||x||" and fig.layout.yaxis.range is None


# ------------------------------------------------------------------ browse
def test_browse_pages_and_clamping():
    labels, _, images = clustered(n_per_class=20)
    rows = np.flatnonzero(labels == 3)
    state = demo.browse(3, 2, images=images, labels=labels, class_names=NAMES, per_page=8)
    assert state["pages"] == 3 and state["count"] == 20 and state["class_name"] == "c3"
    assert state["page"] == 2 and np.array_equal(state["indices"], rows[8:16])
    assert np.array_equal(state["images"], images[rows[8:16]])
    last = demo.browse(3, 99, images=images, labels=labels, class_names=NAMES, per_page=8)
    assert last["page"] == 3 and np.array_equal(last["indices"], rows[16:])
    first = demo.browse(3, 0, images=images, labels=labels, class_names=NAMES, per_page=8)
    assert first["page"] == 1 and np.array_equal(first["indices"], rows[:8])
    fig = demo.draw_browse(state)
    assert sum(t.type == "image" for t in fig.data) == 8
    assert "c3" in demo.readout_browse(state) and "page 2 of 3" in demo.readout_browse(state)


def test_browse_numbers_pages_from_one_in_the_slider_readout_and_title():
    """The slider value, the readout and the title all name the same page (lesson 00 showed
    "page 3/63" with the slider at 2)."""
    labels, _, images = clustered(n_per_class=20)
    assert demo.browse_pages(labels, per_page=8) == 3
    assert demo.browse_pages(np.r_[labels, [0] * 5], per_page=8) == 4   # the largest class decides
    for page in (1, 2, 3):
        state = demo.browse(0, page, images=images, labels=labels, class_names=NAMES, per_page=8)
        assert state["page"] == page
        assert f"page {page} of 3" in demo.readout_browse(state)
        assert f"(page {page}/3)" in demo.draw_browse(state).layout.title.text


# ------------------------------------------------------------------ neighbours
def test_neighbours_match_brute_force_and_leave_the_query_out():
    labels, x, images = clustered(spread=2.0, seed=6)
    spaces = {"a": x, "b": -x[:, ::-1] * 3}
    for space in spaces:
        state = demo.neighbours(7, space, spaces=spaces, labels=labels, images=images, k=5,
                                class_names=NAMES)
        order, dist = brute_force_ranking(spaces[space][7], spaces[space])
        order, dist = order[order != 7], dist[1:]
        assert state["index"] == 7 and 7 not in state["neighbours"]
        assert np.array_equal(state["neighbours"], order[:5])
        assert np.allclose(state["distances"], dist[:5], atol=1e-4)
        assert np.array_equal(state["correct"], labels[order[:5]] == labels[7])
        assert state["hits"] == state["correct"].sum()
        assert np.isclose(state["precision_at_k"], state["correct"].mean())
        assert np.array_equal(state["neighbour_images"], images[order[:5]])
        assert state["class_name"] == NAMES[labels[7]]


def test_neighbours_with_query_pool_and_gallery_subset():
    labels, x, images = clustered(seed=7)
    queries = np.array([3, 10, 40])
    gallery = np.arange(20, 72)
    state = demo.neighbours(2, "a", spaces={"a": x}, labels=labels, images=images, k=4,
                            queries=queries, gallery=gallery)
    assert state["index"] == 40 and np.isin(state["neighbours"], gallery).all()
    candidates = gallery[gallery != 40]
    order, _ = brute_force_ranking(x[40], x[candidates])
    assert np.array_equal(state["neighbours"], candidates[order[:4]])


def test_an_exact_duplicate_of_the_query_is_a_neighbour():
    labels, x, images = clustered(seed=8)
    x = x.copy()
    x[11] = x[4]
    state = demo.neighbours(4, "a", spaces={"a": x}, labels=labels, images=images, k=3)
    assert state["neighbours"][0] == 11 and state["distances"][0] == 0


def test_neighbours_reject_bad_arguments():
    labels, x, images = clustered()
    with pytest.raises(ValueError, match="space"):
        demo.neighbours(0, "nope", spaces={"a": x}, labels=labels, images=images)
    with pytest.raises(ValueError, match="query"):
        demo.neighbours(len(labels), "a", spaces={"a": x}, labels=labels, images=images)
    with pytest.raises(ValueError, match="k="):
        demo.neighbours(0, "a", spaces={"a": x}, labels=labels, images=images, k=3, gallery=[0, 1, 2])


def test_draw_neighbours_marks_the_wrong_ones():
    labels, x, images = clustered(spread=4.0, seed=9)
    state = demo.neighbours(0, "a", spaces={"a": x}, labels=labels, images=images, k=8, class_names=NAMES)
    assert 0 < state["hits"] < 8  # a mix of right and wrong, so both colours show
    fig = demo.draw_neighbours(state)
    image_traces = [t for t in fig.data if t.type == "image"]
    assert len(image_traces) == 9
    assert np.array_equal(np.asarray(image_traces[0].z)[..., 0], 255 - images[0])  # the query first
    titles = [a.text for a in fig.layout.annotations]
    assert demo.QUERY_COLOR in titles[0]
    for title, right in zip(titles[1:], state["correct"]):
        assert (demo.CORRECT_COLOR if right else demo.WRONG_COLOR) in title
    assert len(fig.layout.shapes) == 8 - state["hits"]
    assert str(state["hits"]) in demo.readout_neighbours(state)


def test_draw_per_class():
    table = {"pixels": np.linspace(0, 1, 6), "learned": np.full(6, 0.5)}
    fig = demo.draw_per_class(table, NAMES, unseen=(1, 4))
    assert [t.name for t in fig.data] == ["pixels", "learned"]
    assert list(fig.data[0].x) == ["c0", "c1 (unseen)", "c2", "c3", "c4 (unseen)", "c5"]
    assert np.allclose(fig.data[0].y, table["pixels"])
    assert len(fig.layout.shapes) == 2


def test_seen_unseen_by_epoch_with_the_cosine_distance():
    labels, x, _ = clustered(seed=6)
    curves = demo.seen_unseen_by_epoch([x, 3 * x + 1], labels, (1, 2), metric="cosine")
    for e, snapshot in enumerate([x, 3 * x + 1]):
        scores = demo.seen_unseen_metrics(snapshot, labels, (1, 2), metric="cosine")
        assert curves["unseen_map_at_r"][e] == scores["unseen"]["map_at_r"]
    euclidean = demo.seen_unseen_by_epoch([x, 3 * x + 1], labels, (1, 2))
    assert euclidean["unseen_map_at_r"] != curves["unseen_map_at_r"]  # the distance is really passed on


def fake_holdout_splits():
    """A result of benchmarks/results.py --splits with two splits (the numbers are made up)."""
    def stats(means):
        return {row: {group: {"MAP@R": {"mean": m + (group == "seen"), "std": 0.01 * (i + 1), "n": 3},
                              "P@1": {"mean": 0.5, "std": 0.0, "n": 3}} for group in ("seen", "unseen")}
                for i, (row, m) in enumerate(means.items())}
    return {"meta": {"date": "today", "commit": "abc", "command": "python benchmarks/results.py --splits"},
            "runs": [],
            "summary": {"mnist 6 7 8 9": {"seeds": [0, 1, 2], "stats": stats(
                            {"recipe": 0.4, "projection": 0.25, "untrained": 0.3, "pixels": 0.2})},
                        "fashion_mnist 5 6 8": {"seeds": [0, 1], "stats": stats(
                            {"recipe": 0.2, "projection": 0.1, "untrained": 0.15, "pixels": 0.16})}}}


def test_holdout_splits_table_and_figure():
    result = fake_holdout_splits()
    table = demo.holdout_splits_table(result)
    assert list(table.index) == ["mnist 6 7 8 9", "fashion_mnist 5 6 8"]
    row = table.loc["mnist 6 7 8 9"]
    assert row["recipe mean"] == 0.4 and row["pixels mean"] == 0.2 and row["untrained std"] == 0.03
    assert row["recipe / pixels"] == pytest.approx(2.0) and row["untrained / pixels"] == pytest.approx(1.5)
    assert row["training adds"] == pytest.approx(0.1) and row["seeds"] == 3
    assert demo.holdout_splits_table(result, group="seen").loc["mnist 6 7 8 9", "recipe mean"] == 1.4
    fig = demo.draw_holdout_splits(result)
    assert [t.name for t in fig.data] == list(demo.SPLIT_ROWS.values())
    recipe = fig.data[-1]
    assert list(recipe.y) == [0.4, 0.2] and list(recipe.error_y.array) == [0.01, 0.01]
    assert "2/3 seeds" in fig.layout.title.text


def test_load_holdout_splits_reads_a_file(tmp_path):
    import json

    path = tmp_path / "h.json"
    path.write_text(json.dumps(fake_holdout_splits()))
    assert demo.load_holdout_splits(path)["meta"]["commit"] == "abc"
