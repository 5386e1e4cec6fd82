"""The embedded segmentation phantoms: procedural "abdominal CT slices" (2D) and volumes (3D).

``dataset=phantom2d`` (size × size images, 32² by default) and ``dataset=phantom3d`` (size³ volumes,
16³ by default) are segmentation datasets (``info.task == "segmentation"``): each image comes with
an integer mask, 0 background, 1 organ, 2 lesion (a lesion overrides the organ). No patient data,
no download; everything is a deterministic function of the seed, and the same generator draws
both dimensions (coordinates are d-dimensional throughout).

Each image is built in layers, intensities in [0, 1] before 8-bit quantisation:

1. **Background tissue**: a level b ~ U(0.30, 0.50) plus band-limited texture (coarse σ = 3 px and
   fine σ = 0.8 px smoothed noise at size 32).
2. **Background structures** (bowel, vessels, fat): four ellipsoids of random position, size and
   elongation, kept outside the organ, each filled with its own level t ~ U(0.15, 0.90) — the whole
   range that the organ and the lesions also take.
3. **One organ**: a lobulated blob of random centre, mean radius (0.20–0.30 · size in 2D,
   0.26–0.36 · size in 3D, where a sphere fills less of a cube), elongation (up to 1.5 : 1) and
   orientation. Its radius along a unit direction u is

       r(u) = r₀ · (1 + Σⱼ aⱼ · sin(fⱼ·π·(u·vⱼ) + φⱼ)),   j = 1 … 3, aⱼ ≤ 0.08, fⱼ ∈ {1, 2},

   with vⱼ random unit vectors (low-frequency lobes, smooth for any dimension). The organ has a
   level o ~ U(0.45, 0.65), a finer and weaker texture than the background, and a thin dark
   capsule (a fat plane about one pixel wide) around it.
4. **0–2 lesions inside the organ** (none in 25 % of images, one in 45 %, two in 30 %): round blobs
   of radius 2.5–4.5 px at size 32 (scaled with the size, but at least 1.5–2.7 px), at o ± c,
   c ~ U(0.18, 0.30), hypo- or hyper-intense with equal chance. Lesions are clipped to the organ shrunk by 1.5 px (1 px below
   size 32), so a rim of organ always separates a lesion from the background (intraparenchymal).
5. **A bias field**: a random linear ramp across the image (up to ±0.10) plus a very smooth random
   component, as coil or beam-hardening shading would give.
6. **Acquisition noise**: Gaussian, σ = 0.03.

Why intensity alone does not give the masks: the organ's level (0.45–0.65) lies inside the range
of the background's own level, its structures (0.15–0.90) and the bias field; hypo-intense lesions
sit at background levels and hyper-intense ones at the bright structures' levels. A segmenter must
use shape and context (a large lobulated blob with a capsule, small round blobs inside it).
:func:`threshold_baseline` measures the best intensity-only segmentation (two global thresholds).
Measured (seed 0, default splits, mean foreground test Dice): the threshold baseline 0.38 in 2D
(organ 0.52, lesion 0.23) and 0.37 in 3D; a small non-private U-Net (three levels, width 16,
Dice + CE, Adam, 30 epochs in 2D / 18 in 3D) 0.94 in 2D (organ 0.95, lesion 0.92) and 0.87 in 3D
(organ 0.93, lesion 0.80).

Generating 1,000 images of 32² or 300 volumes of 16³ takes about a second.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
from scipy.ndimage import gaussian_filter

from .base import DatasetInfo, ImageDataset, to_float_images

CLASS_NAMES = ("background", "organ", "lesion")
BACKGROUND, ORGAN, LESION = 0, 1, 2
LESION_COUNT_PROBS = (0.25, 0.45, 0.30)  # P(0, 1, 2 lesions)
_N_STRUCTURES = 4
_N_LOBES = 3
_EDGE = 0.45  # soft-edge width of every blob, in pixels
_LESION_MARGIN = 1.5  # lesions are clipped to the organ shrunk by this many pixels (at 32 px): a rim of organ
# The organ's mean radius as a share of the side: larger in 3D, where a sphere fills less of a cube
# than a disc fills a square, so that a 16³ organ still holds lesions of a few voxels.
_ORGAN_RADIUS = {2: (0.20, 0.30), 3: (0.26, 0.36)}


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smoothed Gaussian noise, each image scaled to unit standard deviation."""
    noise = gaussian_filter(rng.standard_normal(shape), sigma=(0,) + (sigma,) * (len(shape) - 1))
    axes = tuple(range(1, len(shape)))
    return noise / (noise.std(axis=axes, keepdims=True) + 1e-8)


def _random_rotations(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` random orthogonal d × d matrices (QR of Gaussian matrices, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, d, d)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def _unit_vectors(rng: np.random.Generator, shape: tuple[int, ...], d: int) -> np.ndarray:
    v = rng.standard_normal(shape + (d,))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _soft(signed_distance: np.ndarray) -> np.ndarray:
    """Inside-ness from (boundary − distance): 1 inside, 0 outside, a one-pixel soft edge."""
    return 1.0 / (1.0 + np.exp(-signed_distance / _EDGE))


def _ellipsoids(grid: np.ndarray, centre: np.ndarray, axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """(boundary − distance) of ellipsoids in pixels: grid (d, *spatial), centre and axes (n, m, d),
    rotation (n, m, d, d); returns (n, m, *spatial)."""
    d = grid.shape[0]
    offset = grid[None, None] - centre.reshape(centre.shape + (1,) * d)  # (n, m, d, *spatial)
    local = np.einsum("nmij,nmj...->nmi...", rotation.transpose(0, 1, 3, 2), offset)
    scaled = np.sqrt((local**2 / axes.reshape(axes.shape + (1,) * d) ** 2).sum(axis=2))
    mean_axis = axes.mean(axis=-1).reshape(axes.shape[:2] + (1,) * d)
    return (1.0 - scaled) * mean_axis  # approximately pixels from the surface, positive inside


def _organ(rng: np.random.Generator, grid: np.ndarray, n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boundary − distance) of each image's organ (n, *spatial), its centre (n, d) and its mean
    radius r₀ (n,), which place the lesions."""
    d = grid.shape[0]
    centre = rng.uniform(0.38 * size, 0.62 * size, size=(n, d))
    r0 = rng.uniform(*_ORGAN_RADIUS[d], size=n) * size
    stretch = np.ones((n, d))
    stretch[:, 0] = rng.uniform(1.0, 1.5, size=n)
    rotation = _random_rotations(rng, n, d)
    offset = grid[None] - centre.reshape((n, d) + (1,) * d)  # (n, d, *spatial)
    local = np.einsum("nij,nj...->ni...", rotation.transpose(0, 2, 1), offset)
    local = local / stretch.reshape((n, d) + (1,) * d)
    dist = np.sqrt((local**2).sum(axis=1))
    direction = local / np.maximum(dist, 1e-9)[:, None]
    lobe_axes = _unit_vectors(rng, (n, _N_LOBES), d)
    lobe_amp = rng.uniform(0.0, 0.08, size=(n, _N_LOBES))
    lobe_freq = rng.integers(1, 3, size=(n, _N_LOBES))
    lobe_phase = rng.uniform(0, 2 * np.pi, size=(n, _N_LOBES))
    modulation = np.ones_like(dist)
    for j in range(_N_LOBES):
        projection = np.einsum("ni,ni...->n...", lobe_axes[:, j], direction)
        expand = lambda a: a[:, j].reshape((n,) + (1,) * d)  # noqa: E731
        modulation += expand(lobe_amp) * np.sin(expand(lobe_freq) * np.pi * projection + expand(lobe_phase))
    boundary = r0.reshape((n,) + (1,) * d) * modulation
    return boundary - dist, centre, r0


def _lesions(rng: np.random.Generator, grid: np.ndarray, centre: np.ndarray, r0: np.ndarray,
             size: int) -> tuple[np.ndarray, np.ndarray]:
    """(boundary − distance) of up to two lesions per image (n, 2, *spatial) and whether each is
    present (n, 2). Lesion centres lie well inside the organ: at most 0.45 r₀ from its centre,
    where the organ (lobes ≤ 0.24, stretch ≥ 1) always extends beyond 0.76 r₀."""
    n, d = centre.shape
    scale = max(size / 32.0, 0.6)  # below 32 px lesions shrink less than the image, to keep a shape
    count = rng.choice(3, size=n, p=LESION_COUNT_PROBS)
    present = np.arange(2)[None, :] < count[:, None]
    radius = rng.uniform(2.5, 4.5, size=(n, 2)) * scale
    direction = _unit_vectors(rng, (n, 2), d)
    reach = rng.uniform(0.0, 0.45, size=(n, 2)) * r0[:, None]
    lesion_centre = centre[:, None] + direction * reach[..., None]
    axes = np.repeat(radius[..., None], d, axis=-1)
    eye = np.broadcast_to(np.eye(d), (n, 2, d, d))
    depth = _ellipsoids(grid, lesion_centre, axes, eye)
    return depth, present


def generate_phantoms(n: int, seed: int, *, spatial_dims: int = 2, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (n, *[size] * spatial_dims) and their int64 masks of the same shape, from ``seed``."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims={spatial_dims} is not valid; use 2 (images) or 3 (volumes)")
    if size < 8:
        raise ValueError(f"size={size} is too small for an organ with lesions; use at least 8 pixels a side")
    rng = np.random.default_rng(seed)
    d, scale = spatial_dims, size / 32.0
    shape = (n,) + (size,) * d
    grid = np.stack(np.meshgrid(*(np.arange(size, dtype=np.float64),) * d, indexing="ij"))
    expand = lambda a: np.asarray(a).reshape((n,) + (1,) * d)  # noqa: E731

    image = (expand(rng.uniform(0.30, 0.50, size=n)) + 0.07 * _smooth_noise(rng, shape, 3.0 * scale)
             + 0.03 * _smooth_noise(rng, shape, 0.8 * scale))

    organ_depth, centre, r0 = _organ(rng, grid, n, size)
    organ = _soft(organ_depth)

    structure_axes = rng.uniform(0.06, 0.16, size=(n, _N_STRUCTURES, d)) * size
    structure_axes[..., 0] *= rng.uniform(1.0, 3.0, size=(n, _N_STRUCTURES))  # elongated, like bowel or vessels
    structure_centre = rng.uniform(0.0, size, size=(n, _N_STRUCTURES, d))
    structure_rotation = _random_rotations(rng, n * _N_STRUCTURES, d).reshape(n, _N_STRUCTURES, d, d)
    structures = _soft(_ellipsoids(grid, structure_centre, structure_axes, structure_rotation))
    structure_level = rng.uniform(0.15, 0.90, size=(n, _N_STRUCTURES))
    for m in range(_N_STRUCTURES):  # painted in turn, each over the last, all outside the organ
        weight = structures[:, m] * (1.0 - organ)
        image = image * (1.0 - weight) + expand(structure_level[:, m]) * weight

    capsule = np.exp(-((organ_depth + 0.8) ** 2) / (2 * (0.6 * max(scale, 0.75)) ** 2))  # just outside the border
    image -= 0.12 * capsule * (1.0 - organ)
    organ_level = expand(rng.uniform(0.45, 0.65, size=n)) + 0.02 * _smooth_noise(rng, shape, 1.0 * scale)
    image = image * (1.0 - organ) + organ_level * organ

    lesion_depth, present = _lesions(rng, grid, centre, r0, size)
    contrast = rng.uniform(0.18, 0.30, size=(n, 2)) * rng.choice((-1.0, 1.0), size=(n, 2))
    margin = _LESION_MARGIN * max(scale, 2 / 3)
    interior = _soft(organ_depth - margin)  # lesions keep a rim of organ around them
    lesion_soft = _soft(lesion_depth) * present.reshape((n, 2) + (1,) * d) * interior[:, None]
    for k in range(2):
        image = image + expand(contrast[:, k]) * lesion_soft[:, k]

    ramp_direction = _unit_vectors(rng, (n,), d)
    ramp = np.einsum("ni,i...->n...", ramp_direction, grid - (size - 1) / 2.0) / size
    image += expand(rng.uniform(0.0, 0.20, size=n)) * ramp + 0.04 * _smooth_noise(rng, shape, 6.0 * scale)
    image += 0.03 * rng.standard_normal(shape)

    mask = np.zeros(shape, dtype=np.int64)
    mask[organ_depth > 0] = ORGAN
    lesion_hard = ((lesion_depth > 0) & present.reshape((n, 2) + (1,) * d)).any(axis=1)
    mask[lesion_hard & (organ_depth > margin)] = LESION
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), mask


def load_phantom(*, spatial_dims: int = 2, n_train: int = 1000, n_val: int = 200, n_test: int = 200, seed: int = 0,
                 size: int | None = None) -> ImageDataset:
    """The phantom segmentation dataset: train, validation and test splits from disjoint seeds
    (``seed·1000 + 0, 1, 2``); ``size`` defaults to 32 (2D) or 16 (3D)."""
    size = (32 if spatial_dims == 2 else 16) if size is None else int(size)
    name = f"phantom{spatial_dims}d"
    splits = {}
    for offset, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        x, y = generate_phantoms(n, seed * 1000 + offset, spatial_dims=spatial_dims, size=size)
        splits[split] = (to_float_images(x, what=f"{name} {split}", spatial_dims=spatial_dims), y)
    info = DatasetInfo(
        name=name,
        task="segmentation",
        n_channels=1,
        image_size=(size,) * spatial_dims,
        class_names=CLASS_NAMES,
        licence="CC0-1.0 (generated by medprivbench)",
        citation=f"medprivbench {spatial_dims}D organ/lesion phantoms (procedural; no patient data)",
        source=f"generated (seed {seed})",
        real_patient_data=False,
    )
    return ImageDataset(
        train_x=splits["train"][0], train_y=splits["train"][1],
        test_x=splits["test"][0], test_y=splits["test"][1],
        val_x=splits["val"][0], val_y=splits["val"][1], info=info,
    )


def _band_counts(images: np.ndarray, masks: np.ndarray, n_classes: int, bins: int) -> np.ndarray:
    """Per image, the cumulative count of pixels of each true class below each grey-level bin edge:
    (N, K, bins + 1), entry [n, k, b] = #{pixels of image n in class k with bin < b}."""
    level = np.minimum((images.reshape(len(images), -1) * bins).astype(np.int64), bins - 1)
    flat_masks = masks.reshape(len(masks), -1)
    index = (np.arange(len(images))[:, None] * n_classes + flat_masks) * bins + level
    hist = np.bincount(index.ravel(), minlength=len(images) * n_classes * bins).reshape(len(images), n_classes, bins)
    return np.concatenate([np.zeros(hist.shape[:2] + (1,), np.int64), np.cumsum(hist, axis=2)], axis=2)


def threshold_baseline(ds: ImageDataset, *, bins: int = 64) -> dict:
    """The best intensity-only segmentation of a three-class dataset (background, organ, lesion).

    Two global thresholds t₁ ≤ t₂ cut the intensity range into three bands; each band is assigned
    one class, in whichever of the 3! orders fits best. Thresholds (on a grid of ``bins`` grey
    levels) and order are chosen on the training split to maximise the mean foreground Dice (per
    image, averaged over images, a class absent from truth and prediction counting 1, as
    :func:`benchmark.segmentation.dice_iou` counts it); they are then scored on the test split with
    :func:`~medprivbench.benchmark.segmentation.dice_iou`. Single-channel images only.

    Returns ``dice`` (mean foreground Dice on test), ``dice_<class>`` for each foreground class,
    ``thresholds`` [t₁, t₂] as intensities in [0, 1], ``order`` (the class of the low, middle and
    high band), and ``train_dice`` (the training split's Dice at the chosen setting).
    """
    from medprivbench.benchmark.segmentation import dice_iou

    k = ds.info.n_classes
    if k != 3 or ds.train_x.shape[1] != 1:
        raise ValueError(f"threshold_baseline needs single-channel images and 3 classes, got {ds.train_x.shape[1]} "
                         f"channel(s) and {k} classes")
    cum = _band_counts(ds.train_x[:, 0], ds.train_y, k, bins)  # (N, K, bins + 1)
    lo, hi = np.triu_indices(bins + 1)  # every t1 <= t2 on the grid, (P,)
    edges = np.stack([np.zeros_like(lo), lo, hi, np.full_like(lo, bins)])  # band b spans [edges[b], edges[b+1])
    in_band = cum[:, :, edges[1:]] - cum[:, :, edges[:-1]]  # (N, K, 3 bands, P)
    truth = cum[:, :, -1]  # (N, K)
    predicted = in_band.sum(axis=1)  # pixels per band (N, 3, P)
    best = (-1.0, None, None)
    for order in permutations(range(k)):
        dice = np.zeros(lo.shape)
        for band, cls in enumerate(order):
            if cls == BACKGROUND:
                continue
            tp, pred, true = in_band[:, cls, band], predicted[:, band], truth[:, cls, None]
            denom = pred + true
            dice += np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0).mean(axis=0)
        dice /= k - 1
        p = int(np.argmax(dice))
        if dice[p] > best[0]:
            best = (float(dice[p]), order, (lo[p] / bins, hi[p] / bins))
    train_dice, order, (t1, t2) = best
    band = np.digitize(ds.test_x[:, 0], [t1, t2])  # 0 below t1, 1 in [t1, t2), 2 from t2
    pred = np.asarray(order)[band]
    dice, _ = dice_iou(pred, ds.test_y, k)
    out = {"dice": float(dice[:, 1:].mean())}
    out.update({f"dice_{name}": float(dice[:, j].mean()) for j, name in enumerate(ds.info.class_names) if j})
    out.update(thresholds=[float(t1), float(t2)], order=[ds.info.class_names[c] for c in order], train_dice=train_dice)
    return out
