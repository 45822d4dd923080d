"""Datasets for the course: MNIST and Fashion-MNIST, and class-balanced P x K batches.

Loading::

    images, labels = load_dataset("fashion_mnist", split="train")
    images, labels, info = load_dataset("mnist", "test", return_info=True)
    print(info.source, info.location, info.class_names)

``source="bundled"`` reads the small subsets committed in the repository's ``data/``
folder (see ``data/README.md``); ``source="full"`` reads the complete datasets from
your machine (see :func:`full_dataset_locations`); ``source="auto"`` (the default)
uses the full dataset when it is on your machine and the bundled subset otherwise.

Batching for triplet-style losses::

    dataset = pk_batches(images, labels, classes_per_batch=8, samples_per_class=4, seed=0)
    for batch_images, batch_labels in dataset:  # float32 [32, 28, 28, 1], int64 [32]
        ...

Several replicas (``tf.distribute``) share each P x K batch: ``num_replicas=R`` gives
every replica P/R whole classes (see :func:`pk_batch_plan` and :func:`replica_slices`).
"""

import dataclasses
import gzip
import hashlib
import os
import socket
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from course_lib._checks import is_int
from course_lib.options import DATASETS, SOURCES, SPLITS, check_choice

CLASS_NAMES = {
    "mnist": tuple("0123456789"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
}

# Number of images in the complete datasets, for messages.
FULL_SIZES = {"train": 60_000, "test": 10_000}


def _bundled_dir(package=Path(__file__).resolve().parent):
    """Where the bundled subsets are: ``course_lib/_bundled/`` in an installed wheel
    (setup.py packs the repository's ``data/`` there), else the repository's ``data/``
    folder next to the ``course_lib/`` package folder (a clone, an editable install)."""
    packaged = package / "_bundled"
    return packaged if packaged.is_dir() else package.parent / "data"


BUNDLED_DIR = _bundled_dir()

# sha256 of every bundled file. scripts/build_data.py writes the files and prints
# these sums; data/README.md lists them too.
BUNDLED_SHA256 = {
    "mnist_train.npz": "bdc12b44b5bbcd913b6ef3d5dd894a90b8a6421c2022421dccb5693b7d6d87ed",
    "mnist_test.npz": "c87a326b10c6457e901d3bc900114441e6d375199172f1c0a9d048a8c8e57445",
    "fashion_mnist_train.npz": "8fa6422d00d53a6911121f1a80d97ff28fe515a5c5f5bcb9226219a7df4d0c12",
    "fashion_mnist_test.npz": "1d656cbbf669d7b4192aec90b2bb48355a90d45bb658e48288f702f77734ddd8",
}

# Where source="full" looks, in this order (see full_dataset_locations).
ENV_VAR = "COURSE_DATA_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# Inside $COURSE_DATA_DIR and the Keras cache, each dataset is a folder of IDX
# files, or (MNIST only) the mnist.npz that keras.datasets.mnist downloads.
FULL_ENTRIES = {
    "mnist": ("mnist", "mnist.npz"),
    "fashion_mnist": ("fashion-mnist",),
}

# IDX file names (without .gz) of each split: (images, labels).
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where the arrays returned by :func:`load_dataset` came from."""

    name: str  # "mnist" or "fashion_mnist"
    split: str  # "train" or "test"
    source: str  # "bundled" or "full"
    location: str  # the file or folder that was read
    class_names: tuple[str, ...]  # class_names[label] is the name of a label
    num_examples: int


# ------------------------------------------------------------------- Loading

def load_dataset(name, split="train", source="auto", *, bundled_dir=None, return_info=False, verbose=True):
    """Load MNIST or Fashion-MNIST as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        split: ``"train"`` or ``"test"``.
        source: ``"bundled"`` (the subsets in ``data/``), ``"full"`` (the complete
            dataset from your machine, downloaded by Keras if needed and online) or
            ``"auto"`` (full if it is already on your machine, else bundled).
        bundled_dir: folder holding the bundled ``.npz`` files (default: ``data/``).
        return_info: also return a :class:`DatasetInfo` saying where the data came from.
        verbose: print one line saying which source was used.

    Returns:
        ``(images, labels)``, or ``(images, labels, info)`` with ``return_info=True``.
    """
    name = _check_name(name)
    check_choice("split", split, SPLITS)
    check_choice("source", source, SOURCES)

    local = None if source == "bundled" else find_full_dataset(name, split)
    if local is not None:
        source, location = "full", str(local)
        images, labels = read_full_dataset(local, name, split)
    elif source == "full":  # not on this machine: "auto" never downloads, "full" tries
        images, labels, location = download_with_keras(name, split)
    else:
        source = "bundled"
        images, labels, location = load_bundled(name, split, bundled_dir)

    info = DatasetInfo(name, split, source, location, CLASS_NAMES[name], len(labels))
    if verbose:
        print(describe(info))
    if return_info:
        return images, labels, info
    return images, labels


def class_names(name):
    """The class names of a dataset: ``class_names(name)[label]``."""
    return CLASS_NAMES[_check_name(name)]


def describe(info):
    """One line saying which data a :class:`DatasetInfo` describes."""
    text = f"{info.name}/{info.split}: {info.num_examples:,} images from "
    if info.source == "full":
        return text + f"the full dataset at {info.location}"
    return (
        text
        + f"the bundled subset {info.location} (the full split has "
        + f"{FULL_SIZES[info.split]:,}; see course_lib.data.full_dataset_locations())"
    )


# --- bundled subsets --------------------------------------------------------


def bundled_path(name, split, bundled_dir=None):
    """Path of the bundled ``.npz`` file of a dataset split."""
    folder = BUNDLED_DIR if bundled_dir is None else Path(bundled_dir)
    return folder / f"{name}_{split}.npz"


def load_bundled(name, split, bundled_dir=None):
    """Read a bundled subset after checking its sha256. Returns ``(images, labels, path)``."""
    path = bundled_path(name, split, bundled_dir)
    restore = "Restore it with `git checkout -- data/`, or rebuild it with `python scripts/build_data.py`."
    if not path.is_file():
        raise FileNotFoundError(f"The bundled file {path} is missing: it is part of the course repository. {restore}")
    expected, actual = BUNDLED_SHA256[path.name], sha256_of(path)
    if actual != expected:
        raise ValueError(f"The bundled file {path} is corrupt or modified: its sha256 is {actual}, "
                         f"expected {expected}. {restore}")
    with np.load(path, allow_pickle=False) as npz:
        images = npz["images"]
        labels = npz["labels"].astype(np.int64)
    return images, labels, str(path)


def sha256_of(path):
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- full datasets -----------------------------------------------------------


def keras_datasets_dir():
    """The folder where ``keras.datasets`` keeps its downloads (``~/.keras/datasets``)."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    return Path(keras_home).expanduser() / "datasets"


def full_dataset_locations(name):
    """The places ``source="full"`` looks for the complete dataset, in order.

    1. ``$COURSE_DATA_DIR/mnist/`` or ``$COURSE_DATA_DIR/fashion-mnist/``: IDX files,
       gzip-compressed or not (``train-images-idx3-ubyte[.gz]`` ...). For MNIST,
       ``$COURSE_DATA_DIR/mnist.npz`` in the Keras format works too.
    2. The Keras cache, ``~/.keras/datasets/`` (``mnist.npz``, ``fashion-mnist/``),
       filled by ``keras.datasets.mnist.load_data()`` and
       ``keras.datasets.fashion_mnist.load_data()``.
    3. Debian's ``/usr/share/datasets/fashion-mnist/`` (package
       ``dataset-fashion-mnist``; Fashion-MNIST only).
    """
    name = _check_name(name)
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]))
    roots.append(keras_datasets_dir())
    locations = [root / entry for root in roots for entry in FULL_ENTRIES[name]]
    if name == "fashion_mnist":
        locations.append(DEBIAN_DIR)
    return locations


def find_full_dataset(name, split):
    """The first location holding the complete split, or None. Never downloads."""
    for location in full_dataset_locations(name):
        if location.is_file() if location.suffix == ".npz" else idx_files(location, split):
            return location
    return None


def idx_files(folder, split):
    """``(images_path, labels_path)`` of a split in a folder of IDX files, or None."""
    found = [[path for path in (Path(folder) / stem, Path(folder) / f"{stem}.gz") if path.is_file()]
             for stem in IDX_NAMES[split]]
    return (found[0][0], found[1][0]) if all(found) else None


def read_full_dataset(location, name, split):
    """Read a split from a folder of IDX files or a Keras ``mnist.npz``."""
    location = Path(location)
    if location.suffix == ".npz":
        with np.load(location, allow_pickle=False) as npz:
            images, labels = npz[f"x_{split}"], npz[f"y_{split}"]
    else:
        images_path, labels_path = idx_files(location, split)
        images, labels = read_idx(images_path), read_idx(labels_path)
    return _checked(images, labels, f"{name}/{split} at {location}")


def download_with_keras(name, split):
    """The complete split downloaded (or read from its cache) by ``keras.datasets``.

    Returns ``(images, labels, location)``; without network, or when the
    download fails, a FileNotFoundError names every way to provide the data.
    """
    if not _network_available():
        raise FileNotFoundError(_not_found_message(name, split, "there is no network to download it"))
    try:
        train, test = getattr(keras.datasets, name).load_data()
    except Exception as error:  # any failure becomes part of the message
        raise FileNotFoundError(_not_found_message(name, split, f"the download failed: {error!r}")) from error
    images, labels = _checked(*(train if split == "train" else test), f"{name}/{split} from keras.datasets")
    return images, labels, f"{keras_datasets_dir()} (downloaded by keras.datasets)"


def _network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    """True when the host that keras.datasets downloads from answers."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _not_found_message(name, split, download_problem):
    env_value = os.environ.get(ENV_VAR)
    env_now = f"now {env_value}" if env_value else "now not set"
    if name == "fashion_mnist":
        debian = f"install Debian's package dataset-fashion-mnist (files in {DEBIAN_DIR}/)"
    else:
        debian = f"Debian's dataset-fashion-mnist ({DEBIAN_DIR}/) has no MNIST, only Fashion-MNIST"
    tried = "\n".join(f"  - {location}" for location in full_dataset_locations(name))
    return (
        f"The full {name} ({split} split) is not on this machine, and {download_problem}.\n"
        f"Three ways to provide it:\n"
        f"  1. set the environment variable {ENV_VAR} ({env_now}) to a folder with a "
        f"{FULL_ENTRIES[name][0]}/ subfolder of IDX files, gzip-compressed or not "
        f"({', '.join(IDX_NAMES[split])});\n"
        f"  2. run keras.datasets.{name}.load_data() once while online: it fills "
        f"the Keras cache {keras_datasets_dir()}/;\n"
        f"  3. {debian}.\n"
        f"Looked in:\n{tried}\n"
        f'Or use source="bundled" for the small subsets that ship in data/.'
    )


def read_idx(path):
    """Read an IDX file of unsigned bytes (the MNIST file format), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        data = file.read()
    # Header: two zero bytes, type code 0x08 (unsigned byte), number of dimensions,
    # then each dimension as a big-endian 32-bit integer.
    if len(data) < 4 or data[0:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != np.prod(shape):
        raise ValueError(f"{path} is truncated: header says {shape}, found {values.size} bytes")
    return values.reshape(shape).copy()


def _checked(images, labels, what):
    """Check shapes and convert labels to int64."""
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"{what}: expected images [N, 28, 28] and labels [N], "
            f"got {images.shape} and {labels.shape}"
        )
    return images, labels


def _check_name(name):
    return check_choice("name", str(name).replace("-", "_"), DATASETS)


def pick_subset(n, size, seed):
    """Sorted indices of ``size`` of n items drawn without replacement (all n when ``size`` is None or >= n).

    ``seed``: an int, or a ``numpy.random.Generator`` to draw from.
    """
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


# --------------------------------------------- Model input and P x K batches

def to_float(images):
    """uint8 images [..., 28, 28] -> float32 model input [..., 28, 28, 1] in [0, 1].

    Works on NumPy arrays and tensors (also inside ``tf.data``); returns a tensor.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"to_float expects uint8 pixels (0..255), got {images.dtype.name}")
    return (tf.cast(images, tf.float32) / 255.0)[..., tf.newaxis]


def pk_batch_plan(labels, classes_per_batch, samples_per_class, seed=0, num_batches=None, num_replicas=1):
    """Indices of class-balanced batches: an int64 array [num_batches, P * K].

    Each row is one batch: ``samples_per_class`` (K) indices from each of
    ``classes_per_batch`` (P) different classes, class after class. Within an epoch
    no sample is used twice: every class's samples are shuffled and cut into groups
    of K, and each batch takes one group from each of the P classes with the most
    groups left (ties broken at random). The epoch ends when fewer than P classes
    have a group left, so it leaves as few samples unused as it can: with N samples
    in every class, an epoch has (C * (N // K)) // P batches for C classes.

    Args:
        labels: int labels [N].
        classes_per_batch: P, the number of classes in each batch.
        samples_per_class: K, the number of samples of each class in each batch.
        seed: the same seed gives the same plan.
        num_batches: number of batches; None means one epoch. More than one
            epoch's worth continues with freshly shuffled epochs.
        num_replicas: R, the number of replicas that will share each batch
            (``strategy.num_replicas_in_sync``). P must be a multiple of R.

    Several replicas: ``tf.distribute`` cuts every global batch into R contiguous
    slices, slice r for replica r. Because a row lists its classes one after the
    other, a slice holds P/R *whole* classes with K samples each: every replica
    gets a class-balanced batch of its own, and the R slices together are the
    class-balanced global batch. The other layout, every class cut into R pieces
    of K/R samples, would leave a replica K/R - 1 positives per anchor (none at
    all for K = 2): mining on one replica could not work. With P not a multiple
    of R a class would straddle two replicas, so that is refused.

    Pure NumPy: the same labels, arguments and seed always give the same array.
    """
    labels = np.asarray(labels)
    _check_pk_arguments(labels, classes_per_batch, samples_per_class, num_batches, num_replicas)
    rng = np.random.default_rng(seed)
    batches = _epoch_plan(labels, classes_per_batch, samples_per_class, rng)
    num_batches = len(batches) if num_batches is None else num_batches
    while len(batches) < num_batches:
        batches += _epoch_plan(labels, classes_per_batch, samples_per_class, rng)
    plan = np.array(batches[:num_batches], dtype=np.int64)
    return plan.reshape(num_batches, classes_per_batch * samples_per_class)


def _epoch_plan(labels, classes_per_batch, samples_per_class, rng):
    """One epoch of batches (a list of index arrays), see :func:`pk_batch_plan`."""
    classes = np.unique(labels)
    groups = []  # groups[c]: list of index arrays of length K, for classes[c]
    for label in classes:
        indices = rng.permutation(np.flatnonzero(labels == label))
        num_groups = len(indices) // samples_per_class
        kept = indices[: num_groups * samples_per_class]
        groups.append(list(kept.reshape(num_groups, samples_per_class)))

    batches = []
    while True:
        # The P classes with the most groups left; a random order breaks the ties.
        order = rng.permutation(len(groups))
        remaining = np.array([len(groups[c]) for c in order])
        chosen = order[np.argsort(-remaining, kind="stable")][:classes_per_batch]
        if len(groups[chosen[-1]]) == 0:  # fewer than P classes have a group left
            return batches
        batches.append(np.concatenate([groups[c].pop() for c in chosen]))


def _check_pk_arguments(labels, classes_per_batch, samples_per_class, num_batches, num_replicas):
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    for argument, value in (("classes_per_batch", classes_per_batch), ("samples_per_class", samples_per_class),
                            ("num_replicas", num_replicas)):
        if not (is_int(value) and value >= 1):
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    if num_batches is not None and not (is_int(num_batches) and num_batches >= 1):
        raise ValueError(f"num_batches must be a positive integer or None, got {num_batches!r}")
    if classes_per_batch % num_replicas != 0:
        raise ValueError(
            f"classes_per_batch={classes_per_batch} is not a multiple of num_replicas={num_replicas}: "
            f"a class would be split between two replicas. Use a multiple of {num_replicas}.")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < classes_per_batch:
        raise ValueError(f"classes_per_batch={classes_per_batch} but the labels hold only {len(classes)} classes")
    if counts.min() < samples_per_class:
        raise ValueError(f"samples_per_class={samples_per_class} but class {classes[counts.argmin()]} has only "
                         f"{counts.min()} samples")


def replica_slices(plan, num_replicas, replicas):
    """The rows of a plan cut into per-replica slices: int64 [num_batches * len(replicas), B / R].

    Replica r's slice of batch t is columns ``r * B/R`` to ``(r + 1) * B/R`` of the
    plan's row t: P/R whole classes (see :func:`pk_batch_plan`). The result lists,
    batch after batch, the slices of ``replicas`` in the order given::

        replica_slices(plan, 2, [0, 1])  # batch 0 slice 0, batch 0 slice 1, batch 1 slice 0, ...
        replica_slices(plan, 4, [2])     # replica 2's slice of every batch

    One input pipeline feeding several replicas hands them consecutive elements
    (tf.distribute deals them out in turn), hence this order.
    """
    plan = np.asarray(plan)
    num_batches, batch_size = plan.shape
    if batch_size % num_replicas != 0:
        raise ValueError(f"a batch of {batch_size} does not split into {num_replicas} equal slices")
    if not all(0 <= r < num_replicas for r in replicas):
        raise ValueError(f"replicas must lie in 0..{num_replicas - 1}, got {list(replicas)}")
    slices = plan.reshape(num_batches, num_replicas, batch_size // num_replicas)
    return slices[:, list(replicas)].reshape(-1, batch_size // num_replicas)


def pk_batches(images, labels, classes_per_batch, samples_per_class, seed=0, num_batches=None,
               num_replicas=1, replicas=None):
    """A ``tf.data.Dataset`` of P x K batches for triplet-style losses.

    Yields ``(images float32 [P*K, 28, 28, 1] in [0, 1], labels int64 [P*K])``;
    the batches follow :func:`pk_batch_plan` (same arguments), so they are the
    same for the same seed. ``images`` are uint8 [N, 28, 28] as returned by
    :func:`load_dataset`.

    One epoch by default; for several epochs with fresh shuffles, ask for
    ``num_batches = epochs * steps_per_epoch`` and pass ``steps_per_epoch`` to
    ``model.fit``.

    ``num_replicas`` R and ``replicas`` (``tf.distribute``): with ``replicas=None``
    whole global batches; with a list of replica ids only their [P*K/R] slices, in
    the order of :func:`replica_slices`, as a ``distribute_datasets_from_function``
    pipeline needs (``course_lib.distributed.distribute_pk_batches``). Every
    pipeline uses the same seed, so all the slices add up to the global batches.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 3 or len(images) != len(labels):
        raise ValueError(
            f"expected uint8 images [N, 28, 28] and labels [N], "
            f"got {images.dtype} {images.shape} and {labels.shape}"
        )
    plan = pk_batch_plan(labels, classes_per_batch, samples_per_class, seed, num_batches, num_replicas)
    if replicas is not None:
        plan = replica_slices(plan, num_replicas, replicas)
    all_images = tf.constant(images)
    all_labels = tf.constant(labels, dtype=tf.int64)

    def gather(batch_indices):
        return to_float(tf.gather(all_images, batch_indices)), tf.gather(all_labels, batch_indices)

    dataset = tf.data.Dataset.from_tensor_slices(plan)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
