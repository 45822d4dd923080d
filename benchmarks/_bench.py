"""What the benchmark scripts share: timing, the training runs through the CLI, the statistics
over seeds and the files they write (``results.py`` in both its modes, ``claims.py``).

A run is ``python -m course_lib train ...``, called in this process through
``course_lib.cli.main`` (TensorFlow starts once), its output in a log file, its
wall and CPU seconds measured around the call. With ``resume``, a finished run
(its ``<out>.done.json`` holds the same command line) is read back instead of
trained again, and processes sharing a work folder split the runs between them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------ where and when
def git_commit():
    """The short hash of the checkout's HEAD ("unknown" outside git)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU"


def now():
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


def timed(function, *args, **kwargs):
    """``(function(*args, **kwargs), wall seconds, CPU seconds of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


# ---------------------------------------------------------------- the runs
def train_argv(dataset, seed, out, settings, options=(), holdout=None):
    """The command line of one run: ``python -m course_lib`` + this list. ``options``: the
    run's own (its loss); ``settings``: the budget shared by every run (None: the CLI's default)."""
    argv = ["train", "--dataset", dataset, *options, "--seed", str(seed), "--out", str(out),
            "--source", "bundled", "--plot-points", "10"]
    for key in ("epochs", "steps_per_epoch", "eval_limit"):
        if settings.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(settings[key])]
    if holdout:
        argv += ["--holdout-classes", *map(str, holdout)]
    return argv + ["--quiet"]


def run_cli(argv, log_path):
    """``course_lib.cli.main(argv)`` with its output in ``log_path``: (wall s, CPU s)."""
    from course_lib import cli

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        status, wall, cpu = timed(cli.main, argv)
    if status != 0:
        tail = log_path.read_text(encoding="utf-8")[-2000:]
        raise RuntimeError(f"python -m course_lib {' '.join(argv)} failed ({status}); {log_path} ends:\n{tail}")
    return wall, cpu


def run_jobs(jobs, resume=False):
    """Train every job ``(tag, out, argv)`` in order, or read it back (``resume``); yields
    ``(job, metrics.json record, wall s, CPU s)``. A run another process trains now comes last."""
    deferred = []
    for job in jobs:
        done = train_once(*job[1:], resume)
        if done is None:
            deferred.append(job)
        else:
            yield (job, *done)
    for job in deferred:
        yield (job, *train_once(*job[1:], resume, wait=True))


def train_once(out, argv, resume, wait=False):
    """One run in folder ``out``: (record, wall, cpu); None when another process trains it (unless ``wait``)."""
    import keras

    done = out.with_suffix(".done.json")
    state = claim(out, argv, resume)
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
    return json.loads((out / "metrics.json").read_text(encoding="utf-8")), wall, cpu


def claim(out, argv, resume):
    """Who trains the run in folder ``out``: "done" (finished with this ``argv``: reuse it),
    "mine" (train it here) or "busy" (another process trains it now).

    Without ``resume`` every run is "mine". With it, processes that share a work folder
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


# ------------------------------------------------------------ over the seeds
def mean_std(values):
    """``(mean, std)`` of the per-seed values; std the sample standard deviation
    ``sqrt(sum (v - mean)^2 / (n - 1))`` (ddof = 1), 0 for a single seed."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def check_no_shared_runs(rows, key):
    """``--merge``: the tables pooled must not hold the same run twice (``key(row)`` names a run)."""
    keys = [key(row) for row in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("--merge: the tables share runs (the same dataset, configuration and seed)")


# ----------------------------------------------------------------- the files
def write_json(path, data, sort_keys=False):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=sort_keys) + "\n", encoding="utf-8")


def write(out, stem, result, text):
    """``<out>/<stem>.json`` (the result) and ``<out>/<stem>.md`` (``text``, the Markdown page)."""
    write_json(Path(out) / f"{stem}.json", result)
    (Path(out) / f"{stem}.md").write_text(text, encoding="utf-8")
