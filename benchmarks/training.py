"""Training targets and the cost of a triplet epoch against a cross-entropy epoch.

    python benchmarks/training.py                 # bundled MNIST and Fashion-MNIST
    python benchmarks/training.py --datasets mnist --epochs 5

For each dataset it trains, with the library's default settings (P=8, K=8,
Adam 1e-3, 64-d L2-normalised embedding, margin 0.2), the semi-hard triplet
loss and the softmax cross-entropy baseline on the same backbone, then
prints the test retrieval metrics, the wall-clock time from data loading to
the final metrics, and the mean seconds per training epoch (the first,
tracing epoch left out). Each run is a fresh subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DEFAULT_EPOCHS = {"mnist": 5, "fashion_mnist": 10}


def child(dataset, loss, epochs):
    start = time.perf_counter()
    from course_lib import data, models, training

    train_x, train_y = data.load_dataset(dataset, "train", source="bundled", verbose=False)
    test_x, test_y = data.load_dataset(dataset, "test", source="bundled", verbose=False)
    if loss == "cross_entropy":
        model, options = models.classifier_network(seed=0), {}
    else:
        model, options = models.embedding_network(seed=0), {}  # the defaults: semi-hard, margin 0.2, 64-d
    history = training.train(model, train_x, train_y, loss=loss, loss_options=options,
                             eval_images=test_x, eval_labels=test_y, epochs=epochs, progress=False)
    print(json.dumps({
        "total_seconds": time.perf_counter() - start,
        "epoch_seconds": training.epoch_seconds(history),
        **{k: history.final_metrics[k] for k in ("precision_at_1", "r_precision", "map_at_r")},
    }))


def run(dataset, loss, epochs):
    command = [sys.executable, __file__, "--child", dataset, loss, str(epochs)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_EPOCHS), choices=list(DEFAULT_EPOCHS))
    parser.add_argument("--epochs", type=int, help="override the per-dataset default")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))

    print(f"bundled data, {os.cpu_count()} CPU cores; test-set retrieval (leave-one-out)\n")
    print("| dataset | loss | epochs | total s | s / epoch | P@1 | R-precision | MAP@R | epoch vs CE |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for dataset in args.datasets:
        epochs = args.epochs or DEFAULT_EPOCHS[dataset]
        results = {loss: run(dataset, loss, epochs) for loss in ("triplet", "cross_entropy")}
        for loss, r in results.items():
            ratio = r["epoch_seconds"] / results["cross_entropy"]["epoch_seconds"]
            print(f"| {dataset} | {'semi-hard triplet' if loss == 'triplet' else 'cross-entropy'} | {epochs} "
                  f"| {r['total_seconds']:.1f} | {r['epoch_seconds']:.2f} | {r['precision_at_1']:.4f} "
                  f"| {r['r_precision']:.4f} | {r['map_at_r']:.4f} | {ratio:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
