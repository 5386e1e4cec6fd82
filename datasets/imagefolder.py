"""A user's own images or volumes, one folder per class.

Layout either ``root/<class>/…`` (split into train/test here, stratified, from the seed) or
``root/train/<class>/…`` and ``root/test/<class>/…`` (splits as given). A dataset holds one kind:

- 2D images (PNG, JPEG, BMP, TIFF): converted to grayscale (``channels=1``) or RGB
  (``channels=3``) and resized (bilinear) to ``size × size``.
- 3D volumes, single channel: NIfTI files (``<class>/*.nii``, ``<class>/*.nii.gz``) and DICOM
  series, one sub-folder of ``*.dcm`` slices per volume (``<class>/<series>/*.dcm``). They are read
  through MONAI's ``LoadImage`` with its NibabelReader / PydicomReader (``pip install
  'medprivbench[volumes]'``), resampled to a ``size³`` cube and mapped to [0, 1]: by default each
  volume's own minimum → 0 and maximum → 1 (a constant volume becomes all zeros); with
  ``window=[lo, hi]`` intensities are clipped to that fixed window and scaled, ``lo`` → 0 and
  ``hi`` → 1 (CT in Hounsfield units: ``[-1000, 1000]``), so the same tissue has the same value in
  every volume. Both mappings act on the resampled volume.

Sizes are checked from headers before any pixel data is decoded (a few compressed bytes can
declare billions of pixels): at most ``MAX_PIXELS`` per image and ``MAX_VOXELS`` per volume.

This module is the loader: its options, the layout, the split and the dataset. Finding and checking
the samples is :mod:`.folder_scan`; reading them :mod:`.image_files` (2D) and :mod:`.volume_files`
(3D: the volume axes, the slice order of a DICOM series and the resampling are described there).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import DataError, DatasetInfo, ImageDataset, to_float_images
from .folder_scan import VALID_CONTENT, FolderItem, check_one_kind, class_folders, scan_split, shown
from .image_files import read_images
from .volume_files import VolumeReader, checked_window, read_volumes

# Re-exported: the loader's module is where the folder format's names and limits are looked up.
from .folder_scan import DICOM_SUFFIX, IMAGE_SUFFIXES, KIND_NAMES, NIFTI_SUFFIXES  # noqa: F401
from .image_files import MAX_PIXELS, WIDE_MODES  # noqa: F401
from .volume_files import INSTALL_HINT, MAX_VOXELS, resample_cube, to_unit_range  # noqa: F401


def load_imagefolder(
    *, root: str | Path, name: str = "imagefolder", channels: int = 1, image_size: int = 28,
    test_fraction: float = 0.2, seed: int = 0, real_patient_data: bool = True, licence: str = "user data",
    window: Sequence[float] | None = None,
) -> ImageDataset:
    """The dataset of the image folder ``root`` (layout and kinds: the module docstring).

    Any problem is one :class:`DataError` line naming the path or the setting; the folder's class
    names and the kind of its files are checked before any pixel is decoded.
    """
    root = Path(root)
    _check_options(root, channels, image_size)
    window = checked_window(window)
    presplit = (root / "train").is_dir() and (root / "test").is_dir()
    class_names = _class_names(root / "train" if presplit else root)
    splits = {"train": root / "train", "test": root / "test"} if presplit else {"all": root}
    found = {split: scan_split(folder, class_names, root) for split, folder in splits.items()}
    volumes = _holds_volumes(found, root, channels, window)
    read = _read_splits(found, volumes, root, channels, image_size, window)
    if presplit:
        (train_x, train_y), (test_x, test_y) = _given_splits(read, root)
    else:
        train_x, train_y, test_x, test_y = _stratified_split(*read["all"], class_names, test_fraction, seed, root)
    spatial_dims = 3 if volumes else 2
    info = DatasetInfo(
        name=name,
        task="binary" if len(class_names) == 2 else "multiclass",
        n_channels=channels,
        image_size=(image_size,) * spatial_dims,
        class_names=tuple(class_names),
        licence=licence,
        citation=f"user image folder {root}",
        source=str(root),
        real_patient_data=real_patient_data,
    )
    return ImageDataset(
        train_x=to_float_images(train_x, what=f"{root} train", spatial_dims=spatial_dims),
        train_y=train_y,
        test_x=to_float_images(test_x, what=f"{root} test", spatial_dims=spatial_dims),
        test_y=test_y,
        info=info,
    )


def _check_options(root: Path, channels: int, image_size: int) -> None:
    """The folder exists; ``channels`` is 1 or 3; ``image_size`` is a positive integer."""
    if not root.is_dir():
        raise DataError(f"image folder {shown(root)} does not exist; expected {shown(root)}/<class>/ holding {VALID_CONTENT}")
    if channels not in (1, 3):
        raise DataError(f"dataset.channels={channels} is not valid; use 1 (grayscale) or 3 (RGB)")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise DataError(f"dataset.size={image_size} is not valid; use a positive number of pixels per side")


def _class_names(class_root: Path) -> list[str]:
    """The class folders' names in name order: valid UTF-8 (they appear in the report), at least two."""
    class_names = [p.name for p in class_folders(class_root)]
    for name_ in class_names:
        try:
            name_.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{shown(class_root / name_)}: the class folder's name is not valid UTF-8; rename it "
                            "(class names appear in the report)") from None
    if len(class_names) < 2:
        raise DataError(
            f"{class_root} holds {len(class_names)} class folder(s) ({', '.join(class_names) or 'none'}); "
            "a classifier needs at least two, one sub-folder of images or volumes per class"
        )
    return class_names


def _holds_volumes(found: dict[str, list[FolderItem]], root: Path, channels: int,
                   window: tuple[float, float] | None) -> bool:
    """True when the folder holds volumes, False for 2D images; the options must suit that kind."""
    volumes = check_one_kind([item for items in found.values() for item in items], root)
    if volumes and channels != 1:
        raise DataError(f"dataset.channels={channels} is not valid for {shown(root)}, which holds volumes; "
                        "volumes are single-channel, use channels=1")
    if window is not None and not volumes and any(found.values()):
        raise DataError(f"dataset.window={list(window)} applies to volumes (NIfTI, DICOM) only and {shown(root)} holds "
                        "2D images; remove the setting")
    return volumes


def _read_splits(found: dict[str, list[FolderItem]], volumes: bool, root: Path, channels: int, image_size: int,
                 window: tuple[float, float] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each split's (images or volumes, labels), read by the reader of the folder's kind."""
    if volumes:
        reader = VolumeReader({item.kind for items in found.values() for item in items})
        return {split: read_volumes(items, image_size, window, root, reader) for split, items in found.items()}
    return {split: read_images(items, channels, image_size) for split, items in found.items()}


def _given_splits(read: dict[str, tuple[np.ndarray, np.ndarray]], root: Path) -> tuple[tuple, tuple]:
    """The ``train/`` and ``test/`` splits as the folder gives them; neither may be empty."""
    (train_x, train_y), (test_x, test_y) = read["train"], read["test"]
    for split, labels in (("train", train_y), ("test", test_y)):
        if len(labels) == 0:
            raise DataError(f"{shown(root / split)} holds no readable images or volumes; put {VALID_CONTENT} "
                            f"in {shown(root / split)}/<class>/")
    return (train_x, train_y), (test_x, test_y)


def _stratified_split(x: np.ndarray, y: np.ndarray, class_names: list[str], test_fraction: float, seed: int,
                      root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y): round(test_fraction · n) of each class's n samples drawn for
    the test split from ``seed``; every class must hold a sample."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"dataset.test_fraction={test_fraction} is not valid; use a value in (0, 1)")
    empty = [c for i, c in enumerate(class_names) if not (y == i).any()]
    if empty:
        raise DataError(f"{root}: class folder(s) {', '.join(empty)} hold no readable images or volumes; "
                        f"each needs {VALID_CONTENT}")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(y), dtype=bool)
    for label in range(len(class_names)):
        idx = np.flatnonzero(y == label)
        n_test = int(round(test_fraction * len(idx)))
        test_mask[rng.choice(idx, size=n_test, replace=False)] = True
    return x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
