"""Time and peak memory of every loss (loss + gradient) over batch sizes.

    python benchmarks/losses.py                    # B = 256 ... 4096, D = 64, K = 8
    python benchmarks/losses.py --sizes 256 1024 --repeats 3

Each (loss, B) runs in a fresh subprocess so its peak resident memory is its
own; "peak MiB" is that process's maximum RSS (TensorFlow itself takes a few
hundred MiB: compare with the `pairwise_distances` row, the floor). Times are
medians over repeats of one tf.function call computing the loss and its
gradient w.r.t. the embeddings, after a warm-up call (tracing): "ms" is wall
time, "CPU ms" the process's CPU time (user + system, all threads). "x floor"
is the ratio of CPU times to `pairwise_distances` + its gradient at the same
B: CPU time barely changes when other processes share the cores, wall time
does (on an idle machine the two ratios agree).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = {
    "pairwise_distances (floor)": None,
    "contrastive": ("contrastive_loss", {}),
    "triplet all": ("triplet_loss", {"mining": "all"}),
    "triplet hard": ("triplet_loss", {"mining": "hard"}),
    "triplet semi-hard": ("triplet_loss", {"mining": "semi-hard"}),
    "triplet semi-hard soft": ("triplet_loss", {"mining": "semi-hard", "soft": True}),
    "npairs": ("npairs_loss", {}),
    "angular": ("angular_loss", {}),
    "supcon": ("supcon_loss", {}),
    "nt-xent": ("nt_xent_loss", {}),
    "multi-similarity": ("multi_similarity_loss", {}),
}


def measure(case, batch, dim, k, repeats):
    """Run in the child process: the median (wall, CPU) seconds of loss + gradient."""
    import numpy as np
    import tensorflow as tf

    from course_lib import losses
    from course_lib.distances import pairwise_distances

    rng = np.random.default_rng(0)
    labels = tf.constant(np.repeat(np.arange(batch // k), k))
    x = tf.constant(rng.normal(size=(batch, dim)).astype("float32"))
    spec = CASES[case]

    def value(e):
        if spec is None:
            return tf.reduce_sum(pairwise_distances(e))
        name, options = spec
        return getattr(losses, name)(labels, e, **options)

    @tf.function
    def step(e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            v = value(e)
        return v, tape.gradient(v, e)

    step(x)[1].numpy()  # trace and warm up
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), cpu_seconds()
        step(x)[1].numpy()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu_start)
    return float(np.median(walls)), float(np.median(cpus))


def cpu_seconds():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(case, batch, dim, k, repeats):
    command = [sys.executable, __file__, "--child", case, str(batch), str(dim), str(k), str(repeats)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:120]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_main(case, batch, dim, k, repeats):
    import resource

    seconds, cpu = measure(case, int(batch), int(dim), int(k), int(repeats))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mib": peak_mib}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=8, help="samples per class (P x K batches)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(*args.child)

    print(f"loss + gradient, D={args.dim}, P x K batches with K={args.k}, {os.cpu_count()} CPU cores, "
          f"median of {args.repeats}\n")
    print("| loss | B | ms | CPU ms | x floor | peak MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for batch in args.sizes:
        floor = None
        for case in args.cases:
            result = run_child(case, batch, args.dim, args.k, args.repeats)
            if "error" in result:
                print(f"| {case} | {batch} | error: {result['error']} | | | |", flush=True)
                continue
            if CASES[case] is None:
                floor = result["cpu_seconds"]
            ratio = f"{result['cpu_seconds'] / floor:.2f}" if floor else ""
            print(f"| {case} | {batch} | {1e3 * result['seconds']:.1f} | {1e3 * result['cpu_seconds']:.1f} | {ratio} "
                  f"| {result['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
