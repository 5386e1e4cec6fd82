"""The embedded offline dataset: procedurally generated "lesion" images on textured tissue.

Each 28×28 grayscale image shows soft-tissue texture (band-limited noise, as in ultrasound or CT
soft tissue) with one to three bright lesions. The label is **malignant** when one lesion has an
irregular, lobulated margin (radius modulated around the circle, r(θ) = r₀·(1 + a·sin(kθ + φ)))
and **benign** when every margin is smooth. The irregularity amplitudes of the two classes
overlap and a few labels are flipped, as in real radiology, so the task is learnable but not
trivially separable: a classifier must pick up a small-scale shape cue among distractor lesions,
texture and noise, which is exactly what DP noise makes harder as ε shrinks.

An optional long tail (``rare_fraction``, off by default): that share of images shows a rare
finding instead of the common lesions, a large bright or dark mass with a lobulated border and an
internal texture of its own, and its label is a coin flip, so a model can fit those images only by
memorising them (Feldman 2020, "Does learning require memorization?"). They are tagged
"rare finding" in ``ImageDataset.train_groups`` (the report's per-sample table names the group)
and drawn from a generator of their own, so the common images are the same whatever the fraction.
Measured on the default recipe at ε = ∞ with 4 %: the rare findings were no more exposed to the
membership attacks than the common images (per-sample AUC 0.56 vs 0.57), which is why the tail is
not on by default; it is there to study subgroups, not to make the demo leak.

Everything is a deterministic function of the seed; generating several thousand images takes
well under a second.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from .base import DatasetInfo, ImageDataset

CLASS_NAMES = ("benign", "malignant")
RARE = "rare finding"
COMMON = "common"


def _tissue(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    coarse = gaussian_filter(rng.standard_normal((n, size, size)), sigma=(0, 3.0, 3.0))
    fine = gaussian_filter(rng.standard_normal((n, size, size)), sigma=(0, 0.8, 0.8))
    coarse /= coarse.std(axis=(1, 2), keepdims=True) + 1e-8
    fine /= fine.std(axis=(1, 2), keepdims=True) + 1e-8
    base = rng.uniform(0.25, 0.45, size=(n, 1, 1))
    return base + 0.06 * coarse + 0.035 * fine


def _atypical_masses(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Rare findings: one large mass per image, bright or dark, with a lobulated border and a
    strong heterogeneous internal texture of its own (smoothed noise), so that no two look alike."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((n, size, size))
    for i in range(n):
        cy, cx = rng.uniform(size * 0.32, size * 0.68, size=2)
        theta = np.arctan2(yy - cy, xx - cx)
        border = rng.uniform(0.25, 0.4) * size * (1 + 0.25 * np.sin(rng.integers(2, 6) * theta + rng.uniform(0, 2 * np.pi)))
        inside = 1.0 / (1.0 + np.exp(-(border - np.hypot(yy - cy, xx - cx)) / 0.5))
        texture = gaussian_filter(rng.standard_normal((size, size)), rng.uniform(0.8, 1.6))
        texture /= texture.std() + 1e-8
        out[i] = inside * (0.35 + 0.35 * texture) * rng.choice((-1.0, 1.0))
    return out


def generate_images(
    n: int, seed: int, *, size: int = 28, label_noise: float = 0.03
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` uint8 images (n, size, size) and int64 labels (n,) generated from ``seed`` (no rare findings)."""
    images, labels, _ = generate_split(n, seed, size=size, label_noise=label_noise)
    return images, labels


def generate_split(
    n: int, seed: int, *, size: int = 28, label_noise: float = 0.03, rare_fraction: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, size, size), int64 labels (n,) and bool rare-finding flags (n,), from ``seed``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    images = _tissue(rng, n, size)

    max_lesions = 2
    n_lesions = rng.integers(1, max_lesions + 1, size=n)
    present = np.arange(max_lesions)[None, :] < n_lesions[:, None]  # (n, L)
    margin = (size * 0.22, size * 0.78)
    cx = rng.uniform(*margin, size=(n, max_lesions))
    cy = rng.uniform(*margin, size=(n, max_lesions))
    radius = rng.uniform(2.2, 4.2, size=(n, max_lesions))
    contrast = rng.uniform(0.16, 0.42, size=(n, max_lesions))
    lobes = rng.integers(4, 8, size=(n, max_lesions))
    phase = rng.uniform(0, 2 * np.pi, size=(n, max_lesions))
    # Benign margins are nearly round; one lesion of a malignant image is lobulated and tends to be
    # larger. The ranges overlap so that neither cue alone separates every image.
    amplitude = rng.uniform(0.0, 0.10, size=(n, max_lesions))
    irregular_slot = rng.integers(0, n_lesions)
    malignant = labels == 1
    n_malignant = int(malignant.sum())
    amplitude[malignant, irregular_slot[malignant]] = rng.uniform(0.30, 0.60, size=n_malignant)
    radius[malignant, irregular_slot[malignant]] = rng.uniform(3.2, 5.4, size=n_malignant)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dx = xx[None, None] - cx[..., None, None]
    dy = yy[None, None] - cy[..., None, None]
    dist = np.hypot(dx, dy)
    theta = np.arctan2(dy, dx)
    boundary = radius[..., None, None] * (
        1 + amplitude[..., None, None] * np.sin(lobes[..., None, None] * theta + phase[..., None, None])
    )
    mask = 1.0 / (1.0 + np.exp(-(boundary - dist) / 0.45))  # soft edge, about one pixel wide
    mask *= present[..., None, None]
    lesions = (contrast[..., None, None] * mask).sum(axis=1)
    noise = 0.025 * rng.standard_normal(images.shape)  # acquisition noise
    flip = rng.random(n) < label_noise
    labels = np.where(flip, 1 - labels, labels)

    # the long tail, from its own generator: a rare finding replaces the lesions, its label a coin flip
    tail = np.random.default_rng([seed, 7])
    rare = tail.random(n) < rare_fraction
    lesions[rare] = _atypical_masses(tail, int(rare.sum()), size)
    labels[rare] = tail.integers(0, 2, size=int(rare.sum()))
    images = np.clip(np.rint((images + lesions + noise) * 255.0), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64), rare


def load_synthetic(
    *, n_train: int = 2000, n_test: int = 1000, n_val: int = 500, seed: int = 0, image_size: int = 28,
    label_noise: float = 0.03, rare_fraction: float = 0.0,
) -> ImageDataset:
    """The embedded default dataset: train, validation and test splits from disjoint seeds."""
    from .base import to_float_images

    splits = {}
    for offset, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        x, y, rare = generate_split(n, seed * 1000 + offset, size=image_size, label_noise=label_noise,
                                    rare_fraction=rare_fraction)
        splits[split] = (to_float_images(x, what=f"synthetic {split}"), y, np.where(rare, RARE, COMMON))
    return generated_dataset("synthetic", "medprivbench synthetic lesions (procedural; no patient data)", splits,
                             (image_size, image_size), seed, train_groups=splits["train"][2])


def generated_dataset(name: str, citation: str, splits: dict, image_size: tuple[int, ...], seed: int,
                      train_groups: np.ndarray | None = None) -> ImageDataset:
    """An embedded dataset from its generated splits (``splits[s][:2]`` = images, labels)."""
    info = DatasetInfo(
        name=name,
        task="binary",
        n_channels=1,
        image_size=image_size,
        class_names=CLASS_NAMES,
        licence="CC0-1.0 (generated by medprivbench)",
        citation=citation,
        source=f"generated (seed {seed})",
        real_patient_data=False,
    )
    return ImageDataset(
        train_x=splits["train"][0], train_y=splits["train"][1],
        test_x=splits["test"][0], test_y=splits["test"][1],
        val_x=splits["val"][0], val_y=splits["val"][1],
        info=info, train_groups=train_groups,
    )
