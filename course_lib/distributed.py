"""Ranking losses on several devices with ``tf.distribute``, and the trap that comes with it.

``tf.distribute.MirroredStrategy`` keeps one copy of the model per device (a
*replica*), cuts every global batch of B samples into R slices of B/R, runs
the step on each replica with its slice, then sums the replicas' gradients so
that all copies take the same update. For a loss that is a mean over
samples, such as cross-entropy, that is the same as one device with the whole
batch. A ranking loss is not a mean over samples: it compares the samples of
a batch with each other. On its own slice a replica

* sees B/R - K negatives per anchor instead of B - K (P x K batch, P/R whole
  classes per replica), so hard and semi-hard mining quietly pick from fewer
  negatives, and the hardest negative often sits on another replica;
* never compares its samples with another replica's, so even the "all"
  losses lose every pair that crosses replicas.

:func:`negatives_seen` and :func:`per_replica_mining_report` put numbers on
this for a batch.

Mining across replicas (``cross_replica=True``)
    Each replica gathers the embeddings and labels of all replicas
    (``ReplicaContext.all_gather``: the global batch, in replica order, which
    is the original batch order) and computes the loss L of the *global*
    batch, identical on every replica. Gradients flow back through the
    gather to each replica's own samples, and from there to its copy of the
    weights. The result equals one device with the global batch: the tests
    check loss and gradients to float32 tolerance for every loss.

Why every replica divides its loss by R, in both modes
    Without cross-replica mining, replica r differentiates L_r / R; the
    optimizer sums over replicas, which gives the gradient of the mean of the
    R per-replica losses (the usual tf.distribute recipe).

    With cross-replica mining one might expect no division: each replica's
    gradient covers only the path through its own samples, and the sum over
    replicas covers all paths once. But the gradient of ``all_gather`` is
    itself an all-reduce (SUM) of the incoming gradients before it keeps the
    replica's own slice (see ``ReplicaContext.all_gather`` in TensorFlow's
    ``distribute_lib.py``): R replicas each holding the same dL/d(global
    embeddings) hand every sample R times its gradient. Dividing by R undoes
    exactly that, and the optimizer's sum over replicas then gives dL/dw of
    the global batch. Measured, not assumed: without the division the
    gradients come out exactly R times too large.

Data layout
    ``tf.distribute`` gives replica r the r-th contiguous slice of each
    global batch. :func:`course_lib.data.pk_batch_plan` lists the P classes of
    a batch one after the other, so with P a multiple of R each replica gets
    P/R whole classes with K samples each (see that function for why not the
    other layout). :func:`distribute_pk_batches` builds the per-replica
    datasets explicitly, the same way on one machine and on several.

Several machines (``MultiWorkerMirroredStrategy``)
    Run the same script on every machine, each with the environment variable
    ``TF_CONFIG`` naming all workers and its own index, e.g. on worker 1::

        TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                    "task": {"type": "worker", "index": 1}}'

    Create the strategy first, before any other TensorFlow call, then::

        strategy = make_strategy("multi-worker")  # checks TF_CONFIG, then MultiWorkerMirroredStrategy()
        with strategy.scope():
            model = embedding_network(seed=0)
        history = train(model, images, labels, strategy=strategy, cross_replica=True)

    Every worker builds the same P x K plan (same seed) and feeds only its
    own replicas' slices (:func:`distribute_pk_batches`), so the global batch
    is still exactly P x K. Replicas are numbered worker after worker, so the
    gathered batch is again in the original order. Worker 0 (the "chief",
    :func:`is_chief`) is the one to save the model and the run's files; the
    others only train. ``python -m course_lib train --strategy multi-worker``
    does all of this (same command on every machine). The all-gather then
    crosses the network: B x d floats per step, small next to the
    gradients. To rehearse on one machine, start two processes with the
    values of :func:`local_cluster` as their ``TF_CONFIG`` (two free ports
    on 127.0.0.1): ``tests/test_multiworker.py`` does that and checks that
    the trained weights equal a one-process run.

Not covered here: BatchNormalization computes its statistics per replica
(``keras.layers.BatchNormalization(synchronized=True)`` shares them); the
course's networks have none.
"""

from __future__ import annotations

import functools
import json
import os
import socket

import numpy as np
import tensorflow as tf

from course_lib.data import pk_batches
from course_lib.distances import pairwise_distances
from course_lib.mining import mine_triplets_from_distances
from course_lib.options import DISTRIBUTE, check_choice

__all__ = [
    "use_logical_cpus", "mirrored_strategy", "make_strategy", "read_tf_config", "local_cluster", "is_chief",
    "gather_batch", "replica_gradients", "make_train_step", "pk_dataset_fn", "distribute_pk_batches",
    "replica_of", "negatives_seen", "per_replica_mining_report",
]


# ------------------------------------------------------------------ devices
def use_logical_cpus(count):
    """Split the CPU into ``count`` logical devices, to try ``tf.distribute`` without GPUs.

    Must run before TensorFlow initialises its devices (before the first op,
    tensor or device listing); returns the logical CPU devices. The logical
    devices share the same cores: good for checking results, not for speed.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise RuntimeError(
            f"Cannot split the CPU into {count} logical devices: TensorFlow is already "
            "initialised in this process. Call use_logical_cpus() first, in a fresh process."
        ) from error
    return tf.config.list_logical_devices("CPU")


def mirrored_strategy():
    """``MirroredStrategy`` over every GPU, or over every (logical) CPU when there is no GPU.

    ``tf.distribute.MirroredStrategy()`` without arguments takes only the
    first CPU when there is no GPU; listing the devices makes the logical
    CPUs of :func:`use_logical_cpus` count as replicas.
    """
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def make_strategy(name="default"):
    """The strategy ``python -m course_lib train --strategy NAME`` trains under.

    * ``"default"``: one device, ``tf.distribute.get_strategy()``;
    * ``"mirrored"``: :func:`mirrored_strategy`, every local GPU (or logical CPU);
    * ``"multi-worker"``: ``tf.distribute.MultiWorkerMirroredStrategy``, every
      device of every worker named in the environment variable ``TF_CONFIG``
      (checked by :func:`read_tf_config` first). Call it before any other
      TensorFlow op: it configures the collectives (all-reduce, all-gather)
      of the process, which TensorFlow does once. Later calls (same
      ``TF_CONFIG``) return the same strategy.
    """
    check_choice("strategy", name, DISTRIBUTE)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return mirrored_strategy()
    return _multi_worker_strategy(os.environ.get("TF_CONFIG"))


@functools.cache
def _multi_worker_strategy(tf_config):
    read_tf_config(tf_config)  # a clear error before TensorFlow's own
    return tf.distribute.MultiWorkerMirroredStrategy()


def read_tf_config(text):
    """``TF_CONFIG`` (a JSON string) as ``(workers, task_type, task_index)``, or a ValueError saying what is wrong.

    The form ``MultiWorkerMirroredStrategy`` reads, for worker 1 of 2::

        {"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 1}}

    ``workers`` lists every ``"host:port"`` of the cluster, a ``"chief"`` job
    first if there is one.
    """
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\' (index 1 on the second machine)')
    if not text:
        raise ValueError(f"--strategy multi-worker reads the cluster from the environment variable "
                         f"TF_CONFIG, which is not set: {example}.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {example}.") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    jobs = {job: hosts for job, hosts in cluster.items() if job in ("chief", "worker")} \
        if isinstance(cluster, dict) else {}
    if not any(jobs.values()) or not all(_host_list(hosts) for hosts in jobs.values()):
        raise ValueError(f'TF_CONFIG needs "cluster": {{"worker": [...]}}, a list of "host:port", '
                         f"got {text!r}: {example}.")
    task = config.get("task")
    if not (isinstance(task, dict) and task.get("type") in jobs and isinstance(task.get("index"), int)
            and 0 <= task["index"] < len(jobs[task["type"]])):
        raise ValueError(f'TF_CONFIG needs "task": {{"type": "worker", "index": i}} naming this process '
                         f"among the cluster's workers, got {text!r}: {example}.")
    return jobs.get("chief", []) + jobs.get("worker", []), task["type"], task["index"]


def _host_list(hosts):
    return isinstance(hosts, list) and all(isinstance(host, str) and ":" in host for host in hosts)


def local_cluster(num_workers, host="127.0.0.1"):
    """``TF_CONFIG`` values for ``num_workers`` processes on this machine, one per process.

    Each process gets its own free port on ``host``: set the i-th value as
    ``TF_CONFIG`` of the i-th process to rehearse a cluster without a second
    machine. (A port is free when chosen; another program could take it
    before TensorFlow does, which is unlikely.)
    """
    sockets = [socket.socket() for _ in range(num_workers)]
    try:
        for sock in sockets:  # all held open at once: distinct ports
            sock.bind((host, 0))
        workers = [f"{host}:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(num_workers)]


def is_chief(strategy):
    """True in the one process that writes the run's files: the only one, or the cluster's chief.

    Under ``MultiWorkerMirroredStrategy`` the chief is the task of type
    ``"chief"``, or worker 0 when the cluster has none (TensorFlow's rule).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    jobs = resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in jobs)


# ------------------------------------------------------ one replica's step
def gather_batch(labels, embeddings):
    """All replicas' labels and embeddings, in replica order: the global batch.

    Call it inside ``strategy.run``. The gather is differentiable: its
    gradient sends each replica the gradient of its own slice (after summing
    over replicas, see the module docstring). With one replica there is
    nothing to gather.
    """
    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
        return labels, embeddings
    # tf.identity places the labels on this replica's device. Inside a
    # tf.function, labels that arrive as an input carry no device, and
    # MultiWorkerMirroredStrategy with one device per worker then fails
    # with "destinations can not be empty".
    labels = tf.identity(labels)
    return context.all_gather(labels, axis=0), context.all_gather(embeddings, axis=0)


def replica_gradients(model, objective, images, labels, cross_replica=False):
    """``(value, statistics, grads)`` of one replica: its loss, the objective's statistics, its gradient.

    ``objective(labels, outputs)`` returns the loss, or ``(loss, statistics)``
    with a tuple of scalars (:func:`course_lib.training.make_objective`).
    ``cross_replica=False``: the loss of this replica's slice.
    ``cross_replica=True``: the loss of the global batch, the same on every
    replica. Either way the replica differentiates value / R; the module
    docstring explains why that makes the summed gradients right.
    """
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        if cross_replica:
            labels, outputs = gather_batch(labels, outputs)
        result = objective(labels, outputs)
        value, statistics = result if isinstance(result, tuple) else (result, ())
        scaled = value / tf.distribute.get_replica_context().num_replicas_in_sync
    return value, statistics, tape.gradient(scaled, model.trainable_variables)


# ------------------------------------------------------------- the step
def make_train_step(strategy, model, objective, optimizer, cross_replica=False):
    """The training step: a compiled ``step(images, labels) -> (loss, *statistics)`` that updates ``model``.

    The one step :func:`course_lib.training.train`, the tests and the
    benchmarks run, on one device or several. ``images`` and ``labels`` are
    per-replica values (an element of :func:`distribute_pk_batches`); the
    results are averaged over replicas. ``objective`` as in
    :func:`replica_gradients`. Build the model and the optimizer inside
    ``strategy.scope()``.
    """
    if not optimizer.built:
        with strategy.scope():
            optimizer.build(model.trainable_variables)

    def replica_step(images, labels):
        value, statistics, grads = replica_gradients(model, objective, images, labels, cross_replica)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return (value, *statistics)

    @tf.function
    def train_step(images, labels):
        results = strategy.run(replica_step, args=(images, labels))
        return tuple(strategy.reduce("MEAN", r, axis=None) for r in results)

    return train_step


# ------------------------------------------------------------------ batches
def pk_dataset_fn(images, labels, classes_per_batch, samples_per_class, seed=0, num_batches=None):
    """The ``dataset_fn(input_context)`` for ``strategy.distribute_datasets_from_function``.

    Input pipeline i (one per worker) serves replicas i*L ... i*L + L - 1, L
    replicas per worker, and yields their slices of every global P x K batch
    in turn (:func:`course_lib.data.replica_slices`), which is how
    ``tf.distribute`` deals a pipeline's elements out to its replicas.
    """

    def dataset_fn(input_context):
        num_replicas = input_context.num_replicas_in_sync
        per_pipeline = num_replicas // input_context.num_input_pipelines
        first = input_context.input_pipeline_id * per_pipeline
        return pk_batches(
            images, labels, classes_per_batch, samples_per_class, seed=seed, num_batches=num_batches,
            num_replicas=num_replicas, replicas=range(first, first + per_pipeline),
        )

    return dataset_fn


def distribute_pk_batches(strategy, images, labels, classes_per_batch, samples_per_class, seed=0, num_batches=None):
    """P x K batches for ``strategy``: per-replica ``(images, labels)``, P/R whole classes each.

    The same global batches as :func:`course_lib.data.pk_batches` with the
    same arguments: with one replica, exactly those; with R replicas, replica
    r gets the r-th slice of each. Works for one or several machines.
    """
    dataset_fn = pk_dataset_fn(images, labels, classes_per_batch, samples_per_class, seed, num_batches)
    return strategy.distribute_datasets_from_function(dataset_fn)


# -------------------------------------------------- what a replica misses
def replica_of(batch_size, num_replicas):
    """[B] int: the replica each sample of a global batch goes to (contiguous slices)."""
    if batch_size % num_replicas != 0:
        raise ValueError(f"a batch of {batch_size} does not split into {num_replicas} equal slices")
    return np.repeat(np.arange(num_replicas), batch_size // num_replicas)


def _replica_pairs(labels, num_replicas):
    """Per anchor a, what it has globally and on its own replica: [B, B] masks and [B] counts.

    ``labels`` is one global batch in batch order; replica r gets its r-th
    contiguous slice (:func:`replica_of`). Returns NumPy arrays:
    ``replica`` [B]; ``positive`` (same class, not a), ``negative`` (other
    class) and ``same_replica`` [B, B]; and per anchor ``positives_global`` /
    ``negatives_global`` (row sums of the masks) and ``positives_per_replica``
    / ``negatives_per_replica`` (row sums of mask & same_replica).
    """
    labels = np.asarray(labels).reshape(-1)
    replica = replica_of(len(labels), num_replicas)
    same_class = labels[:, None] == labels[None, :]
    same_replica = replica[:, None] == replica[None, :]
    positive = same_class & ~np.eye(len(labels), dtype=bool)
    negative = ~same_class
    return dict(
        replica=replica, positive=positive, negative=negative, same_replica=same_replica,
        positives_global=positive.sum(axis=1), positives_per_replica=(positive & same_replica).sum(axis=1),
        negatives_global=negative.sum(axis=1), negatives_per_replica=(negative & same_replica).sum(axis=1),
    )


_COUNTS = ("negatives_global", "negatives_per_replica", "positives_global", "positives_per_replica")


def negatives_seen(labels, num_replicas):
    """How many negatives and positives an anchor has, globally and on its own replica.

    Means over anchors, as a dict of plain numbers: ``negatives_global``,
    ``negatives_per_replica``, ``positives_global``, ``positives_per_replica``,
    plus ``batch_size``, ``num_replicas`` and ``replica_batch_size``. For a
    P x K batch with whole classes per replica: B - K against B/R - K
    negatives, K - 1 positives on both.
    """
    return _means(_replica_pairs(labels, num_replicas), num_replicas)


def _means(pairs, num_replicas):
    batch_size = len(pairs["replica"])
    return {"batch_size": batch_size, "num_replicas": num_replicas, "replica_batch_size": batch_size // num_replicas,
            **{key: float(pairs[key].mean()) for key in _COUNTS}}


def per_replica_mining_report(labels, embeddings, num_replicas, metric="euclidean"):
    """:func:`negatives_seen` plus where the global batch's mined partners lie.

    Mines the global batch (hard, semi-hard) and adds, as shares in [0, 1]
    (0 when nothing is mined):

    * ``hardest_negative_elsewhere``: anchors whose closest negative is on
      another replica;
    * ``semi_hard_negative_elsewhere``: positive pairs whose semi-hard
      negative is on another replica;
    * ``hardest_positive_elsewhere``: anchors whose farthest positive is on
      another replica (0 when every replica holds whole classes);

    and ``missed_gap``, the mean over anchors with a negative on their replica
    of D(a, closest negative on a's replica) - D(a, closest negative): how much
    easier the negative of in-replica batch-hard mining is (0 when the same).

    A negative on another replica is exactly a triplet that per-replica
    mining gets wrong: when the global choice is local, the replica searches
    a subset that contains it and finds the same one; when it is not, the
    replica picks another negative, usually an easier one.

    ``report["per_anchor"]``: the arrays behind the numbers, row a for anchor
    a. ``replica`` [B]; masks ``positive``, ``negative``, ``same_replica``
    [B, B]; counts ``positives_global`` ... ``negatives_per_replica`` [B];
    batch-hard partners ``hardest_negative`` / ``hardest_positive`` [B] (-1
    when none) and ``hardest_negative_elsewhere`` / ``..._positive_...`` [B].
    """
    labels = np.asarray(labels).reshape(-1)
    pairs = _replica_pairs(labels, num_replicas)
    d = pairwise_distances(embeddings, metric)
    replica = pairs["replica"]

    hard = mine_triplets_from_distances(labels, d, "hard")
    anchors = hard.anchor.numpy()
    for partner in ("negative", "positive"):
        picked = np.full(len(labels), -1)
        picked[anchors] = getattr(hard, partner).numpy()
        pairs[f"hardest_{partner}"] = picked
        pairs[f"hardest_{partner}_elsewhere"] = (picked >= 0) & (replica[picked] != replica)
    semi = mine_triplets_from_distances(labels, d, "semi-hard")
    semi_elsewhere = replica[semi.anchor.numpy()] != replica[semi.negative.numpy()]

    d = d.numpy()
    local = np.flatnonzero((pairs["negatives_per_replica"] > 0) & (pairs["hardest_negative"] >= 0))
    closest_local = np.where(pairs["negative"] & pairs["same_replica"], d, np.inf).min(axis=1)
    gaps = closest_local[local] - d[local, pairs["hardest_negative"][local]]

    def mean(values):  # 0 over no values: nothing mined, nothing missed
        return float(np.mean(values)) if len(values) else 0.0

    return {
        **_means(pairs, num_replicas),
        "hardest_negative_elsewhere": mean(pairs["hardest_negative_elsewhere"][anchors]),
        "semi_hard_negative_elsewhere": mean(semi_elsewhere),
        "hardest_positive_elsewhere": mean(pairs["hardest_positive_elsewhere"][anchors]),
        "missed_gap": mean(gaps),
        "per_anchor": pairs,
    }
