"""benchmarks/results.py: the results table over seeds (its summaries, its Markdown, its CI slice)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_results_module():
    spec = importlib.util.spec_from_file_location("results", ROOT / "benchmarks" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results = load_results_module()
METRIC_KEYS = list(results.METRICS.values())


def fake_rows(configs=("contrastive", "supcon"), seeds=(0, 1, 2), splits=("seen", "unseen")):
    rng = np.random.default_rng(0)
    rows = []
    for config in (*results.BASELINES, *configs):
        for seed in seeds:
            for split in splits:
                row = {"dataset": "mnist", "config": config, "seed": seed, "split": split,
                       "train_seconds": float(rng.uniform(5, 10)), "wall_seconds": 1.0,
                       "cpu_seconds": float(rng.uniform(5, 10))}
                row.update({key: float(rng.uniform(0, 1)) for key in METRIC_KEYS})
                rows.append(row)
    return rows


def check_summary(rows, summary):
    """Every summary entry's mean and std are those of the per-seed values in ``rows``."""
    for entry in summary:
        group = sorted((r for r in rows if (r["dataset"], r["config"], r["split"])
                        == (entry["dataset"], entry["config"], entry["split"])), key=lambda r: r["seed"])
        assert entry["precision_at_1"]["seeds"] == [r["seed"] for r in group]
        for key in (*METRIC_KEYS, "train_seconds", "cpu_seconds"):
            values = [r[key] for r in group]
            # the sample standard deviation, written out
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
            assert entry[key]["values"] == pytest.approx(values)
            assert entry[key]["mean"] == pytest.approx(mean)
            assert entry[key]["std"] == pytest.approx(std)


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = fake_rows()
    summary = results.summarise(rows)
    assert len(summary) == (len(results.BASELINES) + 2) * 2
    check_summary(rows, summary)


def test_single_seed_has_zero_std():
    summary = results.summarise(fake_rows(seeds=(4,)))
    assert all(entry["map_at_r"]["std"] == 0.0 for entry in summary)


def test_markdown_lists_every_configuration_baselines_first():
    rows = fake_rows()
    meta = {"date": "2025-01-01 00:00", "commit": "abc", "command": "python benchmarks/results.py",
            "machine": "2 CPU cores", "runs": 6, "wall_seconds": 60.0, "cpu_seconds": 50.0,
            "datasets": ["mnist"], "configs": ["contrastive", "supcon"], "seeds": [0, 1, 2],
            "settings": {"epochs": 2, "steps_per_epoch": None, "eval_limit": None, "holdout": True}}
    text = results.markdown({"meta": meta, "runs": rows, "summary": results.summarise(rows)})
    unseen = text[text.index("## mnist: classes held out"):text.index("## mnist: classes seen")]
    names = [line.split("|")[1].strip() for line in unseen.splitlines() if line.startswith("| ")][2:]
    assert names == ["pixels", "untrained", "contrastive", "supcon"]
    entry = next(e for e in results.summarise(rows) if e["config"] == "supcon" and e["split"] == "unseen")
    assert f"{entry['map_at_r']['mean']:.3f} +- {entry['map_at_r']['std']:.3f}" in unseen
    assert "6 7 8 9" in text and "epochs 2" in text and "pytorch-metric-learning" in text


def test_every_loss_of_the_cli_has_a_configuration():
    from course_lib.options import LOSSES, STRATEGIES

    losses = {argv[argv.index("--loss") + 1] for argv in results.CONFIGS.values()}
    assert losses == set(LOSSES) - {"nt-xent"}  # nt-xent is the label-free loss of lesson 10
    minings = {argv[argv.index("--mining") + 1] for argv in results.CONFIGS.values() if "--mining" in argv}
    assert minings == set(STRATEGIES)


@pytest.mark.slow
def test_smoke_slice_writes_a_consistent_table(tmp_path):
    """The CI slice end to end: every configuration trained through the CLI, JSON and Markdown."""
    assert results.main(["--smoke", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "runs")]) == 0
    saved = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    text = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    splits = {row["split"] for row in saved["runs"]}
    assert splits in ({"seen", "unseen"}, {"all"})
    for split in splits:
        configs = {e["config"] for e in saved["summary"] if e["split"] == split}
        assert configs == set(results.CONFIGS) | set(results.BASELINES)
    assert {row["seed"] for row in saved["runs"]} == set(results.SMOKE["seeds"])
    check_summary(saved["runs"], saved["summary"])
    for row in saved["runs"]:
        assert all(0.0 <= row[key] <= 1.0 for key in METRIC_KEYS)
        assert row["map_at_r"] <= row["r_precision"] + 1e-9
    for config in (*results.CONFIGS, *results.BASELINES):
        assert f"| {config} |" in text
    assert saved["meta"]["settings"]["steps_per_epoch"] == results.SMOKE["steps_per_epoch"]


def test_merge_pools_the_runs_of_separate_tables(tmp_path):
    meta = {"date": "2025-01-01 00:00", "commit": "abc", "machine": "2 CPU cores", "configs": ["contrastive", "supcon"],
            "seeds": [0, 1, 2], "settings": {"epochs": 2, "steps_per_epoch": 40, "eval_limit": None, "holdout": True},
            "runs": 6, "wall_seconds": 60.0, "cpu_seconds": 50.0, "script_wall_seconds": 70.0}
    paths = []
    for dataset in ("mnist", "fashion_mnist"):
        rows = [{**row, "dataset": dataset} for row in fake_rows()]
        part = {"meta": {**meta, "datasets": [dataset], "command": f"python benchmarks/results.py --datasets {dataset}",
                         "holdout_classes": {dataset: list(results.HOLDOUT[dataset])},
                         "commands": {f"{dataset} supcon": "python -m course_lib train ..."}},
                "runs": rows, "summary": results.summarise(rows)}
        paths.append(tmp_path / f"{dataset}.json")
        paths[-1].write_text(json.dumps(part), encoding="utf-8")
    merged = results.merge(paths, tmp_path / "out")
    assert merged["meta"]["datasets"] == ["mnist", "fashion_mnist"] and merged["meta"]["runs"] == 12
    assert merged["meta"]["wall_seconds"] == 120.0 and len(merged["meta"]["commands"]) == 2
    assert len(merged["runs"]) == 2 * len(fake_rows())
    check_summary(merged["runs"], merged["summary"])
    text = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert "## mnist: classes held out" in text and "## fashion_mnist: classes held out" in text
    with pytest.raises(ValueError, match="share runs"):
        results.merge([paths[0], paths[0]], tmp_path / "again")
