"""3D volumes in a user's image folder: NIfTI files and DICOM series, written here with nibabel and
pydicom, loaded by datasets/imagefolder.py and read by datasets/volume_files.py (MONAI's readers)."""

import os
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from medprivbench.benchmark.config import DatasetConfig
from medprivbench.datasets import DataError, load_dataset, load_raw
from medprivbench.datasets import imagefolder, volume_files
from medprivbench.datasets.imagefolder import load_imagefolder


@pytest.fixture
def nib():
    return pytest.importorskip("nibabel", reason="nibabel not installed: pip install 'medprivbench[volumes]'")


@pytest.fixture
def pydicom():
    return pytest.importorskip("pydicom", reason="pydicom not installed: pip install 'medprivbench[volumes]'")


def write_nifti(nib, path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.asarray(array), np.eye(4)).to_filename(str(path))
    return path


def write_ct_series(pydicom, folder, stored, *, z=None, names=None, numbers=None, intercept=-1024.0, series_uid=None):
    """One CT slice file per plane of ``stored`` (slices, rows, columns), int16 stored values;
    Hounsfield units = stored + intercept. ``z``, ``names`` and ``numbers`` set each slice's
    ImagePositionPatient z, file name and InstanceNumber (default: in plane order)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    n = len(stored)
    z = list(range(n)) if z is None else z
    names = [f"{k:03d}.dcm" for k in range(n)] if names is None else names
    numbers = list(range(1, n + 1)) if numbers is None else numbers
    series_uid = series_uid or generate_uid()
    for k, plane in enumerate(np.asarray(stored)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = "1.2.3"
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "CT"
        ds.PatientID = "anon"
        ds.InstanceNumber = numbers[k]
        ds.ImagePositionPatient = [0.0, 0.0, float(z[k])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = 1.0
        ds.RescaleIntercept = intercept
        ds.PixelData = plane.astype("<i2").tobytes()
        ds.save_as(folder / names[k], enforce_file_format=True)
    return folder


def distinct_volumes(n, shape, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(-1000, 1000, shape).astype(np.int16) for _ in range(n)]


def by_label(ds):
    """Every volume of both splits, (N, D, H, W), in label order (one volume per class in these tests)."""
    x = np.concatenate([ds.train_x, ds.test_x])[:, 0]
    return x[np.argsort(np.concatenate([ds.train_y, ds.test_y]), kind="stable")]


def assert_unit_volumes(x, size):
    assert x.dtype == np.float32 and x.shape[1:] == (1, size, size, size)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


# --- reading ---------------------------------------------------------------------------------------


def test_nifti_folder_is_split_with_labels_from_the_class_folders(nib, tmp_path):
    # class "along_d" varies only along the file's third axis (D after loading), "along_w" only along the first (W)
    ramp = np.arange(10, dtype=np.float32)
    for i in range(5):
        write_nifti(nib, tmp_path / "along_d" / f"{i}.nii.gz", np.broadcast_to(ramp * (i + 1), (10, 10, 10)).copy())
        write_nifti(nib, tmp_path / "along_w" / f"{i}.nii", np.broadcast_to((ramp * (i + 1))[:, None, None], (10, 10, 10)).copy())
    (tmp_path / "along_w" / "notes.txt").write_text("ignored")
    ds = load_imagefolder(root=tmp_path, image_size=8, test_fraction=0.2, seed=3)
    assert ds.info.class_names == ("along_d", "along_w")
    assert ds.info.image_size == (8, 8, 8) and ds.info.n_channels == 1 and ds.info.spatial_dims == 3
    assert ds.n_train == 8 and len(ds.test_y) == 2 and np.bincount(ds.test_y).tolist() == [1, 1]
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert_unit_volumes(x, 8)
        varies_along_d = np.ptp(x[:, 0], axis=1).max(axis=(1, 2)) > 0.5
        varies_along_w = np.ptp(x[:, 0], axis=3).max(axis=(1, 2)) > 0.5
        assert (varies_along_d == (y == 0)).all() and (varies_along_w == (y == 1)).all()


def test_nifti_axes_become_d_h_w_and_min_max_reaches_0_and_1(nib, tmp_path):
    arr = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8) - 100.0  # (i, j, k)
    write_nifti(nib, tmp_path / "a" / "v.nii.gz", arr)
    write_nifti(nib, tmp_path / "b" / "v.nii.gz", arr[::-1].copy())
    x = by_label(load_imagefolder(root=tmp_path, image_size=8, test_fraction=0.5))
    expected = (arr - arr.min()) / (arr.max() - arr.min())
    np.testing.assert_allclose(x[0], expected.transpose(2, 1, 0), atol=1e-6)  # same size: no resampling
    assert x[0].min() == 0.0 and x[0].max() == 1.0


@pytest.mark.parametrize("shape", [(12, 11, 9), (5, 6, 4)], ids=["shrink", "grow"])
def test_resampled_gradient_stays_monotone_along_its_axis(nib, tmp_path, shape):
    depth = shape[2]
    gradient = np.broadcast_to(np.arange(depth, dtype=np.float32) * 7.0 - 30.0, shape).copy()  # grows along k = D
    for cls in ("a", "b"):
        for i in range(2):
            write_nifti(nib, tmp_path / cls / f"{i}.nii.gz", gradient * (i + 1) + (cls == "b"))
    ds = load_imagefolder(root=tmp_path, image_size=8, test_fraction=0.5)
    for volume in ds.train_x[:, 0]:
        profile = volume[:, 3, 5]
        assert (np.diff(profile) > 0).all()  # strictly increasing along D
        np.testing.assert_allclose(volume, np.broadcast_to(profile[:, None, None], volume.shape), atol=1e-6)
        assert volume.min() == 0.0 and volume.max() == 1.0


def test_window_clips_and_scales_to_exact_values(nib, tmp_path):
    arr = np.full((8, 8, 8), -500.0, np.float32)
    arr[1, 2, 3], arr[0, 0, 0], arr[7, 7, 7] = 0.0, -2000.0, 3000.0
    write_nifti(nib, tmp_path / "a" / "v.nii.gz", arr)
    write_nifti(nib, tmp_path / "b" / "v.nii.gz", arr + 250.0)
    x = by_label(load_imagefolder(root=tmp_path, image_size=8, test_fraction=0.5, window=[-1000, 1000]))
    assert x[0][3, 2, 1] == 0.5 and x[0][0, 0, 0] == 0.0 and x[0][7, 7, 7] == 1.0 and x[0][4, 4, 4] == 0.25
    assert x[1][3, 2, 1] == 0.625 and x[1][4, 4, 4] == 0.375


def test_window_passes_through_the_dataset_config(nib, tmp_path):
    arr = np.full((8, 8, 8), 500.0, np.float32)
    for split in ("train", "test"):
        for cls, offset in (("a", 0.0), ("b", -1000.0)):
            write_nifti(nib, tmp_path / split / cls / "v.nii.gz", arr + offset)
    cfg = OmegaConf.structured(DatasetConfig(name="imagefolder", root=str(tmp_path), size=8, window=[-1000.0, 1000.0]))
    ds = load_raw(cfg)
    assert np.unique(ds.train_x[ds.train_y == 0]).tolist() == [0.75]
    assert np.unique(ds.train_x[ds.train_y == 1]).tolist() == [0.25]


def test_fixed_train_test_layout(nib, tmp_path):
    for s, (split, n) in enumerate((("train", 3), ("test", 2))):
        for label, cls in enumerate(("benign", "malignant")):
            for i, volume in enumerate(distinct_volumes(n, (9, 10, 11), seed=10 * s + label)):
                write_nifti(nib, tmp_path / split / cls / f"{i}.nii.gz", volume)
    ds = load_imagefolder(root=tmp_path, image_size=6)
    assert ds.info.class_names == ("benign", "malignant")
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_y.tolist() == [0, 0, 1, 1]
    assert_unit_volumes(ds.train_x, 6)
    assert_unit_volumes(ds.test_x, 6)


def test_dicom_slices_follow_image_position_not_file_name_or_instance_number(pydicom, tmp_path):
    k, r, c = np.meshgrid(np.arange(8), np.arange(8), np.arange(8), indexing="ij")
    stored = (100 * k + 10 * r + c).astype(np.int16)  # plane k lies at z = k
    names = [f"slice{7 - i}.dcm" for i in range(8)]  # file names in the reverse order
    numbers = [3, 7, 1, 8, 2, 6, 4, 5]  # instance numbers in no order
    write_ct_series(pydicom, tmp_path / "a" / "patient1", stored, names=names, numbers=numbers)
    write_ct_series(pydicom, tmp_path / "b" / "patient2", stored[:, ::-1].copy())
    x = by_label(load_imagefolder(root=tmp_path, image_size=8, test_fraction=0.5))
    np.testing.assert_allclose(x[0], stored / 777.0, atol=1e-6)  # (D, H, W) = (slice by position, row, column)
    np.testing.assert_allclose(x[1], stored[:, ::-1] / 777.0, atol=1e-6)


def test_dicom_rescale_and_window_give_hounsfield_values(pydicom, nib, tmp_path):
    stored = np.full((8, 8, 8), 1024, np.int16)  # 0 HU with intercept -1024
    stored[2, 3, 4] = 24  # -1000 HU
    write_ct_series(pydicom, tmp_path / "a" / "s1", stored, z=[10.0 - 2.5 * i for i in range(8)])  # descending z
    write_nifti(nib, tmp_path / "b" / "v.nii.gz", np.full((8, 8, 8), 500.0, np.float32))  # NIfTI and DICOM together
    x = by_label(load_imagefolder(root=tmp_path, image_size=8, test_fraction=0.5, window=[-1000, 1000]))
    assert x[0][5, 3, 4] == 0.0  # slice 2 of 8 in file order is slice 5 of 8 by ascending position
    assert np.count_nonzero(x[0] == 0.5) == 8**3 - 1
    assert np.unique(x[1]).tolist() == [0.75]


def test_duplicate_volume_across_train_and_test_is_dropped(nib, tmp_path):
    volumes = distinct_volumes(5, (8, 8, 8), seed=0)
    for i, cls in enumerate(("a", "a", "b", "b")):
        write_nifti(nib, tmp_path / "train" / cls / f"{i}.nii.gz", volumes[i])
    write_nifti(nib, tmp_path / "test" / "a" / "new.nii.gz", volumes[4])
    (tmp_path / "test" / "b").mkdir(parents=True)
    shutil.copy(tmp_path / "train" / "b" / "2.nii.gz", tmp_path / "test" / "b" / "copy.nii.gz")
    ds = load_dataset(OmegaConf.structured(DatasetConfig(name="imagefolder", root=str(tmp_path), size=8)))
    assert ds.info.duplicates_dropped["test_in_train_or_val"] == 1
    assert ds.n_train == 4 and ds.test_y.tolist() == [0]


# --- refused input ---------------------------------------------------------------------------------


def _two_nifti_classes(nib, root, n=2, shape=(8, 8, 8)):
    for cls_index, cls in enumerate(("a", "b")):
        for i, volume in enumerate(distinct_volumes(n, shape, seed=cls_index)):
            write_nifti(nib, root / cls / f"{i}.nii.gz", volume)


def test_mixing_2d_images_and_volumes_is_refused(nib, tmp_path):
    from PIL import Image

    _two_nifti_classes(nib, tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b" / "slice.png")
    with pytest.raises(DataError, match=r"mixes 2D images \(e\.g\. .*b/slice\.png\) and NIfTI volumes \(e\.g\. .*a/0\.nii\.gz\)"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_three_channels_window_with_images_and_bad_windows_are_refused(nib, tmp_path):
    from PIL import Image

    _two_nifti_classes(nib, tmp_path / "vol")
    with pytest.raises(DataError, match="volumes are single-channel"):
        load_imagefolder(root=tmp_path / "vol", channels=3, image_size=8)
    for cls in ("a", "b"):
        (tmp_path / "png" / cls).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), ord(cls), np.uint8)).save(tmp_path / "png" / cls / "x.png")
    with pytest.raises(DataError, match="window.*applies to volumes"):
        load_imagefolder(root=tmp_path / "png", image_size=8, window=[0, 1])
    for bad in ([1000, -1000], [0, float("inf")], [float("nan"), 1], [0], [0, 1, 2], "01", [True, 2]):
        with pytest.raises(DataError, match=r"dataset\.window=.* is not valid; use \[lo, hi\]"):
            load_imagefolder(root=tmp_path / "vol", image_size=8, window=bad)


def test_links_out_of_the_root_and_fifos_are_refused(nib, tmp_path):
    root = tmp_path / "data"
    _two_nifti_classes(nib, root)
    outside = write_nifti(nib, tmp_path / "elsewhere" / "v.nii.gz", np.zeros((8, 8, 8), np.float32))
    (root / "a" / "link.nii.gz").symlink_to(outside)
    with pytest.raises(DataError, match=r"a/link\.nii\.gz: a link to .*outside the image folder"):
        load_imagefolder(root=root, image_size=8)
    (root / "a" / "link.nii.gz").unlink()
    os.mkfifo(root / "b" / "pipe.nii")
    with pytest.raises(DataError, match=r"b/pipe\.nii: not a regular file"):
        load_imagefolder(root=root, image_size=8)


def test_linked_dicom_series_folder_outside_the_root_is_refused(pydicom, nib, tmp_path):
    root = tmp_path / "data"
    _two_nifti_classes(nib, root)
    series = write_ct_series(pydicom, tmp_path / "elsewhere" / "s", np.zeros((3, 8, 8), np.int16))
    (root / "a" / "series").symlink_to(series, target_is_directory=True)
    with pytest.raises(DataError, match=r"a/series: a link to .*outside the image folder"):
        load_imagefolder(root=root, image_size=8)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_nifti_is_named(nib, tmp_path, damage):
    root = tmp_path / "data"
    _two_nifti_classes(nib, root)
    if damage == "garbage":
        bad = root / "b" / "bad.nii.gz"
        bad.write_bytes(b"this is not a volume at all")
    else:  # a valid header whose data stops early
        good = write_nifti(nib, tmp_path / "scratch" / "v.nii", np.zeros((8, 8, 8), np.float32))
        bad = root / "b" / "bad.nii"
        bad.write_bytes(good.read_bytes()[:600])
    with pytest.raises(DataError, match=r"b/bad\.nii(\.gz)?: cannot read this volume \(.+\); fix or remove the file"):
        load_imagefolder(root=root, image_size=8)


def test_damaged_dicom_slice_is_named(pydicom, tmp_path):
    for cls in ("a", "b"):
        write_ct_series(pydicom, tmp_path / cls / "s", np.zeros((3, 8, 8), np.int16))
    (tmp_path / "b" / "s" / "001.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(DataError, match=r"b/s/001\.dcm: cannot read this volume \(.+\); fix or remove the file"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_nifti_declaring_too_many_voxels_is_refused_before_decoding(nib, tmp_path):
    _two_nifti_classes(nib, tmp_path)
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 1024, 1024))  # 2 Gi voxels declared, a few bytes of data
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    (tmp_path / "b" / "bomb.nii").write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    with pytest.raises(DataError, match=r"b/bomb\.nii: declares 2048 × 1024 × 1024 voxels; volumes must have at most"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_dicom_series_over_the_voxel_limit_is_refused(pydicom, tmp_path, monkeypatch):
    for cls in ("a", "b"):
        write_ct_series(pydicom, tmp_path / cls / "s", np.zeros((4, 8, 8), np.int16))
    monkeypatch.setattr(volume_files, "MAX_VOXELS", 4 * 8 * 8 - 1)  # rows × columns × files, from the headers
    with pytest.raises(DataError, match=r"a/s: declares 4 × 8 × 8 voxels"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_dicom_series_with_differing_slice_sizes_is_refused(pydicom, tmp_path):
    root = tmp_path / "data"
    write_ct_series(pydicom, root / "a" / "s", np.zeros((3, 8, 8), np.int16))
    series = write_ct_series(pydicom, root / "b" / "s", np.zeros((3, 8, 8), np.int16))
    write_ct_series(pydicom, tmp_path / "scratch", np.zeros((1, 8, 6), np.int16), z=[9.0], names=["odd.dcm"])
    shutil.copy(tmp_path / "scratch" / "odd.dcm", series / "odd.dcm")
    with pytest.raises(DataError, match=r"b/s/odd\.dcm: 8 × 6 pixels, but .*000\.dcm has 8 × 8; .*same Rows and Columns"):
        load_imagefolder(root=root, image_size=8)


def test_dicom_series_with_two_slices_at_one_position_is_refused(pydicom, tmp_path):
    write_ct_series(pydicom, tmp_path / "a" / "s", np.zeros((3, 8, 8), np.int16))
    write_ct_series(pydicom, tmp_path / "b" / "s", np.zeros((3, 8, 8), np.int16), z=[0.0, 1.0, 1.0])
    with pytest.raises(DataError, match=r"b/s/001\.dcm and .*b/s/002\.dcm have the same slice position"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_loose_dicom_file_and_single_slice_series_are_refused(pydicom, tmp_path):
    write_ct_series(pydicom, tmp_path / "a" / "s", np.zeros((3, 8, 8), np.int16))
    write_ct_series(pydicom, tmp_path / "b" / "one", np.zeros((1, 8, 8), np.int16))
    with pytest.raises(DataError, match=r"b/one: holds 1 DICOM slice\(s\); a volume needs at least 2"):
        load_imagefolder(root=tmp_path, image_size=8)
    shutil.move(tmp_path / "b" / "one" / "000.dcm", tmp_path / "b" / "loose.dcm")
    with pytest.raises(DataError, match=r"b/loose\.dcm: a DICOM file directly in a class folder"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_4d_nifti_and_non_finite_voxels_are_refused(nib, tmp_path):
    _two_nifti_classes(nib, tmp_path)
    write_nifti(nib, tmp_path / "b" / "series.nii.gz", np.zeros((8, 8, 8, 2), np.float32))
    with pytest.raises(DataError, match=r"b/series\.nii\.gz: a 4D image of 8 × 8 × 8 × 2 voxels; each NIfTI file must hold one 3D volume"):
        load_imagefolder(root=tmp_path, image_size=8)
    nan_volume = np.zeros((8, 8, 8), np.float32)
    nan_volume[1, 1, 1] = np.nan
    write_nifti(nib, tmp_path / "b" / "series.nii.gz", nan_volume)
    with pytest.raises(DataError, match=r"b/series\.nii\.gz: 1 voxels are NaN or infinite"):
        load_imagefolder(root=tmp_path, image_size=8)


def test_empty_class_and_empty_split_are_refused(nib, tmp_path):
    write_nifti(nib, tmp_path / "flat" / "a" / "v.nii.gz", np.arange(512.0).reshape(8, 8, 8))
    (tmp_path / "flat" / "b" / "unrelated").mkdir(parents=True)  # a folder without *.dcm: ignored
    (tmp_path / "flat" / "b" / "readme.txt").write_text("ignored")
    with pytest.raises(DataError, match=r"class folder\(s\) b hold no readable images or volumes"):
        load_imagefolder(root=tmp_path / "flat", image_size=8)
    for cls in ("a", "b"):
        write_nifti(nib, tmp_path / "fixed" / "train" / cls / "v.nii.gz", np.arange(512.0).reshape(8, 8, 8) * ord(cls))
        (tmp_path / "fixed" / "test" / cls).mkdir(parents=True)
    with pytest.raises(DataError, match=r"fixed/test holds no readable images or volumes"):
        load_imagefolder(root=tmp_path / "fixed", image_size=8)


def test_missing_reader_package_says_what_to_install(nib, tmp_path, monkeypatch):
    _two_nifti_classes(nib, tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "nibabel", None)  # import nibabel now fails
    with pytest.raises(DataError, match=r"needs the nibabel package.*pip install 'medprivbench\[volumes\]'"):
        load_imagefolder(root=tmp_path, image_size=8)


# --- the two pure steps ------------------------------------------------------------------------------


def test_shrinking_averages_boxes_and_constant_volume_maps_to_zeros():
    volume = np.random.default_rng(0).random((24, 16, 8)).astype(np.float32)
    block_means = volume.reshape(8, 3, 8, 2, 8, 1).mean(axis=(1, 3, 5))  # every voxel counts, none skipped
    np.testing.assert_allclose(imagefolder.resample_cube(volume, 8), block_means, atol=1e-6)
    np.testing.assert_array_equal(imagefolder.resample_cube(volume[:8, :8], 8), volume[:8, :8])
    assert not imagefolder.to_unit_range(np.full((4, 4, 4), 7.0), None).any()
