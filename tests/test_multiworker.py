"""Training across processes: ``python -m course_lib train --strategy multi-worker``.

The slow test starts two worker processes on 127.0.0.1 (free ports, a
``TF_CONFIG`` each, ``MultiWorkerMirroredStrategy`` over gRPC on the CPU),
which train a few steps with cross-replica mining for four losses, and checks
that the chief's saved model has the weights of a one-process run on the same
global P x K batches (each worker: P/R = 4 whole classes of every batch of 8).
Each worker runs the four trainings one after the other through
``course_lib.cli.main``, which is what ``python -m course_lib`` calls, so
TensorFlow starts once per worker rather than once per loss. The one-process
runs go through the same ``main`` in the test process, while the workers run,
and so does one ``--strategy mirrored`` run (one replica on a CPU-only machine:
the path through a strategy's scope and the saved model, not the splitting).

The fast tests check the pieces on one process: the checks of ``TF_CONFIG``,
the strategy names, and who is the chief.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from course_lib import cli, distributed, models, options

REPO = Path(__file__).resolve().parent.parent
WORKER_TIMEOUT = 900  # seconds for both workers' four runs, on a busy 2-core machine

# A few steps, a small evaluation: the point is the weights, not the accuracy.
TINY = ["train", "--dataset", "mnist", "--source", "bundled", "--epochs", "1", "--steps-per-epoch", "3",
        "--eval-limit", "200", "--plot-points", "10"]
CASES = {
    "triplet-semi-hard": ["--loss", "triplet", "--mining", "semi-hard"],
    "triplet-hard": ["--loss", "triplet", "--mining", "hard"],
    "contrastive": ["--loss", "contrastive"],
    "npairs": ["--loss", "npairs"],
}
RUN_FILES = {"metrics.json", "model.keras", "embeddings.npy", "labels.npy", "embedding.html",
             "embeddings.tsv", "metadata.tsv"}

# One worker: every case through the command line's main(), the exit statuses printed last.
WORKER = """
import json, sys
from course_lib.cli import main
statuses = [main(argv) for argv in json.loads(sys.argv[1])]
print("exit statuses", statuses)
sys.exit(max(statuses))
"""


def argv(case, strategy, out):
    return [*TINY, *CASES[case], "--strategy", strategy, "--out", str(out)]


def start_workers(folders, argvs):
    """One process per folder (its working directory), each with its TF_CONFIG; output to folder/log.txt."""
    processes = []
    for folder, tf_config in zip(folders, distributed.local_cluster(len(folders))):
        folder.mkdir()
        env = {**os.environ, "TF_CONFIG": tf_config, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": str(REPO)}
        with open(folder.parent / f"{folder.name}.log", "w") as log:
            processes.append(subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(argvs)], cwd=folder,
                                              env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes


def stop(processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case on two workers and on one process, and one mirrored run: the folders, the workers' logs."""
    root = tmp_path_factory.mktemp("multiworker")
    workers = [root / "worker0", root / "worker1"]
    processes = start_workers(workers, [argv(case, "multi-worker", f"runs/{case}") for case in CASES])
    try:
        for case in CASES:  # meanwhile, the one-process runs
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli.main(argv(case, "default", root / "single" / case)) == 0, case
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(argv("triplet-semi-hard", "mirrored", root / "mirrored")) == 0
        for process in processes:
            process.wait(timeout=WORKER_TIMEOUT)
    finally:
        stop(processes)
    logs = [(root / f"{folder.name}.log").read_text() for folder in workers]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-5000:]
    return {"workers": workers, "single": root / "single", "mirrored": root / "mirrored", "logs": logs}


def weights(path):
    return keras.models.load_model(path).get_weights()


# ================================================= two processes (slow)
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_two_workers_train_the_weights_of_one_process(case, runs):
    chief, single = runs["workers"][0] / "runs" / case, runs["single"] / case
    got, expected = weights(chief / "model.keras"), weights(single / "model.keras")
    initial = models.embedding_network(seed=0).get_weights()  # what both started from
    for w, e, w0 in zip(got, expected, initial):
        np.testing.assert_allclose(w, e, rtol=1e-4, atol=1e-5)
    moved = max(float(np.max(np.abs(e - w0))) for e, w0 in zip(expected, initial))
    assert moved > 1e-3  # the weights did change: equal is not trivially true
    history = [json.loads((folder / "metrics.json").read_text())["history"] for folder in (chief, single)]
    np.testing.assert_allclose([r["loss"] for r in history[0]], [r["loss"] for r in history[1]], rtol=1e-5)


@pytest.mark.slow
def test_mirrored_strategy_trains_the_same_weights(runs):
    got = weights(runs["mirrored"] / "model.keras")
    expected = weights(runs["single"] / "triplet-semi-hard" / "model.keras")
    for w, e in zip(got, expected):
        np.testing.assert_allclose(w, e, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_only_the_chief_writes(runs):
    chief, other = runs["workers"]
    for case in CASES:
        assert {p.name for p in (chief / "runs" / case).iterdir()} == RUN_FILES
    assert list(other.iterdir()) == []  # no runs/ folder, nothing else either
    assert "worker 1 is not the chief" in runs["logs"][1]
    settings = json.loads((chief / "runs" / "npairs" / "metrics.json").read_text())["settings"]
    assert settings["strategy"] == "multi-worker"


# ======================================================== one process
def test_strategy_names_come_from_options():
    assert options.DISTRIBUTE == ("default", "mirrored", "multi-worker")
    assert cli.build_parser().parse_args(["train"]).strategy == "default"
    with pytest.raises(ValueError, match="strategy must be one of"):
        distributed.make_strategy("parameter-server")


def test_default_strategy_is_its_own_chief():
    strategy = distributed.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert distributed.is_chief(strategy)
    assert distributed.is_chief(distributed.make_strategy("mirrored"))


def test_local_cluster_gives_each_process_its_own_port():
    configs = [json.loads(text) for text in distributed.local_cluster(3)]
    workers = configs[0]["cluster"]["worker"]
    assert len(set(workers)) == 3 and all(c["cluster"]["worker"] == workers for c in configs)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert distributed.read_tf_config(json.dumps(configs[2])) == (workers, "worker", 2)


def test_read_tf_config_with_a_chief():
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 1}}
    assert distributed.read_tf_config(json.dumps(config)) == (["a:1", "b:1", "c:1"], "worker", 1)


@pytest.mark.parametrize("text, problem", [
    (None, "TF_CONFIG, which is not set"),
    ("", "TF_CONFIG, which is not set"),
    ("{cluster: 1}", "TF_CONFIG is not valid JSON"),
    ("[1, 2]", 'TF_CONFIG needs "cluster"'),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs "cluster"'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', 'TF_CONFIG needs "cluster"'),
    ('{"cluster": {"worker": ["a:1", "b:1"]}}', 'TF_CONFIG needs "task"'),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}', 'TF_CONFIG needs "task"'),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}', 'TF_CONFIG needs "task"'),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": "1"}}', 'TF_CONFIG needs "task"'),
])
def test_read_tf_config_says_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        distributed.read_tf_config(text)


def test_cli_multi_worker_without_tf_config_fails_clearly(monkeypatch, tmp_path):
    """Exit status 1 and an error naming TF_CONFIG, before any training or file."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = cli.main([*TINY, "--strategy", "multi-worker", "--out", str(tmp_path / "run")])
    assert status == 1
    assert "error:" in err.getvalue() and "TF_CONFIG" in err.getvalue()
    assert not (tmp_path / "run").exists()
