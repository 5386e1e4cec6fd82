"""The imprint (Robbing the Fed) attack: exact recovery without DP, failure under DP noise."""

import math

import numpy as np
import pytest
import torch

from medprivbench.attacks.client_update import ClientUpdate, simulate_client_update
from medprivbench.attacks.image_metrics import psnr, reconstruction_report
from medprivbench.attacks.imprint import ImprintAttack, imprint_client_update
from tests.conftest import shared_file

# the default CNN (``cnn``), the synthetic batches (``make_images``) and ``one_thread``: tests/attacks/conftest.py
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def public(make_images):
    return make_images(400, seed=100)[0]


def test_a_lone_image_is_recovered_exactly(cnn, public, make_images):
    attack = ImprintAttack((1, 28, 28), 32, public, measurement="mean", n_measurements=1)
    x, y = make_images(1, seed=1)
    _, update = imprint_client_update(attack, cnn, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    candidates = attack.reconstruct(update)
    assert candidates.shape == (1, 1, 28, 28)  # only the image's own bin differs from the next one
    assert torch.allclose(candidates, x, atol=1e-4)


def test_a_batch_is_recovered_without_dp_even_with_clipping(cnn, public, make_images):
    attack = ImprintAttack((1, 28, 28), 128, public)
    x, y = make_images(8, seed=2)
    for clip in (math.inf, 1e-3):  # clipping scales a sample's whole gradient: it cancels in the ratio
        _, update = imprint_client_update(attack, cnn, x, y, noise_multiplier=0.0, max_grad_norm=clip)
        report = reconstruction_report(x, attack.reconstruct(update))
        assert 8 <= report["n_candidates"] < 128  # empty bins yield no candidate
        assert report["rero_psnr"] == 1.0 and report["psnr_mean"] > 60.0


def test_heavy_dp_noise_defeats_the_attack(cnn, public, make_images):
    attack = ImprintAttack((1, 28, 28), 128, public)
    x, y = make_images(8, seed=3)
    _, update = imprint_client_update(
        attack, cnn, x, y, noise_multiplier=1.0, max_grad_norm=1.0, generator=torch.Generator().manual_seed(0)
    )
    candidates = attack.reconstruct(update)
    assert len(candidates) == 128  # noise fills every bin
    per_image = np.array(reconstruction_report(x, candidates)["per_image"]["psnr"])
    blank = psnr(x, torch.full_like(x, 0.5))
    assert np.all(per_image < 20.0) and per_image.mean() < blank.mean()


def test_the_malicious_model_still_classifies_like_the_original(cnn, public, make_images):
    attack = ImprintAttack((1, 28, 28), 128, public)
    malicious = attack.malicious_model(cnn)
    x, _ = make_images(16, seed=4)
    with torch.no_grad():
        changed = malicious.imprint(x) - x
        assert float(changed.std()) < 3e-3  # ≈ perturbation = 1e-3
        assert torch.allclose(malicious(x), cnn(x), atol=0.01)
    first = [name for name, _ in malicious.named_parameters()][:2]
    assert first == ["imprint.bins.weight", "imprint.bins.bias"]


def test_cutoffs_split_public_images_evenly(public):
    attack = ImprintAttack((1, 28, 28), 16, public, measurement="mean", n_measurements=1)
    measured = public.flatten(1).mean(1)
    cutoffs = attack.cutoffs.double()
    assert torch.all(cutoffs[1:] >= cutoffs[:-1]) and cutoffs[0] < 0
    counts = torch.bucketize(measured.double(), cutoffs).bincount(minlength=17)[1:]
    assert counts.min() >= 0.5 * len(public) / 16 and counts.max() <= 1.5 * len(public) / 16


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"measurement": "fourier"}, "measurement="),
        ({"measurement": "mean", "n_measurements": 2}, "n_measurements=2"),
        ({"n_bins": 6}, "n_bins=6"),
        ({"back_gain": 0.0}, "back_gain="),
        ({"perturbation": math.inf}, "perturbation="),
    ],
)
def test_invalid_options_are_rejected(public, kwargs, match):
    arguments = {"n_bins": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        ImprintAttack((1, 28, 28), arguments.pop("n_bins"), public, **arguments)


def test_updates_not_computed_on_the_malicious_model_are_rejected(cnn, public, make_images):
    attack = ImprintAttack((1, 28, 28), 64, public)
    x, y = make_images(2, seed=5)
    honest = simulate_client_update(cnn, x, y, noise_multiplier=0.0, max_grad_norm=math.inf)
    with pytest.raises(ValueError, match="malicious_model"):
        attack.reconstruct(honest)
    with pytest.raises(ValueError, match="public_images"):
        ImprintAttack((1, 32, 32), 64, public)
    other_shape = ClientUpdate(gradients=honest.gradients, batch_size=2, image_shape=(1, 32, 32))
    with pytest.raises(ValueError, match="built for"):
        attack.reconstruct(other_shape)


@pytest.mark.realdata
def test_recovers_most_of_a_pneumoniamnist_batch_of_16(cnn):
    data = np.load(shared_file("pneumoniamnist.npz"))
    public = torch.tensor(data["val_images"], dtype=torch.float32).unsqueeze(1) / 255.0
    images = torch.tensor(data["train_images"], dtype=torch.float32).unsqueeze(1) / 255.0
    labels = torch.tensor(data["train_labels"][:, 0]).long()
    attack = ImprintAttack((1, 28, 28), 128, public)
    rng = np.random.default_rng(0)
    shares = []
    for _ in range(4):
        index = rng.choice(len(images), 16, replace=False)
        _, update = imprint_client_update(attack, cnn, images[index], labels[index], noise_multiplier=0.0, max_grad_norm=1.0)
        report = reconstruction_report(images[index], attack.reconstruct(update), eta={"psnr": 30.0})
        shares.append(report["rero_psnr"])
    assert np.mean(shares) >= 0.9  # ≈ 0.98 over 20 batches
