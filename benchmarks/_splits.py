"""``python benchmarks/results.py --splits``: does the held-out-class recipe hold on other splits?

Each run is ``python -m course_lib train --dataset D --holdout-classes C ...
--seed S`` with every other option at the CLI's default (the recipe of
``--holdout-classes``: triplet semi-hard, :data:`course_lib.holdout.EPOCHS`
epochs, retrieval on the flattened conv features with the cosine distance), on
the bundled data. Its metrics.json's "holdout" section gives four rows, each
scored on the test split's query half of the seen / unseen classes against a
gallery half that holds every class (lesson 06's protocol):

* ``recipe``: the trained network's conv features, cosine;
* ``projection``: the trained network's output (the 64-d embedding), euclidean;
* ``untrained``: the recipe's features of the same network before training (same seed);
* ``pixels``: the raw pixels, euclidean (the same for every seed).

Per split: mean +- std over the seeds (sample std, ddof = 1) of MAP@R and P@1,
seen and unseen, the ratio of the mean unseen MAP@R to the pixels', and the CPU
and wall seconds of a whole run. Written to ``holdout_splits.json`` and
``holdout_splits.md`` (lesson 06 reads the JSON).
"""

from __future__ import annotations

from benchmarks import _bench

STEM = "holdout_splits"
SPLITS = {
    "mnist": [(6, 7, 8, 9), (0, 1, 2, 3), (2, 5, 7)],
    "fashion_mnist": [(5, 6, 8), (0, 2, 4), (1, 7, 9), (0, 1, 9)],
}
ROWS = ("recipe", "projection", "untrained", "pixels")
METRICS = {"MAP@R": "map_at_r", "P@1": "precision_at_1"}
SMOKE = {"splits": ["mnist 7 8 9"], "seeds": [0]}  # with results.SMOKE's budget


def split_key(dataset, classes):
    return f"{dataset} {' '.join(map(str, classes))}"


def plan(names, datasets):
    """``[(dataset, classes)]`` of the splits named (all of SPLITS when ``names`` is empty) in ``datasets``."""
    known = {split_key(d, c): (d, c) for d, splits in SPLITS.items() for c in splits}
    chosen = []
    for name in names or known:
        dataset, *classes = name.split()
        if name not in known and (dataset not in SPLITS or not all(c.isdigit() for c in classes) or not classes):
            raise ValueError(f"--splits: {name!r} is not a split such as 'mnist 6 7 8 9'; the table's splits: "
                             + ", ".join(known))
        if dataset in datasets:
            chosen.append((dataset, tuple(int(c) for c in classes)))
    return chosen


def jobs(splits, seeds, settings, work):
    """The runs, seed-major (a benchmark cut short still covers every split): ``(tag, out, argv)``."""
    for seed in seeds:
        for dataset, classes in splits:
            out = work / f"{dataset}-{'-'.join(map(str, classes))}-seed{seed}"
            yield ((dataset, classes, seed), out,
                   _bench.train_argv(dataset, seed, out, settings, holdout=classes))


def run_entry(record, tag, out, argv, wall, cpu):
    """One run of the JSON: its four rows' seen and unseen scores, its seconds and command."""
    dataset, classes, seed = tag
    section = record["holdout"]
    sources = {"recipe": section, "projection": section["projection"], "untrained": section["untrained"],
               "pixels": section["pixels"]}
    scores = {row: {group: {name: source[group][key] for name, key in METRICS.items()}
                    for group in ("seen", "unseen")} for row, source in sources.items()}
    return {"split": split_key(dataset, classes), "dataset": dataset, "classes": list(classes), "seed": seed,
            "scores": scores, "cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1),
            "command": "python -m course_lib " + " ".join(argv).replace(str(out), "DIR")}


def report(run):
    scores = run["scores"]
    return (f"{run['split']} seed {run['seed']}: unseen MAP@R recipe {scores['recipe']['unseen']['MAP@R']:.3f}, "
            f"pixels {scores['pixels']['unseen']['MAP@R']:.3f} ({run['cpu_seconds']:.0f} s CPU, "
            f"{run['wall_seconds']:.0f} s wall)")


def result(runs, command, settings):
    """The JSON: ``meta`` (date, commit, command, the command of each run), ``runs``, ``summary``."""
    run_command = " ".join(["python -m course_lib",
                            *_bench.train_argv("D", "S", "DIR", settings, holdout=["C", "[C ...]"])])
    meta = {"date": _bench.now(), "commit": _bench.git_commit(), "command": command, "run_command": run_command}
    return {"meta": meta, "runs": runs, "summary": summarise(runs)}


def merged(parts):
    """One result from several (``--merge``): runs pooled, summary recomputed, commands joined."""
    runs = [run for part in parts for run in part["runs"]]
    _bench.check_no_shared_runs(runs, lambda run: (run["split"], run["seed"]))
    meta = {**parts[0]["meta"], "date": _bench.now(), "commit": _bench.git_commit(),
            "command": " & ".join(part["meta"]["command"] for part in parts)}
    return {"meta": meta, "runs": runs, "summary": summarise(runs)}


def summarise(runs):
    """Per split: mean and std over seeds of every row x group x metric, the ratio to pixels, seconds."""
    summary = {}
    for key in dict.fromkeys(run["split"] for run in runs):
        mine = [run for run in runs if run["split"] == key]
        stats = {row: {group: {name: rounded([run["scores"][row][group][name] for run in mine])
                               for name in METRICS} for group in ("seen", "unseen")} for row in ROWS}
        pixels = stats["pixels"]["unseen"]["MAP@R"]["mean"]
        summary[key] = {
            "seeds": sorted(run["seed"] for run in mine), "stats": stats,
            "unseen_map_at_r_over_pixels": {row: round(stats[row]["unseen"]["MAP@R"]["mean"] / pixels, 3)
                                            for row in ROWS},
            "training_adds": round(stats["recipe"]["unseen"]["MAP@R"]["mean"]
                                   - stats["untrained"]["unseen"]["MAP@R"]["mean"], 4),
            "cpu_seconds": rounded([run["cpu_seconds"] for run in mine]),
            "wall_seconds": rounded([run["wall_seconds"] for run in mine]),
        }
    return summary


def rounded(values):
    """{"mean", "std" (ddof = 1; 0 for one value), "n"}, to 4 decimals."""
    mean, std = _bench.mean_std(values)
    return {"mean": round(mean, 4), "std": round(std, 4), "n": len(values)}


def markdown(result):
    """The page holdout_splits.md."""
    meta, summary = result["meta"], result["summary"]
    pm = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    lines = ["# Held-out classes: the recipe on every split (mean ± std over seeds)", "",
             f"Generated {meta['date']} at commit `{meta['commit']}` by `{meta['command']}`. Each run: "
             f"`{meta['run_command']}`; bundled data, every other option at the CLI's default. "
             "std: sample standard deviation (ddof = 1). recipe: trained conv features, cosine; projection: "
             "the network's 64-d output, euclidean; untrained: the recipe's features before training (same "
             "seed); pixels: raw, euclidean.", "",
             "## Unseen classes (never trained on): MAP@R", "",
             "| split | seeds | recipe | projection | untrained | pixels | recipe / pixels | untrained / pixels "
             "| training adds | CPU s per run | wall s per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        unseen = {row: s["stats"][row]["unseen"]["MAP@R"] for row in ROWS}
        ratio = s["unseen_map_at_r_over_pixels"]
        lines.append(f"| {key} | {len(s['seeds'])} | " + " | ".join(pm(unseen[row]) for row in ROWS)
                     + f" | {ratio['recipe']:.2f}x | {ratio['untrained']:.2f}x | {s['training_adds']:+.3f} | "
                     f"{s['cpu_seconds']['mean']:.0f} | {s['wall_seconds']['mean']:.0f} |")
    for group, metric in (("unseen", "P@1"), ("seen", "MAP@R"), ("seen", "P@1")):
        lines += ["", f"## {group.capitalize()} classes: {metric}", "",
                  "| split | " + " | ".join(ROWS) + " |", "|---|" + "---|" * len(ROWS)]
        for key, s in summary.items():
            lines.append(f"| {key} | " + " | ".join(pm(s["stats"][row][group][metric]) for row in ROWS) + " |")
    return "\n".join(lines) + "\n"
