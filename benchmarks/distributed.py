"""Throughput of the distributed training step, on whatever devices this machine has.

    python benchmarks/distributed.py                      # every GPU, or 2 logical CPUs
    python benchmarks/distributed.py --loss triplet --mining hard --classes-per-batch 64
    python benchmarks/distributed.py --logical-gpus 2     # split one GPU in two (a check, not a speed-up)
    python benchmarks/distributed.py --cpus 4             # no GPU: 4 logical CPUs sharing the cores
    python benchmarks/distributed.py --processes 2 --steps 20 --classes-per-batch 8   # the CLI, 2 processes

For each mode it runs ``course_lib.distributed.make_train_step`` (the step ``train`` runs) on P x K
batches of random 28 x 28 images in ``--classes`` classes (MNIST has only 10
classes, too few for large P; the speed does not depend on the pixels) and
prints milliseconds per step and images per second:

* ``1 device``: the global batch on one device (the baseline);
* ``R replicas, cross-replica``: all-gather, mining on the global batch;
* ``R replicas, per-replica``: each replica mines its own slice.

The two replica modes differ by one all-gather of the embeddings and labels
(B x d floats) and by the loss being computed on B instead of B/R samples on
every replica; the network's forward and backward pass, the expensive part
for real models, is split either way.

On several GPUs, ``MirroredStrategy``'s NCCL all-reduce has no all-gather of
its own: TensorFlow gathers on one GPU and broadcasts (it logs a warning
saying so). ``--collective`` uses ``MultiWorkerMirroredStrategy`` on this one
machine instead, whose collective ops include an all-gather; compare the two.

Logical CPUs share the same cores: on a CPU-only machine the numbers only
show that the step runs, and say nothing about GPUs.

``--processes 2`` times the command line instead: ``python -m course_lib train
--strategy multi-worker`` in two processes on this machine (a cluster on
127.0.0.1, ``course_lib.distributed.local_cluster``), against ``--strategy
default`` in one, on MNIST's bundled subset, ``--steps`` steps. It prints wall
and CPU seconds of the whole processes (start, training, evaluation, files)
and the training alone as the chief reports it. Two processes on one machine
share its cores and add gRPC collectives: a rehearsal, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from course_lib.options import LOSSES, STRATEGIES  # noqa: E402  (no TensorFlow yet)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", default="triplet", choices=[n for n in LOSSES if n != "cross_entropy"])
    parser.add_argument("--mining", default="semi-hard", choices=STRATEGIES,
                        help="triplet loss only")
    parser.add_argument("--classes-per-batch", type=int, default=32, help="P of the global batch")
    parser.add_argument("--samples-per-class", type=int, default=4, help="K")
    parser.add_argument("--classes", type=int, default=256, help="classes of the random images")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compiling)")
    parser.add_argument("--width", type=int, default=32, help="CNN width (course default 32)")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs when there is no GPU (MirroredStrategy only)")
    parser.add_argument("--collective", action="store_true",
                        help="MultiWorkerMirroredStrategy on this machine instead of MirroredStrategy")
    parser.add_argument("--logical-gpus", type=int, default=0,
                        help="split the first GPU into this many logical GPUs (to try several replicas on one)")
    parser.add_argument("--processes", type=int, default=0,
                        help="time `python -m course_lib train --strategy multi-worker` in this many processes "
                             "against one process (see above)")
    return parser.parse_args()


def configure_devices(args):
    """Logical devices must exist before TensorFlow initialises: do it first."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus and args.logical_gpus > 1:
        memory = 4096  # MiB per logical GPU: plenty for this network
        tf.config.set_logical_device_configuration(
            gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=memory)] * args.logical_gpus
        )
    elif not gpus and args.cpus > 1 and not args.collective:
        from course_lib.distributed import use_logical_cpus

        use_logical_cpus(args.cpus)


def make_strategy(args):
    import tensorflow as tf

    from course_lib.distributed import mirrored_strategy

    if args.collective:
        return tf.distribute.MultiWorkerMirroredStrategy()  # no TF_CONFIG: this machine's devices
    if args.logical_gpus > 1 and tf.config.list_physical_devices("GPU"):
        # NCCL wants one physical GPU per replica; copies work on logical ones.
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.HierarchicalCopyAllReduce())
    return mirrored_strategy()


def time_mode(strategy, args, images, labels, cross_replica):
    """Seconds per step of ``make_train_step`` under ``strategy`` (after warm-up), and the last loss."""
    import keras

    from course_lib import distributed, models, training

    options = {"mining": args.mining} if args.loss == "triplet" else {}
    objective = training.make_objective(args.loss, **options)  # what training.train's step computes
    with strategy.scope():
        model = models.embedding_network(args.embedding_dim, width=args.width, seed=0)
        optimizer = keras.optimizers.Adam(1e-3)
    step = distributed.make_train_step(strategy, model, objective, optimizer, cross_replica)
    batches = iter(distributed.distribute_pk_batches(
        strategy, images, labels, args.classes_per_batch, args.samples_per_class,
        seed=0, num_batches=args.warmup + args.steps,
    ))
    for _ in range(args.warmup):
        loss = step(*next(batches))[0]
    float(loss)  # wait for the device
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step(*next(batches))[0]
    final = float(loss)  # waits for the last step
    return (time.perf_counter() - start) / args.steps, final


def random_images(num_classes, per_class):
    """uint8 images [num_classes * per_class, 28, 28] with labels: input for timing only."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(num_classes), per_class)
    return rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8), labels


def cli_argv(args, strategy, out):
    mining = ["--mining", args.mining] if args.loss == "triplet" else []
    return [sys.executable, "-m", "course_lib", "train", "--dataset", "mnist", "--source", "bundled",
            "--loss", args.loss, *mining, "--epochs", "1", "--steps-per-epoch", str(args.steps),
            "--classes-per-batch", str(args.classes_per_batch), "--samples-per-class", str(args.samples_per_class),
            "--eval-limit", "200", "--plot-points", "10", "--strategy", strategy, "--out", out]


def time_processes(commands):
    """Run the (argv, env) commands at once; wall seconds, their CPU seconds, and the first one's output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        logs = [open(Path(folder) / f"{i}.log", "w+") for i in range(len(commands))]
        processes = [subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
                     for (argv, env), log in zip(commands, logs)]
        try:
            codes = [process.wait(timeout=1800) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        logs[0].seek(0)
        output = logs[0].read()
        for log in logs:
            log.close()
    if any(codes):
        sys.exit(f"a process failed (exit statuses {codes}):\n{output[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu, output


def compare_processes(args):
    """One process against ``args.processes`` worker processes, through the command line."""
    from course_lib.distributed import local_cluster  # the parent only picks ports

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    print(f"python -m course_lib train, loss {args.loss}, {args.steps} steps of "
          f"{args.classes_per_batch} x {args.samples_per_class}, MNIST bundled subset\n")
    print(f"{'mode':24s} {'wall s':>8s} {'CPU s':>8s} {'training wall s':>16s} {'training CPU s':>15s}")
    with tempfile.TemporaryDirectory() as out:
        modes = [("1 process", [(cli_argv(args, "default", f"{out}/single"), env)])]
        modes.append((f"{args.processes} processes", [
            (cli_argv(args, "multi-worker", f"{out}/worker{i}"), {**env, "TF_CONFIG": config})
            for i, config in enumerate(local_cluster(args.processes))]))
        for name, commands in modes:
            wall, cpu, output = time_processes(commands)
            trained = re.search(r"Trained in ([0-9.]+) s \(([0-9.]+) s of CPU\)", output)
            print(f"{name:24s} {wall:8.1f} {cpu:8.1f} {trained[1]:>16s} {trained[2]:>15s}")
    print("\n(CPU s: all processes together; training: the chief's training loop, as it prints it)")


def main():
    args = parse_args()
    if args.processes:
        return compare_processes(args)
    configure_devices(args)
    import tensorflow as tf

    strategy = make_strategy(args)
    replicas = strategy.num_replicas_in_sync
    if args.classes_per_batch % replicas:
        sys.exit(f"--classes-per-batch {args.classes_per_batch} must be a multiple of the {replicas} replicas")
    images, labels = random_images(args.classes, per_class=2 * args.samples_per_class)
    batch = args.classes_per_batch * args.samples_per_class
    devices = ", ".join(strategy.extended.worker_devices)
    loss_name = f"{args.loss} ({args.mining})" if args.loss == "triplet" else args.loss
    print(f"TensorFlow {tf.__version__}; replicas: {replicas} on {devices}")
    print(f"loss {loss_name}; global batch {args.classes_per_batch} x {args.samples_per_class} = {batch}; "
          f"{args.steps} timed steps after {args.warmup} warm-up\n")

    modes = [("1 device", tf.distribute.get_strategy(), False)]
    if replicas == 1:
        print("One replica only: nothing to compare (try --logical-gpus 2 on one GPU).\n")
    else:
        modes += [(f"{replicas} replicas, cross-replica", strategy, True),
                  (f"{replicas} replicas, per-replica", strategy, False)]
    print(f"{'mode':32s} {'ms/step':>9s} {'images/s':>10s} {'last loss':>10s}")
    for name, mode_strategy, cross_replica in modes:
        seconds, loss = time_mode(mode_strategy, args, images, labels, cross_replica)
        print(f"{name:32s} {1000 * seconds:9.1f} {batch / seconds:10.0f} {loss:10.4f}")


if __name__ == "__main__":
    main()
