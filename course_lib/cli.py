"""Command line: train an embedding and evaluate it without writing code.

    python -m course_lib train --dataset fashion_mnist --loss triplet --mining semi-hard --epochs 5
    python -m course_lib train --dataset mnist --loss nt-xent --self-supervised
    python -m course_lib evaluate runs/fashion_mnist-triplet-20250101-120000

``train`` prints one line per epoch and a summary (``--quiet``: only errors
and warnings, on stderr) and writes the run into one folder, ``--out``
(:data:`FILES`). ``evaluate`` recomputes the metrics of a run folder from its
saved model and the test split (or, with ``--from-embeddings``, from
``embeddings.npy``). ``main(["train", "--epochs", "1"])`` does the same from
Python and returns the exit status: 0 done, 1 failed, 2 bad options.

This module only wires options to library calls. Each option's default is the
keyword default of the library function that uses it (:data:`LIBRARY_DEFAULTS`),
and its names and choices come from :mod:`course_lib.options`: both read
without importing TensorFlow, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from course_lib.options import DATASETS, DISTRIBUTE, LOSSES, METRICS, PROJECTIONS, SOURCES, defaults_of
from course_lib.options import STRATEGIES as MINING

NUM_CLASSES = 10
RANKING_LOSSES = tuple(name for name in LOSSES if name != "cross_entropy")

# Each loss option: the keyword of the loss function it sets, and the losses
# that take it (the others refuse it). Its default is the loss's own.
LOSS_OPTIONS = {
    "--mining": ("mining", ("triplet",)),
    "--soft": ("soft", ("triplet",)),
    "--margin": ("margin", ("triplet", "contrastive")),
    "--metric": ("metric", ("triplet", "contrastive")),
    "--alpha": ("alpha_degrees", ("angular",)),
    "--l2-reg": ("l2_reg", ("npairs",)),
    "--temperature": ("temperature", ("supcon", "nt-xent")),
}
MODEL_OPTIONS = ("--embedding-dim", "--l2-normalize")  # every loss but cross_entropy
SELF_SUPERVISED_LOSSES = RANKING_LOSSES  # an image's index as its label suits every loss but cross_entropy
SELF_SUPERVISED_OPTIONS = ("--strength", "--batch-size")
PK_OPTIONS = ("--classes-per-batch", "--samples-per-class")  # batches of classes: not without labels

# Where each default lives: (function, keyword), read by options.defaults_of from the source.
TRAIN, SELF_SUPERVISED = "course_lib.training.train", "course_lib.training.train_self_supervised"
LIBRARY_DEFAULTS = {
    "--source": ("course_lib.data.load_dataset", "source"),
    "--loss": (TRAIN, "loss"),
    "--embedding-dim": ("course_lib.models.embedding_network", "embedding_dim"),
    "--l2-normalize": ("course_lib.models.embedding_network", "l2_normalize"),
    "--classes-per-batch": (TRAIN, "classes_per_batch"),
    "--samples-per-class": (TRAIN, "samples_per_class"),
    "--learning-rate": (TRAIN, "learning_rate"),
    "--seed": (TRAIN, "seed"),
    "--strategy": ("course_lib.distributed.make_strategy", "name"),
    "--strength": (SELF_SUPERVISED, "strength"),
    "--batch-size": (SELF_SUPERVISED, "batch_size"),
    "--temperature": (SELF_SUPERVISED, "temperature"),  # without labels; else the loss's own
    "--metric": ("course_lib.retrieval.evaluate", "metric"),  # of retrieval; the loss's is its own
    "--projection": ("course_lib.projection.project", "method"),
}
# The command line's own defaults: epochs enough for the README targets on 2 CPU cores
# (MNIST P@1 >= 0.97, Fashion-MNIST >= 0.85; held-out runs: holdout.EPOCHS).
DEFAULT_EPOCHS = {"mnist": 5, "fashion_mnist": 10}

# Numbers checked before TensorFlow starts, so that a typo fails at once (exit status 2);
# the library checks the loss options again at its edge, once TensorFlow runs.
BOUNDS = {
    "--margin": ("> 0", lambda v: v > 0),
    "--alpha": ("between 0 and 90 degrees", lambda v: 0 < v < 90),
    "--l2-reg": (">= 0", lambda v: v >= 0),
    "--temperature": ("> 0", lambda v: v > 0),
    "--embedding-dim": (">= 2", lambda v: v >= 2),
    "--epochs": (">= 1", lambda v: v >= 1),
    "--classes-per-batch": (f"between 2 and {NUM_CLASSES}", lambda v: 2 <= v <= NUM_CLASSES),
    "--samples-per-class": (">= 2 (a batch needs positive pairs)", lambda v: v >= 2),
    "--steps-per-epoch": (">= 1", lambda v: v >= 1),
    "--learning-rate": ("> 0", lambda v: v > 0),
    "--plot-points": (">= 10", lambda v: v >= 10),
    "--eval-limit": (">= 20", lambda v: v >= 20),
    "--strength": (">= 0", lambda v: v >= 0),
    "--batch-size": (">= 2", lambda v: v >= 2),
}

FILES = {
    "metrics.json": "metrics, settings and per-epoch history",
    "model.keras": "the trained model (keras.models.load_model)",
    "embeddings.npy": "test embeddings [N, D]",
    "labels.npy": "their labels [N]",
    "embedding.html": "interactive plot: open it in a browser",
    "embeddings.tsv": "for the TensorBoard Embedding Projector:",
    "metadata.tsv": "  https://projector.tensorflow.org, button Load",
}


def library_default(option):
    """The default of ``option``: the keyword default of the library function that uses it."""
    function, keyword = LIBRARY_DEFAULTS[option]
    return defaults_of(function)[keyword]


def default_note(option):
    """``(default: ...)`` for the help of ``option``."""
    return f"(default: {library_default(option)})"


# --------------------------------------------------------------- entry point
def main(argv=None):
    """Run ``python -m course_lib ...`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status: 0 when the command worked, 1 when it failed
    (say, a missing dataset), 2 for bad options (argparse's convention).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        problem = args.check(args)
        if problem:
            args.parser.error(problem)  # prints usage and "error: ...", exits with 2
    except SystemExit as stop:  # argparse exits after --help (0) and on bad options (2)
        return stop.code or 0
    try:
        with contextlib.redirect_stdout(io.StringIO()) if getattr(args, "quiet", False) else contextlib.nullcontext():
            return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def build_parser():
    """The argparse parser, with the subcommands ``train`` and ``evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib",
        description="Train and evaluate embeddings for image retrieval (deep metric learning).",
        epilog="'python -m course_lib train --help' lists every training option; README.md, "
               "section 'Command line', shows examples.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_command(commands)
    add_evaluate_command(commands)
    return parser


# ------------------------------------------------------------ train: options
def add_train_command(commands):
    files = "\n".join(f"  {name:<16} {text}" for name, text in FILES.items())
    parser = commands.add_parser(
        "train", help="train an embedding network and save the run",
        description="Train an embedding network on P x K batches and write the run to a folder.",
        epilog=f"files written to --out:\n{files}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run_train, check=check_train_args, parser=parser)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="fashion_mnist", help="(default: %(default)s)")
    group.add_argument("--source", choices=SOURCES, default=library_default("--source"),
                       help="bundled: the subsets in data/; full: the complete dataset; auto: full when "
                            "it is on this machine (default: %(default)s)")
    group.add_argument("--holdout-classes", type=int, nargs="+", metavar="C",
                       help="train without these classes (ids 0-9); metrics.json's \"holdout\" section then "
                            "scores retrieval of seen and unseen classes apart (see course_lib.holdout)")
    add_loss_options(parser)
    add_self_supervised_options(parser)
    add_training_options(parser)


def add_loss_options(parser):
    group = parser.add_argument_group("loss (an option left out takes the loss's own default, "
                                      "printed when the run starts and saved in metrics.json)")
    group.add_argument("--loss", choices=LOSSES, default=library_default("--loss"),
                       help="cross_entropy: the softmax classifier baseline, embedding with its 128-d "
                            "backbone (default: %(default)s)")
    group.add_argument("--mining", choices=MINING, help="triplet loss only: which triplets of a batch count")
    group.add_argument("--soft", action="store_true", default=None,
                       help="triplet loss only: soft margin softplus(D(a,p) - D(a,n)), no --margin")
    group.add_argument("--margin", type=float, metavar="M", help="triplet and contrastive losses: margin m")
    group.add_argument("--metric", choices=METRICS,
                       help="triplet and contrastive losses: their distance, also used to score retrieval "
                            f"{default_note('--metric')}")
    group.add_argument("--alpha", type=float, metavar="DEGREES", help="angular loss only: angle alpha in degrees")
    group.add_argument("--l2-reg", type=float, metavar="WEIGHT",
                       help="npairs loss only: weight of the penalty on the squared norms")
    group.add_argument("--temperature", type=float, metavar="T",
                       help="supcon and nt-xent only: temperature t of the softmax over similarities s/t")


def add_self_supervised_options(parser):
    group = parser.add_argument_group("self-supervised (class labels only score retrieval)")
    group.add_argument("--self-supervised", action="store_true", default=None,
                       help="two augmented views of each training image, labelled by the image's index "
                            f"(SimCLR); --temperature defaults to {library_default('--temperature')}; "
                            "not with cross_entropy")
    group.add_argument("--strength", type=float, metavar="S",
                       help=f"augmentation strength: rotation, shift, erasing, noise {default_note('--strength')}")
    group.add_argument("--batch-size", type=int, metavar="B",
                       help=f"images per batch, 2 views each {default_note('--batch-size')}")


def add_training_options(parser):
    from course_lib.holdout import EPOCHS  # no TensorFlow

    group = parser.add_argument_group("model")
    group.add_argument("--embedding-dim", type=int, metavar="D",
                       help=f"size D of the embedding {default_note('--embedding-dim')}")
    group.add_argument("--l2-normalize", action=argparse.BooleanOptionalAction,
                       help=f"put every embedding on the unit sphere {default_note('--l2-normalize')}")
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, metavar="N",
                       help=f"(default: {EPOCHS} with --holdout-classes, else "
                            + ", ".join(f"{n} for {name}" for name, n in DEFAULT_EPOCHS.items()) + ")")
    group.add_argument("--classes-per-batch", type=int, metavar="P",
                       help=f"P, classes in each batch {default_note('--classes-per-batch')}")
    group.add_argument("--samples-per-class", type=int, metavar="K",
                       help=f"K, images of each class in each batch {default_note('--samples-per-class')}")
    group.add_argument("--steps-per-epoch", type=int, metavar="N",
                       help="batches per epoch (default: one pass over the training images)")
    group.add_argument("--learning-rate", type=float, default=library_default("--learning-rate"), metavar="LR",
                       help="Adam's learning rate (default: %(default)s)")
    group.add_argument("--seed", type=int, default=library_default("--seed"), metavar="N",
                       help="seed of the weights, the batches and the plot (default: %(default)s)")
    group.add_argument("--strategy", choices=DISTRIBUTE, default=library_default("--strategy"),
                       help="mirrored: every local GPU; multi-worker: every machine in TF_CONFIG, same "
                            "command on each, worker 0 writes --out (default: %(default)s)")
    group = parser.add_argument_group("output")
    group.add_argument("--out", metavar="DIR", help="(default: runs/<dataset>-<loss>-<date>-<time>)")
    group.add_argument("--projection", choices=PROJECTIONS, default=library_default("--projection"),
                       help="2-D view of embedding.html; umap: clearer clusters, ~10 s more (default: %(default)s)")
    group.add_argument("--plot-points", type=int, default=2000, metavar="N",
                       help="test images shown in embedding.html (default: %(default)s)")
    group.add_argument("--eval-limit", type=int, metavar="N",
                       help="score a random subset of N test images (default: the whole test split)")
    group.add_argument("--quiet", action="store_true", help="print only errors and warnings, on stderr")


def check_train_args(args):
    """The first problem with the ``train`` options, as a message; None when they are fine."""
    for option, (expected, holds) in BOUNDS.items():
        if given(args, option) is not None and not holds(given(args, option)):
            return f"{option} must be {expected}"
    if args.holdout_classes is not None:
        problem = check_holdout_args(args)
        if problem:
            return problem
    applies = {option: losses for option, (_, losses) in LOSS_OPTIONS.items()}
    applies.update(dict.fromkeys(MODEL_OPTIONS, RANKING_LOSSES))
    applies["--self-supervised"] = SELF_SUPERVISED_LOSSES
    for option, losses in applies.items():
        if given(args, option) is not None and args.loss not in losses:
            return f"{option} applies to --loss {' or '.join(losses)}, not to --loss {args.loss}"
    for option in SELF_SUPERVISED_OPTIONS:
        if given(args, option) is not None and not args.self_supervised:
            return f"{option} applies to --self-supervised runs only"
    for option in PK_OPTIONS:
        if given(args, option) is not None and args.self_supervised:
            return f"{option} does not apply to --self-supervised runs (their batches: --batch-size)"
    if args.self_supervised and args.strategy != library_default("--strategy"):
        return "--strategy applies to P x K runs: --self-supervised trains on one device"
    if args.soft and args.margin is not None:
        return "--margin has no effect with --soft (the soft margin has none): give one of them"
    return None


def check_holdout_args(args):
    """The problem with --holdout-classes (the library's check), or with P for the classes left; or None."""
    from course_lib.holdout import check_holdout_classes  # no TensorFlow

    try:
        left = NUM_CLASSES - len(check_holdout_classes(args.holdout_classes, NUM_CLASSES))
    except ValueError as error:
        return str(error).replace("holdout_classes", "--holdout-classes", 1)
    if not args.self_supervised and (args.classes_per_batch or 0) > left:
        return (f"--classes-per-batch {args.classes_per_batch} but --holdout-classes leaves "
                f"{left} classes to train on")
    return None


def given(args, option):
    """The value of ``option`` on the command line; None when it was left out (most options)."""
    return getattr(args, option[2:].replace("-", "_"))


def option_value(args, option):
    """The value of ``option`` on the command line, else the library's default."""
    return library_default(option) if given(args, option) is None else given(args, option)


def loss_options(args):
    """The keyword arguments of the loss function: the options given, the loss's defaults for the others.

    Only the options the command line has a flag for; the triplet loss's
    margin is left out with --soft (which ignores it), and so is soft=False.
    With --self-supervised, train_self_supervised's defaults (its temperature).
    """
    if args.loss == "cross_entropy":
        return {}
    from course_lib.losses import defaults
    from course_lib.training import self_supervised_defaults

    options = self_supervised_defaults(args.loss) if args.self_supervised else defaults(args.loss)
    for option, (keyword, losses) in LOSS_OPTIONS.items():
        if args.loss in losses and given(args, option) is not None:
            options[keyword] = given(args, option)
    if args.loss == "triplet":
        options.pop("margin" if options["soft"] else "soft")
    flags = {keyword for keyword, _ in LOSS_OPTIONS.values()}
    return {keyword: value for keyword, value in options.items() if keyword in flags}


def train_settings(args):
    """Every setting of a run, defaults filled in: saved in metrics.json."""
    ranking = args.loss != "cross_entropy"
    return {
        "dataset": args.dataset,
        "source": args.source,
        "loss": args.loss,
        "loss_options": loss_options(args),
        "embedding_dim": option_value(args, "--embedding-dim") if ranking else 128,  # the classifier's backbone
        "l2_normalize": option_value(args, "--l2-normalize") if ranking else False,
        "epochs": args.epochs or default_epochs(args),
        "classes_per_batch": classes_per_batch(args),
        "samples_per_class": option_value(args, "--samples-per-class"),
        "steps_per_epoch": args.steps_per_epoch,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "strategy": args.strategy,
        **self_supervised_settings(args),
        "metric": option_value(args, "--metric"),  # the distance that scores retrieval
        "eval_limit": args.eval_limit,
        **holdout_settings(args),
        "projection": args.projection,
        "plot_points": args.plot_points,
    }


def classes_per_batch(args):
    """P: --classes-per-batch, else the library's default, at most the classes left to train on."""
    if args.classes_per_batch is not None:
        return args.classes_per_batch
    left = NUM_CLASSES - len(args.holdout_classes or ())
    return min(library_default("--classes-per-batch"), left)


def default_epochs(args):
    """Epochs when --epochs is not given: the held-out recipe's, else the dataset's."""
    if args.holdout_classes:
        from course_lib.holdout import EPOCHS

        return EPOCHS
    return DEFAULT_EPOCHS[args.dataset]


def holdout_settings(args):
    """``holdout_classes`` (None without --holdout-classes) and the features and distance the report scores."""
    if not args.holdout_classes:
        return {"holdout_classes": None}
    return {"holdout_classes": sorted(args.holdout_classes),
            "holdout_features": defaults_of("course_lib.holdout.holdout_embeddings")["features"],
            "holdout_metric": defaults_of("course_lib.holdout.holdout_report")["metric"]}


def self_supervised_settings(args):
    """``self_supervised``; with it the views' ``batch_size`` and ``augmentation``, and no P x K."""
    if not args.self_supervised:
        return {"self_supervised": False}
    from course_lib.augment import AUGMENT_DEFAULTS

    return {"self_supervised": True, "classes_per_batch": None, "samples_per_class": None,
            "batch_size": option_value(args, "--batch-size"),
            "augmentation": {"strength": option_value(args, "--strength"), **AUGMENT_DEFAULTS}}


# ------------------------------------------------------------ train: the run
def run_train(args):
    """Train, evaluate on the test split, and write the run's files."""
    from course_lib import data, distributed, holdout, models, retrieval, training

    settings = train_settings(args)
    strategy = distributed.make_strategy(args.strategy)  # first: multi-worker sets up TensorFlow's collectives
    out = Path(args.out or default_out_dir(args.dataset, args.loss))
    train_images, train_labels, train_info = data.load_dataset(
        args.dataset, "train", args.source, return_info=True)
    test_images, test_labels, test_info = test_split(settings, args.source)
    if settings["holdout_classes"]:  # the unseen classes never reach training
        train_images, train_labels = holdout.seen_only(train_images, train_labels, settings["holdout_classes"])

    print(describe_run(settings, len(train_labels)))
    start, cpu_start = time.perf_counter(), time.process_time()
    model, history = train_model(settings, train_images, train_labels, test_images, test_labels, strategy)
    seconds = time.perf_counter() - start
    embeddings = training.embed(models.embedding_model(model), test_images)
    metrics = retrieval.evaluate(embeddings, test_labels, metric=settings["metric"])
    print(f"\nTrained in {seconds:.1f} s ({time.process_time() - cpu_start:.1f} s of CPU). "
          f"Retrieval on {len(test_labels):,} test images, {settings['metric']} distance:")
    print(metrics_table(metrics))
    if history.collapse:  # on stderr with --quiet, which silences the rest
        print(f"warning: {history.collapse}", file=sys.stderr if args.quiet else sys.stdout)

    sources = {
        "train": data.describe(train_info), "test": data.describe(test_info),
        "test_source": test_info.source,  # what `evaluate` reloads
        "num_train": int(len(train_labels)), "num_test": int(len(test_labels)),
    }
    record = {**metrics, "seconds": round(seconds, 3), "settings": settings, "data": sources,
              "history": history.to_dict()["records"], "collapse": history.collapse}
    if settings["holdout_classes"]:
        record["holdout"] = holdout.holdout_section(settings, model, test_images, test_labels)
        print(holdout.holdout_table(record["holdout"]))
    if not distributed.is_chief(strategy):  # same weights as the chief's: nothing to add
        resolver = strategy.cluster_resolver
        print(f"\n{resolver.task_type} {resolver.task_id} is not the chief: the chief writes the files.")
        return 0
    save_run(out, model, embeddings, test_labels, record)
    write_plots(out, embeddings, test_labels, test_images, settings, metrics, data.class_names(args.dataset))
    print(f"\nFiles in {out}/:")
    for name, text in FILES.items():
        print(f"  {name:<16} {text}")
    print(f"Recompute the metrics: python -m course_lib evaluate {out}")
    return 0


def train_model(settings, train_images, train_labels, test_images, test_labels, strategy=None):
    """A fresh model trained with ``settings``, and its History (printed as a table, row by row).

    ``strategy``: a ``tf.distribute`` strategy (:func:`course_lib.distributed.make_strategy`),
    whose scope builds the model; None for one device. After every epoch,
    training.train scores its default ``eval_size`` test images.
    """
    import tensorflow as tf

    from course_lib import training
    from course_lib.data import pick_subset
    from course_lib.holdout import build_model

    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(settings)
    monitor = pick_subset(len(test_labels), defaults_of(training.train)["eval_size"], settings["seed"])
    common = dict(
        loss=settings["loss"], loss_options=settings["loss_options"], eval_images=test_images[monitor],
        eval_labels=test_labels[monitor], progress=False, on_epoch=lambda record: print(epoch_row(record), flush=True),
        **{key: settings[key] for key in ("epochs", "steps_per_epoch", "learning_rate", "seed")},
    )
    print(EPOCH_HEADER, flush=True)
    with warnings.catch_warnings():  # a collapse is reported in the summary instead
        warnings.filterwarnings("ignore", r"epoch \d+: embedding collapsed", RuntimeWarning)
        if settings["self_supervised"]:  # no class labels
            history = training.train_self_supervised(
                model, train_images, batch_size=settings["batch_size"],
                strength=settings["augmentation"]["strength"], **common)
        else:
            history = training.train(
                model, train_images, train_labels, classes_per_batch=settings["classes_per_batch"],
                samples_per_class=settings["samples_per_class"], strategy=strategy, **common)
    print(epoch_note(len(monitor)))
    return model, history


def save_run(out, model, embeddings, labels, record):
    """model.keras (checked to load back), embeddings.npy, labels.npy and metrics.json in ``out``."""
    import keras

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    keras.models.load_model(out / "model.keras")  # fail now, not at `evaluate` time
    np.save(out / "embeddings.npy", embeddings)
    np.save(out / "labels.npy", labels)
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def default_out_dir(dataset, loss):
    """``runs/<dataset>-<loss>-<date>-<time>``, e.g. runs/mnist-triplet-20250101-120000."""
    return Path("runs") / f"{dataset}-{loss}-{time.strftime('%Y%m%d-%H%M%S')}"


def describe_run(settings, num_train):
    options = ", ".join(f"{key}={value}" for key, value in settings["loss_options"].items())
    loss = f"{settings['loss']}({options})" if options else settings["loss"]
    steps = settings["steps_per_epoch"] or "one pass over the images"
    if settings["self_supervised"]:
        return (
            f"\nTraining {loss} without labels on {num_train:,} {settings['dataset']} images: "
            f"label = the image's index.\nEpochs: {settings['epochs']}, steps per epoch: {steps}, batches of"
            f" {settings['batch_size']} images x 2 views (strength {settings['augmentation']['strength']})."
        )
    return (
        f"\nTraining {loss} on {num_train:,} {settings['dataset']} images."
        f"\nEpochs: {settings['epochs']}, steps per epoch: {steps}, batches of"
        f" {settings['classes_per_batch']} classes x {settings['samples_per_class']} images."
    )


def write_plots(out, embeddings, labels, images, settings, metrics, class_names):
    """embedding.html (a subset of the points) and the Embedding Projector's TSV files."""
    from course_lib import projection
    from course_lib.data import pick_subset

    shown = pick_subset(len(labels), settings["plot_points"], settings["seed"])
    method = settings["projection"].upper()
    note = " (its first call compiles code: ~10 s or more)" if method == "UMAP" else ""
    print(f"\nProjecting {len(shown):,} test embeddings to 2-D with {method}{note} ...", flush=True)
    coords = projection.project(embeddings[shown], settings["projection"], seed=settings["seed"])
    title = (f"{settings['dataset']} test embeddings, {settings['loss']} loss, {method} ({len(shown):,} points), "
             f"precision@1 {metrics['precision_at_1']:.3f}")
    fig = projection.embedding_figure(coords, labels[shown], class_names, title=title)
    projection.write_html(fig, out / "embedding.html", images=images[shown])
    projection.write_projector_files(out, embeddings, labels, class_names)


# ------------------------------------------------------------------ evaluate
def add_evaluate_command(commands):
    parser = commands.add_parser(
        "evaluate", help="recompute the metrics of a saved run",
        description="Recompute the retrieval metrics of a run folder written by `train`, "
                    "from its model.keras and the test split.")
    parser.set_defaults(run=run_evaluate, check=check_evaluate_args, parser=parser)
    parser.add_argument("run_dir", metavar="DIR", help="folder written by `train` (its --out)")
    parser.add_argument("--from-embeddings", action="store_true",
                        help="score the saved embeddings.npy and labels.npy instead: no model, no dataset needed")


def check_evaluate_args(args):
    """The first problem with the ``evaluate`` options, as a message; None when they are fine."""
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        return f"DIR: no folder {run_dir}"
    needed = ["metrics.json"]
    needed += ["embeddings.npy", "labels.npy"] if args.from_embeddings else ["model.keras"]
    for name in needed:
        if not (run_dir / name).is_file():
            hint = " (--from-embeddings needs no model)" if name == "model.keras" else ""
            return f"DIR: {run_dir} has no {name}: is it a folder written by `train`?{hint}"
    return None


def run_evaluate(args):
    """Recompute and print the metrics of a run, beside the ones in metrics.json."""
    from course_lib.holdout import holdout_table

    run_dir = Path(args.run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics = recompute_metrics(run_dir, args.from_embeddings)
    where = "embeddings.npy" if args.from_embeddings else "model.keras"
    print(f"\n{run_dir}: {metrics['num_queries']:,} test images embedded by {where}, "
          f"{saved['settings']['metric']} distance:")
    print(metrics_table(metrics, saved))
    if "holdout" in metrics:
        print(holdout_table(metrics["holdout"]))
    return 0


def recompute_metrics(run_dir, from_embeddings=False):
    """The retrieval metrics of a run folder, recomputed: retrieval.evaluate's dict (and "holdout").

    From the saved model and the run's test images, or with
    ``from_embeddings=True`` from the saved embeddings.npy and labels.npy.
    """
    from course_lib import holdout, retrieval

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    settings, source = saved["settings"], saved["data"]["test_source"]
    if from_embeddings:
        embeddings, labels = np.load(run_dir / "embeddings.npy"), np.load(run_dir / "labels.npy")
    else:
        import keras

        from course_lib import models, training

        images, labels, _ = test_split(settings, source)
        model = keras.models.load_model(run_dir / "model.keras")
        embeddings = training.embed(models.embedding_model(model), images)
    metrics = retrieval.evaluate(embeddings, labels, metric=settings["metric"])
    if settings.get("holdout_classes"):  # the model's features and the pixels of the test images
        metrics["holdout"] = holdout.recompute_holdout(run_dir, settings, *test_split(settings, source)[:2])
    return metrics


def test_split(settings, source):
    """The run's test images and labels (its --eval-limit subset), and where they came from (data.DatasetInfo)."""
    from course_lib import data

    images, labels, info = data.load_dataset(settings["dataset"], "test", source, return_info=True)
    keep = data.pick_subset(len(labels), settings["eval_limit"], settings["seed"])
    return images[keep], labels[keep], info


# ------------------------------------------------------------------ printing
def metric_rows(metrics):
    """(name, value) pairs of a metrics dict, in the order the table shows them."""
    rows = [("precision@1", metrics["precision_at_1"])]
    rows += [(f"recall@{k}", value) for k, value in metrics["recall_at_k"].items()]
    rows += [("R-precision", metrics["r_precision"]), ("MAP@R", metrics["map_at_r"])]
    return rows


def metrics_table(metrics, saved=None):
    """The metrics as aligned text lines; with ``saved``, beside the saved values."""
    columns = {"value": metrics} if saved is None else {"now": metrics, "saved": saved}
    lines = [f"  {'metric':<12}" + "".join(f" {name:>8}" for name in columns)]
    for cells in zip(*(metric_rows(column) for column in columns.values())):
        lines.append(f"  {cells[0][0]:<12}" + "".join(f" {value:>8.4f}" for _, value in cells))
    lines.append(f"  {'queries':<12}" + "".join(f" {column['num_queries']:>8,}" for column in columns.values()))
    return "\n".join(lines)


# The per-epoch table, printed row by row while training (training.train's on_epoch).
EPOCH_COLUMNS = ("epoch", "loss", "active", "d(a,p)", "d(a,n)", "P@1*", "seconds")
EPOCH_HEADER = "\n{:>5} {:>8} {:>7} {:>7} {:>7} {:>6} {:>8}".format(*EPOCH_COLUMNS)


def epoch_row(record):
    """One line of the table: a training.EpochRecord; active is "-" for losses that mine no triplets."""
    active = "-" if math.isnan(record.active_fraction) else f"{record.active_fraction:.3f}"
    return (f"{record.epoch:>5} {record.loss:>8.4f} {active:>7} {record.mean_positive_distance:>7.3f} "
            f"{record.mean_negative_distance:>7.3f} {record.metrics.get('precision_at_1', math.nan):>6.3f} "
            f"{record.seconds:>8.1f}")


def epoch_note(num_monitored):
    return (f"(* precision@1 on {num_monitored:,} test images; active: share of the loss's triplets "
            f"that still violate the margin; d: mean distances in the batches)")
