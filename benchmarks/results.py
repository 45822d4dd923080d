"""The results table: every loss of the course, several seeds, seen and unseen classes.

    python benchmarks/results.py                       # the committed table (about an hour on 2 cores)
    python benchmarks/results.py --smoke --out /tmp/r  # a small slice that proves the script works
    python benchmarks/results.py --datasets mnist --configs supcon triplet-semi-hard --seeds 0 1

Every trained row is a real ``python -m course_lib train`` run (called in this
process through ``course_lib.cli.main``, so TensorFlow starts once), with the
options a user would type; the script only adds ``--seed``, ``--out`` and the
budget (``--epochs``, ``--steps-per-epoch``) given here. With
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
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

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
def cli_has(option):
    """True when ``python -m course_lib train`` accepts ``option`` (flags land one by one)."""
    from course_lib import cli

    commands = cli.build_parser()._subparsers._group_actions[0].choices
    return any(option in action.option_strings for action in commands["train"]._actions)


def train_argv(dataset, config, seed, out, settings):
    """The command line of one run: ``python -m course_lib`` + this list."""
    argv = ["train", "--dataset", dataset, *CONFIGS[config], "--seed", str(seed), "--out", str(out),
            "--source", "bundled", "--plot-points", "10"]
    for key in ("epochs", "steps_per_epoch", "eval_limit"):
        if settings.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(settings[key])]
    if settings["holdout"]:
        argv += ["--holdout-classes", *map(str, HOLDOUT[dataset])]
    if cli_has("--quiet"):
        argv.append("--quiet")
    return argv


def run_cli(argv, log_path):
    """``course_lib.cli.main(argv)`` with its output in ``log_path``: (wall s, CPU s)."""
    from course_lib import cli

    log_path.parent.mkdir(parents=True, exist_ok=True)
    wall, cpu = time.perf_counter(), time.process_time()
    with open(log_path, "w", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        status = cli.main(argv)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if status != 0:
        raise RuntimeError(f"python -m course_lib {' '.join(argv)} failed ({status}); see {log_path}")
    return wall, cpu


def split_metrics(record):
    """``{split: {metric: value}}`` of a metrics.json: seen/unseen with a holdout, else "all"."""
    def pick(metrics):
        return {key: float(metrics[key]) for key in METRICS.values()}

    if "holdout" in record:
        holdout = record["holdout"]
        return ({split: pick(holdout[split]) for split in ("seen", "unseen")},
                {split: pick(holdout["pixels"][split]) for split in ("seen", "unseen")})
    return {"all": pick(record)}, None


def claim(out, argv, resume):
    """Who trains the run in folder ``out``: "done" (finished with this ``argv``: reuse it),
    "mine" (train it here) or "busy" (another process of this script trains it now).

    Without ``resume`` every run is "mine". With it, processes that share ``--work``
    split the runs between them: a run is taken by creating ``<out>.lock`` (holding the
    process id; a lock whose process has died is taken over).
    """
    done = out.with_suffix(".done.json")
    if not resume:
        return "mine"
    if done.is_file() and json.loads(done.read_text(encoding="utf-8"))["argv"] == argv:
        return "done"
    lock = out.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            with open(lock, "x", encoding="utf-8") as handle:
                handle.write(str(os.getpid()))
            return "mine"
        except FileExistsError:
            if alive(int(lock.read_text(encoding="utf-8") or 0)):
                return "busy"
            lock.unlink(missing_ok=True)  # its process died: take the run over
    return "busy"


def alive(pid):
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid > 0


def trained_rows(dataset, config, seed, settings, work, wait=False):
    """Train one configuration with one seed through the CLI (or reuse the finished run):
    its rows, one per split, and with a holdout the pixel baseline's rows from the same
    metrics.json. None when another process trains it now (unless ``wait``)."""
    import keras

    out = work / f"{dataset}-{config}-seed{seed}"
    argv = train_argv(dataset, config, seed, out, settings)
    done = out.with_suffix(".done.json")
    state = claim(out, argv, settings.get("resume"))
    while state == "busy" and wait:
        time.sleep(5)
        state = claim(out, argv, True)
    if state == "busy":
        return None
    if state == "done":
        saved = json.loads(done.read_text(encoding="utf-8"))
        wall, cpu = saved["wall"], saved["cpu"]
    else:
        keras.backend.clear_session()
        try:
            wall, cpu = run_cli(argv, out.with_suffix(".log"))
            done.write_text(json.dumps({"argv": argv, "wall": wall, "cpu": cpu}), encoding="utf-8")
        finally:
            out.with_suffix(".lock").unlink(missing_ok=True)
    record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    splits, pixels = split_metrics(record)
    base = {"dataset": dataset, "seed": seed, "train_seconds": float(record["seconds"]),
            "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}
    rows = [{**base, "config": config, "split": split, **values} for split, values in splits.items()]
    if pixels is not None:
        free = {**base, "train_seconds": 0.0, "wall_seconds": 0.0, "cpu_seconds": 0.0}
        rows += [{**free, "config": "pixels", "split": split, **values} for split, values in pixels.items()]
    return rows, " ".join(["python -m course_lib", *argv])


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
    from course_lib import data, models, training
    from course_lib.demos.retrieval import pixel_embeddings

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
    else:
        spaces = {"untrained": training.embed(models.embedding_model(network), images),
                  "pixels": pixel_embeddings(images)}
        scored = {name: score(x, labels, dataset, False) for name, x in spaces.items()}
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


def score(embeddings, labels, dataset, holdout):
    """``{split: {metric: value}}``: seen/unseen queries against the gallery half, or all (leave-one-out)."""
    from course_lib import retrieval

    try:  # the protocol the CLI's --holdout-classes uses
        from course_lib.holdout import seen_unseen_metrics
    except ImportError:  # before course_lib.holdout: lesson 06's function, the same protocol
        from course_lib.demos.retrieval import seen_unseen_metrics

    if holdout:
        scored = seen_unseen_metrics(embeddings, labels, HOLDOUT[dataset])
    else:
        scored = {"all": retrieval.evaluate(embeddings, labels)}
    return {split: {key: float(m[key]) for key in METRICS.values()} for split, m in scored.items()}


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
            values = np.array([r[key] for r in group], dtype=float)
            entry[key] = {"mean": float(values.mean()),
                          "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                          "values": values.tolist(), "seeds": [r["seed"] for r in group]}
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
    return "\n".join(lines)


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
def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="configurations to train (the baselines pixels and untrained always run)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="epochs of every run (default: the CLI's per dataset)")
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: the CLI's)")
    parser.add_argument("--eval-limit", type=int, help="score a subset of the test split (default: all)")
    parser.add_argument("--no-holdout", action="store_true",
                        help="train on every class and score the test split leave-one-out")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="write one table from several results.json (e.g. one process per dataset)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the runs in --work that finished with the same command line; "
                             "several processes started with --resume and the same --work share the runs")
    parser.add_argument("--smoke", action="store_true",
                        help=f"the CI slice: {SMOKE} (explicit options still win)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder for results.json and results.md (default: benchmarks/results)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "course_lib_results"),
                        help="folder for the runs' own folders and logs (default: %(default)s)")
    return parser


def resolve(args):
    """The run settings from the options: the smoke slice fills what is not given."""
    given = {key: getattr(args, key) for key in ("epochs", "steps_per_epoch", "eval_limit")}
    if args.smoke:
        for key, value in SMOKE.items():
            if key in given and given[key] is None:
                given[key] = value
        if args.datasets == list(DATASETS):
            args.datasets = SMOKE["datasets"]
        if args.seeds == [0, 1, 2]:
            args.seeds = SMOKE["seeds"]
    holdout = not args.no_holdout
    if holdout and not cli_has("--holdout-classes"):
        print("note: this course_lib's CLI has no --holdout-classes yet: plain runs, all classes seen")
        holdout = False
    return {**given, "holdout": holdout, "resume": args.resume}


def merge(paths, out):
    """One table from several results.json (say, one process per dataset): runs pooled, summaries
    recomputed, settings required to agree, commands and seconds of each part kept."""
    parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    first = parts[0]["meta"]
    for part in parts[1:]:
        for key in ("settings", "configs"):
            if part["meta"][key] != first[key]:
                raise ValueError(f"--merge: the tables differ in {key}: {first[key]} vs {part['meta'][key]}")
    rows = [row for part in parts for row in part["runs"]]
    keys = {(r["dataset"], r["config"], r["seed"], r["split"]) for r in rows}
    if len(keys) != len(rows):
        raise ValueError("--merge: the tables share runs (the same dataset, configuration and seed)")
    metas = [part["meta"] for part in parts]
    meta = {**first, "command": " & ".join(m["command"] for m in metas),
            "datasets": [d for m in metas for d in m["datasets"]],
            "seeds": sorted(set.intersection(*(set(m["seeds"]) for m in metas))),
            "holdout_classes": {k: v for m in metas for k, v in m["holdout_classes"].items()},
            "runs": sum(m["runs"] for m in metas), "commands": {k: v for m in metas for k, v in m["commands"].items()},
            "wall_seconds": sum(m["wall_seconds"] for m in metas), "cpu_seconds": sum(m["cpu_seconds"] for m in metas),
            "script_wall_seconds": max(m["script_wall_seconds"] for m in metas), "merged_from": len(parts)}
    result = {"meta": meta, "runs": rows, "summary": summarise(rows)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(result) + "\n", encoding="utf-8")
    return result


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.merge:
        merge(args.merge, Path(args.out))
        print(f"merged {len(args.merge)} tables into {args.out}")
        return 0
    settings = resolve(args)
    out = Path(args.out)
    work = Path(args.work)
    started, wall = datetime.datetime.now(), time.perf_counter()
    rows, commands, deferred = [], {}, []

    def add(dataset, config, seed, result):
        new, command = result
        rows.extend(r for r in new if r["config"] != "pixels" or config == args.configs[0])
        if seed == args.seeds[0]:
            commands[f"{dataset} {config}"] = command
        print(f"{dataset:<14} {config:<18} seed {seed}: " + ", ".join(
            f"{r['split']} MAP@R {r['map_at_r']:.3f}" for r in new if r["config"] == config)
            + f" ({new[0]['wall_seconds']:.0f} s wall, {new[0]['cpu_seconds']:.0f} s CPU)", flush=True)
        write(out, args, argv, settings, check_same_protocol(rows), commands, started, wall)

    for seed in args.seeds:  # seed by seed: a table cut short still covers every configuration
        for dataset in args.datasets:
            for config in args.configs:
                result = trained_rows(dataset, config, seed, settings, work)
                if result is None:  # another process (--resume, same --work) trains it: later
                    deferred.append((dataset, config, seed))
                else:
                    add(dataset, config, seed, result)
    for dataset, config, seed in deferred:
        add(dataset, config, seed, trained_rows(dataset, config, seed, settings, work, wait=True))
    for seed in args.seeds:  # the baselines last: parallel processes start training at once
        for dataset in args.datasets:
            rows.extend(untouched_rows(dataset, seed, settings, work))
    write(out, args, argv, settings, check_same_protocol(rows), commands, started, wall)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


def once(rows, key):
    """``key`` of each run once (a run has one row per split)."""
    return {(r["dataset"], r["config"], r["seed"]): r[key] for r in rows}.values()


def write(out, args, argv, settings, rows, commands, started, wall):
    """results.json and results.md from the rows so far (rewritten after every run)."""
    seeds_done = sorted({r["seed"] for r in rows if r["config"] == args.configs[-1]})
    result = {
        "meta": {
            "date": started.strftime("%Y-%m-%d %H:%M"), "commit": git_commit(),
            "command": "python benchmarks/results.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU",
            "python": platform.python_version(), "datasets": args.datasets, "configs": args.configs,
            "seeds": seeds_done, "seeds_planned": args.seeds,
            "settings": {key: value for key, value in settings.items() if key != "resume"},
            "holdout_classes": {d: HOLDOUT[d] for d in args.datasets},
            "runs": len({(r["dataset"], r["config"], r["seed"]) for r in rows if r["config"] not in BASELINES}),
            "wall_seconds": round(sum(once(rows, "wall_seconds")), 1),  # summed over the runs
            "cpu_seconds": round(sum(once(rows, "cpu_seconds")), 1),
            "script_wall_seconds": round(time.perf_counter() - wall, 1),  # this call (less with --resume)
            "commands": commands,
        },
        "runs": rows,
        "summary": summarise(rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(result) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
