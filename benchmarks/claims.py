"""Lesson 05's mining claims, measured over seeds: what does not fit the lesson's 90 seconds.

    python benchmarks/claims.py                    # every experiment, seeds 0 1 2
    python benchmarks/claims.py --only miners --seeds 0

Writes ``benchmarks/results/claims.json`` (``commands``: the commands that
measured it, ``runs``: one entry per run, keyed "experiment/setting/miner/seed=S";
written after every run, so an interrupted
run keeps what it measured; runs already in the file are not trained again
unless ``--fresh``). Every run is lesson 05's run: bundled MNIST (5,000
training images), a fresh 64-d L2-normalised ``embedding_network``, Adam, P x K
= 8 x 8 batches, 30 steps per epoch, margin 0.2, held-out metrics after every
epoch on 1,000 of the first 2,000 test images, final metrics on all 2,000
(``course_lib.demos.training_runs.train_run``, the same function the lesson
calls). Per run it records the per-epoch precision@1, MAP@R, active fraction,
spread and loss, the final metrics, the collapse flag, and wall and CPU seconds.

Experiments:

``miners``   concept 7, "random sampling hurts the triplet loss", and noisy
             labels x miner: "random" / "all" / "semi-hard" / "hard", with 0 %
             and 20 % of the training labels flipped (test labels clean).
``regimes``  concept 12, "hard mining converges faster but is fragile":
             batch-hard beside semi-hard from scratch at lr 1e-3 and 1e-4, with
             the soft margin, and from a warm start (1 epoch of semi-hard,
             then each miner for 3 more epochs at lr 1e-3 and at 1e-4).
``hermans``  the same claim in the setting of Hermans et al. 2017 ("In Defense
             of the Triplet Loss"): soft margin on an *unnormalised* embedding
             (no L2 normalisation), from scratch at lr 1e-3, with their K = 4
             images per class (P = 10, all of MNIST's classes: batches of 40)
             and with the lesson's 8 x 8 batches; each setting for batch-hard
             and for semi-hard.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks._bench import machine, timed, write_json  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "claims.json")
MINERS = ("random", "all", "semi-hard", "hard")
NOISE = (0.0, 0.2)
EPOCHS = 4
WARM_EPOCHS, MORE_EPOCHS = 1, 3
FIELDS = ("loss", "active_fraction", "spread", "precision_at_1", "map_at_r")


def load():
    from course_lib import data

    train_x, train_y = data.load_dataset("mnist", "train", source="bundled", verbose=False)
    test_x, test_y = data.load_dataset("mnist", "test", source="bundled", verbose=False)
    return train_x, train_y, test_x[:2000], test_y[:2000]


def record(run, wall, cpu):
    """The numbers of one run, as plain JSON."""
    from course_lib.demos import training_runs as tr

    h = run["history"]
    return {
        "settings": {k: v for k, v in run["settings"].items() if k != "continued_from"},
        "per_epoch": {f: [float(v) for v in h[f]] for f in FIELDS},
        "initial_spread": tr.initial_spread(h) if h.snapshots else None,
        "final": {k: float(h.final_metrics[k]) for k in ("precision_at_1", "map_at_r")},
        "collapse": h.collapse,
        "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
    }


def miners(data, seed, done, save):
    from course_lib.demos import training_runs as tr
    from course_lib.demos.triplet import flip_labels

    train_x, train_y, eval_x, eval_y = data
    for noise in NOISE:
        labels = flip_labels(train_y, noise, num_classes=10, seed=seed)[0] if noise else train_y
        for mining in MINERS:
            key = f"miners/noise={noise:g}/{mining}/seed={seed}"
            if key not in done:
                run, wall, cpu = timed(tr.train_run, train_x, labels, eval_x, eval_y, mining=mining,
                                       epochs=EPOCHS, seed=seed)
                save(key, dict(record(run, wall, cpu), noise=noise))


def regimes(data, seed, done, save):
    from course_lib.demos import training_runs as tr

    for mining in ("hard", "semi-hard"):
        for name, options in (("scratch/lr=0.0001", dict(learning_rate=1e-4)),
                              ("scratch/soft", dict(soft=True))):
            key = f"regimes/{name}/{mining}/seed={seed}"
            if key not in done:
                run, wall, cpu = timed(tr.train_run, *data, mining=mining, epochs=EPOCHS,
                                       seed=seed, **options)
                save(key, record(run, wall, cpu))
    keys = [f"regimes/warm/lr={lr:g}/{m}/seed={seed}" for lr in (1e-3, 1e-4) for m in ("hard", "semi-hard")]
    if all(k in done for k in keys):
        return
    start, wall, cpu = timed(tr.train_run, *data, mining="semi-hard", epochs=WARM_EPOCHS,
                             seed=seed)
    save(f"regimes/warm/start/semi-hard/seed={seed}", record(start, wall, cpu))
    for lr in (1e-3, 1e-4):
        for mining in ("hard", "semi-hard"):
            run, wall, cpu = timed(tr.continue_run, start, *data, mining=mining, epochs=MORE_EPOCHS, learning_rate=lr)
            save(f"regimes/warm/lr={lr:g}/{mining}/seed={seed}", record(run, wall, cpu))


#: Hermans et al.'s setting: soft margin, no L2 normalisation; two batch shapes (P, K).
HERMANS = dict(soft=True, l2_normalize=False)
HERMANS_BATCHES = {"P=10,K=4": (10, 4), "P=8,K=8": (8, 8)}


def hermans(data, seed, done, save):
    from course_lib.demos import training_runs as tr

    for shape, (p, k) in HERMANS_BATCHES.items():
        for mining in ("hard", "semi-hard"):
            key = f"regimes/unnormalised/soft/{shape}/{mining}/seed={seed}"
            if key not in done:
                run, wall, cpu = timed(tr.train_run, *data, mining=mining, epochs=EPOCHS, seed=seed,
                                       classes_per_batch=p, samples_per_class=k, **HERMANS)
                save(key, record(run, wall, cpu))


EXPERIMENTS = {"miners": miners, "regimes": regimes, "hermans": hermans}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--fresh", action="store_true", help="train every run again")
    args = parser.parse_args(argv)
    results = {} if args.fresh or not os.path.exists(args.out) else json.load(open(args.out))
    runs = results.setdefault("runs", {})
    command = " ".join(["python benchmarks/claims.py", *(argv if argv is not None else sys.argv[1:])]).strip()

    def save(key, value):
        runs[key] = value
        commands = results.setdefault("commands", [])
        if command not in commands:
            commands.append(command)
        results.update(
            date=datetime.date.today().isoformat(), machine=machine(),
            cpu_seconds_total=round(sum(r["cpu_seconds"] for r in runs.values()), 1),
            wall_seconds_total=round(sum(r["wall_seconds"] for r in runs.values()), 1),
        )
        write_json(args.out, results, sort_keys=True)
        print(f"{key:45s} P@1 {value['final']['precision_at_1']:.3f}  MAP@R {value['final']['map_at_r']:.3f}  "
              f"{'COLLAPSED ' if value['collapse'] else ''}{value['wall_seconds']:.0f} s wall, "
              f"{value['cpu_seconds']:.0f} s CPU", flush=True)

    data = load()
    for seed in args.seeds:
        for name in args.only:
            EXPERIMENTS[name](data, seed, set(runs), save)


if __name__ == "__main__":
    main()
