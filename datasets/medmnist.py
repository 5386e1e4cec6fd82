"""MedMNIST v2 (Yang et al., Scientific Data 10:41, 2023) subsets from the standard ``.npz`` files.

2D subsets hold images (28×28, MedMNIST+ 64/128/224), the 3D subsets (names ending in ``3d``, e.g.
``adrenalmnist3d``) volumes (28³, MedMNIST+ 64³). ``<root>/<name>.npz`` (size 28) or
``<root>/<name>_<size>.npz`` holds
``train_images, train_labels, val_images, val_labels, test_images, test_labels`` (uint8). When the
file is missing and ``download`` is true, the ``medmnist`` package (extra ``medprivbench[medmnist]``)
fetches it into ``root``; without network access the error says where to put the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError, DatasetInfo, ImageDataset, read_plain_npz, to_float_images, to_labels

_KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")

# Metadata of the subsets tests and examples use, for machines without the ``medmnist`` package.
# With the package installed, its INFO table is authoritative and covers every subset.
_FALLBACK_INFO = {
    "pneumoniamnist": {
        "task": "binary-class",
        "label": {"0": "normal", "1": "pneumonia"},
        "license": "CC BY 4.0",
        "n_channels": 1,
        "source": "Kermany et al. 2018, Cell (paediatric chest X-ray)",
    },
    "adrenalmnist3d": {
        "task": "binary-class",
        "label": {"0": "normal", "1": "hyperplasia"},
        "license": "CC BY 4.0",
        "n_channels": 1,
        "source": "Zhongshan Hospital, Fudan University (adrenal gland shape masks from abdominal CT)",
    },
    "breastmnist": {
        "task": "binary-class",
        "label": {"0": "malignant", "1": "normal, benign"},
        "license": "CC BY 4.0",
        "n_channels": 1,
        "source": "Al-Dhabyani et al. 2020, Data in Brief (BUSI breast ultrasound)",
    },
}
_SUPPORTED_TASKS = ("binary-class", "multi-class", "ordinal-regression")


def _medmnist_info(name: str) -> dict | None:
    try:
        import medmnist  # noqa: F401
        from medmnist.info import INFO
    except Exception:  # the package is optional
        return _FALLBACK_INFO.get(name)
    return INFO.get(name, _FALLBACK_INFO.get(name))


def _known_subsets() -> list[str] | None:
    """The subsets (2D and 3D) the medmnist package knows, or None without the package."""
    try:
        from medmnist.info import INFO
    except Exception:
        return None
    return sorted(INFO)


SIZES = {2: (28, 64, 128, 224), 3: (28, 64)}


def is_volume_subset(name: str) -> bool:
    """MedMNIST names its 3D subsets ``…3d``."""
    return str(name).lower().endswith("3d")


def medmnist_path(root: str | Path, name: str, size: int) -> Path:
    suffix = "" if size == 28 else f"_{size}"
    return Path(root) / f"{name}{suffix}.npz"


def _download(name: str, root: Path, size: int) -> None:
    try:
        import medmnist
        from medmnist.info import INFO
    except ImportError as exc:
        raise DataError(
            f"{medmnist_path(root, name, size)} is missing and the 'medmnist' package is not installed to "
            f"download it: pip install 'medprivbench[medmnist]', or put the MedMNIST file {name}.npz there"
        ) from exc
    if name not in INFO:
        raise DataError(f"unknown MedMNIST subset {name!r}; valid: {', '.join(sorted(INFO))}")
    cls = getattr(medmnist, INFO[name]["python_class"])
    root.mkdir(parents=True, exist_ok=True)
    try:
        cls(split="train", root=str(root), download=True, size=size)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"could not download {name} into {root} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            f"without network access, copy the MedMNIST file to {medmnist_path(root, name, size)}"
        ) from exc


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read a MedMNIST ``.npz`` without unpickling (``allow_pickle=False``), with one-line errors."""
    arrays = read_plain_npz(path, damaged_hint="download it again")
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: not a MedMNIST file, keys {', '.join(missing)} are missing")
    return {k: arrays[k] for k in _KEYS}


def load_medmnist(*, name: str, root: str | Path, size: int = 28, download: bool = False) -> ImageDataset:
    """The MedMNIST subset ``name`` at ``size`` from ``<root>/<name>[_<size>].npz`` (see the module docstring).

    Its train, validation and test splits as the file holds them; the classes are named from the
    medmnist package's metadata, from ``_FALLBACK_INFO`` without the package, else "class i".
    """
    name = name.lower()
    dims = 3 if is_volume_subset(name) else 2
    _check_subset(name, size, dims)
    path = medmnist_path(root, name, size)
    if not path.exists():
        _fetch_missing(path, name, root, size, download)
    arrays = read_npz(path)
    meta = _medmnist_info(name) or {}
    task = meta.get("task", "multi-class")
    if task not in _SUPPORTED_TASKS:
        raise DataError(
            f"{name}: task {task!r} is not supported; medprivbench trains single-label classifiers "
            f"({', '.join(sorted(_SUPPORTED_TASKS))})"
        )
    _check_dimensions(path, name, dims, arrays["train_images"])
    n_from_labels = int(max(np.max(arrays[f"{s}_labels"]) for s in ("train", "val", "test"))) + 1
    label_names = meta.get("label") or {str(i): f"class {i}" for i in range(n_from_labels)}
    class_names = tuple(label_names[str(i)] for i in range(len(label_names)))
    splits = {}
    for split in ("train", "val", "test"):
        x = to_float_images(arrays[f"{split}_images"], what=f"{path} {split}_images", spatial_dims=dims)
        y = to_labels(arrays[f"{split}_labels"], len(x), len(class_names), what=f"{path} {split}_labels")
        splits[split] = (x, y)
    info = DatasetInfo(
        name=name,
        task="binary" if len(class_names) == 2 else "multiclass",
        n_channels=int(splits["train"][0].shape[1]),
        image_size=tuple(int(s) for s in splits["train"][0].shape[2:]),
        class_names=class_names,
        licence=meta.get("license", "see MedMNIST"),
        citation=(
            "Yang et al., MedMNIST v2, Scientific Data 10:41 (2023)"
            + (f"; {meta['source']}" if "source" in meta else "")
        ),
        source=str(path),
        real_patient_data=True,
    )
    return ImageDataset(
        train_x=splits["train"][0], train_y=splits["train"][1],
        test_x=splits["test"][0], test_y=splits["test"][1],
        val_x=splits["val"][0], val_y=splits["val"][1],
        info=info,
    )


def _check_subset(name: str, size: int, dims: int) -> None:
    """``name`` is a subset the medmnist package knows (when it is installed), ``size`` one of its sizes."""
    known = _known_subsets()
    if known is not None and name not in known:
        raise DataError(f"dataset.name={name!r} is not a MedMNIST subset; valid subsets: {', '.join(known)}")
    if size not in SIZES[dims]:
        kind = "3D subsets (volumes)" if dims == 3 else "2D subsets"
        raise DataError(f"dataset.size={size} is not a MedMNIST size for {kind}; valid: {', '.join(map(str, SIZES[dims]))}")


def _fetch_missing(path: Path, name: str, root: str | Path, size: int, download: bool) -> None:
    """Download the missing file ``path`` when allowed, else say where to put it."""
    if not download:
        raise DataError(
            f"{path} not found: put the MedMNIST file there (https://zenodo.org/records/10519652), "
            "or set dataset.download=true with network access and the 'medmnist' package"
        )
    _download(name, Path(root), size)


def _check_dimensions(path: Path, name: str, dims: int, sample: np.ndarray) -> None:
    """The file's images are 2D or 3D as the subset's name says (3D subsets are named …3d)."""
    if dims == 2 and sample.ndim == 4 and sample.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: images of shape {sample.shape[1:]} are 3D volumes, but {name!r} names a 2D subset; "
            "3D MedMNIST subsets are named …3d"
        )
    if dims == 3 and sample.ndim != 4:
        raise DataError(f"{path}: {name!r} names a 3D subset but its images have shape {sample.shape[1:]}; expected (D, H, W)")
