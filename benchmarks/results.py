"""The results table: every loss of the course, several seeds, seen and unseen classes.

    python benchmarks/results.py                       # the committed table (about an hour on 2 cores)
    python benchmarks/results.py --smoke --out /tmp/r  # a small slice that proves the script works
    python benchmarks/results.py --datasets mnist --configs supcon triplet-semi-hard --seeds 0 1
    python benchmarks/results.py --splits              # the recipe on 7 held-out splits (lesson 06)
    python benchmarks/results.py --splits "mnist 2 5 7" --smoke --out /tmp/s

Every trained row is a real ``python -m course_lib train`` run (called in this
process through ``course_lib.cli.main``, so TensorFlow starts once), with the
options a user would type; the script only adds ``--seed``, ``--out``,
``--source bundled``, ``--plot-points 10`` (a smaller plot, the same metrics),
``--quiet`` and the budget (``--epochs``, ``--steps-per-epoch``, ``--eval-limit``)
given here. With
``--holdout-classes`` (MNIST: 6 7 8 9 held out, Fashion-MNIST: 5 6 8) one run
gives both columns: its ``metrics.json`` scores the test split's query half of
the *seen* and of the *unseen* classes against a gallery half that holds every
class (lesson 06's protocol).

Baselines, under the same protocol:

* ``pixels``: the raw 784 pixels (from the run's ``metrics.json``);
* ``untrained``: the course's embedding network with its seeded initial
  weights, never trained (what the architecture gives for free);
* ``cross_entropy``: a softmax classifier trained on the seen classes,
  retrieving with its 128-d backbone features (a trained configuration).

For each (dataset, configuration, split) the table gives mean +- std over the
seeds (std: the sample standard deviation, ddof = 1) of P@1, R-precision and
MAP@R, and the training seconds. Writes ``results.json`` (every run's values,
the summaries and the settings) and ``results.md`` into ``--out``.

``--splits``: the other table, the held-out-class recipe (every option at the
CLI's default) on several splits of the classes (see ``benchmarks/_splits.py``),
written to ``holdout_splits.json`` and ``holdout_splits.md``. Both tables share
the runner, the statistics and the writer (``benchmarks/_bench.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from benchmarks import _bench, _splits  # noqa: E402
from course_lib.options import STRATEGIES  # noqa: E402  (imports no TensorFlow)

METRICS = {"P@1": "precision_at_1", "R-precision": "r_precision", "MAP@R": "map_at_r"}
DATASETS = ("mnist", "fashion_mnist")
HOLDOUT = {"mnist": (6, 7, 8, 9), "fashion_mnist": (5, 6, 8)}
BASELINES = ("pixels", "untrained")

# Configuration name -> the loss options of `python -m course_lib train`.
CONFIGS = {
    "contrastive": ["--loss", "contrastive"],
    "triplet-all": ["--loss", "triplet", "--mining", "all"],
    "triplet-hard": ["--loss", "triplet", "--mining", "hard"],
    "triplet-semi-hard": ["--loss", "triplet", "--mining", "semi-hard"],
    "triplet-random": ["--loss", "triplet", "--mining", "random"],
    "npairs": ["--loss", "npairs"],
    "angular": ["--loss", "angular"],
    "supcon": ["--loss", "supcon"],
    "multi-similarity": ["--loss", "multi-similarity"],
    "cross_entropy": ["--loss", "cross_entropy"],
}
if "random" not in STRATEGIES:  # the "random" miner is optional in course_lib.options
    del CONFIGS["triplet-random"]

#: Where --resume finds the finished runs unless --work names a folder.
RESUME_WORK = Path(tempfile.gettempdir()) / "course_lib_results"
# The CI slice: every configuration, one dataset, two seeds, a few steps, a test subset.
SMOKE = dict(datasets=["mnist"], seeds=[0, 1], epochs=1, steps_per_epoch=2, eval_limit=400)

ANCHORS = """\
## Published anchors (not directly comparable)

| source | data and protocol | network, budget | result |
| --- | --- | --- | --- |
| [pytorch-metric-learning, MNIST example notebook](https://github.com/KevinMusgrave/pytorch-metric-learning/blob/master/examples/notebooks/TripletMarginLossMNIST.ipynb) | full MNIST (60,000 / 10,000), all 10 classes seen; queries: the 10,000 test images, gallery: the 60,000 *training* images | 2 conv + 1 dense layer (128-d), `TripletMarginLoss(margin=0.2)` on cosine similarity with `TripletMarginMiner(type_of_triplets="semihard")`, Adam lr 0.01, 1 epoch | P@1 0.98 (0.981 quoted in the course's issue; 0.979 and 0.983 in two revisions of the notebook's stored output) |
| [RobRank, Fashion-MNIST table](https://github.com/cdluminate/robrank/blob/main/doc/dmltab-fashion.txt) (Zhou et al., adversarial robustness of deep metric learning) | full Fashion-MNIST (60,000 / 10,000), all 10 classes seen | `rc2f2` (2 conv + 2 dense layers), normalised Euclidean distance | contrastive: R@1 0.858, MAP@R 0.800; the table's triplet variants: R@1 0.873-0.904, MAP@R 0.830-0.877 |

Why these numbers are not directly comparable with the table above: the anchors train on the
full training sets (60,000 images; the course's bundled subsets hold 5,000 MNIST and 10,000
Fashion-MNIST images) with a bigger network and their own budget; they retrieve among the classes
*seen* in training, so only the `seen` columns are in the same regime, never the `unseen` ones,
and even those score the flattened conv features (the held-out recipe), not the trained embedding
that the anchors score (each run's metrics.json keeps the embedding's own scores under
`holdout.projection`);
their galleries differ (pytorch-metric-learning searches the 60,000 training images, a much denser
gallery that makes P@1 easier; the course searches the gallery half of its test split); and RobRank's R@1 is our P@1 (recall@1 of a single neighbour). MAP@R follows
the same definition (Musgrave et al. 2020) everywhere. The anchors say what these losses reach with
more data and compute; the table says how the losses rank against each other, and against pixels,
under one small budget on 2 CPU cores.
"""


# ------------------------------------------------------------------ one run
def split_metrics(record):
    """``{split: {metric: value}}`` of a metrics.json: seen/unseen with a holdout, else "all"."""
    def pick(metrics):
        return {key: float(metrics[key]) for key in METRICS.values()}

    if "holdout" in record:
        holdout = record["holdout"]
        return ({split: pick(holdout[split]) for split in ("seen", "unseen")},
                {split: pick(holdout["pixels"][split]) for split in ("seen", "unseen")})
    return {"all": pick(record)}, None


def table_jobs(datasets, configs, seeds, settings, work):
    """The runs, seed by seed (a table cut short still covers every configuration): ``(tag, out, argv)``."""
    for seed in seeds:
        for dataset in datasets:
            for config in configs:
                out = work / f"{dataset}-{config}-seed{seed}"
                holdout = HOLDOUT[dataset] if settings["holdout"] else None
                yield ((dataset, config, seed), out,
                       _bench.train_argv(dataset, seed, out, settings, CONFIGS[config], holdout))


def table_rows(record, dataset, config, seed, wall, cpu):
    """The rows of one run's metrics.json, one per split, and with a holdout the pixel
    baseline's rows from the same file."""
    splits, pixels = split_metrics(record)
    base = {"dataset": dataset, "seed": seed, "train_seconds": float(record["seconds"]),
            "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
    rows = [{**base, "config": config, "split": split, **values} for split, values in splits.items()]
    if pixels is not None:
        free = {**base, "train_seconds": 0.0, "wall_seconds": 0.0, "cpu_seconds": 0.0}
        rows += [{**free, "config": "pixels", "split": split, **values} for split, values in pixels.items()]
    return rows


# ------------------------------------------------------------ the baselines
def untouched_rows(dataset, seed, settings, work=None):
    """The untrained network and raw pixels, scored like the runs (with a holdout the CLI's own
    pixels go in the table, these only check that both score the same way)."""
    cache = None if work is None else Path(work) / f"{dataset}-baselines-seed{seed}.json"
    key = {**{key: settings.get(key) for key in ("eval_limit", "holdout")}, "protocol": "holdout_report"}
    if cache is not None and settings.get("resume") and cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved["key"] == key:
            return saved["rows"]
    from course_lib import data, models, retrieval, training
    from course_lib.holdout import pixel_embeddings

    images, labels = data.load_dataset(dataset, "test", "bundled", verbose=False)
    keep = data.pick_subset(len(labels), settings.get("eval_limit"), seed)
    images, labels = images[keep], labels[keep]
    wall, cpu = time.perf_counter(), time.process_time()
    network = models.embedding_network(seed=seed)
    rows = []
    if settings["holdout"]:  # the CLI's held-out report: its features and distance, pixels beside
        from course_lib.holdout import holdout_embeddings, holdout_report

        report = holdout_report(holdout_embeddings(network, images), images, labels, HOLDOUT[dataset])
        scored = {"untrained": {s: report[s] for s in ("seen", "unseen")}, "pixels (script)": report["pixels"]}
    else:  # every class seen: leave-one-out on the test split
        spaces = {"untrained": training.embed(models.embedding_model(network), images),
                  "pixels": pixel_embeddings(images)}
        scored = {name: {"all": retrieval.evaluate(x, labels)} for name, x in spaces.items()}
    base = {"dataset": dataset, "seed": seed, "train_seconds": 0.0,
            "wall_seconds": round(time.perf_counter() - wall, 2),
            "cpu_seconds": round(time.process_time() - cpu, 2)}
    for name, splits in scored.items():
        for split, m in splits.items():
            rows.append({**base, "config": name, "split": split, **{k: float(m[k]) for k in METRICS.values()}})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "rows": rows}), encoding="utf-8")
    return rows


def check_same_protocol(rows):
    """The pixels this script scores must equal the pixels of the CLI's metrics.json (same
    queries, gallery and metric): then the untrained network is scored like the trained runs."""
    mine = {(r["dataset"], r["seed"], r["split"]): r for r in rows if r["config"] == "pixels (script)"}
    for r in rows:
        if r["config"] == "pixels" and (r["dataset"], r["seed"], r["split"]) in mine:
            other = mine[(r["dataset"], r["seed"], r["split"])]
            if any(abs(r[key] - other[key]) > 1e-6 for key in METRICS.values()):
                raise RuntimeError(f"pixels scored here {other} differ from the CLI's {r}: "
                                   "the untrained baseline would not be scored like the runs")
    return [r for r in rows if r["config"] != "pixels (script)"]


# ------------------------------------------------------------------ summary
def summarise(rows):
    """Mean and std over seeds: one entry per (dataset, config, split).

    For each metric and for the seconds: ``{"mean", "std", "values", "seeds"}``,
    std the sample standard deviation (ddof = 1; 0 for a single seed).
    """
    groups = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["config"], row["split"]), []).append(row)
    summary = []
    for (dataset, config, split), group in groups.items():
        group = sorted(group, key=lambda r: r["seed"])
        entry = {"dataset": dataset, "config": config, "split": split}
        for key in (*METRICS.values(), "train_seconds", "cpu_seconds"):
            values = [float(r[key]) for r in group]
            mean, std = _bench.mean_std(values)
            entry[key] = {"mean": mean, "std": std, "values": values, "seeds": [r["seed"] for r in group]}
        summary.append(entry)
    return summary


def order_of(configs):
    """Table order: the baselines first, then the configurations as given."""
    return [*BASELINES, *[c for c in configs if c not in BASELINES]]


def markdown(result):
    """The Markdown page: header (when, where, settings), one table per dataset and split, anchors."""
    meta = result["meta"]
    lines = ["# Results: every loss of the course, seen and unseen classes", "",
             f"Generated {meta['date']} at commit `{meta['commit']}` by `{meta['command']}` on "
             f"{meta['machine']}; {meta['runs']} training runs, {meta['wall_seconds'] / 60:.1f} min wall and "
             f"{meta['cpu_seconds'] / 60:.1f} min CPU summed over the runs and baselines (the machine was "
             "shared with other jobs: wall times are inflated, CPU times less so).", "",
             f"Settings: {describe_settings(meta)}", "",
             "Each cell: mean +- std over the seeds (sample std, ddof = 1). `train s`: the run's "
             "training seconds (wall, as metrics.json records them); `CPU s`: the whole CLI call's "
             "CPU seconds (training, evaluation, saving). Every row is scored the way the CLI's held-out "
             "report scores it (course_lib.holdout: since the recipe, the flattened conv features with the "
             "cosine distance; raw pixels with the Euclidean distance). Baselines: `pixels` (raw 784 pixels), "
             "`untrained` (the embedding network at its seeded initial weights), `cross_entropy` "
             "(a softmax classifier trained on the seen classes).", ""]
    for dataset in meta["datasets"]:
        splits = [s for s in ("unseen", "seen", "all")
                  if any(e["dataset"] == dataset and e["split"] == s for e in result["summary"])]
        for split in splits:
            lines += table(result["summary"], dataset, split, meta)
    lines += ["", ANCHORS]
    return "\n".join(lines) + "\n"


def describe_settings(meta):
    settings = meta["settings"]
    budget = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in settings.items()
                       if value is not None and key != "holdout")
    holdout = ("held-out classes " + "; ".join(f"{d} {' '.join(map(str, HOLDOUT[d]))}"
                                                for d in meta["datasets"])
               if settings["holdout"] else "no held-out classes (all classes seen, leave-one-out)")
    return (f"seeds {', '.join(map(str, meta['seeds']))}; {budget or 'the CLI defaults'}; "
            f"{holdout}; bundled data; every other option at the CLI's default.")


def table(summary, dataset, split, meta):
    """Markdown lines of one (dataset, split) table, rows in :func:`order_of`."""
    what = {"unseen": "classes held out from training (queries of unseen classes, gallery of all)",
            "seen": "classes seen in training (queries of seen classes, gallery of all)",
            "all": "all classes (leave-one-out on the test split)"}[split]
    entries = {e["config"]: e for e in summary if e["dataset"] == dataset and e["split"] == split}
    lines = ["", f"## {dataset}: {what}", "",
             "| configuration | " + " | ".join(METRICS) + " | train s | CPU s |",
             "| --- | " + " | ".join("---:" for _ in range(len(METRICS) + 2)) + " |"]
    for config in order_of(meta["configs"]):
        if config not in entries:
            continue
        e = entries[config]
        cells = [f"{e[key]['mean']:.3f} +- {e[key]['std']:.3f}" for key in METRICS.values()]
        cells += [f"{e[key]['mean']:.0f}" for key in ("train_seconds", "cpu_seconds")]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    return lines


# --------------------------------------------------------------------- main
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="*", metavar="SPLIT",
                        help="the held-out splits table instead (lesson 06): the recipe on these splits, "
                             'named like "mnist 6 7 8 9" (default: every split of benchmarks/_splits.py)')
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS),
                        help="configurations to train (default: all; the baselines pixels and untrained always run)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: the CLI's)")
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: the CLI's)")
    parser.add_argument("--eval-limit", type=int, help="score a subset of the test split (default: all)")
    parser.add_argument("--no-holdout", action="store_true",
                        help="train on every class and score the test split leave-one-out")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="write one table from several of this script's JSON files (e.g. one process "
                             "per dataset; with --splits: holdout_splits.json files)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the runs in --work that finished with the same command line; "
                             "several processes started with --resume and the same --work share the runs")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the CI slice: {SMOKE}, with --splits {_splits.SMOKE} (explicit options still win)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder for results.json and .md, or holdout_splits.json and .md "
                             "(default: benchmarks/results)")
    parser.add_argument("--work", help="folder for the runs' own folders and logs (default: a temporary "
                                       f"folder, removed at the end; with --resume {RESUME_WORK})")
    return parser


def resolve(args):
    """The run settings from the options: the smoke slice fills what is not given."""
    given = {key: getattr(args, key) for key in ("epochs", "steps_per_epoch", "eval_limit")}
    if args.smoke:
        given = {key: SMOKE[key] if value is None else value for key, value in given.items()}
        smoke = {**SMOKE, **(_splits.SMOKE if args.splits is not None else {})}
        if args.datasets == list(DATASETS):
            args.datasets = smoke["datasets"]
        if args.seeds == [0, 1, 2]:
            args.seeds = smoke["seeds"]
        if args.splits == []:
            args.splits = smoke["splits"]
    args.configs = args.configs or list(CONFIGS)
    return {**given, "holdout": not args.no_holdout, "resume": args.resume}


def merge(paths, out, splits=False):
    """One table from several JSON files of this script (say, one process per dataset; ``splits``:
    holdout_splits.json files): runs pooled, summaries recomputed."""
    parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    if splits:
        result = _splits.merged(parts)
        _bench.write(out, _splits.STEM, result, _splits.markdown(result))
    else:
        result = merged(parts)
        _bench.write(out, "results", result, markdown(result))
    return result


def merged(parts):
    """The results table of several: settings required to agree, commands and seconds of each part kept."""
    first = parts[0]["meta"]
    for part in parts[1:]:
        for key in ("settings", "configs"):
            if part["meta"][key] != first[key]:
                raise ValueError(f"--merge: the tables differ in {key}: {first[key]} vs {part['meta'][key]}")
    rows = [row for part in parts for row in part["runs"]]
    _bench.check_no_shared_runs(rows, lambda r: (r["dataset"], r["config"], r["seed"], r["split"]))
    metas = [part["meta"] for part in parts]
    meta = {**first, "command": " & ".join(m["command"] for m in metas),
            "datasets": [d for m in metas for d in m["datasets"]],
            "seeds": sorted(set.intersection(*(set(m["seeds"]) for m in metas))),
            "holdout_classes": {k: v for m in metas for k, v in m["holdout_classes"].items()},
            "runs": sum(m["runs"] for m in metas), "commands": {k: v for m in metas for k, v in m["commands"].items()},
            "wall_seconds": sum(m["wall_seconds"] for m in metas), "cpu_seconds": sum(m["cpu_seconds"] for m in metas),
            "script_wall_seconds": max(m["script_wall_seconds"] for m in metas), "merged_from": len(parts)}
    return {"meta": meta, "runs": rows, "summary": summarise(rows)}


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    splits = args.splits is not None
    if splits and (args.configs or args.no_holdout):
        parser.error("--configs and --no-holdout belong to the results table, not to --splits")
    if args.merge:
        merge(args.merge, Path(args.out), splits)
        print(f"merged {len(args.merge)} tables into {args.out}")
        return 0
    command = " ".join(["python benchmarks/results.py", *(sys.argv[1:] if argv is None else argv)])
    settings = resolve(args)
    if splits:
        try:
            plan = _splits.plan(args.splits, args.datasets)
        except ValueError as error:
            parser.error(str(error))
    with tempfile.TemporaryDirectory(prefix="course_lib_results-") as scratch:
        work = Path(args.work or (RESUME_WORK if args.resume else scratch))
        if splits:
            run_splits(plan, args.seeds, settings, command, Path(args.out), work)
        else:
            run_table(args, settings, command, Path(args.out), work)
    return 0


def run_splits(plan, seeds, settings, command, out, work):
    """The recipe on every split of ``plan``: holdout_splits.json and .md, rewritten after every run."""
    runs = []
    for (tag, folder, argv), record, wall, cpu in _bench.run_jobs(_splits.jobs(plan, seeds, settings, work),
                                                                   settings["resume"]):
        runs.append(_splits.run_entry(record, tag, folder, argv, wall, cpu))
        print(_splits.report(runs[-1]), flush=True)
        result = _splits.result(runs, command, settings)
        _bench.write(out, _splits.STEM, result, _splits.markdown(result))
    print(f"wrote {out / _splits.STEM}.json and .md")


def run_table(args, settings, command, out, work):
    """Every configuration, then the baselines: results.json and .md, rewritten after every run."""
    session = {"command": command, "date": _bench.now(), "clock": time.perf_counter(), "commands": {}}
    rows = []
    jobs = table_jobs(args.datasets, args.configs, args.seeds, settings, work)
    for ((dataset, config, seed), _, argv), record, wall, cpu in _bench.run_jobs(jobs, settings["resume"]):
        new = table_rows(record, dataset, config, seed, wall, cpu)
        rows.extend(r for r in new if r["config"] != "pixels" or config == args.configs[0])
        if seed == args.seeds[0]:
            session["commands"][f"{dataset} {config}"] = " ".join(["python -m course_lib", *argv])
        print(f"{dataset:<14} {config:<18} seed {seed}: " + ", ".join(
            f"{r['split']} MAP@R {r['map_at_r']:.3f}" for r in new if r["config"] == config)
            + f" ({wall:.0f} s wall, {cpu:.0f} s CPU)", flush=True)
        write_table(out, check_same_protocol(rows), args, settings, session)
    for seed in args.seeds:  # the baselines last: parallel processes start training at once
        for dataset in args.datasets:
            rows.extend(untouched_rows(dataset, seed, settings, work))
    write_table(out, check_same_protocol(rows), args, settings, session)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def once(rows, key):
    """``key`` of each run once (a run has one row per split)."""
    return {(r["dataset"], r["config"], r["seed"]): r[key] for r in rows}.values()


def write_table(out, rows, args, settings, session):
    """results.json and results.md from the rows so far."""
    seeds_done = sorted({r["seed"] for r in rows if r["config"] == args.configs[-1]})
    meta = {
        "date": session["date"], "commit": _bench.git_commit(), "command": session["command"],
        "machine": _bench.machine(), "python": platform.python_version(),
        "datasets": args.datasets, "configs": args.configs, "seeds": seeds_done, "seeds_planned": args.seeds,
        "settings": {key: value for key, value in settings.items() if key != "resume"},
        "holdout_classes": {d: HOLDOUT[d] for d in args.datasets},
        "runs": len({(r["dataset"], r["config"], r["seed"]) for r in rows if r["config"] not in BASELINES}),
        "wall_seconds": round(sum(once(rows, "wall_seconds")), 1),  # summed over the runs
        "cpu_seconds": round(sum(once(rows, "cpu_seconds")), 1),
        "script_wall_seconds": round(time.perf_counter() - session["clock"], 1),  # this call (less with --resume)
        "commands": session["commands"],
    }
    result = {"meta": meta, "runs": rows, "summary": summarise(rows)}
    _bench.write(out, "results", result, markdown(result))


if __name__ == "__main__":
    sys.exit(main())
