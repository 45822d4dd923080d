"""Command line: train an embedding and evaluate it without writing code.

    python -m course_lib train --dataset fashion_mnist --loss triplet --mining semi-hard --epochs 5
    python -m course_lib train --dataset mnist --loss nt-xent --self-supervised
    python -m course_lib evaluate runs/fashion_mnist-triplet-20250101-120000
    python -m course_lib train --help

``train`` prints one line per epoch (loss, active triplets, distances,
precision@1 on part of the test split, seconds) and a summary; ``--quiet``
prints nothing but errors and warnings, on stderr. It writes everything about
a run into one folder (``--out``):

    metrics.json          retrieval metrics on the test split, the settings, per-epoch history
    model.keras           the trained model: keras.models.load_model("model.keras")
    embeddings.npy        test embeddings [N, D] (float32) ...
    labels.npy            ... and their labels [N]
    embedding.html        interactive plot of the embedding (opens offline in a browser)
    embeddings.tsv        the same embeddings and labels for the TensorBoard
    metadata.tsv          Embedding Projector (https://projector.tensorflow.org, "Load")

``evaluate`` recomputes the metrics of a run folder, from the saved model and
the test split (or, with ``--from-embeddings``, from ``embeddings.npy``).

In Python, ``main(["train", "--epochs", "1"])`` does the same as the command
line and returns the exit status: 0 done, 1 failed, 2 bad options.
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

# Names and choices come from course_lib.options, which imports no TensorFlow:
# `--help` answers at once. TensorFlow is imported only when a command runs.
from course_lib.options import DATASETS, DISTRIBUTE, LOSSES, METRICS, PROJECTIONS, SOURCES
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
# An image's index as its only label (two views each) suits every loss but cross_entropy:
# training.SELF_SUPERVISED_LOSSES, which owns the defaults of --strength and --batch-size.
SELF_SUPERVISED_LOSSES = RANKING_LOSSES
SELF_SUPERVISED_OPTIONS = ("--strength", "--batch-size")

# Enough for the README targets on 2 CPU cores: MNIST P@1 >= 0.97, Fashion-MNIST >= 0.85.
DEFAULT_EPOCHS = {"mnist": 5, "fashion_mnist": 10}
MONITOR_SIZE = 2000  # test images scored after every epoch while training

FILES = {
    "metrics.json": "metrics, settings and per-epoch history",
    "model.keras": "the trained model (keras.models.load_model)",
    "embeddings.npy": "test embeddings [N, D]",
    "labels.npy": "their labels [N]",
    "embedding.html": "interactive plot: open it in a browser",
    "embeddings.tsv": "for the TensorBoard Embedding Projector:",
    "metadata.tsv": "  https://projector.tensorflow.org, button Load",
}


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
        epilog=(
            "examples:\n"
            "  python -m course_lib train --loss triplet --mining semi-hard --epochs 5\n"
            "  python -m course_lib train --dataset mnist --loss contrastive --margin 1.0\n"
            "  python -m course_lib train --dataset mnist --loss supcon --temperature 0.1\n"
            "  python -m course_lib train --dataset mnist --loss nt-xent --self-supervised\n"
            "  python -m course_lib evaluate runs/fashion_mnist-triplet-20250101-120000\n"
            "\n"
            "'python -m course_lib train --help' lists every training option."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_command(commands)
    add_evaluate_command(commands)
    return parser


# ------------------------------------------------------------ train: options
def add_train_command(commands):
    files = "\n".join(f"  {name:<16} {text}" for name, text in FILES.items())
    parser = commands.add_parser(
        "train",
        help="train an embedding network and save the run",
        description="Train an embedding network on P x K batches and write the run to a folder.",
        epilog=f"files written to --out:\n{files}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run_train, check=check_train_args, parser=parser)

    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=DATASETS, default="fashion_mnist",
                       help="dataset (default: fashion_mnist)")
    group.add_argument("--source", choices=SOURCES, default="auto",
                       help="bundled: the small subsets in data/; full: the complete dataset; "
                            "auto: full when it is on this machine, else bundled (default: auto)")
    group.add_argument("--holdout-classes", type=int, nargs="+", metavar="C",
                       help="train without these classes (ids 0-9); metrics.json's \"holdout\" section then "
                            "scores retrieval of seen and unseen classes apart (the recipe's conv features, "
                            "cosine), beside raw pixels, the network's own output and the untrained network")

    add_loss_options(parser)
    add_self_supervised_options(parser)
    add_training_options(parser)


def add_loss_options(parser):
    group = parser.add_argument_group("loss (an option left out takes the loss's own default, "
                                      "printed when the run starts and saved in metrics.json)")
    group.add_argument("--loss", choices=LOSSES, default="triplet",
                       help="training loss; cross_entropy is the softmax classifier baseline, "
                            "whose embedding is its 128-d backbone output (default: triplet)")
    group.add_argument("--mining", choices=MINING,
                       help="triplet loss only: which triplets of a batch count")
    group.add_argument("--soft", action="store_true", default=None,
                       help="triplet loss only: soft margin softplus(D(a,p) - D(a,n)) "
                            "instead of [D(a,p) - D(a,n) + m]+ (no --margin then)")
    group.add_argument("--margin", type=float, metavar="M",
                       help="margin m > 0 of the triplet and contrastive losses")
    group.add_argument("--metric", choices=METRICS,
                       help="distance of the triplet and contrastive losses, also used to "
                            "score retrieval")
    group.add_argument("--alpha", type=float, metavar="DEGREES",
                       help="angular loss only: angle alpha in degrees, 0 < alpha < 90")
    group.add_argument("--l2-reg", type=float, metavar="WEIGHT",
                       help="npairs loss only: weight >= 0 of the penalty on the embeddings' "
                            "squared norms")
    group.add_argument("--temperature", type=float, metavar="T",
                       help="supcon and nt-xent only: temperature t > 0 of the softmax over "
                            "similarities s/t")



def add_self_supervised_options(parser):
    group = parser.add_argument_group("self-supervised (class labels are not used for training, "
                                      "only to score retrieval)")
    group.add_argument("--self-supervised", action="store_true", default=None,
                       help="two augmented views of each training image, labelled by the image's "
                            "index (SimCLR); --temperature defaults to 0.5; not with cross_entropy")
    group.add_argument("--strength", type=float, metavar="S",
                       help="augmentation strength of the views: rotation, shift, erasing, noise "
                            "(default: 0.7)")
    group.add_argument("--batch-size", type=int, metavar="B",
                       help="images per batch, 2 views each (default: 256)")


def add_training_options(parser):
    group = parser.add_argument_group("model")
    group.add_argument("--embedding-dim", type=int, metavar="D",
                       help="size D of the embedding, at least 2 (default: 64)")
    group.add_argument("--l2-normalize", action=argparse.BooleanOptionalAction,
                       help="put every embedding on the unit sphere; --no-l2-normalize keeps "
                            "the raw projection (default: normalize)")

    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=None, metavar="N",
                       help="number of epochs (default: 5 for mnist, 10 for fashion_mnist)")
    group.add_argument("--classes-per-batch", type=int, default=8, metavar="P",
                       help=f"P, classes in each batch, 2 to {NUM_CLASSES} (default: 8)")
    group.add_argument("--samples-per-class", type=int, default=8, metavar="K",
                       help="K, images of each class in each batch, at least 2 (default: 8)")
    group.add_argument("--steps-per-epoch", type=int, metavar="N",
                       help="batches per epoch (default: one pass over the training images)")
    group.add_argument("--learning-rate", type=float, default=1e-3, metavar="LR",
                       help="Adam's learning rate (default: 0.001)")
    group.add_argument("--seed", type=int, default=0, metavar="N",
                       help="seed of the weights, the batches and the plot (default: 0)")
    group.add_argument("--strategy", choices=DISTRIBUTE, default="default",
                       help="default: one device; mirrored: every local GPU; multi-worker: every "
                            "machine named in the environment variable TF_CONFIG, same command on "
                            "each, worker 0 writes --out (default: default)")

    group = parser.add_argument_group("output")
    group.add_argument("--out", metavar="DIR",
                       help="folder for the run's files "
                            "(default: runs/<dataset>-<loss>-<date>-<time>)")
    group.add_argument("--projection", choices=PROJECTIONS, default="pca",
                       help="how embedding.html projects the embedding to 2-D: pca (fast) or "
                            "umap (clearer clusters, ~10 s more) (default: pca)")
    group.add_argument("--plot-points", type=int, default=2000, metavar="N",
                       help="test images shown in embedding.html (default: 2000)")
    group.add_argument("--eval-limit", type=int, metavar="N",
                       help="score a random subset of N test images, for quick trials "
                            "(default: the whole test split)")
    group.add_argument("--quiet", action="store_true",
                       help="print nothing but errors and warnings (on stderr), for scripts")


def check_train_args(args):
    """The first problem with the ``train`` options, as a message; None when they are fine."""
    if args.margin is not None and not args.margin > 0:
        return "--margin must be > 0"
    if args.alpha is not None and not 0 < args.alpha < 90:
        return "--alpha must be between 0 and 90 degrees"
    if args.l2_reg is not None and not args.l2_reg >= 0:
        return "--l2-reg must be >= 0"
    if args.temperature is not None and not args.temperature > 0:
        return "--temperature must be > 0"
    if args.embedding_dim is not None and args.embedding_dim < 2:
        return "--embedding-dim must be >= 2"
    if args.epochs is not None and args.epochs < 1:
        return "--epochs must be >= 1"
    if not 2 <= args.classes_per_batch <= NUM_CLASSES:
        return f"--classes-per-batch must be between 2 and {NUM_CLASSES}"
    if args.samples_per_class < 2:
        return "--samples-per-class must be >= 2 (a batch needs positive pairs)"
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        return "--steps-per-epoch must be >= 1"
    if not args.learning_rate > 0:
        return "--learning-rate must be > 0"
    if args.plot_points < 10:
        return "--plot-points must be >= 10"
    if args.eval_limit is not None and args.eval_limit < 20:
        return "--eval-limit must be >= 20"
    if args.holdout_classes is not None:
        problem = check_holdout_args(args)
        if problem:
            return problem
    if args.strength is not None and not args.strength >= 0:
        return "--strength must be >= 0"
    if args.batch_size is not None and args.batch_size < 2:
        return "--batch-size must be >= 2"
    applies = {option: losses for option, (_, losses) in LOSS_OPTIONS.items()}
    applies.update(dict.fromkeys(MODEL_OPTIONS, RANKING_LOSSES))
    applies["--self-supervised"] = SELF_SUPERVISED_LOSSES
    for option, losses in applies.items():
        if _given(args, option) is not None and args.loss not in losses:
            return f"{option} applies to --loss {' or '.join(losses)}, not to --loss {args.loss}"
    for option in SELF_SUPERVISED_OPTIONS:
        if _given(args, option) is not None and not args.self_supervised:
            return f"{option} applies to --self-supervised runs only"
    for option in ("--classes-per-batch", "--samples-per-class"):  # P x K: class labels
        if args.self_supervised and _given(args, option) != args.parser.get_default(option[2:].replace("-", "_")):
            return f"{option} does not apply to --self-supervised runs (their batches: --batch-size)"
    if args.self_supervised and getattr(args, "strategy", "default") != "default":
        return "--strategy applies to P x K runs: --self-supervised trains on one device"
    if args.soft and args.margin is not None:
        return "--margin has no effect with --soft (the soft margin has none): give one of them"
    return None


def check_holdout_args(args):
    """The problem with --holdout-classes (ids, repeats, classes left for P x K batches), or None."""
    classes = args.holdout_classes
    unknown = [c for c in classes if not 0 <= c < NUM_CLASSES]
    if unknown:
        return f"--holdout-classes: {unknown[0]} is not a class id (0 to {NUM_CLASSES - 1})"
    if len(set(classes)) != len(classes):
        return "--holdout-classes names a class twice"
    left = NUM_CLASSES - len(classes)
    if left < 2:
        return f"--holdout-classes leaves {left} class(es) to train on; at least 2 must stay"
    given_p = args.classes_per_batch != args.parser.get_default("classes_per_batch")
    if not args.self_supervised and given_p and args.classes_per_batch > left:
        return (f"--classes-per-batch {args.classes_per_batch} but --holdout-classes leaves "
                f"{left} classes to train on")
    return None


def classes_per_batch(args):
    """P: --classes-per-batch, at most the classes left to train on when none is given."""
    if args.holdout_classes is None or args.classes_per_batch != args.parser.get_default("classes_per_batch"):
        return args.classes_per_batch
    return min(args.classes_per_batch, NUM_CLASSES - len(args.holdout_classes))


def _given(args, option):
    return getattr(args, option[2:].replace("-", "_"))


def loss_options(args):
    """The keyword arguments of the loss function: the options given, the loss's defaults for the others.

    Only the options the command line has a flag for; the triplet loss's
    margin is left out with --soft (which ignores it), and so is soft=False.
    With --self-supervised, the label-free defaults (temperature 0.5).
    """
    if args.loss == "cross_entropy":
        return {}
    from course_lib.losses import defaults
    from course_lib.training import self_supervised_defaults

    options = self_supervised_defaults(args.loss) if args.self_supervised else defaults(args.loss)
    for option, (keyword, losses) in LOSS_OPTIONS.items():
        if args.loss in losses and _given(args, option) is not None:
            options[keyword] = _given(args, option)
    if args.loss == "triplet":
        options.pop("margin" if options["soft"] else "soft")
    flags = {keyword for keyword, _ in LOSS_OPTIONS.values()}
    return {keyword: value for keyword, value in options.items() if keyword in flags}


def train_settings(args):
    """Every setting of a run, defaults filled in: saved in metrics.json."""
    from course_lib.models import embedding_network
    from course_lib.options import defaults_of
    from course_lib.retrieval import evaluate

    ranking = args.loss != "cross_entropy"
    model_defaults = defaults_of(embedding_network)
    return {
        "dataset": args.dataset,
        "source": args.source,
        "loss": args.loss,
        "loss_options": loss_options(args),
        "embedding_dim": (args.embedding_dim or model_defaults["embedding_dim"]) if ranking else 128,  # backbone
        "l2_normalize": ((model_defaults["l2_normalize"] if args.l2_normalize is None else args.l2_normalize)
                         if ranking else False),
        "epochs": args.epochs or default_epochs(args),
        "classes_per_batch": classes_per_batch(args),
        "samples_per_class": args.samples_per_class,
        "steps_per_epoch": args.steps_per_epoch,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "strategy": args.strategy,
        **self_supervised_settings(args),
        "metric": args.metric or defaults_of(evaluate)["metric"],  # the distance that scores retrieval
        "eval_limit": args.eval_limit,
        **holdout_settings(args),
        "projection": args.projection,
        "plot_points": args.plot_points,
    }


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
    from course_lib.holdout import holdout_embeddings, holdout_report
    from course_lib.options import defaults_of

    return {"holdout_classes": sorted(args.holdout_classes),
            "holdout_features": defaults_of(holdout_embeddings)["features"],
            "holdout_metric": defaults_of(holdout_report)["metric"]}


def self_supervised_settings(args):
    """``self_supervised``; with it the views' ``batch_size`` and ``augmentation``, and no P x K."""
    if not args.self_supervised:
        return {"self_supervised": False}
    from course_lib.augment import AUGMENT_DEFAULTS
    from course_lib.options import defaults_of
    from course_lib.training import train_self_supervised

    defaults = defaults_of(train_self_supervised)
    strength = defaults["strength"] if args.strength is None else args.strength
    return {"self_supervised": True, "classes_per_batch": None, "samples_per_class": None,
            "batch_size": args.batch_size or defaults["batch_size"],
            "augmentation": {"strength": strength, **AUGMENT_DEFAULTS}}


# ------------------------------------------------------------ train: the run
def run_train(args):
    """Train, evaluate on the test split, and write the run's files."""
    from course_lib import data, distributed, holdout, models, retrieval, training

    settings = train_settings(args)
    strategy = distributed.make_strategy(args.strategy)  # first: multi-worker sets up TensorFlow's collectives
    out = Path(args.out or default_out_dir(args.dataset, args.loss))
    train_images, train_labels, train_info = data.load_dataset(
        args.dataset, "train", args.source, return_info=True)
    test_images, test_labels, test_info = data.load_dataset(
        args.dataset, "test", args.source, return_info=True)
    keep = data.pick_subset(len(test_labels), args.eval_limit, args.seed)
    test_images, test_labels = test_images[keep], test_labels[keep]
    if settings["holdout_classes"]:  # the unseen classes never reach training
        train_images, train_labels = holdout.seen_only(train_images, train_labels, settings["holdout_classes"])

    print(describe_run(settings, len(train_labels)))
    start, cpu_start = time.perf_counter(), time.process_time()
    model, history = train_model(settings, train_images, train_labels, test_images, test_labels, strategy)
    seconds = time.perf_counter() - start
    embeddings = training.embed(models.embedding_model(model), test_images)
    metrics = json_metrics(retrieval.evaluate(embeddings, test_labels, metric=settings["metric"]))
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
        record["holdout"] = holdout_section(settings, model, test_images, test_labels)
        print(holdout_table(record["holdout"]))
    if not distributed.is_chief(strategy):  # same weights as the chief's: nothing to add
        resolver = strategy.cluster_resolver
        print(f"\n{resolver.task_type} {resolver.task_id} is not the chief: the chief writes the files.")
        return 0
    save_run(out, model, embeddings, test_labels, record)
    write_plots(out, embeddings, test_labels, test_images, settings, metrics,
                data.class_names(args.dataset))
    print(f"\nFiles in {out}/:")
    for name, text in FILES.items():
        print(f"  {name:<16} {text}")
    print(f"Recompute the metrics: python -m course_lib evaluate {out}")
    return 0


def holdout_section(settings, model, images, labels):
    """metrics.json's "holdout": seen- and unseen-class queries against a gallery of every class.

    The trained ``model``'s settings["holdout_features"] (the recipe), the raw
    pixels, the model's own output ("projection", settings["metric"]) and the
    same network rebuilt with the run's seed, untrained ("untrained"):
    :func:`course_lib.holdout.network_report`.
    """
    from course_lib import holdout

    report = holdout.network_report(model, build_model(settings), images, labels, settings["holdout_classes"],
                                    settings["holdout_features"], settings["holdout_metric"], settings["metric"])
    section = {"classes": report["classes"], "seen": json_metrics(report["seen"]),
               "unseen": json_metrics(report["unseen"])}
    for row in ("pixels", "projection", "untrained"):
        section[row] = {group: json_metrics(report[row][group]) for group in ("seen", "unseen")}
    return section


def holdout_rows(section):
    """(name, {"seen": ..., "unseen": ...}) of the holdout section's rows, the recipe first."""
    rows = [("trained", section), ("projection", section.get("projection")),
            ("untrained", section.get("untrained")), ("pixels", section["pixels"])]
    return [(name, scores) for name, scores in rows if scores is not None]  # runs saved before both rows


def holdout_table(section):
    """MAP@R and precision@1 of seen and unseen queries: trained, projection, untrained, pixels."""
    lines = [f"\nHeld-out classes {section['classes']} (never trained on): queries of the test split's "
             f"first half against its second half (every class)",
             f"  {'features':<11} {'MAP@R seen':>10} {'unseen':>8} {'P@1 seen':>9} {'unseen':>8}"]
    for name, scores in holdout_rows(section):
        seen, unseen = scores["seen"], scores["unseen"]
        lines.append(f"  {name:<11} {seen['map_at_r']:>10.4f} {unseen['map_at_r']:>8.4f} "
                     f"{seen['precision_at_1']:>9.4f} {unseen['precision_at_1']:>8.4f}")
    lines.append("  (trained: the recipe's features and distance; projection: the network's output; untrained: "
                 "the recipe's features before training, same seed; pixels: raw, euclidean)")
    return "\n".join(lines)


def train_model(settings, train_images, train_labels, test_images, test_labels, strategy=None):
    """A fresh model trained with ``settings``, and its History (printed as a table, row by row).

    ``strategy``: a ``tf.distribute`` strategy (:func:`course_lib.distributed.make_strategy`),
    whose scope builds the model; None for one device.
    """
    import tensorflow as tf

    from course_lib import training
    from course_lib.data import pick_subset

    seed = settings["seed"]
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_model(settings)
    monitor = pick_subset(len(test_labels), MONITOR_SIZE, seed)
    common = dict(
        loss=settings["loss"], loss_options=settings["loss_options"], eval_images=test_images[monitor],
        eval_labels=test_labels[monitor], eval_size=MONITOR_SIZE, progress=False,
        on_epoch=lambda record: print(epoch_row(record), flush=True),
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


def build_model(settings):
    """The run's network before training: the same weights for the same settings["seed"]."""
    from course_lib import models

    if settings["loss"] == "cross_entropy":
        return models.classifier_network(num_classes=NUM_CLASSES, seed=settings["seed"])
    return models.embedding_network(settings["embedding_dim"], settings["l2_normalize"], seed=settings["seed"])


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
    title = (f"{settings['dataset']} test embeddings, {settings['loss']} loss, "
             f"{method} ({len(shown):,} points), "
             f"precision@1 {metrics['precision_at_1']:.3f}")
    fig = projection.embedding_figure(coords, labels[shown], class_names, title=title)
    projection.write_html(fig, out / "embedding.html", images=images[shown])
    projection.write_projector_files(out, embeddings, labels, class_names)


# ------------------------------------------------------------------ evaluate
def add_evaluate_command(commands):
    parser = commands.add_parser(
        "evaluate",
        help="recompute the metrics of a saved run",
        description="Recompute the retrieval metrics of a run folder written by `train`, "
                    "from its model.keras and the test split.",
    )
    parser.set_defaults(run=run_evaluate, check=check_evaluate_args, parser=parser)
    parser.add_argument("run_dir", metavar="DIR", help="folder written by `train` (its --out)")
    parser.add_argument("--from-embeddings", action="store_true",
                        help="score the saved embeddings.npy and labels.npy instead: "
                             "no model, no dataset needed")


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
    """The retrieval metrics of a run folder, recomputed (as metrics.json stores them).

    From the saved model and the run's test images, or with
    ``from_embeddings=True`` from the saved embeddings.npy and labels.npy.
    """
    from course_lib import retrieval

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    settings = saved["settings"]
    if from_embeddings:
        embeddings = np.load(run_dir / "embeddings.npy")
        labels = np.load(run_dir / "labels.npy")
    else:
        embeddings, labels = embed_test_split(run_dir, settings, saved["data"]["test_source"])
    metrics = json_metrics(retrieval.evaluate(embeddings, labels, metric=settings["metric"]))
    if settings.get("holdout_classes"):  # the model's features and the pixels of the test images
        metrics["holdout"] = recompute_holdout(run_dir, settings, saved["data"]["test_source"])
    return metrics


def recompute_holdout(run_dir, settings, source):
    """The "holdout" section of a run, from its model.keras and test split."""
    import keras

    if not (run_dir / "model.keras").is_file():
        raise FileNotFoundError(f"{run_dir} has no model.keras: the holdout section scores the "
                                f"model's {settings['holdout_features']!r} features, not embeddings.npy")
    images, labels = test_split(settings, source)
    model = keras.models.load_model(run_dir / "model.keras")
    return holdout_section(settings, model, images, labels)  # "untrained": rebuilt from the saved seed


def test_split(settings, source):
    """The run's test images and labels (its --eval-limit subset)."""
    from course_lib import data

    images, labels = data.load_dataset(settings["dataset"], "test", source)
    keep = data.pick_subset(len(labels), settings["eval_limit"], settings["seed"])
    return images[keep], labels[keep]


def embed_test_split(run_dir, settings, source):
    """Embeddings and labels of the run's test images, from its saved model."""
    import keras

    from course_lib import models, training

    images, labels = test_split(settings, source)
    model = keras.models.load_model(run_dir / "model.keras")
    embeddings = training.embed(models.embedding_model(model), images)
    return embeddings, labels


# ------------------------------------------------------------------ printing
def json_metrics(metrics):
    """The dict of retrieval.evaluate as metrics.json stores it (recall@k keys as strings)."""
    return {**metrics, "recall_at_k": {str(k): v for k, v in metrics["recall_at_k"].items()}}


def metric_rows(metrics):
    """(name, value) pairs of a metrics dict, in the order the table shows them."""
    rows = [("precision@1", metrics["precision_at_1"])]
    rows += [(f"recall@{k}", value) for k, value in metrics["recall_at_k"].items()]
    rows += [("R-precision", metrics["r_precision"]), ("MAP@R", metrics["map_at_r"])]
    return rows


def metrics_table(metrics, saved=None):
    """The metrics as aligned text lines; with ``saved``, beside the saved values."""
    if saved is None:
        lines = [f"  {'metric':<12} {'value':>8}"]
        lines += [f"  {name:<12} {value:>8.4f}" for name, value in metric_rows(metrics)]
        lines.append(f"  {'queries':<12} {metrics['num_queries']:>8,}")
        return "\n".join(lines)
    lines = [f"  {'metric':<12} {'now':>8} {'saved':>8}"]
    for (name, value), (_, before) in zip(metric_rows(metrics), metric_rows(saved)):
        lines.append(f"  {name:<12} {value:>8.4f} {before:>8.4f}")
    lines.append(f"  {'queries':<12} {metrics['num_queries']:>8,} {saved['num_queries']:>8,}")
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
