"""course_lib.demos.comparison (lesson 09): table, selector and figures on hand-made histories,
and one tiny end-to-end run of the protocol."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib import data
from course_lib.demos import comparison as dc
from course_lib.training import EpochRecord, History

FINALS = {  # name: (P@1, R-precision, MAP@R)
    "contrastive": (0.80, 0.70, 0.60),
    "triplet (hard)": (0.78, 0.62, 0.50),
    "angular": (0.82, 0.72, 0.66),
    "softmax CE (baseline)": (0.79, 0.55, 0.45),
}


def fake_history(name, p1, rp, mapr, epochs=3, collapse=None):
    history = History(loss_name=name, options={})
    for e in range(1, epochs + 1):
        metrics = {"precision_at_1": p1 * e / epochs, "r_precision": rp * e / epochs, "map_at_r": mapr * e / epochs}
        history.records.append(EpochRecord(e, 1.0 / e, 0.5, 0.3, 0.9, 1.0, metrics, 0.5))
    history.final_metrics = {"precision_at_1": p1, "r_precision": rp, "map_at_r": mapr,
                             "recall_at_k": {1: p1}, "num_queries": 100}
    history.collapse = collapse
    return history


@pytest.fixture
def histories():
    runs = {name: fake_history(name, *values) for name, values in FINALS.items()}
    runs["triplet (hard)"].collapse = "epoch 2: embedding collapsed"
    runs["angular"].wall_seconds = 12.5
    return runs


def test_results_table(histories):
    table = dc.results_table(histories)
    assert list(table.index) == list(FINALS)
    for name, (p1, rp, mapr) in FINALS.items():
        assert table.loc[name, "P@1"] == p1 and table.loc[name, "R-precision"] == rp
        assert table.loc[name, "MAP@R"] == mapr
    assert np.isclose(table.loc["contrastive", "final train loss"], 1.0 / 3)
    assert table.loc["angular", "seconds"] == 12.5                 # wall time when recorded
    assert table.loc["contrastive", "seconds"] == 1.5               # else the sum of epoch times
    assert table["collapsed"].tolist() == [False, True, False, False]


def test_best_by_and_metric_view(histories):
    table = dc.results_table(histories)
    for metric, column in ((m, i) for i, m in enumerate(dc.METRIC_NAMES)):
        best = max(FINALS, key=lambda n: FINALS[n][column])
        assert dc.best_by(table, metric) == best
    state = dc.metric_view(table, "MAP@R", "as run")
    assert state["names"] == list(FINALS) and state["best"] == "angular" and state["best_value"] == 0.66
    assert state["baseline"] == 0.45 and np.isclose(state["spread"], 0.66 - 0.45)
    ordered = dc.metric_view(table, "R-precision", "sorted")
    assert ordered["names"] == sorted(FINALS, key=lambda n: -FINALS[n][1])
    assert np.all(np.diff(ordered["values"]) <= 0)
    colour_of = dict(zip(state["names"], state["colors"]))     # a run keeps its colour when sorted
    assert dict(zip(ordered["names"], ordered["colors"])) == colour_of and len(set(colour_of.values())) == 4
    text = dc.readout(state)
    assert "angular (0.660)" in text and "baseline 0.450" in text
    with pytest.raises(ValueError):
        dc.metric_view(table, "accuracy")
    with pytest.raises(ValueError):
        dc.metric_view(table, "P@1", "random")
    no_baseline = dc.metric_view(table.drop(index="softmax CE (baseline)"), "P@1")
    assert no_baseline["baseline"] is None and "baseline" not in dc.readout(no_baseline)


def test_prediction_feedback(histories):
    table = dc.results_table(histories)
    baseline = dc.baseline_name(table)
    assert baseline == "softmax CE (baseline)" and dc.baseline_name(table.drop(index=baseline)) is None
    # MAP@R: contrastive 0.60, triplet (hard) 0.50, angular 0.66 against the baseline's 0.45.
    assert dc.count_above(table, baseline, "MAP@R") == 3
    assert dc.count_above(table, baseline, "P@1") == 2          # 0.80 and 0.82 beat 0.79; 0.78 does not
    text = dc.explain_best(table, "MAP@R")
    assert text.startswith("angular leads with MAP@R 0.660, contrastive follows at 0.600 (a gap of 0.060)")
    assert "one seed" in text
    text = dc.explain_baseline(table, baseline, "MAP@R")
    assert text.startswith("every ranking loss is above the softmax baseline (MAP@R 0.450)")
    assert text.endswith("(one seed, on the classes seen in training).")
    mid = table.copy()
    mid.loc[baseline, "MAP@R"] = 0.55
    assert dc.count_above(mid, baseline, "MAP@R") == 2
    assert "scores 0.550; above it: angular (0.660), contrastive (0.600) (one seed" in dc.explain_baseline(mid, baseline)
    mid.loc[baseline, "MAP@R"] = 0.9
    assert dc.count_above(mid, baseline, "MAP@R") == 0
    assert "above every ranking loss" in dc.explain_baseline(mid, baseline, "MAP@R")


def test_figures(histories):
    table = dc.results_table(histories)
    state = dc.metric_view(table, "P@1", "sorted")
    fig = dc.draw_metric(state)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert list(fig.data[0].x) == state["names"] and np.allclose(fig.data[0].y, state["values"])
    assert list(fig.data[0].marker.color) == state["colors"]
    widths = list(fig.data[0].marker.line.width)
    assert widths[state["names"].index(state["best"])] == 3 and sum(widths) == 3
    assert any(shape.y0 == 0.79 for shape in fig.layout.shapes)     # the baseline line
    fig = dc.draw_results(table)
    assert [t.name for t in fig.data] == list(dc.METRIC_NAMES)
    assert np.allclose(fig.data[2].y, table["MAP@R"])


def test_build_model_kinds():
    unit = dc.build_model("unit", embedding_dim=8, seed=0)
    free = dc.build_model("free", embedding_dim=8, seed=0)
    clf = dc.build_model("classifier", num_classes=4, seed=0)
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(np.linalg.norm(unit(x).numpy(), axis=1), 1.0, rtol=1e-5)
    assert free(x).shape == (3, 8) and not np.allclose(np.linalg.norm(free(x).numpy(), axis=1), 1.0)
    assert clf(x).shape == (3, 4) and clf.get_layer("backbone") is not None
    with pytest.raises(ValueError):
        dc.build_model("resnet")


def test_runs_cover_every_loss_once():
    losses = [loss for loss, _, _ in dc.RUNS.values()]
    assert set(losses) == {"contrastive", "triplet", "npairs", "angular", "cross_entropy"}
    minings = sorted(opts["mining"] for loss, opts, _ in dc.RUNS.values() if loss == "triplet")
    assert minings == ["all", "hard", "semi-hard"]
    assert dc.RUNS["N-pairs"][2] == "free" and dc.RUNS["softmax CE (baseline)"][2] == "classifier"


@pytest.mark.slow
def test_run_comparison_end_to_end():
    images, labels = data.load_dataset("mnist", "train", source="bundled", verbose=False)
    keep = np.isin(labels, [0, 1, 2, 3])
    images, labels = images[keep][:400], labels[keep][:400]
    runs = {name: dc.RUNS[name] for name in ("N-pairs", "softmax CE (baseline)")}
    histories = dc.run_comparison(images[:300], labels[:300], images[300:], labels[300:], runs=runs,
                                  epochs=2, steps_per_epoch=3, classes_per_batch=4, samples_per_class=2,
                                  eval_size=50, embedding_dim=8, verbose=False)
    assert list(histories) == list(runs)
    for history in histories.values():
        assert len(history.records) == 2 and history.wall_seconds > 0
        assert set(history.final_metrics) >= set(dc.METRIC_NAMES.values())
        assert history.final_metrics["num_queries"] == 100
    table = dc.results_table(histories)
    assert table.shape[0] == 2 and np.isfinite(table[list(dc.METRIC_NAMES)].to_numpy()).all()
