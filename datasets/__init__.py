"""Dataset loaders. Every loader returns an :class:`ImageDataset` (train/val/test arrays + metadata).

``load_dataset(cfg)`` picks the loader from ``cfg.name``: ``synthetic`` (embedded, offline),
``synthetic3d`` (embedded volumes), ``imagefolder`` (your own images or volumes), the segmentation
datasets ``phantom2d`` / ``phantom3d`` (embedded organ/lesion phantoms) and ``segfolder`` (your own
images or volumes with label masks), anything else a MedMNIST subset (2D, or 3D for names ending
in ``3d``). Exact duplicates that would break membership ground truth are dropped, and an optional
subsample of the training split is taken (``max_train``: stratified by class for classification,
a plain random subset for segmentation, whose labels are masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError, DatasetInfo, ImageDataset, check_usable, drop_duplicates
from .imagefolder import load_imagefolder
from .medmnist import load_medmnist
from .phantom import load_phantom
from .segmentation_folder import load_segmentation_folder
from .synthetic import load_synthetic
from .synthetic3d import load_synthetic3d

__all__ = ["DataError", "DatasetInfo", "ImageDataset", "load_dataset", "load_raw"]


def _stratified_subset(ds: ImageDataset, max_train: int, seed: int) -> ImageDataset:
    if max_train <= 0:
        raise DataError(f"dataset.max_train={max_train} is not valid; use a positive number or null")
    if max_train >= ds.n_train:
        return ds
    rng = np.random.default_rng(seed)
    if ds.info.is_segmentation:  # masks are not class labels: a plain random subset
        return ds.train_subset(np.sort(rng.choice(ds.n_train, size=max_train, replace=False)))
    keep = []
    for label in np.unique(ds.train_y):
        idx = np.flatnonzero(ds.train_y == label)
        n = max(1, int(round(max_train * len(idx) / ds.n_train)))
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return ds.train_subset(np.sort(np.concatenate(keep)))


def load_raw(cfg) -> ImageDataset:
    """The dataset ``cfg`` names, its splits exactly as the files hold them (image i of the
    training split is the file's image i: what a user's own membership file refers to)."""
    name = str(cfg.name)
    if name == "synthetic3d":
        ds = load_synthetic3d(n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test, seed=cfg.generator_seed,
                              size=cfg.size, label_noise=cfg.label_noise)
    elif name == "synthetic":
        ds = load_synthetic(
            n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test, seed=cfg.generator_seed,
            image_size=cfg.size, label_noise=cfg.label_noise, rare_fraction=cfg.rare_fraction,
        )
    elif name in ("phantom2d", "phantom3d"):
        ds = load_phantom(spatial_dims=int(name[-2]), n_train=cfg.n_train, n_val=cfg.n_val, n_test=cfg.n_test,
                          seed=cfg.generator_seed, size=cfg.size)
    elif name == "segfolder":
        ds = load_segmentation_folder(
            root=Path(cfg.root).expanduser(), channels=cfg.channels, image_size=cfg.size,
            test_fraction=cfg.test_fraction, seed=cfg.generator_seed, real_patient_data=cfg.real_patient_data,
            window=cfg.window,
        )
    elif name == "imagefolder":
        ds = load_imagefolder(
            root=Path(cfg.root).expanduser(), channels=cfg.channels, image_size=cfg.size,
            test_fraction=cfg.test_fraction, seed=cfg.generator_seed, real_patient_data=cfg.real_patient_data,
            window=cfg.window,
        )
    else:
        ds = load_medmnist(name=name, root=Path(cfg.root).expanduser(), size=cfg.size, download=cfg.download)
    return ds


def load_dataset(cfg) -> ImageDataset:
    """The dataset a run trains on: :func:`load_raw` without exact duplicates, optionally
    subsampled (``max_train``), checked usable."""
    ds = drop_duplicates(load_raw(cfg))
    if cfg.max_train is not None:
        ds = _stratified_subset(ds, int(cfg.max_train), cfg.generator_seed)
    check_usable(ds)
    return ds
