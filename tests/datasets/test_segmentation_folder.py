"""A user's own segmentation folder (datasets/segmentation_folder.py): PNG and NIfTI image/mask pairs
written here with PIL and nibabel, the masks' labels kept exact through nearest resizing, and each
refusal one DataError line naming the file."""

import numpy as np
import pytest
from PIL import Image

from medprivbench.datasets import DataError, load_dataset
from medprivbench.datasets.segmentation_folder import load_segmentation_folder, nearest_resize


@pytest.fixture
def nib():
    return pytest.importorskip("nibabel", reason="nibabel not installed: pip install 'medprivbench[volumes]'")


def blocky_mask(shape, seed, n_labels=3):
    """Labels constant on 2-pixel blocks: nearest resizing by 2 keeps every value and block."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, n_labels, size=tuple(s // 2 for s in shape))
    small.flat[0] = n_labels - 1  # every mask holds the top label
    for axis in range(len(shape)):
        small = np.repeat(small, 2, axis=axis)
    return small


def write_png_pairs(folder, n, shape=(16, 16), seed=0):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    masks = {}
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(folder / "images" / f"case{i}.png")
        masks[f"case{i}"] = blocky_mask(shape, seed + i)
        Image.fromarray(masks[f"case{i}"].astype(np.uint8)).save(folder / "masks" / f"case{i}.png")
    return masks


def write_nifti(nib, path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.asarray(array), np.eye(4)).to_filename(str(path))


def test_png_pairs_load_as_integer_masks_with_exact_labels(tmp_path):
    masks = write_png_pairs(tmp_path, 5)
    ds = load_segmentation_folder(root=tmp_path, image_size=8, test_fraction=0.4, seed=0)
    assert ds.info.task == "segmentation" and ds.info.class_names == ("background", "class_1", "class_2")
    assert ds.train_x.shape == (3, 1, 8, 8) and ds.test_x.shape == (2, 1, 8, 8)
    assert ds.train_y.shape == (3, 8, 8) and ds.train_y.dtype == np.int64 and ds.info.real_patient_data is True
    expected = {tuple(m[::2, ::2].ravel()) for m in masks.values()}  # 2-pixel blocks halved: one value per block
    got = {tuple(m.ravel()) for m in np.concatenate([ds.train_y, ds.test_y])}
    assert got == expected
    assert set(np.unique(ds.train_y)) <= {0, 1, 2}


def test_nearest_resize_never_mixes_labels():
    mask = np.array([[0, 7], [3, 5]])
    up = nearest_resize(mask, 5)
    assert set(np.unique(up)) == {0, 3, 5, 7} and up[0, 0] == 0 and up[-1, -1] == 5
    down = nearest_resize(np.kron(np.arange(16).reshape(4, 4), np.ones((3, 3), int)), 4)
    assert np.array_equal(down, np.arange(16).reshape(4, 4))


def test_fixed_split_and_load_dataset(tmp_path):
    from medprivbench.benchmark.config import DatasetConfig

    write_png_pairs(tmp_path / "train", 3)
    write_png_pairs(tmp_path / "test", 2, seed=10)
    ds = load_dataset(DatasetConfig(name="segfolder", root=str(tmp_path), size=16))
    assert ds.n_train == 3 and len(ds.test_y) == 2 and ds.train_y.shape == (3, 16, 16)
    assert "train pixels" in ds.summary()


def test_nifti_pairs_side_by_side_and_in_folders(nib, tmp_path):
    rng = np.random.default_rng(0)
    for layout in ("side", "folders"):
        root = tmp_path / layout
        for i in range(4):
            volume = rng.normal(size=(8, 6, 4)).astype(np.float32)
            mask = np.zeros((8, 6, 4), np.int16)
            mask[2:6, 1:4, 1:3] = 1 + i % 2
            if layout == "side":
                write_nifti(nib, root / f"p{i}_img.nii.gz", volume)
                write_nifti(nib, root / f"p{i}_seg.nii.gz", mask)
            else:
                write_nifti(nib, root / "images" / f"p{i}.nii.gz", volume)
                write_nifti(nib, root / "masks" / f"p{i}.nii", mask.astype(np.float32))  # integral floats are fine
        ds = load_segmentation_folder(root=root, image_size=8, test_fraction=0.5, seed=1)
        assert ds.train_x.shape == (2, 1, 8, 8, 8) and ds.train_y.shape == (2, 8, 8, 8)
        assert ds.info.image_size == (8, 8, 8) and ds.info.class_names == ("background", "class_1", "class_2")
        y = np.concatenate([ds.train_y, ds.test_y])
        # stored (i, j, k) = (8, 6, 4) becomes (D, H, W) = (4, 6, 8), each axis stretched to 8 by nearest
        assert set(np.unique(y)) == {0, 1, 2} and y.dtype == np.int64
        stored = np.zeros((8, 6, 4), int)
        stored[2:6, 1:4, 1:3] = 1
        expected = nearest_resize(stored.transpose(2, 1, 0), 8)
        assert all(np.array_equal(m > 0, expected > 0) for m in y)


def test_nifti_image_and_mask_stay_aligned(nib, tmp_path):
    # an asymmetric block, bright in the volume and labelled in the mask, must coincide after loading
    block = np.zeros((8, 8, 8), np.int16)
    block[1:3, 2:7, 4:8] = 1
    for case in ("a", "b"):
        write_nifti(nib, tmp_path / f"{case}_img.nii.gz", block.astype(np.float32) * 100.0)
        write_nifti(nib, tmp_path / f"{case}_seg.nii.gz", block)
    ds = load_segmentation_folder(root=tmp_path, image_size=8, test_fraction=0.5)
    assert np.array_equal(ds.train_x[0, 0] > 0.5, ds.train_y[0] == 1)
    assert np.array_equal(ds.train_y[0], block.transpose(2, 1, 0))


def test_unpaired_nifti_name_is_refused(nib, tmp_path):
    write_nifti(nib, tmp_path / "a_img.nii.gz", np.zeros((4, 4, 4), np.float32))
    write_nifti(nib, tmp_path / "a_seg.nii.gz", np.zeros((4, 4, 4), np.int16))
    write_nifti(nib, tmp_path / "a_label.nii.gz", np.zeros((4, 4, 4), np.int16))
    assert "a_label.nii.gz" in _refused(tmp_path, "named neither")


def _refused(root, match, **kw):
    with pytest.raises(DataError, match=match) as info:
        load_segmentation_folder(root=root, image_size=8, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_mask_and_missing_image_are_named(tmp_path):
    write_png_pairs(tmp_path, 3)
    (tmp_path / "masks" / "case1.png").unlink()
    assert "case1.png" in _refused(tmp_path, "an image without a mask")
    write_png_pairs(tmp_path, 3)
    (tmp_path / "images" / "case2.png").unlink()
    assert "case2.png" in _refused(tmp_path, "a mask without an image")


def test_shape_mismatch_is_named(tmp_path):
    write_png_pairs(tmp_path, 3)
    Image.fromarray(np.zeros((16, 12), np.uint8)).save(tmp_path / "masks" / "case0.png")
    assert "case0.png" in _refused(tmp_path, "a mask must have its image's shape")


def test_non_integer_and_multichannel_masks_are_refused(tmp_path):
    write_png_pairs(tmp_path, 3)
    (tmp_path / "masks" / "case0.png").unlink()
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(tmp_path / "masks" / "case0.tif")
    assert "case0.tif" in _refused(tmp_path, "non-integer values")
    (tmp_path / "masks" / "case0.tif").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "masks" / "case0.png")
    assert "case0.png" in _refused(tmp_path, "a mask with 3 channels")


def test_nifti_mask_refusals(nib, tmp_path):
    volume = np.zeros((6, 6, 6), np.float32)
    write_nifti(nib, tmp_path / "a_img.nii.gz", volume)
    write_nifti(nib, tmp_path / "b_img.nii.gz", volume)
    write_nifti(nib, tmp_path / "b_seg.nii.gz", np.ones((6, 6, 6), np.int16))
    write_nifti(nib, tmp_path / "a_seg.nii.gz", np.full((6, 6, 6), -1, np.int16))
    assert "a_seg.nii.gz" in _refused(tmp_path, "negative label -1")
    write_nifti(nib, tmp_path / "a_seg.nii.gz", np.full((6, 6, 6), 1.25, np.float32))
    assert "a_seg.nii.gz" in _refused(tmp_path, "non-integer values")
    write_nifti(nib, tmp_path / "a_seg.nii.gz", np.zeros((6, 6, 6, 2), np.int16))
    assert "a_seg.nii.gz" in _refused(tmp_path, "2 channels")
    write_nifti(nib, tmp_path / "a_seg.nii.gz", np.zeros((6, 6, 5), np.int16))
    assert "a_seg.nii.gz" in _refused(tmp_path, "a mask must have its image's shape")
    (tmp_path / "a_seg.nii.gz").write_bytes(b"not a nifti file")
    assert "a_seg.nii.gz" in _refused(tmp_path, "cannot read")


def test_empty_folder_and_unreadable_image_are_refused(tmp_path):
    assert str(tmp_path) in _refused(tmp_path, "holds no image/mask pairs")
    write_png_pairs(tmp_path, 3)
    (tmp_path / "images" / "case0.png").write_bytes(b"\x89PNG broken")
    assert "case0.png" in _refused(tmp_path, "cannot read this image")
