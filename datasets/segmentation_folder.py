"""A user's own segmentation data: images (or volumes) paired with integer label masks.

``dataset=segfolder``, ``info.task == "segmentation"``. Layouts, in one split folder F (``root``, or
``root/train`` and ``root/test`` for a fixed split, else a random split by ``test_fraction`` from
the seed):

- ``F/images/`` and ``F/masks/``, paired by name: 2D images (PNG, JPEG, BMP, TIFF) with masks
  ``<same stem>.png`` (or lossless ``.tif``/``.bmp``), or NIfTI volumes with NIfTI masks of the same
  name (``a.nii.gz`` ↔ ``a.nii.gz``; ``.nii`` and ``.nii.gz`` pair with each other).
- NIfTI pairs side by side in F: ``<case>_img.nii.gz`` with ``<case>_seg.nii.gz`` (or ``.nii``).

Images are read exactly as :mod:`.imagefolder` reads them (:mod:`.image_files`: grayscale or RGB,
bilinear resize to ``size × size``; :mod:`.volume_files`: MONAI's NibabelReader, the volume axes
(D, H, W) = (k, j, i), resampling to ``size³`` and the [0, 1] mapping by min-max or ``window``).

Masks are integer labels, one per pixel: 8- or 16-bit single-channel (or palette) images, NIfTI of
integer type, or NIfTI floats that are all integral. Label k is class ``k``; K = the largest label
over all masks + 1 (at least 2), class 0 the background, named ``background``, ``class_1``, …
Masks are resized with **nearest-neighbour** sampling only (output index i reads input index
⌊(i + ½)·n_in / n_out⌋ along each axis), so a label is never interpolated into another; a mask must
have the same spatial shape as its image before resizing.

Each refusal is one :class:`DataError` line naming the file and saying what would be valid.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import DataError, DatasetInfo, ImageDataset, to_float_images, to_masks
from .folder_scan import IMAGE_SUFFIXES, NIFTI_SUFFIXES, FolderItem, shown
from .folder_scan import _folder_inside, _readable_file  # the image folder's link/FIFO safety rules, shared
from .image_files import MAX_PIXELS, read_images
from .volume_files import MAX_VOXELS, VolumeReader, checked_window, resample_cube, to_unit_range

MASK_SUFFIXES = {".png", ".tif", ".tiff", ".bmp"}  # lossless: a JPEG mask would hold invented labels
LAYOUTS = ("root/images/*.png with root/masks/*.png paired by name, root/images/*.nii.gz with root/masks/*.nii.gz, "
           "or <case>_img.nii.gz with <case>_seg.nii.gz side by side (optionally under root/train and root/test)")
_INTEGER_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")


@dataclass(frozen=True)
class Pair:
    """One sample: an image file and its mask file; ``volume`` for NIfTI."""

    image: Path
    mask: Path
    volume: bool


def load_segmentation_folder(
    *, root: str | Path, name: str = "segfolder", channels: int = 1, image_size: int = 32, test_fraction: float = 0.2,
    seed: int = 0, real_patient_data: bool = True, window=None, licence: str = "user data",
) -> ImageDataset:
    """The segmentation dataset of the folder ``root`` (layouts and mask rules: the module docstring)."""
    root = Path(root)
    _check_options(root, channels, image_size)
    window = checked_window(window)
    presplit = (root / "train").is_dir() and (root / "test").is_dir()
    folders = {"train": root / "train", "test": root / "test"} if presplit else {"all": root}
    pairs = {split: find_pairs(folder, root) for split, folder in folders.items()}
    volumes = _one_kind(pairs, root, channels, window)
    read = {split: _read_pairs(items, volumes, channels, image_size, window, root) for split, items in pairs.items()}
    if presplit:
        (train_x, train_y), (test_x, test_y) = read["train"], read["test"]
    else:
        train_x, train_y, test_x, test_y = _random_split(*read["all"], test_fraction, seed, root)
    n_classes = max(2, 1 + max(int(y.max(initial=0)) for y in (train_y, test_y)))
    spatial_dims = 3 if volumes else 2
    spatial = (image_size,) * spatial_dims
    info = DatasetInfo(
        name=name, task="segmentation", n_channels=channels, image_size=spatial,
        class_names=("background",) + tuple(f"class_{k}" for k in range(1, n_classes)),
        licence=licence, citation=f"user segmentation folder {root}", source=str(root),
        real_patient_data=real_patient_data,
    )
    return ImageDataset(
        train_x=to_float_images(train_x, what=f"{root} train", spatial_dims=spatial_dims),
        train_y=to_masks(train_y, len(train_x), spatial, n_classes, what=f"{root} train masks"),
        test_x=to_float_images(test_x, what=f"{root} test", spatial_dims=spatial_dims),
        test_y=to_masks(test_y, len(test_x), spatial, n_classes, what=f"{root} test masks"),
        info=info,
    )


def _check_options(root: Path, channels: int, image_size: int) -> None:
    if not root.is_dir():
        raise DataError(f"segmentation folder {shown(root)} does not exist; expected {LAYOUTS}")
    if channels not in (1, 3):
        raise DataError(f"dataset.channels={channels} is not valid; use 1 (grayscale) or 3 (RGB)")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise DataError(f"dataset.size={image_size} is not valid; use a positive number of pixels per side")


def _nifti_key(path: Path) -> str | None:
    """The name without its NIfTI suffix, or None when ``path`` is not NIfTI."""
    lower = path.name.lower()
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _files(folder: Path, root: Path) -> list[Path]:
    """The regular files of ``folder`` in name order (hidden ones skipped), each checked safe to read."""
    _folder_inside(folder, root)
    return [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and _readable_file(p, root)]


def _keyed(paths: list[Path], mask: bool) -> dict[str, Path]:
    """Each image (or mask) file by its pairing key: the stem, or the name without .nii/.nii.gz."""
    keyed: dict[str, Path] = {}
    for path in paths:
        key = _nifti_key(path)
        if key is None:
            suffix = path.suffix.lower()
            if mask and suffix in {".jpg", ".jpeg"}:
                raise DataError(f"{shown(path)}: a JPEG mask; JPEG compression changes label values, save masks as PNG")
            if suffix not in (MASK_SUFFIXES if mask else IMAGE_SUFFIXES):
                continue
            key = path.stem
        if key in keyed:
            raise DataError(f"{shown(path)} and {shown(keyed[key])} have the same name {key!r}; each "
                            f"{'mask' if mask else 'image'} needs a name of its own to be paired")
        keyed[key] = path
    return keyed


def find_pairs(folder: Path, root: Path) -> list[Pair]:
    """The (image, mask) pairs of one split folder, in name order; every image needs its mask and
    every mask its image."""
    if (folder / "images").is_dir() or (folder / "masks").is_dir():
        for sub in ("images", "masks"):
            if not (folder / sub).is_dir():
                raise DataError(f"{shown(folder)} has no {sub}/ folder; expected {shown(folder)}/images/ and "
                                f"{shown(folder)}/masks/, image and mask paired by name")
        images = _keyed(_files(folder / "images", root), mask=False)
        masks = _keyed(_files(folder / "masks", root), mask=True)
    else:
        files = [p for p in _files(folder, root) if _nifti_key(p) is not None]
        for path in files:
            if not _nifti_key(path).endswith(("_img", "_seg")):
                raise DataError(f"{shown(path)}: a NIfTI file named neither <case>_img nor <case>_seg; name volumes "
                                f"<case>_img.nii.gz and their masks <case>_seg.nii.gz, or use {shown(folder)}/images/ "
                                f"and {shown(folder)}/masks/")
        images = {_nifti_key(p)[:-4]: p for p in files if _nifti_key(p).endswith("_img")}
        masks = {_nifti_key(p)[:-4]: p for p in files if _nifti_key(p).endswith("_seg")}
    for key, path in images.items():
        if key not in masks:
            raise DataError(f"{shown(path)}: an image without a mask; add its mask "
                            f"({'the same name in masks/' if path.parent.name == 'images' else key + '_seg.nii.gz'})")
    for key, path in masks.items():
        if key not in images:
            raise DataError(f"{shown(path)}: a mask without an image; add its image or remove the mask")
    pairs = [Pair(images[k], masks[k], _nifti_key(images[k]) is not None) for k in sorted(images)]
    for pair in pairs:
        if pair.volume != (_nifti_key(pair.mask) is not None):
            raise DataError(f"{shown(pair.mask)}: the mask of {shown(pair.image)} must be of the same kind "
                            "(a NIfTI mask for a NIfTI volume, a PNG mask for a 2D image)")
    if not pairs:
        raise DataError(f"{shown(folder)} holds no image/mask pairs; expected {LAYOUTS}")
    return pairs


def _one_kind(pairs: dict[str, list[Pair]], root: Path, channels: int, window) -> bool:
    """True when the folder holds volumes, False for 2D images; the options must suit that kind."""
    kinds = {pair.volume: pair.image for items in pairs.values() for pair in items}
    if len(kinds) > 1:
        raise DataError(f"{shown(root)} mixes 2D images (e.g. {shown(kinds[False])}) and NIfTI volumes (e.g. "
                        f"{shown(kinds[True])}); a dataset holds one kind, put them in separate folders")
    volumes = next(iter(kinds))
    if volumes and channels != 1:
        raise DataError(f"dataset.channels={channels} is not valid for {shown(root)}, which holds volumes; use channels=1")
    if window is not None and not volumes:
        raise DataError(f"dataset.window={list(window)} applies to volumes (NIfTI) only and {shown(root)} holds 2D "
                        "images; remove the setting")
    return volumes


def nearest_resize(mask: np.ndarray, size: int) -> np.ndarray:
    """``mask`` (any spatial dimensions) resampled to ``size`` along every axis by nearest
    neighbour: output index i reads input index ⌊(i + ½)·n / size⌋. Labels are never mixed."""
    index = [np.minimum(((np.arange(size) + 0.5) * n / size).astype(np.int64), n - 1) for n in mask.shape]
    return mask[np.ix_(*index)]


def _integral_labels(values: np.ndarray, path: Path) -> np.ndarray:
    """``values`` as int64 labels: integer, or float with every value integral; none negative."""
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all() or not np.array_equal(values, np.round(values)):
            bad = values[~finite] if not finite.all() else values[values != np.round(values)]
            raise DataError(f"{shown(path)}: a mask with non-integer values (e.g. {float(bad.flat[0]):g}); masks must "
                            "hold integer labels 0, 1, …, K−1")
    elif not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
        raise DataError(f"{shown(path)}: mask data of type {values.dtype}; masks must hold integer labels")
    labels = values.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(f"{shown(path)}: a mask with negative label {labels.min()}; labels must be 0 (background), "
                        "1, …, K−1")
    return labels


def _read_mask_2d(path: Path) -> np.ndarray:
    """A single-channel integer mask image as (H, W) int64, at its own size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DataError(f"{shown(path)}: declares {width} × {height} pixels; masks must have at most "
                                f"{MAX_PIXELS:,} pixels")
            bands = len(im.getbands())
            if bands > 1:
                raise DataError(f"{shown(path)}: a mask with {bands} channels ({im.mode}); masks must be single-channel "
                                "integer images (8-bit grayscale PNG), one label per pixel")
            if im.mode not in _INTEGER_MODES + ("F",):
                raise DataError(f"{shown(path)}: a mask in image mode {im.mode}; save it as an 8-bit grayscale PNG")
            values = np.asarray(im)
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"{shown(path)}: cannot read this mask ({type(exc).__name__}); fix or remove the file") from exc
    return _integral_labels(values, path)


def _image_size_2d(path: Path) -> tuple[int, int]:
    """(H, W) of an image from its header (nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"{shown(path)}: cannot read this image ({type(exc).__name__}); fix or remove the file") from exc


def _read_mask_3d(path: Path, nib) -> np.ndarray:
    """A NIfTI mask as (D, H, W) int64 labels, the axes as :mod:`.volume_files` orders a volume's."""
    try:
        image = nib.load(path)
        shape = tuple(int(n) for n in image.shape)
    except Exception as exc:  # nibabel raises many types on damaged files
        raise DataError(f"{shown(path)}: cannot read this mask ({type(exc).__name__}); fix or remove the file") from exc
    if len(shape) > 3 and math.prod(shape[3:]) > 1:
        raise DataError(f"{shown(path)}: a mask of {' × '.join(map(str, shape))} voxels has {math.prod(shape[3:])} "
                        "channels; masks must hold one integer label per voxel (a 3D volume)")
    if len(shape) < 3 or min(shape[:3]) < 1 or math.prod(shape) > MAX_VOXELS:
        raise DataError(f"{shown(path)}: a mask of {' × '.join(map(str, shape))} voxels; masks must be 3D volumes of "
                        f"at most {MAX_VOXELS:,} voxels")
    try:
        values = np.asanyarray(image.dataobj).reshape(shape[:3])
    except Exception as exc:
        raise DataError(f"{shown(path)}: cannot read this mask ({type(exc).__name__}); fix or remove the file") from exc
    return _integral_labels(np.asarray(values), path).transpose(2, 1, 0)  # (i, j, k) → (D, H, W)


def _shape_mismatch(pair: Pair, image_shape: tuple, mask_shape: tuple) -> DataError:
    return DataError(f"{shown(pair.mask)}: a mask of {' × '.join(map(str, mask_shape))} for an image of "
                     f"{' × '.join(map(str, image_shape))} ({shown(pair.image)}); a mask must have its image's shape")


def _read_pairs(pairs: list[Pair], volumes: bool, channels: int, size: int, window, root: Path,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 2D, or float32 volumes in [0, 1]) and int64 masks, both resized to ``size``."""
    masks = []
    if volumes:
        reader = VolumeReader({"nifti"})
        images = []
        for pair in pairs:
            volume = reader(FolderItem(pair.image, "nifti", 0), root)
            mask = _read_mask_3d(pair.mask, reader.nib)
            if mask.shape != volume.shape:
                raise _shape_mismatch(pair, volume.shape, mask.shape)
            images.append(to_unit_range(resample_cube(volume, size), window))
            masks.append(nearest_resize(mask, size))
        return np.stack(images), np.stack(masks)
    for pair in pairs:
        mask = _read_mask_2d(pair.mask)
        image_shape = _image_size_2d(pair.image)
        if mask.shape != image_shape:
            raise _shape_mismatch(pair, image_shape, mask.shape)
        masks.append(nearest_resize(mask, size))
    images, _ = read_images([FolderItem(pair.image, "image", 0) for pair in pairs], channels, size)
    return images, np.stack(masks)


def _random_split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, root: Path) -> tuple:
    """(train_x, train_y, test_x, test_y): round(test_fraction · n) samples drawn for test from ``seed``."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"dataset.test_fraction={test_fraction} is not valid; use a value in (0, 1)")
    n_test = int(round(test_fraction * len(x)))
    if n_test < 1 or n_test >= len(x):
        raise DataError(f"{shown(root)}: {len(x)} image/mask pair(s) give {n_test} test and {len(x) - n_test} training "
                        f"samples at test_fraction={test_fraction}; add pairs or change dataset.test_fraction")
    test = np.zeros(len(x), dtype=bool)
    test[np.random.default_rng(seed).choice(len(x), size=n_test, replace=False)] = True
    return x[~test], y[~test], x[test], y[test]
