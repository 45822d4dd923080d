"""course_lib.demos.mining: lesson 04's compute/draw pairs against independent loops."""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib import distributed, mining
from course_lib.demos import mining as dm


def loop_distances(points):
    n = len(points)
    return np.array([[float(np.linalg.norm(points[i] - points[j])) for j in range(n)] for i in range(n)])


def loop_triplet_count(labels):
    n = len(labels)
    return sum(
        1 for a, p, q in itertools.product(range(n), repeat=3)
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]
    )


# ------------------------------------------------------------ counting
@pytest.mark.parametrize("b, k", [(32, 4), (12, 3), (8, 2), (6, 6), (5, 1), (64, 16)])
def test_pk_counts_against_loops(b, k):
    state = dm.pk_counts(b, k)
    assert state["valid"] and state["P"] == b // k
    labels = state["labels"]
    assert np.bincount(labels).tolist() == [k] * (b // k)
    n_pos = [sum(1 for j in range(b) if j != i and labels[j] == labels[i]) for i in range(b)]
    n_neg = [sum(1 for j in range(b) if labels[j] != labels[i]) for i in range(b)]
    assert set(n_pos) == {state["positives_per_anchor"]} == {state["positives_per_anchor_from_masks"]}
    assert set(n_neg) == {state["negatives_per_anchor"]} == {state["negatives_per_anchor_from_masks"]}
    assert state["positive_pairs"] == sum(n_pos) == state["positive_pairs_from_masks"]
    assert state["valid_triplets"] == loop_triplet_count(labels) == state["valid_triplets_from_masks"]
    both = k > 1 and b > k
    assert state["hard_triplets"] == (b if both else 0)
    assert state["semi_hard_triplets"] == (sum(n_pos) if both else 0)


def test_pk_counts_course_example():
    state = dm.pk_counts(32, 4)
    assert (state["P"], state["positives_per_anchor"], state["negatives_per_anchor"]) == (8, 3, 28)
    assert state["valid_triplets"] == 32 * 3 * 28 == 2688
    assert "2688 valid triplets" in dm.pk_readout(state)


def test_pk_counts_invalid_and_degenerate():
    bad = dm.pk_counts(30, 4)
    assert not bad["valid"] and "not a multiple" in bad["message"] and "B=28" in bad["message"]
    assert dm.pk_readout(bad).startswith("invalid batch")
    fig = dm.draw_masks(bad)
    assert len(fig.data) == 0 and fig.layout.annotations[0].text == bad["message"]
    assert "no anchor has a positive" in dm.pk_counts(8, 1)["message"]
    assert "no negatives" in dm.pk_counts(4, 4)["message"]


def test_draw_masks_codes_match_masks():
    state = dm.pk_counts(12, 3)
    fig = dm.draw_masks(state)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    z = np.asarray(fig.data[0].z)
    assert np.array_equal(z == 1, state["positive_mask"])
    assert np.array_equal(z == 2, state["negative_mask"])
    assert np.array_equal(z == 0, np.eye(12, dtype=bool))


def test_pk_state_is_pk_counts_of_p_times_k():
    for p, k in [(8, 4), (1, 5), (6, 1), (10, 6)]:
        state, direct = dm.pk_state(p, k), dm.pk_counts(p * k, k)
        assert state["valid"] and state["P"] == p and state["B"] == p * k
        assert {key: state[key] for key in ("valid_triplets", "message", "hard_triplets")} == \
            {key: direct[key] for key in ("valid_triplets", "message", "hard_triplets")}


def test_triplet_counts_figure():
    fig = dm.triplet_counts_figure(32)
    assert len(fig.data) == 3
    ks = [2, 4, 8, 16]
    all_counts = [32 * (k - 1) * (32 - k) for k in ks]
    assert list(fig.data[0].y) == all_counts
    assert max(all_counts) == all_counts[-1] == 7680  # K = 16 is the largest count plotted
    assert list(fig.data[2].y) == [32] * len(ks)
    # the log axis is labelled at powers of ten only, never "2" or "5"
    ticks = list(fig.layout.yaxis.tickvals)
    assert all(np.log10(t) == int(np.log10(t)) for t in ticks) and ticks[-1] > max(all_counts)


def test_real_pk_batch():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 6)
    images = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    batch = dm.real_pk_batch(images, labels, classes_per_batch=3, samples_per_class=2, seed=1)
    assert batch["images"].dtype == np.uint8 and batch["images"].shape == (6, 28, 28)
    assert len(batch["classes"]) == 3 and np.bincount(batch["labels"], minlength=5).max() == 2
    # every image comes back pixel-exact and with its own label
    for image, label in zip(batch["images"], batch["labels"]):
        match = np.flatnonzero((images == image).all(axis=(1, 2)))
        assert len(match) == 1 and labels[match[0]] == label
    fig = dm.draw_batch(batch, columns=4)
    assert sum(isinstance(t, go.Image) for t in fig.data) == 6


# ------------------------------------------------------------ toy mining
def loop_semi_hard(d, labels, a, p):
    """The closest negative farther than p, else the farthest negative (by hand)."""
    negatives = [n for n in range(len(labels)) if labels[n] != labels[a]]
    farther = [n for n in negatives if d[a, n] > d[a, p]]
    if farther:
        return min(farther, key=lambda n: d[a, n]), False
    return max(negatives, key=lambda n: d[a, n]), True


@pytest.mark.parametrize("margin", [0.1, 0.5, 1.5])
def test_semi_hard_state_against_loops(margin):
    state = dm.mining_state("semi-hard", margin, anchor=0)
    points, labels = dm.TOY_POINTS.astype(np.float64), dm.TOY_LABELS
    d = loop_distances(points)
    a, p, n = state["triplets"]
    expected = []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i != j and labels[i] == labels[j]:
                expected.append((i, j, *loop_semi_hard(d, labels, i, j)))
    assert sorted(zip(a.tolist(), p.tolist(), n.tolist())) == sorted(e[:3] for e in expected)
    fallback = {e[:3]: e[3] for e in expected}
    assert [fallback[t] for t in zip(a.tolist(), p.tolist(), n.tolist())] == state["fallback"].tolist()
    losses = [max(d[i, j] - d[i, k] + margin, 0.0) for i, j, k in zip(a, p, n)]
    np.testing.assert_allclose(state["triplet_losses"], losses, atol=1e-5)
    assert state["num_active"] == sum(v > 0 for v in losses)
    assert state["num_fallbacks"] == sum(fallback.values()) == 4  # the outlier 9 and its class mates
    np.testing.assert_allclose(state["loss"], np.mean(losses), atol=1e-5)
    assert state["anchor_triplets"] == 2 and set(state["shown"]) == set(np.flatnonzero(a == 0))


def test_hard_and_all_states():
    d = loop_distances(dm.TOY_POINTS.astype(np.float64))
    labels = dm.TOY_LABELS
    hard = dm.mining_state("hard", 0.5, anchor=0)
    assert hard["num_triplets"] == 12 and hard["num_fallbacks"] == 0
    for a, p, n in zip(*hard["triplets"]):
        positives = [j for j in range(12) if j != a and labels[j] == labels[a]]
        negatives = [j for j in range(12) if labels[j] != labels[a]]
        assert d[a, p] == max(d[a, j] for j in positives)
        assert d[a, n] == min(d[a, j] for j in negatives)
    everything = dm.mining_state("all", 0.5, anchor="all")
    assert everything["num_triplets"] == loop_triplet_count(labels) == 12 * 2 * 9
    assert len(everything["shown"]) == everything["num_triplets"] and everything["bands"] == []
    assert sum(everything["by_category"].values()) == everything["num_triplets"]


@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_random_state_against_loops(margin):
    """No mining: one valid triplet per anchor, classified and averaged like the others."""
    d = loop_distances(dm.TOY_POINTS.astype(np.float64))
    labels = dm.TOY_LABELS
    state = dm.mining_state("random", margin, anchor="all")
    a, p, n = (t.tolist() for t in state["triplets"])
    assert a == list(range(12))  # one per anchor, in anchor order
    assert all(i != j and labels[i] == labels[j] != labels[k] for i, j, k in zip(a, p, n))
    assert (p, n) == tuple(t.numpy().tolist() for t in mining.mine_triplets(labels, dm.TOY_POINTS, "random")[1:])
    losses = [max(d[i, j] - d[i, k] + margin, 0.0) for i, j, k in zip(a, p, n)]
    np.testing.assert_allclose(state["triplet_losses"], losses, atol=1e-5)
    np.testing.assert_allclose(state["loss"], np.mean(losses), atol=1e-5)  # zeros included
    assert state["num_active"] == sum(v > 0 for v in losses) and state["num_fallbacks"] == 0
    categories = ["hard" if d[i, k] < d[i, j] else "semi-hard" if d[i, k] < d[i, j] + margin else "easy"
                  for i, j, k in zip(a, p, n)]
    assert state["category"].tolist() == categories
    assert dm.mining_state("random", margin, anchor="all")["triplets"][2].tolist() == n  # same batch, same draw
    assert dm.draw_mining(state).layout.title.text.startswith("random triplets (no mining)")


def test_random_triplets_are_mostly_inactive_on_the_toy_batch():
    """The lesson's question at m = 0.5: 9 of 12 random triplets have loss 0, 11 of 24 semi-hard ones;
    a random triplet is a uniform draw from batch-all's, whose inactive share is 151 / 216."""
    inactive = {s: 1 - st["num_active"] / st["num_triplets"]
                for s in ("random", "semi-hard", "all")
                for st in [dm.mining_state(s, 0.5, anchor="all")]}
    assert inactive == pytest.approx({"random": 9 / 12, "semi-hard": 11 / 24, "all": 151 / 216})
    assert "12 triplets, 3 active" in dm.mining_readout(dm.mining_state("random", 0.5, anchor="all"))


def test_anchor_zero_is_the_worked_example():
    """Anchor 0, positive 1 at distance 1: point 4 is closer (hard), point 3 lies in the band."""
    d = loop_distances(dm.TOY_POINTS.astype(np.float64))
    assert d[0, 4] < d[0, 1] < d[0, 3] < d[0, 1] + 0.5
    state = dm.mining_state("semi-hard", 0.5, anchor=0)
    a, p, n = state["triplets"]
    assert n[(a == 0) & (p == 1)].tolist() == [3]
    assert [band[0] for band in state["bands"]] == [1, 2]
    np.testing.assert_allclose(state["bands"][0][1:], (d[0, 1], d[0, 1] + 0.5))
    hard = dm.mining_state("hard", 0.5, anchor=0)
    assert (hard["triplets"][1][hard["shown"]].tolist(), hard["triplets"][2][hard["shown"]].tolist()) == ([1], [4])


def test_isolated_class_has_no_negative_within_margin():
    state = dm.mining_state("semi-hard", 0.5, anchor=6)
    shown = state["shown"]
    assert state["anchor_active"] == 0 and not state["fallback"][shown].any()
    assert set(state["category"][shown]) == {"easy"}


def test_draw_mining_traces_and_circles():
    state = dm.mining_state("semi-hard", 0.5, anchor=9)
    fig = dm.draw_mining(state)
    names = [t.name for t in fig.data]
    assert names[:4] == ["class 0", "class 1", "class 2", "class 3"]
    assert "anchor-positive" in names and "anchor-negative" in names and "fallback negative" in names
    # one green line per drawn triplet: x holds (start, end, None) per segment
    pos_trace = fig.data[names.index("anchor-positive")]
    assert len(pos_trace.x) == 3 * state["anchor_triplets"]
    assert "circle: radius D(a, p)" in names and "circle: radius D(a, p) + m" in names  # legend for shapes
    radii = sorted(round((s.x1 - s.x0) / 2, 6) for s in fig.layout.shapes)
    expected = sorted(round(r, 6) for _, inner, outer in state["bands"] for r in (inner, outer))
    np.testing.assert_allclose(radii, expected, atol=1e-5)
    everything = dm.draw_mining(dm.mining_state("hard", 0.5, anchor="all"))
    assert len(everything.layout.shapes) == 0
    assert not any((t.name or "").startswith("circle") for t in everything.data)


@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_margin_circles_stay_inside_the_axes(margin):
    for anchor in range(len(dm.TOY_LABELS)):
        fig = dm.draw_mining(dm.mining_state("semi-hard", margin, anchor=anchor))
        (x_lo, x_hi), (y_lo, y_hi) = fig.layout.xaxis.range, fig.layout.yaxis.range
        for s in fig.layout.shapes:
            assert x_lo <= s.x0 and s.x1 <= x_hi and y_lo <= s.y0 and s.y1 <= y_hi, (anchor, s)


def test_readout():
    text = dm.mining_readout(dm.mining_state("semi-hard", 0.5, anchor=9))
    assert "24 triplets" in text and "4 fallbacks used" in text and "anchor 9" in text


def test_semi_hard_variants():
    d = loop_distances(dm.TOY_POINTS.astype(np.float64))
    labels = dm.TOY_LABELS
    rows = {r["library"]: r["triplets"] for r in dm.semi_hard_variants(0, margin=0.5)}
    assert rows["TF Addons / course_lib"] == [(0, 1, 3), (0, 2, 4)]
    assert rows["TF Similarity"] == [(0, 1, 3)]  # only the hardest positive, 1
    band = [(0, p, n) for p in (1, 2) for n in range(12)
            if labels[n] != 0 and 0 < d[0, n] - d[0, p] <= 0.5]
    assert rows["pytorch-metric-learning"] == band
    isolated = {r["library"]: r["triplets"] for r in dm.semi_hard_variants(6, margin=0.5)}
    assert isolated["pytorch-metric-learning"] == [] and len(isolated["TF Addons / course_lib"]) == 2


# ------------------------------------------------------------ replicas
# The analysis itself (counts, hardest negatives, missed gap) is tested against loops in
# tests/test_distributed.py; here: that the widget's state is that analysis, and what it adds.
def test_replica_report_is_the_library_analysis():
    labels = np.repeat(np.arange(8), 4)
    x = np.random.default_rng(5).normal(size=(32, 6)).astype(np.float32)
    for r in (1, 2, 4, 8):
        state = dm.replica_report(labels, x, replicas=r)
        library = distributed.per_replica_mining_report(labels, x, r)
        arrays = library.pop("per_anchor")
        assert state["valid"] and state["report"] == library
        for key, value in arrays.items():
            np.testing.assert_array_equal(state[key], value, err_msg=key)
        assert state["anchors_without_positive"] == 0  # whole classes on every replica
        assert state["anchors_without_negative"] == (32 if r == 8 else 0)  # R = 8: one class per replica
        # the per-anchor flags the figure draws average to the library's share
        assert state["hardest_negative_elsewhere"].mean() == pytest.approx(library["hardest_negative_elsewhere"])


def test_replica_report_shuffled_splits_classes_and_invalid():
    labels = np.repeat(np.arange(8), 4)
    x = np.random.default_rng(0).normal(size=(32, 3))
    shuffled = dm.replica_report(labels, x, replicas=4, order="shuffled")
    perm = np.random.default_rng(0).permutation(32)
    np.testing.assert_array_equal(shuffled["labels"], labels[perm])
    assert shuffled["report"]["negatives_global"] == 28 and shuffled["positives_per_replica"].min() < 3
    assert shuffled["anchors_without_positive"] == int(np.sum(shuffled["positives_per_replica"] == 0))
    bad = dm.replica_report(labels, x, replicas=3)
    assert not bad["valid"] and "multiple" in bad["message"]
    assert dm.replica_readout(bad).startswith("invalid split")
    message = dm.draw_replicas(bad)
    assert len(message.data) == 0 and "multiple" in message.layout.annotations[0].text
    assert message.layout.xaxis.visible is False  # no empty panels under the message
    with pytest.raises(ValueError, match="order"):
        dm.replica_report(labels, x, replicas=2, order="random")


def test_draw_replicas_and_sweep():
    labels = np.repeat(np.arange(8), 4)
    x = np.random.default_rng(1).normal(size=(32, 3))
    state = dm.replica_report(labels, x, replicas=2)
    fig = dm.draw_replicas(state)
    kinds = [type(t).__name__ for t in fig.data]
    assert kinds == ["Heatmap", "Scatter", "Bar", "Bar"] + ["Scatter"] * 4
    assert list(fig.data[3].y) == state["negatives_per_replica"].tolist() == [12] * 32
    assert list(fig.data[1].x) == state["hardest_negative"].tolist()  # one x per anchor
    # dark vs pale explained: one legend entry per pair colour the heatmap uses
    legend = {t.name: t.marker.color for t in fig.data[4:]}
    assert legend == dict(dm.REPLICA_PAIR_CODES[1:])
    z = np.asarray(fig.data[0].z)
    assert set(np.unique(z)) == {0, 1, 2, 4}  # class after class: no positive on another replica
    assert np.array_equal(z == 4, state["negative"] & ~state["same_replica"])
    rows = dm.replica_sweep(labels, x, (1, 2, 3, 4))
    assert [r["R"] for r in rows] == [1, 2, 4]  # R=3 does not divide B=32
    assert [r["neg. in replica"] for r in rows] == [28, 12, 4]
    assert rows[1]["missed gap"] == state["report"]["missed_gap"]
    assert rows[0]["hardest elsewhere"] == rows[0]["missed gap"] == 0.0  # one replica misses nothing
    assert "12.0 in-replica vs 28.0 global" in dm.replica_readout(state)


def test_heatmaps_are_sent_as_lists():
    """2-D NumPy arrays reach a FigureWidget as binary 2-D typed arrays, which JupyterLab draws
    as an empty plot (found by tests/ui); the heatmaps hold nested lists instead."""
    labels = np.repeat(np.arange(8), 4)
    x = np.random.default_rng(1).normal(size=(32, 3))
    for fig in (dm.draw_masks(dm.pk_state(8, 4)), dm.draw_replicas(dm.replica_report(labels, x, 2))):
        heat = fig.data[0]
        assert not isinstance(heat.z, np.ndarray) and not isinstance(heat.customdata, np.ndarray)
        assert "bdata" not in str(fig.to_plotly_json()["data"][0]["z"])
