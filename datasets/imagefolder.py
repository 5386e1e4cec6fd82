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

Volume axes. A NIfTI volume's stored axes (i, j, k) and a DICOM series' (column, row, slice)
become (D, H, W) = (k, j, i): D runs across slices and each D-slice is one stored slice, rows × columns
as a viewer shows a DICOM image. DICOM slices are ordered by ImagePositionPatient projected on the
slice normal (from ImageOrientationPatient), by InstanceNumber only where positions are missing,
never by file name. Volumes are not reoriented and voxel spacing is not used: each axis is
stretched to ``size``, as 2D images of any aspect ratio are stretched to a square.

Resampling is trilinear where an axis grows; where it shrinks, voxels are first averaged over
boxes (torch's ``area`` mode). Trilinear interpolation alone would read only the 2 voxels nearest
each output point, so a 512-slice axis reduced to 28 would skip most slices and alias; the average
uses all of them, as PIL's bilinear resize does for the 2D images.

Sizes are checked from headers before any pixel data is decoded (a few compressed bytes can
declare billions of pixels): at most ``MAX_PIXELS`` per image and ``MAX_VOXELS`` per volume.
"""

from __future__ import annotations

import importlib
import math
import numbers
import stat
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import DataError, DatasetInfo, ImageDataset, to_float_images

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIX = ".dcm"
# Largest image read, checked from the header before decoding (a decompression bomb declares
# billions of pixels in a few bytes): 8192 × 8192, far beyond any medical 2D image here.
MAX_PIXELS = 8192 * 8192
# Largest volume read, from the NIfTI header or DICOM rows × columns × slices, before decoding:
# 1024³ voxels (4 GiB as float32), beyond any CT or MR volume in routine use.
MAX_VOXELS = 1024**3

# What each kind of item is called in messages.
KIND_NAMES = {"image": "2D images", "nifti": "NIfTI volumes", "dicom": "DICOM series"}
VALID_CONTENT = ("image files (*.png, *.jpg, *.bmp, *.tif), or volumes: *.nii / *.nii.gz files or "
                 "one sub-folder of *.dcm slices per DICOM series")
INSTALL_HINT = "pip install 'medprivbench[volumes]'"


def shown(path: Path | str) -> str:
    """A path as text that prints anywhere: bytes that are not UTF-8 appear as \\x escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _readable_file(path: Path, root: Path) -> bool:
    """True for a regular file inside ``root`` (links allowed when they stay inside); raises
    DataError for FIFOs, devices, sockets, broken links and links that leave the folder; False
    for folders."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root.resolve()):
            raise DataError(f"{shown(path)}: a link to {shown(target)}, outside the image folder {shown(root)}; "
                            "copy the image into the folder instead")
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise DataError(f"{shown(path)}: cannot be opened ({type(exc).__name__}, a broken link?); fix or remove it") from None
    if stat.S_ISDIR(mode):
        return False
    if not stat.S_ISREG(mode):
        raise DataError(f"{shown(path)}: not a regular file (a FIFO, device or socket); image folders may hold image files only")
    return True


def _folder_inside(folder: Path, root: Path) -> None:
    """A split or class folder must resolve inside ``root``: a linked folder may not bring in files
    from elsewhere (each file is checked against the root too, but only when it is a link itself)."""
    target = folder.resolve()
    if not target.is_relative_to(root.resolve()):
        raise DataError(f"{shown(folder)}: a link to {shown(target)}, outside the image folder {shown(root)}; "
                        "copy the folder into the image folder instead")


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class _Item:
    """One sample found in a class folder: an image or NIfTI file, or a DICOM series folder."""

    path: Path
    kind: str  # a key of KIND_NAMES
    label: int


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _dicom_files(folder: Path, root: Path) -> list[Path]:
    """The ``*.dcm`` slices of a series folder, each checked to be a regular file inside ``root``."""
    return [p for p in sorted(folder.iterdir()) if p.suffix.lower() == DICOM_SUFFIX and _readable_file(p, root)]


def _scan_split(folder: Path, class_names: list[str], root: Path) -> list[_Item]:
    """Every image, NIfTI file and DICOM series folder of one split, in name order per class.
    Files with other suffixes and folders without ``*.dcm`` files are ignored."""
    items = []
    _folder_inside(folder, root)
    for label, cls in enumerate(class_names):
        cls_dir = folder / cls
        if not cls_dir.is_dir():
            continue
        _folder_inside(cls_dir, root)
        for path in sorted(cls_dir.iterdir()):
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                if _readable_file(path, root):
                    items.append(_Item(path, "image", label))
            elif _is_nifti(path):
                if _readable_file(path, root):
                    items.append(_Item(path, "nifti", label))
            elif suffix == DICOM_SUFFIX:
                if _readable_file(path, root):
                    raise DataError(f"{shown(path)}: a DICOM file directly in a class folder; put the slices of each "
                                    f"series in a sub-folder of their own: {shown(cls_dir)}/<series>/*.dcm")
            elif path.is_dir() and not path.name.startswith(".") and any(
                p.suffix.lower() == DICOM_SUFFIX for p in path.iterdir()
            ):
                _readable_file(path, root)  # refuses a link to a folder outside the root
                items.append(_Item(path, "dicom", label))
    return items


def _check_one_kind(items: list[_Item], root: Path) -> bool:
    """True when ``items`` are volumes, False for 2D images; DataError when they mix both."""
    first_of = {}
    for item in items:
        first_of.setdefault(item.kind, item.path)
    image = first_of.get("image")
    volume = first_of.get("nifti", first_of.get("dicom"))
    if image is not None and volume is not None:
        volume_kind = "nifti" if "nifti" in first_of else "dicom"
        raise DataError(f"{shown(root)} mixes {KIND_NAMES['image']} (e.g. {shown(image)}) and {KIND_NAMES[volume_kind]} "
                        f"(e.g. {shown(volume)}); a dataset holds one kind, put them in separate folders")
    return volume is not None


# Integer modes of more than 8 bits a pixel (16-bit PNG and TIFF, as X-rays often are; PIL opens
# 16-bit PNGs as "I"): scaled from their full 16-bit range, never clipped to 8 bits.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _eight_bit(im, mode: str, path: Path):
    """``im`` in ``mode`` (L or RGB) at 8 bits. 16-bit images are scaled by 255/65535: PIL's own
    conversion clips every value above 255 to white (a 12-bit X-ray turned 94 % white)."""
    from PIL import Image

    if im.mode == "F":
        raise DataError(f"{shown(path)}: a floating-point image; save it as an 8- or 16-bit integer image")
    if im.mode not in WIDE_MODES:
        return im.convert(mode)
    wide = np.asarray(im, dtype=np.int64)
    if wide.min() < 0 or wide.max() > 65535:
        raise DataError(f"{shown(path)}: pixel values {wide.min()} to {wide.max()} do not fit 16 bits; save it as an "
                        "8- or 16-bit image")
    eight = Image.fromarray(np.rint(wide * (255.0 / 65535.0)).astype(np.uint8), mode="L")
    return eight.convert(mode)


def _read_images(items: list[_Item], channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    images = []
    for item in items:
        path = item.path
        try:
            with Image.open(path) as im:
                width, height = im.size  # from the header: nothing decoded yet
                if width * height > MAX_PIXELS or width < 1 or height < 1:
                    raise DataError(f"{shown(path)}: declares {width} × {height} pixels; images must have between 1 and "
                                    f"{MAX_PIXELS:,} pixels (a larger one may be a decompression bomb)")
                im = _eight_bit(im, mode, path)
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(im, dtype=np.uint8))
        except DataError:
            raise
        except Image.DecompressionBombError as exc:
            raise DataError(f"{shown(path)}: declares more pixels than PIL will decode ({exc}); images must have at "
                            f"most {MAX_PIXELS:,} pixels (a larger one may be a decompression bomb)") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{shown(path)}: cannot read this image ({type(exc).__name__}); fix or remove the file") from exc
    labels = np.asarray([item.label for item in items], dtype=np.int64)
    if not images:
        return np.zeros((0, size, size), np.uint8), labels
    return np.stack(images), labels


# --- volumes --------------------------------------------------------------------------------------

# What third-party readers raise on a damaged or unsupported file (pydicom's and nibabel's own
# errors are added where those packages are imported).
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError,
    NotImplementedError, zlib.error,
)


def _unreadable(path: Path, exc: BaseException) -> DataError:
    detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {shown(detail)}" if detail else type(exc).__name__
    return DataError(f"{shown(path)}: cannot read this volume ({reason}); fix or remove the file")


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"reading {what} needs the {module} package, which is not installed: {INSTALL_HINT}") from None


def _too_many_voxels(path: Path, shape: Sequence[int]) -> DataError:
    return DataError(f"{shown(path)}: declares {' × '.join(map(str, shape))} voxels; volumes must have at most "
                     f"{MAX_VOXELS:,} voxels (a larger one may be a decompression bomb)")


def checked_window(window) -> tuple[float, float] | None:
    """``dataset.window`` as (lo, hi), two finite numbers with lo < hi, or None."""
    if window is None:
        return None
    values = list(window) if isinstance(window, Sequence) and not isinstance(window, (str, bytes)) else None
    valid = (values is not None and len(values) == 2
             and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
             and all(math.isfinite(v) for v in values) and values[0] < values[1])
    if not valid:
        raise DataError(f"dataset.window={window if values is None else values} is not valid; use [lo, hi], two finite "
                        "intensities with lo < hi (e.g. [-1000, 1000] for CT in Hounsfield units), or null for "
                        "per-volume min-max")
    return float(values[0]), float(values[1])


def resample_cube(volume: np.ndarray, size: int) -> np.ndarray:
    """A (D, H, W) volume resampled to (size, size, size): box average along axes that shrink,
    then trilinear (``align_corners=False``) along axes that grow; unchanged where already that size."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    shrunk = tuple(min(n, size) for n in volume.shape)
    if shrunk != volume.shape:
        x = F.interpolate(x, size=shrunk, mode="area")
    if shrunk != (size, size, size):
        x = F.interpolate(x, size=(size, size, size), mode="trilinear", align_corners=False)
    return x[0, 0].numpy()


def to_unit_range(volume: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Intensities mapped to [0, 1] as float32: min → 0 and max → 1 of this volume (all zeros when
    it is constant), or with ``window=(lo, hi)`` clipped to [lo, hi] and then lo → 0, hi → 1."""
    v = volume.astype(np.float64)
    if window is None:
        lo, hi = float(v.min()), float(v.max())
        if hi == lo:
            return np.zeros(volume.shape, np.float32)
    else:
        lo, hi = window
        v = np.clip(v, lo, hi)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _nifti_shape(path: Path, nib) -> tuple[int, int, int]:
    """The three spatial sizes from the header, checked; nothing decoded."""
    try:
        shape = tuple(int(n) for n in nib.load(path).shape)
    except (nib.filebasedimages.ImageFileError, *_READ_ERRORS) as exc:
        raise _unreadable(path, exc) from exc
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise DataError(f"{shown(path)}: a {len(shape)}D image of {' × '.join(map(str, shape))} voxels; "
                        "each NIfTI file must hold one 3D volume")
    if math.prod(shape) > MAX_VOXELS:
        raise _too_many_voxels(path, shape)
    return shape[:3]


def _read_nifti(path: Path, loader, reader, nib) -> np.ndarray:
    shape = _nifti_shape(path, nib)
    try:
        data = np.asarray(loader(str(path), reader=reader), dtype=np.float32)
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from exc
    if math.prod(data.shape) != math.prod(shape):
        raise _unreadable(path, ValueError(f"header declares {shape}, data holds {data.shape}"))
    return data.reshape(shape).transpose(2, 1, 0)  # (i, j, k) → (D, H, W) = (k, j, i)


def _numbers(value, n: int) -> list[float] | None:
    """``n`` finite numbers from a DICOM value (a multi-value or a single one), else None."""
    try:
        out = [float(v) for v in (value if n > 1 else [value])]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def _slice_order(headers: list, files: list[Path], folder: Path) -> list[int]:
    """Indices of ``files`` along the slice normal (ImagePositionPatient), else by InstanceNumber."""
    positions = [_numbers(h.get("ImagePositionPatient"), 3) for h in headers]
    if all(p is not None for p in positions):
        orientation = _numbers(headers[0].get("ImageOrientationPatient"), 6)
        normal = np.cross(orientation[:3], orientation[3:]) if orientation else np.zeros(3)
        if np.linalg.norm(normal) < 1e-6:  # no usable orientation: axial slices, z grows
            normal = np.array([0.0, 0.0, 1.0])
        keys = [float(np.dot(p, normal)) for p in positions]
        what = "position (ImagePositionPatient)"
    else:
        numbers_ = [_numbers(h.get("InstanceNumber"), 1) for h in headers]
        if any(n is None for n in numbers_):
            no_position = files[positions.index(None)]
            no_number = files[numbers_.index(None)]
            raise DataError(f"the slices of {shown(folder)} cannot be ordered: {shown(no_position)} has no "
                            f"ImagePositionPatient and {shown(no_number)} no InstanceNumber; fix or remove the files")
        keys = [n[0] for n in numbers_]
        what = "InstanceNumber"
    order = sorted(range(len(files)), key=lambda i: keys[i])
    for a, b in zip(order, order[1:]):
        if math.isclose(keys[a], keys[b], rel_tol=0.0, abs_tol=1e-4):
            raise DataError(f"{shown(files[a])} and {shown(files[b])} have the same slice {what}; a series folder must "
                            "hold one series, one file per slice")
    return order


def _read_dicom_series(folder: Path, root: Path, loader, reader, pydicom) -> np.ndarray:
    files = _dicom_files(folder, root)
    if len(files) < 2:
        raise DataError(f"{shown(folder)}: holds {len(files)} DICOM slice(s); a volume needs at least 2 "
                        "(2D DICOM images are not supported)")
    headers, sizes = [], []
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            rows, cols = int(header.Rows), int(header.Columns)
            frames, samples = int(header.get("NumberOfFrames") or 1), int(header.get("SamplesPerPixel") or 1)
        except (pydicom.errors.InvalidDicomError, *_READ_ERRORS) as exc:
            raise _unreadable(path, exc) from exc
        if frames > 1 or samples > 1:
            raise DataError(f"{shown(path)}: a multi-frame or colour DICOM file; series folders must hold "
                            "single-frame grayscale slices, one file per slice")
        headers.append(header)
        sizes.append((rows, cols))
    rows, cols = sizes[0]
    for path, size in zip(files, sizes):
        if size != (rows, cols):
            raise DataError(f"{shown(path)}: {size[0]} × {size[1]} pixels, but {shown(files[0])} has {rows} × {cols}; "
                            "all slices of a series must have the same Rows and Columns")
    series = {str(h.SeriesInstanceUID) for h in headers if "SeriesInstanceUID" in h}
    if len(series) > 1:
        raise DataError(f"{shown(folder)}: holds slices of {len(series)} series (SeriesInstanceUID differs); "
                        "put each series in a sub-folder of its own")
    if rows * cols * len(files) > MAX_VOXELS:
        raise _too_many_voxels(folder, (len(files), rows, cols))
    slices = []
    for i in _slice_order(headers, files, folder):
        try:
            # MONAI applies RescaleSlope/Intercept (e.g. stored values → Hounsfield units).
            pixels = np.asarray(loader(str(files[i]), reader=reader), dtype=np.float32)
        except (pydicom.errors.InvalidDicomError, *_READ_ERRORS) as exc:
            raise _unreadable(files[i], exc) from exc
        if pixels.shape != (rows, cols):
            raise _unreadable(files[i], ValueError(f"pixel data of shape {pixels.shape}, header says {rows} × {cols}"))
        slices.append(pixels)
    return np.stack(slices)  # (slices, rows, columns) = (D, H, W)


class _VolumeReader:
    """MONAI's LoadImage with the reader for each kind, created once per dataset (creating a
    LoadImage instantiates every reader MONAI knows)."""

    def __init__(self, kinds: set[str]):
        self.nib = _require("nibabel", "NIfTI volumes") if "nifti" in kinds else None
        self.pydicom = _require("pydicom", "DICOM series") if "dicom" in kinds else None
        from monai.data import NibabelReader, PydicomReader
        from monai.transforms import LoadImage

        with warnings.catch_warnings():  # optional GPU decoders that are absent: nothing to act on
            warnings.simplefilter("ignore")
            self.loader = LoadImage(image_only=True, dtype=np.float32)
        self.nifti_reader = NibabelReader()
        # swap_ij=False keeps each slice as (rows, columns); the affine is not used
        self.dicom_reader = PydicomReader(swap_ij=False)

    def __call__(self, item: _Item, root: Path) -> np.ndarray:
        with warnings.catch_warnings():  # e.g. MONAI's notice that a slice has no orientation for its affine
            warnings.simplefilter("ignore")
            if item.kind == "nifti":
                volume = _read_nifti(item.path, self.loader, self.nifti_reader, self.nib)
            else:
                volume = _read_dicom_series(item.path, root, self.loader, self.dicom_reader, self.pydicom)
        if min(volume.shape) < 2:
            raise DataError(f"{shown(item.path)}: {' × '.join(map(str, volume.shape))} voxels; a volume needs at least "
                            "2 voxels along each axis (2D images belong in a folder of 2D images)")
        if not np.isfinite(volume).all():
            raise DataError(f"{shown(item.path)}: {int((~np.isfinite(volume)).sum())} voxels are NaN or infinite; "
                            "volumes must be finite")
        return volume


def _read_volumes(items: list[_Item], size: int, window: tuple[float, float] | None, root: Path,
                  reader: _VolumeReader) -> tuple[np.ndarray, np.ndarray]:
    from tqdm.auto import tqdm

    volumes = [to_unit_range(resample_cube(reader(item, root), size), window)
               for item in tqdm(items, desc=f"reading volumes from {shown(root)}", unit="volume", disable=None, leave=False)]
    labels = np.asarray([item.label for item in items], dtype=np.int64)
    if not volumes:
        return np.zeros((0, size, size, size), np.float32), labels
    return np.stack(volumes), labels


def load_imagefolder(
    *, root: str | Path, name: str = "imagefolder", channels: int = 1, image_size: int = 28,
    test_fraction: float = 0.2, seed: int = 0, real_patient_data: bool = True, licence: str = "user data",
    window: Sequence[float] | None = None,
) -> ImageDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {shown(root)} does not exist; expected {shown(root)}/<class>/ holding {VALID_CONTENT}")
    if channels not in (1, 3):
        raise DataError(f"dataset.channels={channels} is not valid; use 1 (grayscale) or 3 (RGB)")
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise DataError(f"dataset.size={image_size} is not valid; use a positive number of pixels per side")
    window = checked_window(window)
    presplit = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if presplit else root
    class_names = [p.name for p in _class_folders(class_root)]
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
    splits = {"train": root / "train", "test": root / "test"} if presplit else {"all": root}
    found = {split: _scan_split(folder, class_names, root) for split, folder in splits.items()}
    volumes = _check_one_kind([item for items in found.values() for item in items], root)
    if volumes and channels != 1:
        raise DataError(f"dataset.channels={channels} is not valid for {shown(root)}, which holds volumes; "
                        "volumes are single-channel, use channels=1")
    if window is not None and not volumes and any(found.values()):
        raise DataError(f"dataset.window={list(window)} applies to volumes (NIfTI, DICOM) only and {shown(root)} holds "
                        "2D images; remove the setting")
    if volumes:
        reader = _VolumeReader({item.kind for items in found.values() for item in items})
        read = {split: _read_volumes(items, image_size, window, root, reader) for split, items in found.items()}
    else:
        read = {split: _read_images(items, channels, image_size) for split, items in found.items()}
    if presplit:
        (train_x, train_y), (test_x, test_y) = read["train"], read["test"]
        for split, labels in (("train", train_y), ("test", test_y)):
            if len(labels) == 0:
                raise DataError(f"{shown(root / split)} holds no readable images or volumes; put {VALID_CONTENT} "
                                f"in {shown(root / split)}/<class>/")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"dataset.test_fraction={test_fraction} is not valid; use a value in (0, 1)")
        x, y = read["all"]
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
        train_x, train_y, test_x, test_y = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
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
