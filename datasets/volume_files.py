"""Reading the volumes of an image folder: NIfTI files and DICOM series as (D, H, W) cubes in [0, 1].

Volumes are read through MONAI's ``LoadImage`` with its NibabelReader / PydicomReader (``pip install
'medprivbench[volumes]'``), resampled to a ``size³`` cube (:func:`resample_cube`) and mapped to
[0, 1] (:func:`to_unit_range`: each volume's own min-max, or a fixed ``window``).

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

Sizes are checked from headers before any voxel is decoded (a few compressed bytes can declare
billions of voxels): at most ``MAX_VOXELS`` per volume.
"""

from __future__ import annotations

import importlib
import math
import numbers
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import DataError
from .folder_scan import FolderItem, dicom_files, shown

# Largest volume read, from the NIfTI header or DICOM rows × columns × slices, before decoding:
# 1024³ voxels (4 GiB as float32), beyond any CT or MR volume in routine use.
MAX_VOXELS = 1024**3
INSTALL_HINT = "pip install 'medprivbench[volumes]'"

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
    files = dicom_files(folder, root)
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


class VolumeReader:
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

    def __call__(self, item: FolderItem, root: Path) -> np.ndarray:
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


def read_volumes(items: list[FolderItem], size: int, window: tuple[float, float] | None, root: Path,
                 reader: VolumeReader) -> tuple[np.ndarray, np.ndarray]:
    """The volumes of ``items`` as float32 (N, size, size, size) in [0, 1], and their labels (N,) int64."""
    from tqdm.auto import tqdm

    volumes = [to_unit_range(resample_cube(reader(item, root), size), window)
               for item in tqdm(items, desc=f"reading volumes from {shown(root)}", unit="volume", disable=None, leave=False)]
    labels = np.asarray([item.label for item in items], dtype=np.int64)
    if not volumes:
        return np.zeros((0, size, size, size), np.float32), labels
    return np.stack(volumes), labels
