"""course_lib.demos.comparison (lesson 09): reading the results table over seeds, on a hand-made table
written with benchmarks/results.py's own summary (so the two agree on the format)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from course_lib.demos import comparison

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_benchmark", ROOT / "benchmarks" / "results.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# unseen MAP@R per seed: pixels 0.30 +- 0.00; supcon clearly above; contrastive within pixels' spread;
# triplet-hard clearly below; cross_entropy tied with supcon (overlapping bars).
UNSEEN = {"pixels": [0.30, 0.30, 0.30], "untrained": [0.20, 0.22, 0.24], "contrastive": [0.28, 0.31, 0.34],
          "triplet-hard": [0.10, 0.12, 0.14], "supcon": [0.50, 0.52, 0.54], "cross_entropy": [0.47, 0.50, 0.53]}


def make_results(tmp_path=None):
    rows = []
    for config, values in UNSEEN.items():
        for seed, value in enumerate(values):
            for split, shift in (("unseen", 0.0), ("seen", 0.3)):
                v = min(value + shift, 1.0)
                rows.append({"dataset": "mnist", "config": config, "seed": seed, "split": split,
                             "precision_at_1": min(v + 0.2, 1.0), "r_precision": v + 0.01 * (v < 0.99),
                             "map_at_r": v, "train_seconds": 10.0 + seed, "wall_seconds": 12.0,
                             "cpu_seconds": 20.0})
    configs = [c for c in UNSEEN if c not in comparison.BASELINES]
    results = {"meta": {"configs": configs, "datasets": ["mnist"], "seeds": [0, 1, 2]},
               "runs": rows, "summary": bench.summarise(rows)}
    if tmp_path is not None:
        (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return results


@pytest.fixture
def results():
    return make_results()


def test_load_results_checks_the_file(tmp_path):
    make_results(tmp_path)
    loaded = comparison.load_results(tmp_path / "results.json")
    assert set(loaded) == {"meta", "runs", "summary"}
    with pytest.raises(ValueError, match="path"):
        comparison.load_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="meta"):
        comparison.load_results(tmp_path / "bad.json")


def test_summary_table_mean_and_std_over_seeds(results):
    table = comparison.summary_table(results, "mnist", "unseen", "MAP@R")
    assert list(table.index) == list(UNSEEN)  # baselines first, then the configurations in table order
    for config, values in UNSEEN.items():
        assert table.at[config, "mean"] == pytest.approx(np.mean(values))
        assert table.at[config, "std"] == pytest.approx(np.std(values, ddof=1))
        assert table.at[config, "seeds"] == 3
    assert table["baseline"].tolist() == [True, True, False, False, False, False]
    with pytest.raises(ValueError, match="metric"):
        comparison.summary_table(results, "mnist", "unseen", "NMI")
    with pytest.raises(ValueError, match="dataset/split"):
        comparison.summary_table(results, "fashion_mnist", "unseen")


def test_results_table_text(results):
    table = comparison.results_table(results, "mnist", "unseen")
    assert table.at["SupCon", "MAP@R"] == "0.520 ± 0.020"
    assert table.at["raw pixels", "MAP@R"] == "0.300 ± 0.000"
    assert table.at["SupCon", "train s"] == 11.0


def test_separated_is_non_overlapping_bars():
    assert comparison.separated(0.5, 0.02, 0.3, 0.0)
    assert not comparison.separated(0.31, 0.03, 0.30, 0.0)
    assert not comparison.separated(0.50, 0.03, 0.52, 0.02)
    assert comparison.separated(0.0, 0.0, 0.1, 0.05) and not comparison.separated(0.0, 0.05, 0.1, 0.05)


def test_error_bar_view_tied_above_and_below_pixels(results):
    state = comparison.error_bar_view(results, "mnist", "unseen", "MAP@R")
    assert state["best"] == "supcon" and set(state["tied"]) == {"supcon", "cross_entropy"}
    assert state["pixels"] == pytest.approx((0.30, 0.0))
    assert state["above_pixels"] == ["supcon", "cross_entropy"]
    assert state["below_pixels"] == ["triplet-hard"]          # contrastive overlaps pixels: neither
    assert comparison.count_above(state) == 2
    assert state["colors"][0] == state["colors"][1] != state["colors"][2]  # baselines gray
    text = comparison.readout(state)
    assert "SupCon" in text and "tied within the spread with 1 more" in text and "2 of 4 trained" in text
    why = comparison.explain_above(state)
    assert "Above them beyond the spread: SupCon, softmax CE" in why and "triplet (hard)" in why


def test_error_bar_view_sorted_and_figure(results):
    state = comparison.error_bar_view(results, "mnist", "seen", "P@1", order="sorted")
    assert np.all(np.diff(state["means"]) <= 0)
    as_table = comparison.error_bar_view(results, "mnist", "seen", "P@1")
    colour = dict(zip(as_table["names"], as_table["colors"]))
    assert state["colors"] == [colour[n] for n in state["names"]]          # a bar keeps its colour
    assert len(set(as_table["colors"][2:])) == len(as_table["colors"][2:])  # one per trained configuration
    fig = comparison.draw_error_bars(state)
    assert len(fig.data) == 1 and list(fig.data[0].x) == state["labels"]
    assert np.allclose(fig.data[0].error_y.array, state["stds"]) and np.allclose(fig.data[0].y, state["means"])
    assert "mean ± std over 3 seeds" in fig.layout.title.text
    with pytest.raises(ValueError, match="order"):
        comparison.error_bar_view(results, "mnist", "seen", "P@1", order="random")


def test_seen_unseen_table_and_figure(results):
    table = comparison.seen_unseen_table(results, "mnist")
    assert table.at["supcon", "seen"] == pytest.approx(0.82)
    assert table.at["supcon", "unseen / pixels"] == pytest.approx(0.52 / 0.30)
    fig = comparison.draw_seen_unseen(table)
    assert [t.name for t in fig.data] == ["seen classes", "unseen classes"]
    assert np.allclose(fig.data[1].y, table["unseen"])


def test_ranking_and_its_explanation(results):
    table = comparison.summary_table(results, "mnist", "unseen")
    names = ["pixels", "supcon", "cross_entropy", "triplet-hard"]
    assert comparison.ranking(table, names) == ["supcon", "cross_entropy", "pixels", "triplet-hard"]
    text = comparison.explain_ranking(table, names)
    assert text.count("within the spread") == 1 and text.count("beyond the spread") == 2
    with pytest.raises(ValueError, match="names"):
        comparison.ranking(table, ["nope"])


def test_beats_lists_wins_beyond_the_spread(results):
    table = comparison.beats(comparison.summary_table(results, "mnist", "unseen"))
    assert table.at["supcon", "count"] == 4  # pixels, untrained, contrastive, triplet-hard; not CE (tied)
    assert "softmax CE" not in table.at["supcon", "beats"]
    assert table.at["contrastive", "beats"] == "untrained network, triplet (hard)"
    assert table.at["triplet-hard", "count"] == 0


def test_committed_table_reads_back():
    """The committed table is readable by the lesson and holds every configuration of the script."""
    path = ROOT / "benchmarks" / "results" / "results.json"
    if not path.is_file():
        pytest.skip("no committed results table yet")
    results = comparison.load_results(path)
    for entry in results["summary"]:
        assert entry["config"] in comparison.LABELS
    for dataset in results["meta"]["datasets"]:
        split = "unseen" if any(e["split"] == "unseen" for e in results["summary"]) else "all"
        table = comparison.summary_table(results, dataset, split)
        assert set(results["meta"]["configs"]) | set(comparison.BASELINES) == set(table.index)
