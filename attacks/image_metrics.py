"""Scoring reconstructions against the true images: PSNR, SSIM, MSE, NCC, matching and ReRo@η.

This module is the only place where ground truth meets an attack's output (the attacks in
``reconstruction.py`` and ``imprint.py`` never see the true images). Images are float arrays in
[0, 1] (data range 1): 2D images of shape (B, C, H, W) or (B, H, W), or 3D volumes of shape
(B, C, D, H, W) (a volume must carry its channel axis: four dimensions always mean 2D images);
torch tensors and NumPy arrays are accepted. Every metric is computed per image (per volume: over
all of its channels and voxels) and returned as a float64 array of length B.

* MSE  = mean over pixels (voxels) of (x − x̂)².
* PSNR = 10 · log10(R² / MSE) dB with data range R = 1; +inf for identical images.
* NCC  = ⟨x − x̄, x̂ − x̂̄⟩ / (‖x − x̄‖ · ‖x̂ − x̂̄‖), the mean-subtracted normalised
  cross-correlation (Pearson correlation of the pixels), in [−1, 1]; undefined when either image
  is constant, reported as 0 then.
* SSIM = the structural similarity index of Wang, Bovik, Sheikh & Simoncelli, "Image quality
  assessment: from error visibility to structural similarity", IEEE TIP 13(4), 2004: local means,
  variances and covariance under an 11×11 Gaussian window (σ = 1.5, normalised), constants
  C1 = (K1·R)², C2 = (K2·R)² with K1 = 0.01, K2 = 0.03, R = 1, averaged over the positions where
  the window fits inside the image; for C > 1 channels, the mean over channels. For volumes, the
  standard 3D extension of the same index: the window is the 11×11×11 Gaussian (σ = 1.5 along
  each axis, the product of three normalised 1D Gaussians), with the same constants, averaged over
  the positions where the cube fits inside the volume. Computed by MONAI's
  ``monai.metrics.compute_ssim_and_cs`` (``spatial_dims`` 2 or 3) with exactly these settings;
  every spatial axis (H, W, and D for volumes) must be at least 11 long. MONAI computes in
  float32 (it casts its inputs) and forms the variances as E[x²] − E[x]², which loses digits where
  the image is flat and bright: values agree with a float64 evaluation of the same formula to
  2e-4 on MedMNIST images and reconstructions of them (typically 1e-5), and to 2e-3 at worst (two
  uniform images of grey levels 0.95 and 0.9); a noisy random volume agrees to 1e-6.

Reconstructions are matched to true images one to one by the Hungarian algorithm
(:func:`match_reconstructions`), as in breaching and Ziller et al. 2024, so an attack that returns
more candidates than there were images (the imprint attack) is scored on its best assignment.
ReRo@η ("reconstruction robustness", Balle, Cherubin & Hayes 2022; Hayes et al. 2023) is the share
of true images whose matched reconstruction beats threshold η on a metric.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

DATA_RANGE = 1.0

# Wang et al. 2004 constants: an 11×11 (11×11×11 for volumes) Gaussian window of σ = 1.5,
# normalised to sum 1.
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WINDOW = 11
# Pairs per MONAI call: at most SSIM_CHUNK pairs and at most SSIM_CHUNK_VOXELS voxels (channels
# included) per side, which bounds the memory of its five filtered float32 copies of the chunk
# (about 1 GiB at 2^24 voxels). A single volume larger than that is still scored, one per call.
SSIM_CHUNK = 256
SSIM_CHUNK_VOXELS = 2**24

# ReRo@η defaults: a reconstruction counts as successful when PSNR ≥ 20 dB (equivalently
# MSE ≤ 0.01), SSIM ≥ 0.5 or NCC ≥ 0.8. Override any of them with ``eta={"psnr": 30.0}``.
DEFAULT_ETA: dict[str, float] = {"psnr": 20.0, "ssim": 0.5, "mse": 0.01, "ncc": 0.8}

# Whether a larger value of the metric means a better reconstruction.
HIGHER_IS_BETTER: dict[str, bool] = {"psnr": True, "ssim": True, "mse": False, "ncc": True}


# --------------------------------------------------------------------------------------------
def as_image_batch(images, name: str = "images") -> np.ndarray:
    """Validate and convert to a float64 array (B, C, H, W) or (B, C, D, H, W).

    (B, H, W) gains a channel axis and stays 2D; volumes must come as (B, C, D, H, W).
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim not in (4, 5):
        raise ValueError(f"{name} has shape {array.shape}; expected 2D images (B, C, H, W) or (B, H, W), "
                         f"or 3D volumes (B, C, D, H, W)")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; expected at least one image")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected finite pixel values in [0, 1]")
    return array


def _pair(truth, recon) -> tuple[np.ndarray, np.ndarray]:
    truth, recon = as_image_batch(truth, "truth"), as_image_batch(recon, "recon")
    if truth.shape != recon.shape:
        raise ValueError(f"truth has shape {truth.shape} but recon has {recon.shape}; per-image metrics need equal shapes")
    return truth, recon


# --------------------------------------------------------------------------------------------
def mse(truth, recon) -> np.ndarray:
    """Mean squared error per image (per volume), over all its channels and pixels (voxels)."""
    truth, recon = _pair(truth, recon)
    return ((truth - recon) ** 2).reshape(len(truth), -1).mean(axis=1)


def psnr_from_mse(mse_values: np.ndarray, data_range: float = DATA_RANGE) -> np.ndarray:
    """PSNR = 10·log10(R²/MSE) in dB; +inf where MSE = 0."""
    mse_values = np.asarray(mse_values, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse_values)


def psnr(truth, recon, *, data_range: float = DATA_RANGE) -> np.ndarray:
    """Peak signal-to-noise ratio per image in dB (data range 1 by default)."""
    return psnr_from_mse(mse(truth, recon), data_range)


def _centred_rows(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image (volume) flattened and mean-subtracted, one per row, and the rows' norms."""
    rows = batch.reshape(len(batch), -1)
    rows = rows - rows.mean(axis=1, keepdims=True)
    return rows, np.linalg.norm(rows, axis=1)


def _correlation(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator clipped to [−1, 1]; 0 where the denominator is 0 (a constant image)."""
    out = np.zeros_like(numerator)
    defined = denominator > 0
    out[defined] = numerator[defined] / denominator[defined]
    return np.clip(out, -1.0, 1.0)


def ncc(truth, recon) -> np.ndarray:
    """Mean-subtracted normalised cross-correlation per image, in [−1, 1] (0 if either is constant)."""
    truth, recon = _pair(truth, recon)
    (a, norm_a), (b, norm_b) = _centred_rows(truth), _centred_rows(recon)
    return _correlation((a * b).sum(axis=1), norm_a * norm_b)


def _ssim_chunk_size(item_shape: tuple[int, ...]) -> int:
    """Pairs per MONAI call for items of ``item_shape`` (C, H, W) or (C, D, H, W)."""
    return max(1, min(SSIM_CHUNK, SSIM_CHUNK_VOXELS // math.prod(item_shape)))


def _ssim_pairs(truth: np.ndarray, recon: np.ndarray, data_range: float) -> np.ndarray:
    """Gaussian-window SSIM (Wang et al. 2004) of each pair of two (B, C, H, W) or (B, C, D, H, W) batches.

    MONAI returns the SSIM map at every position where the window fits, per channel; its mean is
    the mean over channels of each channel's mean SSIM, since every channel has the same positions.
    """
    from monai.metrics import compute_ssim_and_cs  # imported here: importing MONAI takes seconds

    spatial_dims = truth.ndim - 2
    chunk = _ssim_chunk_size(truth.shape[1:])
    values = []
    for start in range(0, len(truth), chunk):
        index_map, _ = compute_ssim_and_cs(
            y_pred=torch.from_numpy(np.ascontiguousarray(recon[start : start + chunk])),
            y=torch.from_numpy(np.ascontiguousarray(truth[start : start + chunk])),
            spatial_dims=spatial_dims,
            kernel_size=(SSIM_WINDOW,) * spatial_dims,
            kernel_sigma=(SSIM_SIGMA,) * spatial_dims,
            data_range=data_range,
            kernel_type="gaussian",
            k1=SSIM_K1,
            k2=SSIM_K2,
        )
        values.append(index_map.flatten(1).double().mean(1).numpy())
    return np.concatenate(values)


def ssim(truth, recon, *, data_range: float = DATA_RANGE) -> np.ndarray:
    """Structural similarity (Wang et al. 2004; 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03) per image.

    For volumes, the 3D extension: an 11×11×11 Gaussian window (σ = 1.5 on each axis), same constants.
    """
    truth, recon = _pair(truth, recon)
    _check_ssim_size(truth.shape)
    return _ssim_pairs(truth, recon, data_range)


def _check_ssim_size(shape: tuple[int, ...]) -> None:
    """Every spatial axis of a (B, C, H, W) or (B, C, D, H, W) batch must hold the whole window."""
    spatial = shape[2:]
    if min(spatial) < SSIM_WINDOW:
        axes = "D, H, W" if len(spatial) == 3 else "H, W"
        window = "×".join([str(SSIM_WINDOW)] * len(spatial))
        raise ValueError(f"{'volumes' if len(spatial) == 3 else 'images'} of shape {tuple(shape)} are too small for SSIM: "
                         f"its {window} Gaussian window needs every spatial axis ({axes}) ≥ {SSIM_WINDOW}")


METRICS: dict[str, Callable[..., np.ndarray]] = {"psnr": psnr, "ssim": ssim, "mse": mse, "ncc": ncc}


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not valid; choose one of {', '.join(METRICS)}")


# --------------------------------------------------------------------------------------------
def pairwise_distance(truth, recon, metric: str = "mse") -> np.ndarray:
    """Distance matrix D[i, j] between true image i and reconstruction j (smaller is closer).

    MSE is used as is; PSNR, SSIM and NCC are negated, so that every metric is minimised.
    """
    _check_metric(metric)
    truth, recon = as_image_batch(truth, "truth"), as_image_batch(recon, "recon")
    if truth.shape[1:] != recon.shape[1:]:
        raise ValueError(f"truth images have shape {truth.shape[1:]} but reconstructions {recon.shape[1:]}; they must agree")
    if metric in ("mse", "psnr"):
        flat_t, flat_r = truth.reshape(len(truth), -1), recon.reshape(len(recon), -1)
        squared = (flat_t**2).sum(1)[:, None] - 2 * flat_t @ flat_r.T + (flat_r**2).sum(1)[None, :]
        distance = np.maximum(squared, 0.0) / flat_t.shape[1]
        return distance if metric == "mse" else -psnr_from_mse(distance)
    if metric == "ssim":
        _check_ssim_size(truth.shape)
        return -np.stack([_ssim_pairs(np.broadcast_to(t, recon.shape), recon, DATA_RANGE) for t in truth])
    # every pair's NCC from one product of the centred images: no n·m copies of the batch
    (a, norm_a), (b, norm_b) = _centred_rows(truth), _centred_rows(recon)
    return -_correlation(a @ b.T, np.outer(norm_a, norm_b))


def match_reconstructions(truth, recon, metric: str = "mse") -> tuple[np.ndarray, np.ndarray]:
    """Assign true images distinct reconstructions one to one, minimising the summed distance.

    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on :func:`pairwise_distance`.
    With more reconstructions than true images the surplus stays unmatched; with fewer (an attack
    that found fewer distinct candidates than the batch holds) only that many true images are
    matched. Returns ``(row_ind, col_ind)``, sorted by true image: true image ``row_ind[k]`` is
    matched to reconstruction ``col_ind[k]``.
    """
    distance = pairwise_distance(truth, recon, metric)
    distance = np.where(np.isfinite(distance), distance, -1e12)  # PSNR = +inf: the best possible match
    return linear_sum_assignment(distance)


# --------------------------------------------------------------------------------------------
def _resolve_eta(eta: Optional[Mapping[str, float]]) -> dict[str, float]:
    resolved = dict(DEFAULT_ETA)
    for key, value in (eta or {}).items():
        if key not in DEFAULT_ETA:
            raise ValueError(f"eta key {key!r} is not valid; choose among {', '.join(DEFAULT_ETA)}")
        if not math.isfinite(float(value)):
            raise ValueError(f"eta[{key!r}]={value!r} is not valid; expected a finite number")
        resolved[key] = float(value)
    return resolved


def rero(values: Sequence[Optional[float]], metric: str, eta: float) -> float:
    """ReRo@η: share of images whose metric beats η (≥ η, or ≤ η for MSE); None (unmatched) fails."""
    _check_metric(metric)
    beats = (lambda v: v >= eta) if HIGHER_IS_BETTER[metric] else (lambda v: v <= eta)
    return float(np.mean([v is not None and bool(beats(v)) for v in values]))


def reconstruction_report(truth, recon, *, eta: Optional[Mapping[str, float]] = None, match_metric: str = "mse") -> dict:
    """Match reconstructions to true images, then score every pair.

    Returns a JSON-friendly dict (plain floats, lists and None; PSNR may be +inf for an exact
    copy): ``n_images``, ``n_candidates``, ``n_matched``, ``match_metric``,
    ``matched_candidate`` (index into ``recon`` per true image, None if unmatched),
    ``per_image`` {metric: list, None for an unmatched true image}, ``<metric>_mean`` and
    ``<metric>_max`` over the matched images for psnr, ssim, mse and ncc, ``rero_<metric>``
    (ReRo@η over *all* true images: an unmatched one counts as not reconstructed) and the
    thresholds used in ``eta`` (defaults in :data:`DEFAULT_ETA`: PSNR ≥ 20 dB, SSIM ≥ 0.5,
    MSE ≤ 0.01, NCC ≥ 0.8).
    """
    thresholds = _resolve_eta(eta)
    truth_array = as_image_batch(truth, "truth")
    recon_array = as_image_batch(recon, "recon")
    rows, cols = match_reconstructions(truth_array, recon_array, match_metric)
    n = len(truth_array)
    matched_candidate: list[Optional[int]] = [None] * n
    for r, c in zip(rows, cols):
        matched_candidate[int(r)] = int(c)
    report: dict = {
        "n_images": n,
        "n_candidates": len(recon_array),
        "n_matched": len(rows),
        "match_metric": match_metric,
        "matched_candidate": matched_candidate,
        "per_image": {},
    }
    for name, fn in METRICS.items():
        values = fn(truth_array[rows], recon_array[cols])
        per_image: list[Optional[float]] = [None] * n
        for r, v in zip(rows, values):
            per_image[int(r)] = float(v)
        report["per_image"][name] = per_image
        report[f"{name}_mean"] = float(np.mean(values))
        report[f"{name}_max"] = float(np.max(values))
        report[f"rero_{name}"] = rero(per_image, name, thresholds[name])
    report["eta"] = thresholds
    return report


# --------------------------------------------------------------------------------------------
VOLUME_VIEWS = ("axial", "coronal", "sagittal")


def save_image_grid(truth, recon, path, *, title: Optional[str] = None, match_metric: str = "mse") -> Path:
    """Write a PNG: true images in the top row, their matched reconstructions (with PSNR) below.

    Reconstructions are matched to the true images first (:func:`match_reconstructions`), so a
    candidate set larger than the batch shows only the matched candidates (and a true image left
    unmatched by a smaller set shows an empty panel). A volume (C, D, H, W) is shown as its three
    orthogonal mid-slices, one above the other: axial (the middle D slice), coronal (the middle H
    slice) and sagittal (the middle W slice), in array order, without reorientation.
    """
    fig = _grid_figure(truth, recon, title=title, match_metric=match_metric)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _grid_figure(truth, recon, *, title: Optional[str], match_metric: str):
    """The figure :func:`save_image_grid` writes: one column per image; two rows (truth,
    reconstruction) for images, six for volumes (truth's three mid-slices, then the reconstruction's)."""
    from matplotlib.figure import Figure  # drawn with Agg, no pyplot state or display needed

    truth_array = as_image_batch(truth, "truth")
    recon_array = as_image_batch(recon, "recon")
    rows, cols = match_reconstructions(truth_array, recon_array, match_metric)
    n = len(truth_array)
    matched: list[Optional[np.ndarray]] = [None] * n
    for r, c in zip(rows, cols):
        matched[int(r)] = recon_array[c]
    volumes = truth_array.ndim == 5
    panels = len(VOLUME_VIEWS) if volumes else 1
    fig = Figure(figsize=(1.4 * n + 0.6, 1.6 * 2 * panels + 0.5))
    axes = fig.subplots(2 * panels, n, squeeze=False)
    for k in range(n):
        for block, image in enumerate((truth_array[k], matched[k])):
            views = _mid_slices(image) if volumes and image is not None else [image] * panels
            for p, view in enumerate(views):
                ax = axes[block * panels + p, k]
                if view is not None:
                    _show(ax, view)
                ax.set_xticks([])
                ax.set_yticks([])
        label = "unmatched" if matched[k] is None else f"{psnr(truth_array[k : k + 1], matched[k][None])[0]:.1f} dB"
        axes[-1, k].set_xlabel(label, fontsize=8)
    for block, name in enumerate(("truth", "reconstruction")):
        for p in range(panels):
            view = f"\n{VOLUME_VIEWS[p]}" if volumes else ""
            axes[block * panels + p, 0].set_ylabel(f"{name}{view}", fontsize=8 if volumes else None)
    caption = "each volume: axial / coronal / sagittal mid-slices" if volumes else None
    heading = "\n".join(part for part in (title, caption) if part)
    if heading:
        fig.suptitle(heading, fontsize=10 if volumes else None)
    fig.tight_layout()
    return fig


def _mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The axial, coronal and sagittal mid-slices (C, ·, ·) of a volume (C, D, H, W)."""
    _, d, h, w = volume.shape
    return [volume[:, d // 2], volume[:, :, h // 2], volume[:, :, :, w // 2]]


def _show(ax, image: np.ndarray) -> None:
    image = np.clip(image, 0.0, 1.0)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(np.moveaxis(image[:3], 0, -1))
