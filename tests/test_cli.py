"""Tests of the command line, ``python -m course_lib`` (course_lib.cli).

Most tests call ``cli.main([...])`` in-process (no new Python, no second
TensorFlow start); one runs the real ``python -m course_lib --help``.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from course_lib import cli, data, distances, losses, mining, options, retrieval, training

RUN_FILES = ("metrics.json", "model.keras", "embeddings.npy", "labels.npy",
             "embedding.html", "embeddings.tsv", "metadata.tsv")

TRAIN_OPTIONS = (
    "--dataset", "--source", "--loss", "--mining", "--soft", "--margin", "--metric",
    "--alpha", "--l2-reg", "--temperature", "--embedding-dim", "--l2-normalize", "--no-l2-normalize",
    "--epochs", "--classes-per-batch", "--samples-per-class", "--steps-per-epoch",
    "--learning-rate", "--seed", "--out", "--projection", "--plot-points", "--eval-limit",
)

# A tiny real run: 5 steps, 500 test images, 200 plotted points.
TINY = ["--dataset", "mnist", "--source", "bundled", "--epochs", "1", "--steps-per-epoch", "5",
        "--eval-limit", "500", "--plot-points", "200"]


def run_main(argv):
    """``cli.main(argv)`` -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ options
def test_option_lists_match_the_library():
    assert cli.DATASETS == data.DATASETS
    for name in data.DATASETS:
        assert cli.NUM_CLASSES == len(data.class_names(name))
    assert cli.LOSSES == tuple(training.LOSSES)
    assert cli.MINING == mining.STRATEGIES
    assert cli.METRICS == retrieval.METRICS == distances.METRICS
    assert cli.LOSSES == options.LOSSES and set(losses.FUNCTIONS) == set(cli.RANKING_LOSSES)
    for option, (keyword, names) in cli.LOSS_OPTIONS.items():  # every flag sets a real keyword
        assert all(keyword in losses.defaults(name) for name in names), option


def test_importing_the_cli_does_not_start_tensorflow():
    code = "import sys, course_lib.cli; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_train_help_mentions_every_option():
    status, out, _ = run_main(["train", "--help"])
    assert status == 0
    for option in TRAIN_OPTIONS:
        assert option in out, option
    for choice in (*cli.LOSSES, *cli.MINING, *cli.METRICS, *cli.PROJECTIONS):
        assert choice in out, choice
    for name in RUN_FILES:
        assert name in out, name


def test_evaluate_help():
    status, out, _ = run_main(["evaluate", "--help"])
    assert status == 0 and "--from-embeddings" in out and "DIR" in out


def test_python_dash_m_help():
    result = subprocess.run([sys.executable, "-m", "course_lib", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "evaluate" in result.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--margin", "-1"], "error: --margin must be > 0"),
        (["train", "--margin", "0"], "error: --margin must be > 0"),
        (["train", "--loss", "npairs", "--mining", "hard"], "--mining applies to --loss triplet"),
        (["train", "--loss", "contrastive", "--soft"], "--soft applies to --loss triplet"),
        (["train", "--loss", "triplet", "--alpha", "30"], "--alpha applies to --loss angular"),
        (["train", "--loss", "angular", "--l2-reg", "0.1"], "--l2-reg applies to --loss npairs"),
        (["train", "--loss", "cross_entropy", "--embedding-dim", "8"], "--embedding-dim"),
        (["train", "--loss", "cross_entropy", "--margin", "0.5"], "--margin applies"),
        (["train", "--soft", "--margin", "0.3"], "--margin has no effect with --soft"),
        (["train", "--loss", "angular", "--alpha", "90"], "--alpha must be between 0 and 90"),
        (["train", "--loss", "npairs", "--l2-reg", "-1"], "--l2-reg must be >= 0"),
        (["train", "--loss", "supcon", "--temperature", "0"], "--temperature must be > 0"),
        (["train", "--loss", "triplet", "--temperature", "0.5"], "--temperature applies to --loss supcon or nt-xent"),
        (["train", "--loss", "nt-xent", "--margin", "0.5"], "--margin applies"),
        (["train", "--loss", "multi-similarity", "--mining", "hard"], "--mining applies to --loss triplet"),
        (["train", "--loss", "hinge"], "argument --loss: invalid choice"),
        (["train", "--mining", "easy"], "argument --mining: invalid choice"),
        (["train", "--dataset", "cifar10"], "argument --dataset: invalid choice"),
        (["train", "--projection", "tsne"], "argument --projection: invalid choice"),
        (["train", "--epochs", "two"], "argument --epochs: invalid int value"),
        (["train", "--epochs", "0"], "--epochs must be >= 1"),
        (["train", "--classes-per-batch", "11"], "--classes-per-batch must be between 2 and 10"),
        (["train", "--samples-per-class", "1"], "--samples-per-class must be >= 2"),
        (["train", "--steps-per-epoch", "0"], "--steps-per-epoch must be >= 1"),
        (["train", "--learning-rate", "0"], "--learning-rate must be > 0"),
        (["train", "--embedding-dim", "1"], "--embedding-dim must be >= 2"),
        (["train", "--eval-limit", "5"], "--eval-limit must be >= 20"),
        (["train", "--unknown"], "unrecognized arguments: --unknown"),
        (["evaluate", "/no/such/run"], "DIR: no folder /no/such/run"),
        ([], "COMMAND"),
    ],
)
def test_bad_options_exit_2_naming_the_option(argv, message):
    status, _, err = run_main(argv)
    assert status == 2
    assert message in err


def test_evaluate_rejects_a_folder_that_is_not_a_run(tmp_path):
    status, _, err = run_main(["evaluate", str(tmp_path)])
    assert status == 2 and "has no metrics.json" in err


def test_defaults():
    args = cli.build_parser().parse_args(["train"])
    settings = cli.train_settings(args)
    assert settings["dataset"] == "fashion_mnist" and settings["source"] == "auto"
    assert settings["loss"] == "triplet"
    assert settings["loss_options"] == {"margin": 0.2, "mining": "semi-hard", "metric": "euclidean"}
    assert settings["embedding_dim"] == 64 and settings["l2_normalize"] is True
    assert settings["epochs"] == cli.DEFAULT_EPOCHS["fashion_mnist"] == 10
    assert cli.train_settings(cli.build_parser().parse_args(["train", "--dataset", "mnist"]))["epochs"] == 5
    assert settings["classes_per_batch"] == settings["samples_per_class"] == 8
    assert settings["learning_rate"] == 1e-3 and settings["projection"] == "pca"
    assert str(cli.default_out_dir("mnist", "triplet")).startswith("runs/mnist-triplet-")


@pytest.mark.parametrize(
    "argv, options",
    [
        (["--loss", "triplet", "--soft", "--mining", "hard"],
         {"soft": True, "mining": "hard", "metric": "euclidean"}),
        (["--loss", "contrastive"], {"margin": 1.0, "metric": "euclidean"}),
        (["--loss", "contrastive", "--margin", "0.5", "--metric", "cosine"],
         {"margin": 0.5, "metric": "cosine"}),
        (["--loss", "npairs"], {"l2_reg": 0.002}),
        (["--loss", "npairs", "--l2-reg", "0"], {"l2_reg": 0.0}),
        (["--loss", "angular", "--alpha", "30"], {"alpha_degrees": 30.0}),
        (["--loss", "cross_entropy"], {}),
        (["--loss", "supcon"], {"temperature": 0.1}),
        (["--loss", "nt-xent", "--temperature", "0.5"], {"temperature": 0.5}),
        (["--loss", "multi-similarity"], {}),
    ],
)
def test_loss_options_are_accepted_by_the_loss(argv, options):
    args = cli.build_parser().parse_args(["train", *argv])
    assert cli.check_train_args(args) is None
    assert cli.loss_options(args) == options
    training.make_loss(args.loss, **options)  # raises on an option the loss does not take


# ------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Train 5 steps on bundled MNIST; returns (run folder, printed output)."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    status, printed, err = run_main(["train", *TINY, "--out", str(out)])
    assert status == 0, err
    return out, printed


def test_train_writes_every_file(tiny_run):
    out, printed = tiny_run
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_queries"] == 500
    assert set(metrics["recall_at_k"]) == {"1", "5", "10"}
    assert 0.0 <= metrics["precision_at_1"] <= 1.0 and metrics["seconds"] > 0
    assert metrics["settings"]["loss_options"]["mining"] == "semi-hard"
    assert metrics["settings"]["eval_limit"] == 500
    assert metrics["data"]["test_source"] == "bundled"
    assert len(metrics["history"]) == 1

    embeddings, labels = np.load(out / "embeddings.npy"), np.load(out / "labels.npy")
    assert embeddings.shape == (500, 64) and embeddings.dtype == np.float32
    assert labels.shape == (500,)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert len((out / "metadata.tsv").read_text().splitlines()) == 501
    assert np.loadtxt(out / "embeddings.tsv", delimiter="\t").shape == (500, 64)
    assert "Plotly.newPlot" in (out / "embedding.html").read_text(encoding="utf-8")

    # What it prints: the per-epoch history, the metrics table and the files.
    assert "precision@1" in printed and f"{metrics['precision_at_1']:.4f}" in printed
    assert "MAP@R" in printed and str(out) in printed


def test_saved_model_loads(tiny_run):
    out, _ = tiny_run
    model = keras.models.load_model(out / "model.keras")
    assert model.output_shape == (None, 64)


@pytest.mark.parametrize("from_embeddings", [False, True])
def test_evaluate_reproduces_the_metrics(tiny_run, from_embeddings):
    out, _ = tiny_run
    saved = json.loads((out / "metrics.json").read_text())
    metrics = cli.recompute_metrics(out, from_embeddings=from_embeddings)
    for name in ("precision_at_1", "r_precision", "map_at_r"):
        assert metrics[name] == pytest.approx(saved[name], abs=1e-6)
    assert metrics["num_queries"] == saved["num_queries"]

    argv = ["evaluate", str(out)] + (["--from-embeddings"] if from_embeddings else [])
    status, printed, _ = run_main(argv)
    assert status == 0
    assert printed.count(f"{saved['precision_at_1']:.4f}") >= 2  # now and saved, side by side


def test_evaluate_needs_the_model_unless_from_embeddings(tiny_run, tmp_path):
    out, _ = tiny_run
    for name in ("metrics.json", "embeddings.npy", "labels.npy"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    status, _, err = run_main(["evaluate", str(tmp_path)])
    assert status == 2 and "has no model.keras" in err
    status, _, _ = run_main(["evaluate", str(tmp_path), "--from-embeddings"])
    assert status == 0


def test_cross_entropy_run_embeds_with_the_backbone(tmp_path):
    out = tmp_path / "ce"
    status, _, err = run_main(["train", *TINY, "--loss", "cross_entropy", "--out", str(out)])
    assert status == 0, err
    assert np.load(out / "embeddings.npy").shape == (500, 128)
    saved = json.loads((out / "metrics.json").read_text())
    metrics = cli.recompute_metrics(out)
    assert metrics["precision_at_1"] == pytest.approx(saved["precision_at_1"], abs=1e-6)
