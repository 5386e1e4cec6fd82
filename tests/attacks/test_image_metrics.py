"""Image metrics checked against closed forms and independent implementations."""

import json
import math
import re

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter
from scipy.signal import convolve2d

from medprivbench.attacks.image_metrics import (
    DEFAULT_ETA,
    _grid_figure,
    as_image_batch,
    match_reconstructions,
    mse,
    ncc,
    pairwise_distance,
    psnr,
    reconstruction_report,
    save_image_grid,
    ssim,
)
from medprivbench.datasets.synthetic import generate_images
from tests.conftest import shared_file

# MONAI computes SSIM in float32; the variances E[x²] − E[x]² then lose digits where an image is
# flat and bright. Textured images agree with the float64 formula to about 1e-5, MedMNIST images
# to 2e-4, and uniform images (the worst case) to 2e-3.
TEXTURED_TOLERANCE = 1e-5
MEDMNIST_TOLERANCE = 2e-4
UNIFORM_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x, _ = generate_images(6, seed=11, size=28)
    return x[:, None].astype(np.float64) / 255.0


def _ssim_index(filt, a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM formula in float64, ``filt`` the normalised Gaussian window at 'valid' positions."""
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 from the formula: 11×11 Gaussian window (σ = 1.5), 'valid' positions, R = 1.

    ``a``, ``b``: (H, W) or (C, H, W) in float64; several channels give the mean over channels.
    """
    if a.ndim == 3:
        return float(np.mean([_reference_ssim(x, y) for x, y in zip(a, b)]))
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    filt = lambda z: convolve2d(z, window, mode="valid")  # noqa: E731
    return _ssim_index(filt, a, b)


def test_identical_images_are_perfect(images):
    assert np.all(np.isinf(psnr(images, images)))
    assert np.allclose(ssim(images, images), 1.0)
    assert np.allclose(mse(images, images), 0.0)
    assert np.allclose(ncc(images, images), 1.0)


def test_constant_offset_has_analytic_psnr_and_full_correlation(images):
    shifted = images * 0.5 + 0.2  # in [0.2, 0.7]: a further +0.1 stays inside [0, 1]
    for delta in (0.01, 0.1):
        assert np.allclose(psnr(shifted, shifted + delta), -20 * math.log10(delta))
        assert np.allclose(mse(shifted, shifted + delta), delta**2)
        assert np.allclose(ncc(shifted, shifted + delta), 1.0)


def test_ssim_equals_an_independent_computation(images):
    rng = np.random.default_rng(0)
    noisy = np.clip(images + 0.08 * rng.standard_normal(images.shape), 0, 1)
    ours = ssim(images, noisy)
    reference = [_reference_ssim(t[0], r[0]) for t, r in zip(images, noisy)]
    assert np.allclose(ours, reference, rtol=0, atol=TEXTURED_TOLERANCE)
    assert np.all(ours < 0.99) and np.all(ours > 0.0)


def test_ssim_of_several_channels_and_non_square_images_is_the_mean_over_channels():
    rng = np.random.default_rng(6)
    truth = rng.random((3, 3, 14, 19))
    recon = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    reference = [_reference_ssim(t, r) for t, r in zip(truth, recon)]
    assert np.allclose(ssim(truth, recon), reference, rtol=0, atol=TEXTURED_TOLERANCE)


def test_ssim_of_uniform_images_has_its_closed_form():
    # Zero variances everywhere: SSIM = (2ab + C1) / (a² + b² + C1), C1 = 0.01².
    c1 = 0.01**2
    for a, b in [(0.0, 1.0), (0.3, 0.0), (0.2, 0.7), (0.5, 0.45), (0.95, 0.9), (0.6, 0.6)]:
        x, y = np.full((1, 1, 16, 20), a), np.full((1, 1, 16, 20), b)
        expected = (2 * a * b + c1) / (a**2 + b**2 + c1)
        # a black image, or two equal ones, leave no variance to cancel: float32 resolution only
        tolerance = 1e-6 if 0.0 in (a, b) or a == b else UNIFORM_TOLERANCE
        assert ssim(x, y)[0] == pytest.approx(expected, abs=tolerance)


def test_ssim_on_medmnist_images_equals_an_independent_computation():
    x = np.load(shared_file("pneumoniamnist.npz"))["train_images"][:16, None].astype(np.float64) / 255.0
    rng = np.random.default_rng(7)
    for recon in (np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1), x[::-1], np.full(x.shape, 0.5)):
        reference = [_reference_ssim(t[0], r[0]) for t, r in zip(x, recon)]
        assert np.allclose(ssim(x, recon), reference, rtol=0, atol=MEDMNIST_TOLERANCE)


def test_ssim_agrees_with_monai(images):
    from monai.metrics import SSIMMetric

    noisy = np.clip(images + 0.05 * np.random.default_rng(1).standard_normal(images.shape), 0, 1)
    monai = SSIMMetric(spatial_dims=2, data_range=1.0, kernel_type="gaussian", win_size=11, kernel_sigma=1.5, k1=0.01, k2=0.03)
    expected = monai(torch.tensor(noisy, dtype=torch.float64), torch.tensor(images, dtype=torch.float64)).squeeze(1).numpy()
    assert np.allclose(ssim(images, noisy), expected, atol=1e-5)


def test_ssim_agrees_with_scikit_image(images):
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is optional (it comes with the medmnist extra)")
    noisy = np.clip(images + 0.05 * np.random.default_rng(8).standard_normal(images.shape), 0, 1)
    expected = [
        metrics.structural_similarity(t, r, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, K1=0.01, K2=0.03)
        for t, r in zip(images, noisy)
    ]
    assert np.allclose(ssim(images, noisy), expected, rtol=0, atol=TEXTURED_TOLERANCE)


def test_ssim_matching_distances_are_the_pairwise_ssim(images):
    candidates = np.clip(images[::-1] + 0.05 * np.random.default_rng(9).standard_normal(images.shape), 0, 1)
    expected = [[ssim(t[None], c[None])[0] for c in candidates[:4]] for t in images]
    assert np.allclose(-pairwise_distance(images, candidates[:4], "ssim"), expected, rtol=0, atol=1e-12)


def test_ncc_is_pearson_correlation_and_sign_aware(images):
    rng = np.random.default_rng(2)
    other = rng.random(images.shape)
    expected = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(images, other)]
    assert np.allclose(ncc(images, other), expected)
    assert np.allclose(ncc(images, 1.0 - images), -1.0)
    assert ncc(np.zeros((1, 1, 12, 12)), images[:1, :, :12, :12])[0] == 0.0  # undefined → 0


def test_accepts_tensors_and_three_dimensional_batches(images):
    as_tensor = torch.tensor(images[:, 0], dtype=torch.float32)
    assert np.allclose(psnr(as_tensor, as_tensor + 0.1), 20.0, atol=1e-4)


def test_invalid_inputs_are_rejected(images):
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(images, images[:2])
    with pytest.raises(ValueError, match="too small for SSIM"):
        ssim(images[:, :, :8, :8], images[:, :, :8, :8])
    with pytest.raises(ValueError, match="NaN"):
        mse(images, np.full(images.shape, np.nan))
    with pytest.raises(ValueError, match="metric="):
        match_reconstructions(images, images, metric="lpips")


@pytest.mark.parametrize("metric", ["mse", "psnr", "ssim", "ncc"])
def test_hungarian_matching_recovers_a_shuffled_batch(images, metric):
    permutation = np.random.default_rng(3).permutation(len(images))
    noisy = np.clip(images[permutation] + 0.02 * np.random.default_rng(4).standard_normal(images.shape), 0, 1)
    rows, cols = match_reconstructions(images, noisy, metric=metric)
    assert np.array_equal(rows, np.arange(len(images)))
    assert np.array_equal(permutation[cols], np.arange(len(images)))


def test_matching_with_more_candidates_than_images(images):
    distractors = np.random.default_rng(5).random((10, *images.shape[1:]))
    candidates = np.concatenate([distractors[:4], images[::-1], distractors[4:]])
    _, cols = match_reconstructions(images, candidates)
    assert np.array_equal(cols, 4 + np.arange(len(images))[::-1])


def test_fewer_candidates_than_images_leave_some_unmatched(images, tmp_path):
    candidates = images[[4, 1, 2]]
    rows, cols = match_reconstructions(images, candidates)
    assert rows.tolist() == [1, 2, 4] and cols.tolist() == [1, 2, 0]
    report = reconstruction_report(images, candidates)
    assert report["n_matched"] == 3 and report["matched_candidate"] == [None, 1, 2, None, 0, None]
    assert report["per_image"]["psnr"][0] is None and math.isinf(report["per_image"]["psnr"][1])
    assert report["rero_psnr"] == pytest.approx(0.5)  # unmatched images count as not reconstructed
    json.dumps(report)
    assert save_image_grid(images, candidates, tmp_path / "partial.png").is_file()


def test_report_scores_matched_pairs_and_rero(images):
    recon = images.copy()
    recon[0] = np.clip(recon[0] + 0.05, 0, 1)  # PSNR ≈ 26 dB: beats 20 dB
    recon[1] = np.clip(recon[1] + 0.15, 0, 1)  # PSNR ≈ 17 dB: fails
    permutation = np.array([3, 0, 5, 1, 4, 2])
    report = reconstruction_report(images, recon[permutation])
    assert report["matched_candidate"] == [int(np.where(permutation == k)[0][0]) for k in range(len(images))]
    per_image = np.array(report["per_image"]["psnr"])
    assert np.isinf(per_image[2:]).all() and 20 < per_image[0] < 30 and per_image[1] < 20
    assert report["rero_psnr"] == pytest.approx(5 / 6)
    assert report["psnr_max"] == math.inf and report["ssim_max"] == pytest.approx(1.0)
    assert report["mse_mean"] == pytest.approx(float(np.mean(mse(images, recon))))
    assert report["eta"] == DEFAULT_ETA
    json.dumps(report)  # JSON-friendly (inf is written as Infinity, as the results store allows)


def test_report_thresholds_are_configurable_and_validated(images):
    recon = np.clip(images + 0.05, 0, 1)
    assert reconstruction_report(images, recon, eta={"psnr": 20.0})["rero_psnr"] == 1.0
    assert reconstruction_report(images, recon, eta={"psnr": 40.0})["rero_psnr"] == 0.0
    assert reconstruction_report(images, recon, eta={"mse": 1e-4})["rero_mse"] == 0.0
    with pytest.raises(ValueError, match="eta key"):
        reconstruction_report(images, recon, eta={"lpips": 0.1})


def test_image_grid_is_written(images, tmp_path):
    candidates = np.concatenate([images[::-1], np.zeros((2, *images.shape[1:]))])
    path = save_image_grid(images, candidates, tmp_path / "grid" / "recon.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# 3D volumes (B, C, D, H, W)
@pytest.fixture(scope="module")
def volumes() -> np.ndarray:
    """Five smooth random volumes of 1 channel, 12×14×13 voxels, in [0, 1] and distinct."""
    rng = np.random.default_rng(21)
    raw = np.stack([gaussian_filter(rng.random((12, 14, 13)), sigma=1.5) for _ in range(5)])
    low, high = raw.min(axis=(1, 2, 3), keepdims=True), raw.max(axis=(1, 2, 3), keepdims=True)
    return ((raw - low) / (high - low))[:, None]


def _reference_ssim_3d(a: np.ndarray, b: np.ndarray) -> float:
    """3D SSIM by brute force in float64: 11×11×11 Gaussian window (σ = 1.5), 'valid' positions, R = 1.

    ``a``, ``b``: (D, H, W). Each local statistic is the window-weighted sum over the 11³ voxels
    under the window, at every position where the cube fits inside the volume.
    """
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    window = g[:, None, None] * g[None, :, None] * g[None, None, :]
    window /= window.sum()
    filt = lambda z: np.einsum("dhwijk,ijk->dhw", sliding_window_view(z, (11, 11, 11)), window)  # noqa: E731
    return _ssim_index(filt, a, b)


def test_volumes_keep_their_shape_and_four_dimensions_stay_two_dimensional(volumes):
    assert as_image_batch(volumes).shape == volumes.shape
    assert as_image_batch(volumes[:, 0]).shape == volumes[:, 0].shape  # (B, C, H, W): 2D, never guessed 3D
    assert as_image_batch(volumes[:, 0, 0]).shape == (5, 1, 14, 13)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        as_image_batch(volumes[None])


def test_volume_psnr_of_a_constant_offset_has_its_closed_form(volumes):
    shifted = volumes * 0.5 + 0.2
    for delta in (0.01, 0.1):
        assert np.allclose(psnr(shifted, shifted + delta), 10 * math.log10(1 / delta**2))
        assert np.allclose(mse(shifted, shifted + delta), delta**2)
        assert np.allclose(ncc(shifted, shifted + delta), 1.0)
    assert np.all(np.isinf(psnr(volumes, volumes)))


def test_volume_metrics_are_per_volume(volumes):
    recon = volumes.copy()
    recon[2] = np.clip(recon[2] + 0.1, 0, 1)  # only volume 2 differs
    assert np.flatnonzero(mse(volumes, recon)).tolist() == [2]
    expected = ((volumes[2] - recon[2]) ** 2).mean()
    assert mse(volumes, recon)[2] == pytest.approx(expected, rel=1e-12)


def test_volume_ssim_of_identical_and_inverted_volumes(volumes):
    assert np.allclose(ssim(volumes, volumes), 1.0, atol=1e-6)
    assert np.all(ssim(volumes, 1.0 - volumes) < 0.5)


def test_volume_ssim_equals_a_float64_brute_force():
    rng = np.random.default_rng(22)
    truth = rng.random((2, 1, 12, 13, 14))
    recon = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    reference = [_reference_ssim_3d(t[0], r[0]) for t, r in zip(truth, recon)]
    assert np.allclose(ssim(truth, recon), reference, rtol=0, atol=1e-3)
    assert np.allclose(ssim(truth, recon), reference, rtol=0, atol=TEXTURED_TOLERANCE)  # as tight as 2D


def test_volume_ssim_of_several_channels_is_the_mean_over_channels():
    rng = np.random.default_rng(23)
    truth = rng.random((1, 2, 11, 12, 11))
    recon = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
    reference = np.mean([_reference_ssim_3d(t, r) for t, r in zip(truth[0], recon[0])])
    assert ssim(truth, recon)[0] == pytest.approx(reference, abs=TEXTURED_TOLERANCE)


@pytest.mark.parametrize("axis", [2, 3, 4])
def test_volume_ssim_refuses_an_axis_shorter_than_the_window(volumes, axis):
    short = np.take(volumes, range(10), axis=axis)
    with pytest.raises(ValueError, match=re.escape(str(short.shape)) + ".*too small for SSIM"):
        ssim(short, short)
    with pytest.raises(ValueError, match="too small for SSIM"):
        pairwise_distance(short, short, "ssim")


def test_volume_ssim_chunks_are_bounded_by_voxels(volumes, monkeypatch):
    from medprivbench.attacks import image_metrics

    recon = np.clip(volumes + 0.05 * np.random.default_rng(24).standard_normal(volumes.shape), 0, 1)
    whole = ssim(volumes, recon)
    monkeypatch.setattr(image_metrics, "SSIM_CHUNK_VOXELS", 2 * volumes[0].size)  # two volumes per call
    assert image_metrics._ssim_chunk_size(volumes.shape[1:]) == 2
    assert np.allclose(ssim(volumes, recon), whole, rtol=0, atol=1e-12)
    assert image_metrics._ssim_chunk_size((1, 512, 512, 512)) == 1  # larger than the bound: one at a time


@pytest.mark.parametrize("metric", ["mse", "psnr", "ssim", "ncc"])
def test_hungarian_matching_recovers_shuffled_volumes(volumes, metric):
    permutation = np.random.default_rng(25).permutation(len(volumes))
    noisy = np.clip(volumes[permutation] + 0.02 * np.random.default_rng(26).standard_normal(volumes.shape), 0, 1)
    rows, cols = match_reconstructions(volumes, noisy, metric=metric)
    assert np.array_equal(rows, np.arange(len(volumes)))
    assert np.array_equal(permutation[cols], np.arange(len(volumes)))


@pytest.mark.parametrize("metric", ["ssim", "ncc", "mse"])
def test_volume_pairwise_distances_are_the_per_pair_metric(volumes, metric):
    candidates = np.clip(volumes[::-1] + 0.05 * np.random.default_rng(27).standard_normal(volumes.shape), 0, 1)[:3]
    score = {"ssim": ssim, "ncc": ncc, "mse": mse}[metric]
    expected = [[score(t[None], c[None])[0] for c in candidates] for t in volumes]
    sign = 1 if metric == "mse" else -1
    assert np.allclose(sign * pairwise_distance(volumes, candidates, metric), expected, rtol=0, atol=1e-12)


def test_volume_and_image_batches_do_not_mix(volumes):
    with pytest.raises(ValueError, match="must agree"):
        pairwise_distance(volumes, volumes[:, :, 0])


def test_volume_grid_shows_three_mid_slices_per_volume(volumes, tmp_path):
    from matplotlib.image import imread

    candidates = np.concatenate([volumes[::-1][:3], np.zeros((1, *volumes.shape[1:]))])
    volume_fig = _grid_figure(volumes[:3], candidates, title="3D", match_metric="mse")
    image_fig = _grid_figure(volumes[:3, :, 6], candidates[:, :, 6], title="2D", match_metric="mse")
    assert len(volume_fig.axes) == 3 * len(image_fig.axes) == 3 * 2 * 3
    grid = np.array(volume_fig.axes).reshape(6, 3)  # rows: truth axial/coronal/sagittal, then the reconstruction's
    assert [ax.get_ylabel() for ax in grid[:, 0]] == [f"{who}\n{view}" for who in ("truth", "reconstruction")
                                                     for view in ("axial", "coronal", "sagittal")]
    assert "axial / coronal / sagittal mid-slices" in volume_fig._suptitle.get_text()
    # the panels hold the mid-slices: axial of volume 0 is its middle D slice, sagittal its middle W slice
    assert np.array_equal(grid[0, 0].images[0].get_array(), volumes[0, 0, 6])
    assert np.array_equal(grid[1, 1].images[0].get_array(), volumes[1, 0, :, 7])
    assert np.array_equal(grid[2, 0].images[0].get_array(), volumes[0, 0, :, :, 6])
    # volume 2's matched reconstruction is candidates[2], its exact copy: shown in the reconstruction rows
    assert np.array_equal(grid[3, 2].images[0].get_array(), volumes[2, 0, 6])
    assert np.array_equal(grid[5, 2].images[0].get_array(), volumes[2, 0, :, :, 6])

    volume_png = save_image_grid(volumes[:3], candidates, tmp_path / "volumes.png", title="3D")
    image_png = save_image_grid(volumes[:3, :, 6], candidates[:, :, 6], tmp_path / "images.png", title="2D")
    assert volume_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(volume_png).shape[0] > 2.5 * imread(image_png).shape[0]  # three times the rows
