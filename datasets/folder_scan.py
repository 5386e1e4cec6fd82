"""Finding the samples of an image folder: which files and series folders it holds, checked safe to read.

A dataset folder is the user's own and may hold anything: links that leave it, FIFOs and devices
that would block a read, a DICOM file where a series folder belongs, 2D images mixed with volumes.
This module walks the class folders of one split, refuses each of those with one line that names
the path and says what to do, and returns the samples (:class:`FolderItem`: an image file, a
NIfTI file or a DICOM series folder, with its class) in name order. Nothing is decoded here; the
readers are in :mod:`.image_files` and :mod:`.volume_files`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from .base import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIX = ".dcm"

# What each kind of item is called in messages.
KIND_NAMES = {"image": "2D images", "nifti": "NIfTI volumes", "dicom": "DICOM series"}
VALID_CONTENT = ("image files (*.png, *.jpg, *.bmp, *.tif), or volumes: *.nii / *.nii.gz files or "
                 "one sub-folder of *.dcm slices per DICOM series")


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


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class FolderItem:
    """One sample found in a class folder: an image or NIfTI file, or a DICOM series folder."""

    path: Path
    kind: str  # a key of KIND_NAMES
    label: int


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def dicom_files(folder: Path, root: Path) -> list[Path]:
    """The ``*.dcm`` slices of a series folder, each checked to be a regular file inside ``root``."""
    return [p for p in sorted(folder.iterdir()) if p.suffix.lower() == DICOM_SUFFIX and _readable_file(p, root)]


def scan_split(folder: Path, class_names: list[str], root: Path) -> list[FolderItem]:
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
                    items.append(FolderItem(path, "image", label))
            elif _is_nifti(path):
                if _readable_file(path, root):
                    items.append(FolderItem(path, "nifti", label))
            elif suffix == DICOM_SUFFIX:
                if _readable_file(path, root):
                    raise DataError(f"{shown(path)}: a DICOM file directly in a class folder; put the slices of each "
                                    f"series in a sub-folder of their own: {shown(cls_dir)}/<series>/*.dcm")
            elif path.is_dir() and not path.name.startswith(".") and any(
                p.suffix.lower() == DICOM_SUFFIX for p in path.iterdir()
            ):
                _readable_file(path, root)  # refuses a link to a folder outside the root
                items.append(FolderItem(path, "dicom", label))
    return items


def check_one_kind(items: list[FolderItem], root: Path) -> bool:
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
