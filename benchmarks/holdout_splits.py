"""Does the held-out-class recipe hold on other splits? Every split below, 3 seeds.

    python benchmarks/holdout_splits.py                  # the committed table (~21 runs, about an hour on 2 cores)
    python benchmarks/holdout_splits.py --smoke --out /tmp/h   # one split, one seed, 2 steps: the script works

Each run is ``python -m course_lib train --dataset D --holdout-classes C ...
--seed S --quiet`` (called in this process through ``course_lib.cli.main``),
every other option at the CLI's default (the recipe of ``--holdout-classes``:
triplet semi-hard, :data:`course_lib.holdout.EPOCHS` epochs, retrieval on the
flattened conv features with the cosine distance), on the bundled data. Its
metrics.json's "holdout" section gives four rows, each scored on the test
split's query half of the seen / unseen classes against a gallery half that
holds every class (lesson 06's protocol):

* ``recipe``: the trained network's conv features, cosine;
* ``projection``: the trained network's output (the 64-d embedding), euclidean;
* ``untrained``: the recipe's features of the same network before training (same seed);
* ``pixels``: the raw pixels, euclidean (the same for every seed).

Per split: mean +- std over the seeds (std: sample standard deviation, ddof = 1)
of MAP@R and P@1, seen and unseen, the ratio of the mean unseen MAP@R to the
pixels', and the CPU and wall seconds of a whole run (training and scoring;
the machine may be shared: CPU seconds are the honest cost). Writes
``holdout_splits.json`` (every run, the summaries, date, commit, command) and
``holdout_splits.md`` into ``--out``; runs already in the JSON are kept, so an
interrupted benchmark resumes where it stopped (and ``--seeds`` splits the work
between processes whose ``runs`` lists can be joined, then summarised by a last call).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

SPLITS = {
    "mnist": [(6, 7, 8, 9), (0, 1, 2, 3), (2, 5, 7)],
    "fashion_mnist": [(5, 6, 8), (0, 2, 4), (1, 7, 9), (0, 1, 9)],
}
SEEDS = (0, 1, 2)
ROWS = ("recipe", "projection", "untrained", "pixels")
METRICS = {"MAP@R": "map_at_r", "P@1": "precision_at_1"}
RUN_COMMAND = ("python -m course_lib train --dataset D --source bundled --holdout-classes C [C ...] "
               "--seed S --out DIR --quiet")
SMOKE = {"splits": [("mnist", (7, 8, 9))], "seeds": (0,),
         "budget": ["--epochs", "1", "--steps-per-epoch", "2", "--eval-limit", "500", "--plot-points", "10"]}


def split_key(dataset, classes):
    return f"{dataset} {' '.join(map(str, classes))}"


def run_one(dataset, classes, seed, work, budget=()):
    """One ``train --holdout-classes`` run -> {row: {group: {metric: value}}, seconds}."""
    from course_lib import cli

    out = Path(work) / f"{dataset}-{'-'.join(map(str, classes))}-seed{seed}"
    argv = ["train", "--dataset", dataset, "--source", "bundled", "--holdout-classes", *map(str, classes),
            "--seed", str(seed), "--out", str(out), "--quiet", *budget]
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        status = cli.main(argv)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if status != 0:
        raise RuntimeError(f"python -m course_lib {' '.join(argv)} failed ({status}): {err.getvalue()}")
    section = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["holdout"]
    sources = {"recipe": section, "projection": section["projection"], "untrained": section["untrained"],
               "pixels": section["pixels"]}
    scores = {row: {group: {name: source[group][key] for name, key in METRICS.items()}
                    for group in ("seen", "unseen")} for row, source in sources.items()}
    return {"split": split_key(dataset, classes), "dataset": dataset, "classes": list(classes), "seed": seed,
            "scores": scores, "cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1),
            "command": "python -m course_lib " + " ".join(argv[:-len(budget) or None]).replace(str(out), "DIR")}


def summarize(runs):
    """Per split: mean and std over seeds of every row x group x metric, the ratio to pixels, seconds."""
    summary = {}
    for key in dict.fromkeys(run["split"] for run in runs):
        mine = [run for run in runs if run["split"] == key]
        stats = {row: {group: {name: mean_std([run["scores"][row][group][name] for run in mine])
                               for name in METRICS} for group in ("seen", "unseen")} for row in ROWS}
        pixels = stats["pixels"]["unseen"]["MAP@R"]["mean"]
        summary[key] = {
            "seeds": sorted(run["seed"] for run in mine), "stats": stats,
            "unseen_map_at_r_over_pixels": {row: round(stats[row]["unseen"]["MAP@R"]["mean"] / pixels, 3)
                                            for row in ROWS},
            "training_adds": round(stats["recipe"]["unseen"]["MAP@R"]["mean"]
                                   - stats["untrained"]["unseen"]["MAP@R"]["mean"], 4),
            "cpu_seconds": mean_std([run["cpu_seconds"] for run in mine]),
            "wall_seconds": mean_std([run["wall_seconds"] for run in mine]),
        }
    return summary


def mean_std(values):
    """{"mean", "std" (ddof = 1; 0 for one value), "n"}."""
    values = np.asarray(values, dtype=float)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {"mean": round(float(values.mean()), 4), "std": round(std, 4), "n": int(len(values))}


def markdown(result):
    """The tables of holdout_splits.md."""
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


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one split, one seed, 2 steps (for CI)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder for holdout_splits.json and .md (default: benchmarks/results)")
    parser.add_argument("--work", help="folder for the runs' files (default: a temporary folder)")
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS, metavar="S",
                        help=f"seeds to run (default: {' '.join(map(str, SEEDS))})")
    parser.add_argument("--only", nargs="+", metavar="SPLIT",
                        help='run only these splits, named as in the table (e.g. "fashion_mnist 0 1 9")')
    args = parser.parse_args(argv)
    plan = SMOKE["splits"] if args.smoke else [(d, c) for d, splits in SPLITS.items() for c in splits]
    if args.only:
        unknown = set(args.only) - {split_key(d, c) for d, c in plan}
        if unknown:
            parser.error(f"--only: no split {sorted(unknown)}; the splits: "
                         + ", ".join(split_key(d, c) for d, c in plan))
        plan = [(d, c) for d, c in plan if split_key(d, c) in args.only]
    seeds = SMOKE["seeds"] if args.smoke else args.seeds
    budget = SMOKE["budget"] if args.smoke else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "holdout_splits.json"
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"] if path.is_file() and not args.smoke else []
    done = {(run["split"], run["seed"]) for run in runs}
    command = "python benchmarks/holdout_splits.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:]))
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or scratch
        for seed in seeds:  # seed-major: an interrupted benchmark still covers every split
            for dataset, classes in plan:
                if (split_key(dataset, classes), seed) in done:
                    continue
                run = run_one(dataset, classes, seed, work, budget)
                runs.append(run)
                print(f"{run['split']} seed {seed}: unseen MAP@R recipe "
                      f"{run['scores']['recipe']['unseen']['MAP@R']:.3f}, pixels "
                      f"{run['scores']['pixels']['unseen']['MAP@R']:.3f} ({run['cpu_seconds']:.0f} s CPU, "
                      f"{run['wall_seconds']:.0f} s wall)", flush=True)
                write(out, runs, command.strip())
    write(out, runs, command.strip())  # also when every run was already there (runs merged by hand)
    return 0


def write(out, runs, command):
    """holdout_splits.json and .md from the runs so far."""
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": git_commit(),
            "command": command, "run_command": RUN_COMMAND}
    result = {"meta": meta, "runs": runs, "summary": summarize(runs)}
    (out / "holdout_splits.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (out / "holdout_splits.md").write_text(markdown(result), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
