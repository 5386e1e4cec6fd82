"""The embedded offline volumes: procedurally generated 3D "lesions" in textured tissue.

The volumetric twin of :mod:`datasets.synthetic`, for tests and a quick demo of 3D DP training
and attacks (``dataset=synthetic3d``) without patient data or downloads. Each size³ volume
(16³ by default) shows soft-tissue texture (band-limited 3D noise) with one or two bright lesions.
The label is **malignant** when one lesion has an irregular, lobulated surface, its radius
modulated over the sphere,

    r(θ, ψ) = r₀ · (1 + a · sin(k·θ + φ) · cos(l·ψ)),   θ azimuth, ψ elevation,

and **benign** when every surface is smooth (a small). The amplitudes of the two classes overlap
and a few labels are flipped, so the task is learnable but not separable by one cue: a classifier
must pick up a small 3D shape cue among a distractor lesion, texture and noise.

Everything is a deterministic function of the seed; a thousand 16³ volumes take about a second.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .base import ImageDataset, to_float_images
from .synthetic import CLASS_NAMES, generated_dataset


def _tissue(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    shape = (n, size, size, size)
    coarse = gaussian_filter(rng.standard_normal(shape), sigma=(0, 2.0, 2.0, 2.0))
    fine = gaussian_filter(rng.standard_normal(shape), sigma=(0, 0.7, 0.7, 0.7))
    coarse /= coarse.std(axis=(1, 2, 3), keepdims=True) + 1e-8
    fine /= fine.std(axis=(1, 2, 3), keepdims=True) + 1e-8
    base = rng.uniform(0.25, 0.45, size=(n, 1, 1, 1))
    return base + 0.06 * coarse + 0.035 * fine


def generate_volumes(
    n: int, seed: int, *, size: int = 16, label_noise: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 volumes (n, size, size, size) and int64 labels (n,) generated from ``seed``."""
    if size < 8:
        raise ValueError(f"size={size} is too small for lesions with a shape; use at least 8 voxels a side")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    volumes = _tissue(rng, n, size)
    scale = size / 16.0  # lesion sizes are set for 16³ and scale with the volume

    max_lesions = 2
    n_lesions = rng.integers(1, max_lesions + 1, size=n)
    present = np.arange(max_lesions)[None, :] < n_lesions[:, None]
    centre = rng.uniform(size * 0.3, size * 0.7, size=(n, max_lesions, 3))
    radius = rng.uniform(1.8, 3.0, size=(n, max_lesions)) * scale
    contrast = rng.uniform(0.18, 0.42, size=(n, max_lesions))
    lobes_azimuth = rng.integers(3, 6, size=(n, max_lesions))
    lobes_elevation = rng.integers(1, 3, size=(n, max_lesions))
    phase = rng.uniform(0, 2 * np.pi, size=(n, max_lesions))
    amplitude = rng.uniform(0.0, 0.10, size=(n, max_lesions))
    irregular_slot = rng.integers(0, n_lesions)
    malignant = labels == 1
    n_malignant = int(malignant.sum())
    amplitude[malignant, irregular_slot[malignant]] = rng.uniform(0.30, 0.55, size=n_malignant)
    radius[malignant, irregular_slot[malignant]] = rng.uniform(2.6, 3.8, size=n_malignant) * scale

    zz, yy, xx = np.mgrid[0:size, 0:size, 0:size].astype(np.float64)
    lesions = np.zeros((n, size, size, size))
    for slot in range(max_lesions):
        dz = zz[None] - centre[:, slot, 0, None, None, None]
        dy = yy[None] - centre[:, slot, 1, None, None, None]
        dx = xx[None] - centre[:, slot, 2, None, None, None]
        dist = np.sqrt(dx**2 + dy**2 + dz**2)
        azimuth = np.arctan2(dy, dx)
        elevation = np.arcsin(np.clip(dz / np.maximum(dist, 1e-9), -1.0, 1.0))
        expand = lambda a: a[:, slot, None, None, None]  # noqa: E731
        boundary = expand(radius) * (1 + expand(amplitude) * np.sin(expand(lobes_azimuth) * azimuth + expand(phase))
                                     * np.cos(expand(lobes_elevation) * elevation))
        mask = 1.0 / (1.0 + np.exp(-(boundary - dist) / 0.45))
        lesions += (expand(contrast) * mask) * present[:, slot, None, None, None]
    noise = 0.025 * rng.standard_normal(volumes.shape)
    flip = rng.random(n) < label_noise
    labels = np.where(flip, 1 - labels, labels)
    volumes = np.clip(np.rint((volumes + lesions + noise) * 255.0), 0, 255).astype(np.uint8)
    return volumes, labels.astype(np.int64)


def load_synthetic3d(
    *, n_train: int = 400, n_test: int = 200, n_val: int = 100, seed: int = 0, size: int = 16,
    label_noise: float = 0.03,
) -> ImageDataset:
    """The embedded volumes: train, validation and test splits from disjoint seeds."""
    splits = {}
    for offset, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        x, y = generate_volumes(n, seed * 1000 + offset, size=size, label_noise=label_noise)
        splits[split] = (to_float_images(x, what=f"synthetic3d {split}", spatial_dims=3), y)
    return generated_dataset("synthetic3d", "medprivbench synthetic 3D lesions (procedural; no patient data)", splits,
                             (size, size, size), seed)
