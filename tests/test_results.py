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


# ------------------------------------------------ both tables: one writer, one runner (--splits)
splits = results._splits
COMMITTED = ROOT / "benchmarks" / "results"


@pytest.mark.parametrize("stem", ["results", "holdout_splits"])
def test_the_writer_reproduces_the_committed_table_from_its_json(stem, tmp_path):
    """The committed Markdown is what the writer makes of the committed JSON, byte for byte,
    and the summaries are those of the runs."""
    saved = json.loads((COMMITTED / f"{stem}.json").read_text(encoding="utf-8"))
    mode = splits if stem == "holdout_splits" else results
    assert mode.summarise(saved["runs"]) == saved["summary"]
    results._bench.write(tmp_path, stem, saved, mode.markdown(saved))
    for ext in ("json", "md"):
        assert (tmp_path / f"{stem}.{ext}").read_bytes() == (COMMITTED / f"{stem}.{ext}").read_bytes()


def test_the_runner_builds_the_committed_command_lines():
    saved = json.loads((COMMITTED / "results.json").read_text(encoding="utf-8"))
    meta = saved["meta"]
    jobs = results.table_jobs(meta["datasets"], meta["configs"], [0], meta["settings"],
                              Path("/tmp/course_lib_results"))
    commands = {f"{dataset} {config}": " ".join(["python -m course_lib", *argv])
                for (dataset, config, _), _, argv in jobs}
    assert commands == meta["commands"]


def fake_split_runs(values=((0.40, 0.42, 0.47), (0.20, 0.21, 0.25))):
    """Runs of two splits, three seeds; unseen MAP@R of the recipe from ``values``, the others shifted."""
    runs = []
    for (dataset, classes), recipe in zip([("mnist", (6, 7, 8, 9)), ("fashion_mnist", (5, 6, 8))], values):
        for seed, value in enumerate(recipe):
            shift = {"recipe": 0.0, "projection": -0.1, "untrained": -0.05 - 0.01 * seed, "pixels": -0.15}
            scores = {row: {group: {"MAP@R": value + delta + (group == "seen") * 0.03, "P@1": 0.9 + delta}
                            for group in ("seen", "unseen")} for row, delta in shift.items()}
            runs.append({"split": splits.split_key(dataset, classes), "dataset": dataset,
                         "classes": list(classes), "seed": seed, "scores": scores,
                         "cpu_seconds": 60.0 + seed, "wall_seconds": 100.0, "command": "python -m course_lib train"})
    return runs


def test_splits_summary_is_mean_and_sample_std_over_seeds():
    runs = fake_split_runs()
    summary = splits.summarise(runs)
    assert list(summary) == ["mnist 6 7 8 9", "fashion_mnist 5 6 8"]
    recipe = summary["mnist 6 7 8 9"]["stats"]["recipe"]["unseen"]["MAP@R"]
    mean = (0.40 + 0.42 + 0.47) / 3
    std = (((0.40 - mean) ** 2 + (0.42 - mean) ** 2 + (0.47 - mean) ** 2) / 2) ** 0.5
    assert recipe == {"mean": round(mean, 4), "std": round(std, 4), "n": 3}
    entry = summary["mnist 6 7 8 9"]
    assert entry["unseen_map_at_r_over_pixels"]["recipe"] == round(mean / (mean - 0.15), 3)
    assert entry["unseen_map_at_r_over_pixels"]["pixels"] == 1.0
    assert entry["training_adds"] == pytest.approx(0.06, abs=1e-4)  # untrained: -0.05, -0.06, -0.07
    assert entry["cpu_seconds"] == {"mean": 61.0, "std": 1.0, "n": 3} and entry["seeds"] == [0, 1, 2]
    text = splits.markdown({"meta": {"date": "today", "commit": "abc", "command": "c", "run_command": "r"},
                            "runs": runs, "summary": summary})
    assert f"| mnist 6 7 8 9 | 3 | {mean:.3f} ± {std:.3f} |" in text


def test_splits_are_named_like_the_table():
    assert len(splits.plan([], list(results.DATASETS))) == sum(map(len, splits.SPLITS.values()))
    assert splits.plan([], ["fashion_mnist"])[0] == ("fashion_mnist", (5, 6, 8))
    assert splits.plan(["mnist 1 2 3"], ["mnist"]) == [("mnist", (1, 2, 3))]  # a new split runs too
    for bad in ("cifar 1 2", "mnist", "mnist one"):
        with pytest.raises(ValueError, match="--splits"):
            splits.plan([bad], ["mnist"])
    with pytest.raises(SystemExit):  # the table's options mean nothing to --splits
        results.main(["--splits", "--configs", "supcon"])


def test_merge_of_split_tables_gives_the_table_of_all_runs(tmp_path):
    saved = json.loads((COMMITTED / "holdout_splits.json").read_text(encoding="utf-8"))
    paths = []
    for part in ([0], [1, 2]):  # as if two processes had run the seeds
        runs = [run for run in saved["runs"] if run["seed"] in part]
        paths.append(tmp_path / f"seeds{part[0]}.json")
        paths[-1].write_text(json.dumps({**saved, "runs": runs, "summary": splits.summarise(runs)}))
    merged = results.merge(paths, tmp_path / "out", splits=True)
    assert merged["summary"].keys() == saved["summary"].keys()
    for key, entry in merged["summary"].items():
        assert entry["stats"] == saved["summary"][key]["stats"]
    tables = lambda text: text[text.index("## "):]  # noqa: E731  (below the header line)
    assert tables((tmp_path / "out" / "holdout_splits.md").read_text()) == \
        tables((COMMITTED / "holdout_splits.md").read_text())
    with pytest.raises(ValueError, match="share runs"):
        results.merge([paths[0], paths[0]], tmp_path / "again", splits=True)


@pytest.mark.slow
def test_splits_smoke_slice_trains_and_resumes(tmp_path):
    """``--splits --smoke``: one split, one seed through the CLI; again with --resume, read back."""
    options = ["--splits", "--smoke", "--resume", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "runs")]
    assert results.main(options) == 0
    first = json.loads((tmp_path / "out" / "holdout_splits.json").read_text(encoding="utf-8"))
    (run,) = first["runs"]
    assert run["split"] == splits.SMOKE["splits"][0] and run["seed"] == 0
    assert "--steps-per-epoch 2" in run["command"] and "--holdout-classes 7 8 9" in run["command"]
    for row in splits.ROWS:
        for group in ("seen", "unseen"):
            assert all(0 < run["scores"][row][group][metric] <= 1 for metric in ("MAP@R", "P@1"))
    assert first["summary"] == splits.summarise(first["runs"])
    log = tmp_path / "runs" / "mnist-7-8-9-seed0.log"
    written = log.stat().st_mtime_ns
    assert results.main(options) == 0  # the finished run is read back, not trained again
    again = json.loads((tmp_path / "out" / "holdout_splits.json").read_text(encoding="utf-8"))
    assert again["runs"] == first["runs"] and log.stat().st_mtime_ns == written
