"""Volumes end to end: 3D models under DP, 3D augmentation, 3D gradient inversion, and a tiny 3D sweep
(per-sample gradients of the 3D models are checked against brute force in test_models.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from medprivbench.benchmark.config import ModelConfig
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.models import build_model, grad_sample_mode
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.training import DPRecipe, augment, train

from ..conftest import run_cli
from .test_models import CONFIGS

VOLUME_MODELS = ("cnn", "resnet9", "resnet18", "densenet121")


def _cfg(name, **kw):
    return OmegaConf.structured(ModelConfig(**{**CONFIGS[name], **kw}))


@pytest.mark.parametrize("name", VOLUME_MODELS)
def test_every_volume_model_takes_a_dp_step_on_volumes(name):
    torch.manual_seed(0)
    model = build_model(_cfg(name), in_channels=1, n_classes=3, image_size=12, spatial_dims=3)
    assert any(isinstance(m, nn.Conv3d) for m in model.modules())
    assert not any(isinstance(m, (nn.Conv2d, nn.modules.batchnorm._BatchNorm)) for m in model.modules())
    x, y = torch.rand(4, 1, 12, 12, 12), torch.tensor([0, 1, 2, 0])
    before = [p.detach().clone() for p in model.parameters()]
    recipe = DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=0.5, steps=2, steps_per_epoch=2,
                      noise_multiplier=1.0, max_grad_norm=1.0, accountant="rdp")
    hp = dict(optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0, lr_schedule="constant")
    result = train(model, x, y, recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode(_cfg(name)), streams=Streams(0))
    assert result.steps_taken == 2 and math.isfinite(result.epsilon_spent)
    assert any(not torch.equal(a, b) for a, b in zip(before, result.model.parameters()))
    assert result.model(x).shape == (4, 3)


def test_scatternet_refuses_volumes_and_names_the_models_that_take_them():
    with pytest.raises(ConfigError, match=r"model='scatternet' cannot train on volumes.*cnn, densenet121, resnet18, resnet9"):
        build_model(_cfg("scatternet"), in_channels=1, n_classes=2, image_size=16, spatial_dims=3)


def test_3d_augmentation_shifts_along_every_axis_and_flips_left_right():
    x = torch.zeros(1, 1, 5, 5, 5)
    x[0, 0, 2, 2, 2] = 1.0  # one bright voxel in the centre
    views = augment(x.repeat(400, 1, 1, 1, 1), ["shift"], torch.Generator().manual_seed(0), max_shift=1)
    assert views.shape == (400, 1, 5, 5, 5)
    where = torch.stack([torch.nonzero(v[0])[0] for v in views])  # every view keeps the voxel (shift ≤ 1)
    for axis in range(3):  # each axis is shifted by -1, 0 and +1, independently of the others
        assert set(where[:, axis].tolist()) == {1, 2, 3}
    assert len({tuple(w) for w in where.tolist()}) == 27
    ramp = torch.arange(5.0).view(1, 1, 1, 1, 5).expand(300, 1, 5, 5, 5)
    flipped = augment(ramp, ["hflip"], torch.Generator().manual_seed(1))
    is_flipped = flipped[:, 0, 0, 0, 0] == 4.0
    assert 0.35 < is_flipped.float().mean() < 0.65
    assert torch.equal(flipped[is_flipped], ramp[is_flipped].flip(-1))
    assert torch.equal(flipped[~is_flipped], ramp[~is_flipped])


def test_total_variation_of_volumes_adds_the_third_axis():
    from medprivbench.attacks.reconstruction import total_variation

    ramp = torch.arange(6.0).view(1, 1, 1, 6, 1, 1).expand(2, 1, 1, 6, 4, 5)  # (T, B, C, D, H, W): steps of 1 along D
    assert torch.allclose(total_variation(ramp), torch.tensor([5 * 4 * 5 / (5 * 4 * 5), 1.0]) * 1.0)
    image_ramp = torch.arange(6.0).view(1, 1, 1, 1, 6).expand(2, 1, 1, 3, 6)
    assert torch.allclose(total_variation(image_ramp), torch.ones(2))  # 2D: unchanged


def test_gradient_inversion_recovers_a_volume_from_a_noise_free_update():
    """B = 1, no clipping, no noise: the gradient determines the volume (PSNR ≥ 25 dB).

    With average pooling (max pooling passes gradient through one voxel in eight, and the same
    recipe stalls near 14 dB) and the 3D TV prior at weight 10⁻²; 10⁻³ reaches about 18 dB here."""
    from medprivbench.attacks import reconstruction as rec
    from medprivbench.attacks.image_metrics import psnr
    from medprivbench.datasets.synthetic3d import generate_volumes

    volumes, labels = generate_volumes(1, seed=5, size=16)
    x = torch.from_numpy(volumes[:, None].astype(np.float32) / 255.0)
    torch.manual_seed(0)
    model = build_model(_cfg("cnn", width=16, pool="avg"), in_channels=1, n_classes=2, image_size=16, spatial_dims=3).eval()
    update = rec.simulate_client_update(model, x, torch.from_numpy(labels), noise_multiplier=0.0, max_grad_norm=math.inf)
    config = rec.InversionConfig(iterations=1000, restarts=1, tv_weight=1e-2)
    images = rec.invert_gradients(model, update, config, seed=0)
    assert images.shape == (1, 1, 16, 16, 16)
    assert psnr(x, images)[0] >= 25.0
    noisy = rec.simulate_client_update(model, x, torch.from_numpy(labels), noise_multiplier=1.0, max_grad_norm=0.1,
                                       generator=torch.Generator().manual_seed(0))
    assert psnr(x, rec.invert_gradients(model, noisy, config, seed=0))[0] < 20.0  # DP noise defeats it


def test_synthetic_volumes_are_deterministic_and_not_separable_by_brightness():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from medprivbench.datasets.synthetic3d import generate_volumes, load_synthetic3d

    a, la = generate_volumes(20, seed=3)
    b, lb = generate_volumes(20, seed=3)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, generate_volumes(20, seed=4)[0])
    ds = load_synthetic3d(n_train=600, n_val=10, n_test=300, seed=0)
    assert ds.train_x.shape == (600, 1, 16, 16, 16) and ds.info.image_size == (16, 16, 16) and ds.info.spatial_dims == 3
    assert ds.train_x.dtype == np.float32 and 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    assert 0.4 < ds.train_y.mean() < 0.6 and not ds.info.real_patient_data
    feature = lambda v: v.reshape(len(v), -1).mean(1, keepdims=True)  # noqa: E731
    clf = LogisticRegression().fit(feature(ds.train_x), ds.train_y)
    assert roc_auc_score(ds.test_y, clf.predict_proba(feature(ds.test_x))[:, 1]) < 0.75


def _npz_3d(path, n=(30, 6, 10), side=12, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(count, side, side, side), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(count) % 2).reshape(-1, 1)
    np.savez(path, **arrays)


def test_medmnist_reads_3d_subsets_as_volumes(tmp_path):
    from medprivbench.datasets import DataError
    from medprivbench.datasets.medmnist import load_medmnist

    _npz_3d(tmp_path / "adrenalmnist3d.npz")
    ds = load_medmnist(name="adrenalmnist3d", root=tmp_path, size=28)
    assert ds.train_x.shape == (30, 1, 12, 12, 12) and ds.info.spatial_dims == 3 and ds.info.class_names == ("normal", "hyperplasia")
    with pytest.raises(DataError, match=r"dataset.size=128 is not a MedMNIST size for 3D subsets.*28, 64"):
        load_medmnist(name="adrenalmnist3d", root=tmp_path, size=128)
    (tmp_path / "pneumoniamnist.npz").write_bytes((tmp_path / "adrenalmnist3d.npz").read_bytes())
    with pytest.raises(DataError, match="are 3D volumes, but 'pneumoniamnist' names a 2D subset"):
        load_medmnist(name="pneumoniamnist", root=tmp_path, size=28)


@pytest.mark.realdata
def test_real_adrenalmnist3d_loads_with_official_split_sizes():
    from medprivbench.datasets.medmnist import load_medmnist

    from ..conftest import shared_file

    root = shared_file("adrenalmnist3d.npz").parent
    ds = load_medmnist(name="adrenalmnist3d", root=root, size=28)
    assert ds.train_x.shape == (1188, 1, 28, 28, 28) and len(ds.val_y) == 98 and len(ds.test_y) == 298
    assert np.bincount(ds.train_y).tolist() == [929, 259] and ds.info.real_patient_data
    big = load_medmnist(name="adrenalmnist3d", root=shared_file("adrenalmnist3d_64.npz").parent, size=64)
    assert big.train_x.shape[1:] == (1, 64, 64, 64)


def test_preflight_refuses_a_2d_only_model_and_volumes_too_small(tmp_path):
    for args, message in (
        (["dataset=synthetic3d", "model=scatternet"], "model='scatternet' cannot train on volumes"),
        (["dataset=synthetic3d", "dataset.size=6"], "dataset.size=6 is not valid for synthetic3d"),
        (["dataset=synthetic3d", "dataset.size=8"], "dataset.size=8 is too small for attack 'gradient_inversion'"),
    ):
        result = run_cli([*args, f"results_root={tmp_path}", "progress=off"], timeout=120)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_tiny_3d_sweep_runs_every_attack_and_reports_volumes(tmp_path):
    args = ["dataset=synthetic3d", "dataset.size=12", "dataset.n_train=120", "dataset.n_val=40", "dataset.n_test=60",
            "train.epochs=2", "train.batch_size=40", "train.nonprivate.batch_size=40", "train.nonprivate.epochs=2",
            "progress=off", "membership.num_models=4", "attack.rmia.n_references=1", "attack.lira.online=false",
            "sizing.inversion_images=1", "sizing.inversion_iterations=10", "sizing.whitebox_canaries=100",
            "sizing.audit_canaries=40", "sizing.prior_trials=10", "privacy.epsilon=8,inf", f"results_root={tmp_path}",
            "shadow_workers=2", "privacy.references=[same_recipe]"]  # the pool on two worker processes, end to end
    result = run_cli(args, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "synthetic3d-cnn"
    records = [json.loads(p.read_text()) for p in folder.glob("runs/*/metrics.json")]
    assert len(records) == 2
    for record in records:
        assert record["dataset"]["image_size"] == [12, 12, 12]
        attacks = record["attacks"]
        for name in ("loss", "lira", "rmia", "tail", "audit", "whitebox", "prior_aware", "gradient_inversion", "imprint"):
            assert name in attacks, name
        assert math.isfinite(attacks["gradient_inversion"]["psnr_mean"]) and attacks["gradient_inversion"]["ssim_mean"] <= 1
        if record["privacy"]["epsilon_target"] == math.inf:  # no noise: the imprint attack reads volumes off exactly
            assert attacks["imprint"]["rero"]["psnr"] > 0.5
    assert (folder / "report.html").is_file() and (folder / "table.csv").is_file()
    assert list(folder.glob("runs/*/reconstructions/gradient_inversion.png"))
