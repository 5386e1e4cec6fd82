"""Image metrics checked against closed forms and independent implementations."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from medprivbench.attacks.image_metrics import (
    DEFAULT_ETA,
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
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


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
