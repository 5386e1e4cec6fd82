"""The one structure every dataset loader returns, and the checks applied where data enters.

Images are float32 arrays of shape (N, C, H, W), volumes (N, C, D, H, W), with values in [0, 1]; labels are int64 of shape (N,)
with values 0 … K−1. For segmentation (``info.task == "segmentation"``) the labels are int64 masks
of shape (N, *spatial), the images' spatial shape without a channel axis, with values 0 … K−1 and
class 0 the background. Loaders validate once, here, so that training and attack code can trust
their inputs (scikit-learn's "validate at the boundary" habit).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np


class DataError(ValueError):
    """Raised when a dataset is missing, damaged or not usable; the message is one line."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a run records about its data."""

    name: str
    task: str  # "binary", "multiclass" or "segmentation"
    n_channels: int
    image_size: tuple[int, ...]  # spatial size, (H, W) for 2D, (D, H, W) for volumes
    class_names: tuple[str, ...]
    licence: str
    citation: str
    source: str  # where the data came from: a file path, a folder, or "generated (seed …)"
    real_patient_data: bool  # reconstructions of such images are patient data themselves
    duplicates_dropped: dict = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return len(self.image_size)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_segmentation(self) -> bool:
        """True when the labels are masks (N, *spatial), not one class per image."""
        return self.task == "segmentation"

    def to_record(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "n_channels": self.n_channels,
            "image_size": list(self.image_size),
            "class_names": list(self.class_names),
            "licence": self.licence,
            "citation": self.citation,
            "source": self.source,
            "real_patient_data": self.real_patient_data,
            "duplicates_dropped": dict(self.duplicates_dropped),
        }


@dataclass(frozen=True)
class ImageDataset:
    """Train/test (and optional validation) splits plus metadata.

    ``val_x`` may be empty; it is held out from training and testing and serves as the source of
    audit canaries and other held-out needs.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    info: DatasetInfo
    val_x: np.ndarray | None = None
    val_y: np.ndarray | None = None
    # a subgroup name per training image where the loader knows one (e.g. "rare finding"), else None
    train_groups: np.ndarray | None = None

    @property
    def n_train(self) -> int:
        return len(self.train_y)

    def train_subset(self, keep: np.ndarray) -> ImageDataset:
        """The same dataset with only the training images ``keep`` (a mask or indices)."""
        groups = None if self.train_groups is None else self.train_groups[keep]
        return replace(self, train_x=self.train_x[keep], train_y=self.train_y[keep], train_groups=groups)

    def summary(self) -> str:
        counts = np.bincount(self.train_y.ravel(), minlength=self.info.n_classes)
        if self.info.is_segmentation:  # masks: each class's share of the training pixels
            shares = counts / max(1, counts.sum())
            per_class = "train pixels " + ", ".join(f"{n}={s:.1%}" for n, s in zip(self.info.class_names, shares))
        else:
            per_class = "train classes " + ", ".join(f"{n}={c}" for n, c in zip(self.info.class_names, counts))
        return (
            f"{self.info.name}: train {self.n_train}, test {len(self.test_y)}, "
            f"val {0 if self.val_y is None else len(self.val_y)}, "
            f"{self.info.n_channels}x{'x'.join(map(str, self.info.image_size))}, {per_class}"
        )


def to_float_images(images: np.ndarray, *, what: str, spatial_dims: int = 2) -> np.ndarray:
    """Convert uint8 (0–255) or float ([0, 1]) images to float32 (N, C, *spatial) in [0, 1].

    2D (``spatial_dims=2``): (N, H, W) grayscale, (N, H, W, C) channels-last with C in {1, 3}, or
    (N, C, H, W). Volumes (``spatial_dims=3``): (N, D, H, W) single-channel or (N, C, D, H, W).
    """
    images = np.asarray(images)
    if spatial_dims == 3:
        if images.ndim not in (4, 5):
            raise DataError(f"{what}: volumes must have shape (N, D, H, W) or (N, C, D, H, W), got {images.shape}")
    elif images.ndim not in (3, 4):
        raise DataError(
            f"{what}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), got {images.shape}"
        )
    if images.dtype == np.uint8:
        out = images.astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).sum())
            raise DataError(f"{what}: {bad} pixel values are NaN or infinite; images must be finite")
        lo, hi = float(out.min(initial=0.0)), float(out.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{what}: float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
    else:
        raise DataError(f"{what}: image dtype {images.dtype} is not supported; use uint8 (0-255) or float in [0, 1]")
    if out.ndim == spatial_dims + 1:
        out = out[:, None]
    elif spatial_dims == 2 and out.shape[-1] in (1, 3) and out.shape[1] not in (1, 3):
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    if out.shape[1] not in (1, 3):
        raise DataError(f"{what}: expected 1 or 3 channels, got shape {images.shape}")
    return np.ascontiguousarray(out)


def to_labels(labels: np.ndarray, n_images: int, n_classes: int, *, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim != 1:
        raise DataError(f"{what}: labels must be one integer per image (shape (N,) or (N, 1)), got {labels.shape}")
    if len(labels) != n_images:
        raise DataError(f"{what}: {len(labels)} labels for {n_images} images")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        raise DataError(f"{what}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"{what}: labels must lie in 0..{n_classes - 1}, got values in [{labels.min()}, {labels.max()}]"
        )
    return labels


def to_masks(masks: np.ndarray, n_images: int, spatial_shape: tuple[int, ...], n_classes: int, *,
             what: str) -> np.ndarray:
    """Segmentation masks as int64 (N, *spatial_shape) with values 0 … n_classes − 1; a single
    channel axis (N, 1, *spatial) is dropped."""
    masks = np.asarray(masks)
    spatial_shape = tuple(spatial_shape)
    if masks.ndim == len(spatial_shape) + 2 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape != (n_images,) + spatial_shape:
        raise DataError(f"{what}: masks must have shape {(n_images,) + spatial_shape} (one label per pixel of each "
                        f"image, no channel axis), got {masks.shape}")
    if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype, np.bool_)):
        raise DataError(f"{what}: masks must hold integer labels, got dtype {masks.dtype}")
    masks = masks.astype(np.int64)
    if masks.size and (masks.min() < 0 or masks.max() >= n_classes):
        raise DataError(
            f"{what}: mask labels must lie in 0..{n_classes - 1}, got values in [{masks.min()}, {masks.max()}]"
        )
    return masks


def image_hashes(images: np.ndarray) -> list[str]:
    """Exact-content hash of each image (bytes of the float32 array)."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat]


def drop_duplicates(ds: ImageDataset) -> ImageDataset:
    """Drop exact duplicate images that would break membership ground truth.

    Kept: the first occurrence inside train. Dropped: later copies inside train, and any validation
    or test image whose exact copy is in train (or, for test, in validation). A "non-member" that
    is pixel-identical to a member would be scored as a member by any attack, so these samples make
    membership labels wrong. Counts go into ``info.duplicates_dropped``.
    """
    dropped: dict[str, int] = {}
    seen: set[str] = set()

    def keep_mask(images: np.ndarray, key: str, dedupe_inside: bool) -> np.ndarray:
        hashes = image_hashes(images)
        mask = np.ones(len(hashes), dtype=bool)
        local: set[str] = set()
        for i, h in enumerate(hashes):
            if h in seen or (dedupe_inside and h in local):
                mask[i] = False
            local.add(h)
        dropped[key] = int((~mask).sum())
        seen.update(local)
        return mask

    train_mask = keep_mask(ds.train_x, "train_internal", dedupe_inside=True)
    val_x, val_y = ds.val_x, ds.val_y
    if val_x is not None and len(val_x):
        val_mask = keep_mask(val_x, "val_in_train", dedupe_inside=True)
        val_x, val_y = val_x[val_mask], val_y[val_mask]
    test_mask = keep_mask(ds.test_x, "test_in_train_or_val", dedupe_inside=False)
    info = replace(ds.info, duplicates_dropped=dropped)
    return replace(
        ds.train_subset(train_mask),
        test_x=ds.test_x[test_mask],
        test_y=ds.test_y[test_mask],
        val_x=val_x,
        val_y=val_y,
        info=info,
    )


def check_usable(ds: ImageDataset) -> None:
    """Final checks every dataset passes before training."""
    name = ds.info.name
    for split, y in (("train", ds.train_y), ("test", ds.test_y)):
        if len(y) == 0:
            raise DataError(f"{name}: the {split} split is empty")
    present = np.unique(ds.train_y)
    if ds.info.is_segmentation:
        if not (present > 0).any():
            raise DataError(f"{name}: the training masks hold background only; a segmenter needs at least one "
                            "foreground class (a label ≥ 1) in its training masks")
        if ds.train_y.shape[1:] != ds.train_x.shape[2:] or ds.test_y.shape[1:] != ds.test_x.shape[2:]:
            raise DataError(f"{name}: masks {ds.train_y.shape[1:]} do not match the images' spatial shape "
                            f"{ds.train_x.shape[2:]}; a segmenter needs one label per pixel")
    elif len(present) < 2:
        raise DataError(
            f"{name}: the training split holds a single class ({ds.info.class_names[present[0]]!r}); "
            "a classifier needs at least two"
        )
    if ds.train_x.shape[1:] != ds.test_x.shape[1:]:
        raise DataError(f"{name}: train images {ds.train_x.shape[1:]} and test images {ds.test_x.shape[1:]} differ in shape")


def read_plain_npz(path, *, damaged_hint: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read without unpickling, or one DataError line that
    says what is wrong: a pickle in disguise, object arrays, or a damaged file (``damaged_hint``
    says what to do about the last)."""
    import zipfile

    with open(path, "rb") as head:
        magic = head.read(4)
    if magic[:1] == b"\x80":
        raise DataError(f"{path}: a Python pickle, not an .npz archive; refusing to unpickle, save with numpy.savez")
    if magic != b"PK\x03\x04":
        raise DataError(f"{path}: not an .npz archive (no zip header); {damaged_hint}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise DataError(f"{path}: holds Python objects (object arrays); refusing to unpickle, "
                            "save the arrays as plain numbers") from exc
        raise DataError(f"{path}: the file is damaged or truncated ({type(exc).__name__}); {damaged_hint}") from exc
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"{path}: the file is damaged or truncated ({type(exc).__name__}); {damaged_hint}") from exc
