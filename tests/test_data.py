"""Tests for course_lib.data: loading MNIST / Fashion-MNIST and P x K batches. No network."""

import gzip
import hashlib
import importlib.util
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from course_lib import data

REPO = Path(__file__).resolve().parent.parent
# The raw files scripts/build_data.py reads (not part of the repository): set
# COURSE_RAW_DATA_DIR to their folder to run the tests that need them.
SHARED_DATA = Path(os.environ.get("COURSE_RAW_DATA_DIR", "/nonexistent"))

BUNDLED_SIZES = {
    ("mnist", "train"): 5_000,
    ("mnist", "test"): 10_000,
    ("fashion_mnist", "train"): 10_000,
    ("fashion_mnist", "test"): 5_000,
}
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- helpers -------------------------------------------------------------------


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzip-compressed when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(size.to_bytes(4, "big") for size in array.shape)
    content = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(content)


def fake_split(num_images, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num_images, 28, 28), dtype=np.uint8)
    labels = np.arange(num_images) % 10
    return images, labels


def write_idx_folder(folder, split, images, labels, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    images_name, labels_name = data.IDX_NAMES[split]
    write_idx(folder / (images_name + suffix), images)
    write_idx(folder / (labels_name + suffix), labels)


@pytest.fixture
def no_full_data(monkeypatch, tmp_path):
    """No complete dataset anywhere, and no way to download one."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no_debian" / "fashion-mnist")
    monkeypatch.setattr(data, "_network_available", lambda: False)

    def no_download():
        raise AssertionError("the tests must never download")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_download)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", no_download)
    return tmp_path


# --- bundled subsets -------------------------------------------------------------


@pytest.mark.parametrize("name, split", sorted(BUNDLED_SIZES))
def test_bundled_shapes_dtypes_and_labels(name, split):
    images, labels, info = data.load_dataset(name, split, source="bundled", return_info=True)
    size = BUNDLED_SIZES[(name, split)]
    assert images.shape == (size, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (size,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9
    assert images.max() == 255 and images.min() == 0
    assert info.source == "bundled" and info.num_examples == size
    assert info.class_names == data.CLASS_NAMES[name]


@pytest.mark.parametrize(
    "name, split, per_class",
    [("mnist", "train", 500), ("fashion_mnist", "train", 1000), ("fashion_mnist", "test", 500)],
)
def test_bundled_subsets_are_class_balanced(name, split, per_class):
    _, labels = data.load_dataset(name, split, source="bundled")
    assert np.bincount(labels).tolist() == [per_class] * 10


def test_bundled_mnist_test_is_the_complete_test_split():
    _, labels = data.load_dataset("mnist", "test", source="bundled")
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS


def test_bundled_mnist_train_takes_the_classes_in_turn():
    _, labels = data.load_dataset("mnist", "train", source="bundled")
    assert labels[:20].tolist() == list(range(10)) * 2


def test_bundled_loads_are_fast():
    for name, split in BUNDLED_SIZES:
        start = time.perf_counter()
        data.load_dataset(name, split, source="bundled", verbose=False)
        assert time.perf_counter() - start < 1.0


def test_bundled_folder_is_under_10_mb():
    total = sum(path.stat().st_size for path in (REPO / "data").iterdir())
    assert total < 10_000_000


def test_class_names():
    names = data.class_names("fashion_mnist")
    assert len(names) == 10
    assert names[0] == "T-shirt/top" and names[1] == "Trouser" and names[9] == "Ankle boot"
    assert data.class_names("mnist")[7] == "7"


def test_sha256_sums_agree_in_code_readme_and_files():
    readme = (REPO / "data" / "README.md").read_text()
    for filename, expected in data.BUNDLED_SHA256.items():
        assert data.sha256_of(REPO / "data" / filename) == expected
        assert f"{expected}  {filename}" in readme


def test_corrupt_bundled_file_is_reported(tmp_path):
    shutil.copytree(REPO / "data", tmp_path / "data")
    path = tmp_path / "data" / "mnist_test.npz"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"mnist_test\.npz is corrupt.*sha256"):
        data.load_dataset("mnist", "test", source="bundled", bundled_dir=tmp_path / "data")
    # The other files of the copy are fine.
    images, _ = data.load_dataset("mnist", "train", source="bundled", bundled_dir=tmp_path / "data")
    assert len(images) == 5_000


def test_missing_bundled_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fashion_mnist_train\.npz is missing.*git checkout"):
        data.load_dataset("fashion_mnist", source="bundled", bundled_dir=tmp_path)


# --- full datasets ---------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_full_from_env_folder_of_idx_files(no_full_data, monkeypatch, gz):
    root = no_full_data / "course_data"
    train = fake_split(120, seed=1)
    test = fake_split(30, seed=2)
    write_idx_folder(root / "fashion-mnist", "train", *train, gz=gz)
    write_idx_folder(root / "fashion-mnist", "test", *test, gz=gz)
    monkeypatch.setenv(data.ENV_VAR, str(root))

    for split, (expected_images, expected_labels) in (("train", train), ("test", test)):
        images, labels, info = data.load_dataset(
            "fashion_mnist", split, source="full", return_info=True
        )
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
        assert info.source == "full"
        assert info.location == str(root / "fashion-mnist")


def test_full_mnist_from_keras_cache_npz(no_full_data, monkeypatch):
    keras_home = no_full_data / "keras_home"
    (keras_home / "datasets").mkdir(parents=True)
    (x_train, y_train), (x_test, y_test) = fake_split(50, 3), fake_split(20, 4)
    np.savez(
        keras_home / "datasets" / "mnist.npz",
        x_train=x_train,
        y_train=y_train.astype(np.uint8),
        x_test=x_test,
        y_test=y_test.astype(np.uint8),
    )
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    images, labels, info = data.load_dataset("mnist", "test", source="full", return_info=True)
    np.testing.assert_array_equal(images, x_test)
    assert labels.dtype == np.int64 and labels.tolist() == y_test.tolist()
    assert info.location.endswith("mnist.npz")


def test_full_fashion_mnist_from_debian_folder(no_full_data, monkeypatch):
    debian = no_full_data / "usr_share" / "fashion-mnist"
    write_idx_folder(debian, "test", *fake_split(40, 5), gz=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", debian)
    _, _, info = data.load_dataset("fashion_mnist", "test", source="full", return_info=True)
    assert info.location == str(debian)


@pytest.mark.skipif(
    not (SHARED_DATA / "fashion-mnist").is_dir(), reason="$COURSE_RAW_DATA_DIR/fashion-mnist is absent"
)
def test_full_fashion_mnist_from_the_raw_files(no_full_data, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(SHARED_DATA))
    train_images, train_labels = data.load_dataset("fashion_mnist", "train", source="full")
    test_images, test_labels = data.load_dataset("fashion_mnist", "test", source="full")
    assert train_images.shape == (60_000, 28, 28) and test_images.shape == (10_000, 28, 28)
    assert np.bincount(train_labels).tolist() == [6_000] * 10
    assert np.bincount(test_labels).tolist() == [1_000] * 10
    # The bundled training subset is the first 1,000 images of each class.
    first = np.sort(np.concatenate([np.flatnonzero(train_labels == c)[:1000] for c in range(10)]))
    bundled_images, bundled_labels = data.load_dataset("fashion_mnist", "train", source="bundled")
    np.testing.assert_array_equal(bundled_images, train_images[first])
    np.testing.assert_array_equal(bundled_labels, train_labels[first])


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_nothing_found_names_all_three_ways(no_full_data, name):
    with pytest.raises(FileNotFoundError) as caught:
        data.load_dataset(name, "train", source="full")
    message = str(caught.value)
    assert "COURSE_DATA_DIR" in message
    assert f"keras.datasets.{name}.load_data()" in message
    assert str(data.keras_datasets_dir()) in message
    assert "dataset-fashion-mnist" in message and str(data.DEBIAN_DIR) in message
    assert "no network" in message
    assert 'source="bundled"' in message


def test_failed_download_is_part_of_the_message(no_full_data, monkeypatch):
    def failing_download():
        raise OSError("pretend the server is down")

    monkeypatch.setattr(data, "_network_available", lambda: True)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", failing_download)
    with pytest.raises(FileNotFoundError, match="pretend the server is down"):
        data.load_dataset("fashion_mnist", "test", source="full")


def test_full_downloads_with_keras_when_online(no_full_data, monkeypatch):
    train, test = fake_split(30, 6), fake_split(10, 7)
    monkeypatch.setattr(data, "_network_available", lambda: True)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: (train, test))
    images, labels, info = data.load_dataset("mnist", "train", source="full", return_info=True)
    np.testing.assert_array_equal(images, train[0])
    assert info.source == "full" and "downloaded" in info.location


def test_auto_falls_back_to_bundled(no_full_data, monkeypatch, capsys):
    # Even online, auto never downloads (the fixture's load_data would fail the test).
    monkeypatch.setattr(data, "_network_available", lambda: True)
    images, labels, info = data.load_dataset("fashion_mnist", "train", return_info=True)
    assert info.source == "bundled" and len(images) == 10_000
    assert "bundled" in capsys.readouterr().out


def test_auto_prefers_the_full_dataset(no_full_data, monkeypatch, capsys):
    root = no_full_data / "course_data"
    write_idx_folder(root / "mnist", "test", *fake_split(25, 8))
    monkeypatch.setenv(data.ENV_VAR, str(root))
    images, _, info = data.load_dataset("mnist", "test", return_info=True)
    assert info.source == "full" and len(images) == 25
    assert "full dataset" in capsys.readouterr().out
    # The train split is not in that folder: auto uses the bundled one.
    _, _, info = data.load_dataset("mnist", "train", return_info=True, verbose=False)
    assert info.source == "bundled"


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"name": "cifar10"}, "name"),
        ({"name": "mnist", "split": "validation"}, "split"),
        ({"name": "mnist", "source": "internet"}, "source"),
    ],
)
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=f"^{argument} must be one of"):
        data.load_dataset(**kwargs)


def test_dash_spelling_of_fashion_mnist_is_accepted():
    _, _, info = data.load_dataset("fashion-mnist", "test", source="bundled", return_info=True)
    assert info.name == "fashion_mnist"


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "not_idx").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "not_idx")
    write_idx(tmp_path / "whole", np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "whole").read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "cut")


# --- to_float and P x K batches ---------------------------------------------------------


def test_to_float():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    result = data.to_float(images)
    assert result.shape == (1, 2, 2, 1) and result.dtype == "float32"
    np.testing.assert_allclose(result.numpy()[0, :, :, 0], [[0.0, 1.0], [0.2, 0.4]], rtol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        data.to_float(images / 255.0)


def labels_with_counts(counts):
    return np.repeat(np.arange(len(counts)), counts)


@pytest.mark.parametrize(
    "counts, classes_per_batch, samples_per_class",
    [([50] * 10, 4, 5), ([500] * 10, 10, 8), ([7, 30, 12, 9, 40], 3, 2), ([6, 6], 2, 3)],
)
def test_plan_batches_have_p_classes_of_k_samples(counts, classes_per_batch, samples_per_class):
    labels = labels_with_counts(counts)
    plan = data.pk_batch_plan(labels, classes_per_batch, samples_per_class, seed=3)
    assert plan.dtype == np.int64 and plan.ndim == 2
    assert plan.shape[1] == classes_per_batch * samples_per_class
    for batch in plan:
        batch_labels = labels[batch].reshape(classes_per_batch, samples_per_class)
        assert len(set(batch_labels[:, 0])) == classes_per_batch  # P different classes
        assert (batch_labels == batch_labels[:, :1]).all()  # K samples of each
    # One epoch: no sample twice, and nearly all samples used.
    assert len(np.unique(plan)) == plan.size
    assert plan.size >= len(labels) - classes_per_batch * samples_per_class * len(counts)


def test_plan_covers_a_balanced_epoch():
    labels = labels_with_counts([100] * 10)
    plan = data.pk_batch_plan(labels, classes_per_batch=5, samples_per_class=4, seed=0)
    assert plan.shape == (50, 20)  # 1,000 samples / 20 per batch, none left over
    assert sorted(plan.ravel().tolist()) == list(range(1000))


@pytest.mark.parametrize("per_class, classes_per_batch, samples_per_class", [(100, 8, 4), (37, 3, 5)])
def test_plan_epoch_length_for_balanced_classes(per_class, classes_per_batch, samples_per_class):
    labels = labels_with_counts([per_class] * 10)
    for seed in range(5):
        plan = data.pk_batch_plan(labels, classes_per_batch, samples_per_class, seed=seed)
        assert len(plan) == (10 * (per_class // samples_per_class)) // classes_per_batch


def test_plan_is_deterministic_per_seed():
    labels = labels_with_counts([40] * 10)
    first = data.pk_batch_plan(labels, 4, 4, seed=7)
    np.testing.assert_array_equal(first, data.pk_batch_plan(labels, 4, 4, seed=7))
    assert not np.array_equal(first, data.pk_batch_plan(labels, 4, 4, seed=8))


def test_plan_with_num_batches_continues_with_fresh_epochs():
    labels = labels_with_counts([20] * 4)
    one_epoch = data.pk_batch_plan(labels, 2, 5, seed=1)
    assert one_epoch.shape == (8, 10)
    plan = data.pk_batch_plan(labels, 2, 5, seed=1, num_batches=20)
    assert plan.shape == (20, 10)
    np.testing.assert_array_equal(plan[:8], one_epoch)
    second_epoch = plan[8:16]
    assert sorted(second_epoch.ravel().tolist()) == list(range(80))
    assert not np.array_equal(second_epoch, one_epoch)
    assert data.pk_batch_plan(labels, 2, 5, seed=1, num_batches=3).shape == (3, 10)


def test_plan_errors_name_the_argument():
    labels = labels_with_counts([10, 10, 3])
    with pytest.raises(ValueError, match=r"^samples_per_class=4 but class 2 has only 3 samples"):
        data.pk_batch_plan(labels, 2, 4)
    with pytest.raises(ValueError, match=r"^classes_per_batch=4 but the labels hold only 3"):
        data.pk_batch_plan(labels, 4, 2)
    with pytest.raises(ValueError, match="^classes_per_batch must be a positive integer"):
        data.pk_batch_plan(labels, 0, 2)
    with pytest.raises(ValueError, match="^samples_per_class must be a positive integer"):
        data.pk_batch_plan(labels, 2, 2.5)
    with pytest.raises(ValueError, match="^num_batches must be"):
        data.pk_batch_plan(labels, 2, 2, num_batches=0)
    with pytest.raises(ValueError, match="^num_replicas must be a positive integer"):
        data.pk_batch_plan(labels, 2, 2, num_replicas=True)
    with pytest.raises(ValueError, match="^classes_per_batch=3 is not a multiple of num_replicas=2"):
        data.pk_batch_plan(labels, 3, 2, num_replicas=2)


def test_pk_batches_labels_match_images():
    # Every image is filled with 20 * its label, so a batch shows whether they match.
    labels = labels_with_counts([30] * 10)
    images = np.repeat((labels * 20).astype(np.uint8), 28 * 28).reshape(-1, 28, 28)
    dataset = data.pk_batches(images, labels, classes_per_batch=4, samples_per_class=3, seed=0)
    num_batches = 0
    for batch_images, batch_labels in dataset:
        num_batches += 1
        assert batch_images.shape == (12, 28, 28, 1) and batch_images.dtype == "float32"
        assert batch_labels.shape == (12,) and batch_labels.dtype == "int64"
        pixels = np.round(batch_images.numpy()[:, 5, 5, 0] * 255)
        np.testing.assert_array_equal(pixels, batch_labels.numpy() * 20)
        assert len(set(batch_labels.numpy().tolist())) == 4
    assert num_batches == 25  # 300 samples / 12 per batch


def test_pk_batches_follow_the_plan_and_the_seed():
    images, labels = data.load_dataset("mnist", "train", source="bundled", verbose=False)
    plan = data.pk_batch_plan(labels, 8, 4, seed=5, num_batches=6)

    def collect(seed):
        dataset = data.pk_batches(images, labels, 8, 4, seed=seed, num_batches=6)
        return [(x.numpy(), y.numpy()) for x, y in dataset]

    batches = collect(5)
    assert len(batches) == 6
    for (batch_images, batch_labels), indices in zip(batches, plan):
        np.testing.assert_array_equal(batch_labels, labels[indices])
        np.testing.assert_array_equal(batch_images, data.to_float(images[indices]).numpy())
        assert 0.0 <= batch_images.min() and batch_images.max() <= 1.0
    again = collect(5)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))
    other = collect(6)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(batches, other))


def test_pk_batches_rejects_float_images():
    labels = labels_with_counts([4, 4])
    with pytest.raises(ValueError, match="uint8"):
        data.pk_batches(np.zeros((8, 28, 28), np.float32), labels, 2, 2)


# --- the build script ----------------------------------------------------------------------


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="$COURSE_RAW_DATA_DIR (the raw files) is not set")
def test_build_script_reproduces_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("build_data", REPO / "scripts" / "build_data.py")
    build_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_data)
    build_data.main(["--source", str(SHARED_DATA), "--out", str(tmp_path)])
    for filename in [*data.BUNDLED_SHA256, "README.md"]:
        built = hashlib.sha256((tmp_path / filename).read_bytes()).hexdigest()
        committed = hashlib.sha256((REPO / "data" / filename).read_bytes()).hexdigest()
        assert built == committed, f"{filename} differs when rebuilt"
