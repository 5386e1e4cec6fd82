import numpy as np
import pytest
from omegaconf import OmegaConf

from medprivbench.benchmark.config import DatasetConfig
from medprivbench.datasets import DataError, load_dataset
from medprivbench.datasets.base import DatasetInfo, ImageDataset, drop_duplicates, to_float_images, to_labels
from medprivbench.datasets.imagefolder import load_imagefolder
from medprivbench.datasets.medmnist import load_medmnist

from ..conftest import shared_file


def _info():
    return DatasetInfo(name="t", task="binary", n_channels=1, image_size=(4, 4), class_names=("a", "b"),
                       licence="", citation="", source="", real_patient_data=False)


def test_duplicates_across_and_inside_splits_are_dropped_and_counted():
    rng = np.random.default_rng(0)
    train = rng.random((6, 1, 4, 4)).astype(np.float32)
    train[5] = train[1]  # duplicate inside train
    test = rng.random((4, 1, 4, 4)).astype(np.float32)
    test[2] = train[3]  # a "non-member" that is a member
    val = rng.random((3, 1, 4, 4)).astype(np.float32)
    val[0] = train[0]
    ds = ImageDataset(train, np.array([0, 1, 0, 1, 0, 1]), test, np.array([0, 1, 0, 1]), _info(), val, np.array([0, 1, 0]))
    out = drop_duplicates(ds)
    assert out.n_train == 5 and len(out.test_y) == 3 and len(out.val_y) == 2
    assert out.info.duplicates_dropped == {"train_internal": 1, "val_in_train": 1, "test_in_train_or_val": 1}
    train_rows = {r.tobytes() for r in out.train_x.reshape(5, -1)}
    assert not any(r.tobytes() in train_rows for r in out.test_x.reshape(3, -1))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((2, 4, 4), np.nan, np.float32), "NaN"),
        (np.full((2, 4, 4), 2.0, np.float32), "[0, 1]"),
        (np.zeros((2, 4, 4), np.int32), "dtype"),
        (np.zeros((2, 4), np.uint8), "shape"),
    ],
)
def test_bad_images_are_rejected(images, message):
    with pytest.raises(DataError, match=message if message != "[0, 1]" else r"\[0, 1\]"):
        to_float_images(images, what="x")


def test_bad_labels_are_rejected():
    with pytest.raises(DataError, match="0..1"):
        to_labels(np.array([0, 2]), 2, 2, what="y")
    with pytest.raises(DataError, match="2 labels for 3"):
        to_labels(np.array([0, 1]), 3, 2, what="y")


def test_breastmnist_real_file():
    path = shared_file("breastmnist.npz")
    ds = load_dataset(OmegaConf.structured(DatasetConfig(name="breastmnist", root=str(path.parent))))
    assert ds.info.class_names == ("malignant", "normal, benign")
    assert ds.n_train == 546 and len(ds.val_y) == 78
    assert ds.info.duplicates_dropped["test_in_train_or_val"] == 1  # one image is in both train and test
    assert len(ds.test_y) == 155 and ds.info.real_patient_data


def test_pneumoniamnist_duplicates():
    path = shared_file("pneumoniamnist.npz")
    ds = load_dataset(OmegaConf.structured(DatasetConfig(name="pneumoniamnist", root=str(path.parent))))
    assert ds.info.duplicates_dropped["train_internal"] == 18
    assert ds.info.duplicates_dropped["val_in_train"] == 8
    assert ds.n_train == 4708 - 18


def test_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"dermamnist\.npz not found: put the MedMNIST file there"):
        load_medmnist(name="dermamnist", root=tmp_path)


def test_truncated_npz_is_a_clear_error(tmp_path):
    src = shared_file("breastmnist.npz")
    (tmp_path / "breastmnist.npz").write_bytes(src.read_bytes()[:20000])
    with pytest.raises(DataError, match="damaged or truncated"):
        load_medmnist(name="breastmnist", root=tmp_path)


def test_3d_subsets_load_as_volumes(tmp_path):
    src = shared_file("adrenalmnist3d.npz")
    ds = load_medmnist(name="adrenalmnist3d", root=src.parent)
    assert ds.train_x.ndim == 5 and ds.info.spatial_dims == 3


def _write_pngs(root, classes, n=4, size=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_imagefolder_reads_resizes_and_splits(tmp_path):
    _write_pngs(tmp_path, ["cyst", "tumour"], n=10)
    ds = load_imagefolder(root=tmp_path, image_size=16, test_fraction=0.2)
    assert ds.info.class_names == ("cyst", "tumour")
    assert ds.train_x.shape[1:] == (1, 16, 16)
    assert ds.n_train == 16 and len(ds.test_y) == 4
    assert np.bincount(ds.test_y).tolist() == [2, 2]


def test_imagefolder_one_class_and_unreadable_file(tmp_path):
    _write_pngs(tmp_path / "a", ["only"], n=3)
    with pytest.raises(DataError, match="at least two"):
        load_imagefolder(root=tmp_path / "a")
    _write_pngs(tmp_path / "b", ["x", "y"], n=3)
    (tmp_path / "b" / "y" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: cannot read"):
        load_imagefolder(root=tmp_path / "b")


def _two_classes(root, image):
    """Three distinct images per class (duplicates would be dropped), all of ``image``'s dtype."""
    from PIL import Image

    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(image + np.asarray(2 * i + c, image.dtype)).save(root / cls / f"{i}.png")


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """A 12-bit X-ray in a 16-bit PNG: PIL's own conversion would clip every value above 255 to white."""
    ramp = (np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 5).clip(0, 4095)  # 0 … 4095, 12 bits used
    _two_classes(tmp_path, ramp)
    ds = load_imagefolder(root=tmp_path, image_size=28, test_fraction=0.5)
    x = np.concatenate([ds.train_x, ds.test_x])
    assert (x >= 0.999).mean() < 0.01  # clipping turned 94 % of such an image white
    assert 4095 / 65535 - 1 / 255 < x.max() < (4095 + 5) / 65535 + 1 / 255  # the 16-bit range maps to [0, 1]
    assert len(np.unique(np.rint(x * 255))) > 10  # the ramp's shades survive


def test_a_class_folder_linked_outside_the_root_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    _two_classes(outside, np.zeros((28, 28), np.uint8))
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((28, 28), 9, np.uint8)).save(root / "a" / f"{i}.png")
    (root / "b").symlink_to(outside / "b", target_is_directory=True)
    with pytest.raises(DataError, match=r"data/b: a link to .*elsewhere/b, outside the image folder"):
        load_imagefolder(root=root)
    (root / "b").unlink()
    (root / "train").mkdir()  # a split folder linked outside: the same rule
    (root / "test").symlink_to(outside, target_is_directory=True)
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((28, 28), 3 * i + (cls == "b"), np.uint8)).save(root / "train" / cls / f"{i}.png")
    with pytest.raises(DataError, match=r"data/test: a link to .*elsewhere, outside the image folder"):
        load_imagefolder(root=root)
