"""A user's own images: PNG/JPEG files, one folder per class.

Layout either ``root/<class>/*.png`` (split into train/test here, stratified, from the seed) or
``root/train/<class>/…`` and ``root/test/<class>/…`` (splits as given). Images are converted to
grayscale (``channels=1``) or RGB (``channels=3``) and resized to ``image_size``.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from .base import DataError, DatasetInfo, ImageDataset, to_float_images

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# Largest image read, checked from the header before decoding (a decompression bomb declares
# billions of pixels in a few bytes): 8192 × 8192, far beyond any medical 2D image here.
MAX_PIXELS = 8192 * 8192


def shown(path: Path | str) -> str:
    """A path as text that prints anywhere: bytes that are not UTF-8 appear as \\x escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _readable_file(path: Path, root: Path) -> bool:
    """True for a regular file inside ``root`` (links allowed when they stay inside); raises
    DataError for FIFOs, devices, sockets and links that leave the folder; False for folders."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root.resolve()):
            raise DataError(f"{shown(path)}: a link to {shown(target)}, outside the image folder {shown(root)}; "
                            "copy the image into the folder instead")
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        return False
    if not stat.S_ISREG(mode):
        raise DataError(f"{shown(path)}: not a regular file (a FIFO, device or socket); image folders may hold image files only")
    return True


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_split(folder: Path, class_names: list[str], channels: int, size: int, root: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for label, cls in enumerate(class_names):
        cls_dir = folder / cls
        if not cls_dir.is_dir():
            continue
        for path in sorted(cls_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not _readable_file(path, root):
                continue
            try:
                with Image.open(path) as im:
                    width, height = im.size  # from the header: nothing decoded yet
                    if width * height > MAX_PIXELS or width < 1 or height < 1:
                        raise DataError(f"{shown(path)}: declares {width} × {height} pixels; images must have between 1 and "
                                        f"{MAX_PIXELS:,} pixels (a larger one may be a decompression bomb)")
                    im = im.convert(mode)
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
            labels.append(label)
    if not images:
        return np.zeros((0, size, size), np.uint8), np.zeros(0, np.int64)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_imagefolder(
    *, root: str | Path, name: str = "imagefolder", channels: int = 1, image_size: int = 28,
    test_fraction: float = 0.2, seed: int = 0, real_patient_data: bool = True, licence: str = "user data",
) -> ImageDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {shown(root)} does not exist; expected {shown(root)}/<class>/*.png (one folder per class)")
    if channels not in (1, 3):
        raise DataError(f"dataset.channels={channels} is not valid; use 1 (grayscale) or 3 (RGB)")
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
            "a classifier needs at least two, one sub-folder of images per class"
        )
    if presplit:
        train_x, train_y = _read_split(root / "train", class_names, channels, image_size, root)
        test_x, test_y = _read_split(root / "test", class_names, channels, image_size, root)
        for split, labels in (("train", train_y), ("test", test_y)):
            if len(labels) == 0:
                raise DataError(f"{shown(root / split)} holds no readable images; put images in {shown(root / split)}/<class>/")
    else:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"dataset.test_fraction={test_fraction} is not valid; use a value in (0, 1)")
        x, y = _read_split(root, class_names, channels, image_size, root)
        empty = [c for i, c in enumerate(class_names) if not (y == i).any()]
        if empty:
            raise DataError(f"{root}: class folder(s) {', '.join(empty)} hold no readable images")
        rng = np.random.default_rng(seed)
        test_mask = np.zeros(len(y), dtype=bool)
        for label in range(len(class_names)):
            idx = np.flatnonzero(y == label)
            n_test = int(round(test_fraction * len(idx)))
            test_mask[rng.choice(idx, size=n_test, replace=False)] = True
        train_x, train_y, test_x, test_y = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
    info = DatasetInfo(
        name=name,
        task="binary" if len(class_names) == 2 else "multiclass",
        n_channels=channels,
        image_size=(image_size, image_size),
        class_names=tuple(class_names),
        licence=licence,
        citation=f"user image folder {root}",
        source=str(root),
        real_patient_data=real_patient_data,
    )
    return ImageDataset(
        train_x=to_float_images(train_x, what=f"{root} train"),
        train_y=train_y,
        test_x=to_float_images(test_x, what=f"{root} test"),
        test_y=test_y,
        info=info,
    )
