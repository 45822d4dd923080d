"""Tests of the command line, ``python -m course_lib`` (course_lib.cli).

Most tests call ``cli.main([...])`` in-process (no new Python, no second
TensorFlow start); one runs the real ``python -m course_lib --help``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import subprocess
import sys

import keras
import numpy as np
import pytest

from course_lib import cli, data, distances, losses, mining, models, options, retrieval, training

RUN_FILES = ("metrics.json", "model.keras", "embeddings.npy", "labels.npy",
             "embedding.html", "embeddings.tsv", "metadata.tsv")

TRAIN_OPTIONS = (
    "--dataset", "--source", "--loss", "--mining", "--soft", "--margin", "--metric",
    "--alpha", "--l2-reg", "--temperature", "--embedding-dim", "--l2-normalize", "--no-l2-normalize",
    "--epochs", "--classes-per-batch", "--samples-per-class", "--steps-per-epoch",
    "--learning-rate", "--seed", "--out", "--projection", "--plot-points", "--eval-limit",
    "--self-supervised", "--strength", "--batch-size", "--quiet",
)

# A tiny real run: 2 epochs of 2 steps, 300 test images, 10 plotted points.
TINY = ["--dataset", "mnist", "--source", "bundled", "--epochs", "2", "--steps-per-epoch", "2",
        "--eval-limit", "300", "--plot-points", "10"]


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
    code = ("import contextlib, io, sys, course_lib.cli as cli\n"
            "with contextlib.redirect_stdout(io.StringIO()): cli.main(['train', '--help'])\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False"], result.stderr


def library_function(dotted_name):
    module, _, name = dotted_name.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_every_default_shown_and_used_is_the_library_functions():
    """A library default changed: the help and the run follow it (a default copied into the CLI fails here)."""
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    actions = {option: action for action in train._actions for option in action.option_strings}
    settings = cli.train_settings(train.parse_args([]))
    unlabelled = cli.train_settings(train.parse_args(["--loss", "nt-xent", "--self-supervised"]))
    setting = {"--source": settings["source"], "--loss": settings["loss"], "--strategy": settings["strategy"],
               "--embedding-dim": settings["embedding_dim"], "--l2-normalize": settings["l2_normalize"],
               "--classes-per-batch": settings["classes_per_batch"], "--seed": settings["seed"],
               "--samples-per-class": settings["samples_per_class"], "--metric": settings["metric"],
               "--learning-rate": settings["learning_rate"], "--projection": settings["projection"],
               "--strength": unlabelled["augmentation"]["strength"], "--batch-size": unlabelled["batch_size"],
               "--temperature": unlabelled["loss_options"]["temperature"]}
    assert set(setting) == set(cli.LIBRARY_DEFAULTS)
    for option, (function, keyword) in cli.LIBRARY_DEFAULTS.items():
        value = options.defaults_of(library_function(function))[keyword]
        assert cli.library_default(option) == setting[option] == value, option
        shown = actions["--self-supervised" if option == "--temperature" else option]
        help_text = " ".join((shown.help % vars(shown)).split())
        assert (f"--temperature defaults to {value};" if option == "--temperature"
                else f"(default: {value})") in help_text, option


def test_defaults_of_reads_the_source_like_the_signature():
    for name in {function for function, _ in cli.LIBRARY_DEFAULTS.values()} | {"course_lib.losses.triplet_loss"}:
        assert options.defaults_of(name) == options.defaults_of(library_function(name)), name
    with pytest.raises(ValueError, match="dotted name"):
        options.defaults_of("course_lib.training.no_such_function")


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
        (["train", "--loss", "cross_entropy", "--self-supervised"],
         "--self-supervised applies to --loss contrastive or triplet"),
        (["train", "--strength", "0.5"], "--strength applies to --self-supervised runs only"),
        (["train", "--batch-size", "64"], "--batch-size applies to --self-supervised runs only"),
        (["train", "--self-supervised", "--strength", "-1"], "--strength must be >= 0"),
        (["train", "--self-supervised", "--batch-size", "1"], "--batch-size must be >= 2"),
        (["train", "--self-supervised", "--classes-per-batch", "4"],
         "--classes-per-batch does not apply to --self-supervised"),
        (["train", "--self-supervised", "--strategy", "mirrored"], "--self-supervised trains on one device"),
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
    assert settings["self_supervised"] is False and "augmentation" not in settings
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
    assert metrics["num_queries"] == 300
    assert set(metrics["recall_at_k"]) == {"1", "5", "10"}
    assert 0.0 <= metrics["precision_at_1"] <= 1.0 and metrics["seconds"] > 0
    assert metrics["settings"]["loss_options"]["mining"] == "semi-hard"
    assert metrics["settings"]["eval_limit"] == 300
    assert metrics["data"]["test_source"] == "bundled"
    assert len(metrics["history"]) == 2

    embeddings, labels = np.load(out / "embeddings.npy"), np.load(out / "labels.npy")
    assert embeddings.shape == (300, 64) and embeddings.dtype == np.float32
    assert labels.shape == (300,)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert len((out / "metadata.tsv").read_text().splitlines()) == 301
    assert np.loadtxt(out / "embeddings.tsv", delimiter="\t").shape == (300, 64)
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
    assert np.load(out / "embeddings.npy").shape == (300, 128)
    saved = json.loads((out / "metrics.json").read_text())
    metrics = cli.recompute_metrics(out)
    assert metrics["precision_at_1"] == pytest.approx(saved["precision_at_1"], abs=1e-6)


# ------------------------------------------------------- the per-epoch table
def table_rows(printed):
    """The rows of the per-epoch table in the printed output, split into their columns."""
    lines = printed.splitlines()
    start = lines.index(cli.EPOCH_HEADER.strip("\n"))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("(*"):
            return rows
        rows.append(line.split())
    raise AssertionError("the table has no closing note")


def test_table_has_one_row_per_epoch_with_the_history(tiny_run):
    out, printed = tiny_run
    assert cli.EPOCH_HEADER.split() == ["epoch", "loss", "active", "d(a,p)", "d(a,n)", "P@1*", "seconds"]
    history = json.loads((out / "metrics.json").read_text())["history"]
    rows = table_rows(printed)
    assert [int(row[0]) for row in rows] == [1, 2] and all(len(row) == 7 for row in rows)
    for row, record in zip(rows, history):
        assert float(row[1]) == pytest.approx(record["loss"], abs=1e-4)
        assert float(row[2]) == pytest.approx(record["active_fraction"], abs=1e-3)  # triplet: a number
        assert 0.0 <= float(row[2]) <= 1.0
        assert float(row[3]) == pytest.approx(record["mean_positive_distance"], abs=1e-3)
        assert float(row[4]) == pytest.approx(record["mean_negative_distance"], abs=1e-3)
        assert float(row[5]) == pytest.approx(record["metrics"]["precision_at_1"], abs=1e-3)
        assert float(row[6]) == pytest.approx(record["seconds"], abs=0.06)
    assert "precision@1 on 300 test images" in printed


def test_epoch_row_shows_a_dash_for_losses_that_mine_no_triplets():
    record = training.EpochRecord(3, 1.25, math.nan, 0.5, 1.0, 0.7, {"precision_at_1": 0.875}, 2.0)
    assert cli.epoch_row(record).split() == ["3", "1.2500", "-", "0.500", "1.000", "0.875", "2.0"]


def test_on_epoch_sees_each_record_as_its_epoch_ends():
    images, labels = data.load_dataset("mnist", "test", "bundled")
    model = models.embedding_network(8, width=4, seed=0)
    seen = []  # (record, the model's weights at that moment)
    history = training.train(model, images[:200], labels[:200], epochs=3, steps_per_epoch=1,
                             classes_per_batch=4, samples_per_class=2, progress=False,
                             on_epoch=lambda record: seen.append((record, model.get_weights())))
    assert [record for record, _ in seen] == history.records
    weights = [w for _, w in seen]  # called during training: the weights still changed after each call
    assert not np.array_equal(weights[0][0], weights[1][0]) and not np.array_equal(weights[1][0], weights[2][0])
    np.testing.assert_array_equal(weights[2][0], model.get_weights()[0])


# ------------------------------------------------------------------- --quiet
def test_quiet_prints_nothing_but_a_collapse_warning_on_stderr(tmp_path, monkeypatch):
    out = tmp_path / "quiet"
    status, printed, err = run_main(["train", *TINY, "--quiet", "--out", str(out)])
    assert status == 0, err
    assert printed == "" and err == ""
    assert (out / "metrics.json").is_file() and (out / "model.keras").is_file()
    # a collapse (forced here) is the one thing --quiet still reports, on stderr
    monkeypatch.setattr(training, "detect_collapse", lambda *args: "embedding collapsed: forced by the test")
    status, printed, err = run_main(["train", *TINY, "--quiet", "--out", str(tmp_path / "collapsed")])
    assert status == 0 and printed == ""
    assert err == "warning: epoch 1: embedding collapsed: forced by the test\n"
    assert json.loads((tmp_path / "collapsed" / "metrics.json").read_text())["collapse"].startswith("epoch 1:")


def test_quiet_still_reports_errors():
    status, printed, err = run_main(["train", "--quiet", "--epochs", "0"])
    assert status == 2 and printed == "" and "--epochs must be >= 1" in err


# ------------------------------------------------------- --self-supervised
def test_self_supervised_defaults_are_the_librarys():
    args = cli.build_parser().parse_args(["train", "--dataset", "mnist", "--loss", "nt-xent", "--self-supervised"])
    assert cli.check_train_args(args) is None
    settings = cli.train_settings(args)
    library = options.defaults_of(training.train_self_supervised)
    assert settings["self_supervised"] is True
    assert settings["loss_options"] == {"temperature": library["temperature"]} \
        == {"temperature": 0.5}  # not the loss's own 0.1
    assert settings["batch_size"] == library["batch_size"] == 256
    assert settings["augmentation"]["strength"] == library["strength"] == 0.7
    assert settings["classes_per_batch"] is None and settings["samples_per_class"] is None
    assert cli.SELF_SUPERVISED_LOSSES == training.SELF_SUPERVISED_LOSSES
    _, help_text, _ = run_main(["train", "--help"])
    help_text = " ".join(help_text.split())
    assert f"(default: {library['strength']})" in help_text and f"(default: {library['batch_size']})" in help_text
    assert f"--temperature defaults to {library['temperature']};" in help_text
    # an explicit option wins
    args = cli.build_parser().parse_args(["train", "--loss", "supcon", "--self-supervised", "--temperature", "0.2",
                                          "--strength", "0", "--batch-size", "64"])
    settings = cli.train_settings(args)
    assert settings["loss_options"] == {"temperature": 0.2} and settings["batch_size"] == 64
    assert settings["augmentation"]["strength"] == 0.0


def test_self_supervised_run(tmp_path):
    out = tmp_path / "ssl"
    status, printed, err = run_main(["train", *TINY, "--loss", "nt-xent", "--self-supervised",
                                     "--batch-size", "32", "--out", str(out)])
    assert status == 0, err
    saved = json.loads((out / "metrics.json").read_text())
    settings = saved["settings"]
    assert settings["self_supervised"] is True and settings["batch_size"] == 32
    assert settings["augmentation"] == {"strength": 0.7, "max_degrees": 15.0, "max_shift": 3.0,
                                        "max_erase": 10.0, "noise": 0.1}
    assert settings["loss_options"] == {"temperature": 0.5}
    assert saved["num_queries"] == 300 and len(saved["history"]) == 2
    assert all(record["active_fraction"] is None for record in saved["history"])
    rows = table_rows(printed)
    assert len(rows) == 2 and all(row[2] == "-" for row in rows)
    assert "without labels" in printed and "32 images x 2 views" in printed
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    # the same files as any run: `evaluate` recomputes the metrics from the saved model
    assert cli.recompute_metrics(out)["map_at_r"] == pytest.approx(saved["map_at_r"], abs=1e-6)
