"""Reading the 2D images of an image folder: decoded with PIL, at 8 bits, grayscale or RGB, resized.

Each image is checked from its header before any pixel is decoded (a decompression bomb declares
billions of pixels in a few bytes), 16-bit images are scaled from their full range rather than
clipped, and a file PIL cannot read is named in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError
from .folder_scan import FolderItem, shown

# Largest image read, checked from the header before decoding (a decompression bomb declares
# billions of pixels in a few bytes): 8192 × 8192, far beyond any medical 2D image here.
MAX_PIXELS = 8192 * 8192

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


def read_images(items: list[FolderItem], channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``items`` as uint8 (N, size, size) or (N, size, size, 3), and their labels (N,) int64."""
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
