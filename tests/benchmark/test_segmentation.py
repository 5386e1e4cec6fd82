"""Segmentation as a task: its loss, Dice, per-image signals, canaries, refusals, and sweeps end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from medprivbench.attacks import membership
from medprivbench.benchmark import segmentation as seg
from medprivbench.benchmark import tasks
from medprivbench.benchmark.audit_training import make_canaries
from medprivbench.benchmark.augmentation import augment

from ..conftest import run_cli

CLASSES = ("background", "organ", "lesion")


def test_dice_matches_a_hand_computed_value():
    truth = np.zeros((1, 4, 4), dtype=np.int64)
    truth[0, :2, :2] = 1  # 4 organ pixels
    truth[0, 3, 3] = 2  # 1 lesion pixel
    pred = np.zeros_like(truth)
    pred[0, :2, :3] = 1  # 6 organ pixels, 4 of them right
    pred[0, 3, 2:] = 2  # 2 lesion pixels, 1 of them right
    dice, iou = seg.dice_iou(pred, truth, 3)
    assert dice[0, 1] == pytest.approx(2 * 4 / (4 + 6))
    assert dice[0, 2] == pytest.approx(2 * 1 / (1 + 2))
    assert iou[0, 1] == pytest.approx(4 / 6) and iou[0, 2] == pytest.approx(1 / 2)
    logits = np.moveaxis(np.eye(3)[pred] * 10.0, -1, 1)  # one-hot logits that predict ``pred``
    metrics = seg.segmentation_metrics(logits, truth, CLASSES)
    assert metrics["dice"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics["dice_organ"] == pytest.approx(0.8) and metrics["iou_lesion"] == pytest.approx(0.5)
    assert metrics["pixel_accuracy"] == pytest.approx(13 / 16)


def test_a_class_absent_from_truth_and_prediction_counts_as_right():
    truth = np.zeros((1, 4, 4), dtype=np.int64)
    truth[0, 0, 0] = 1
    dice, _ = seg.dice_iou(truth.copy(), truth, 3)
    assert dice[0].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_the_loss_gives_one_value_per_image_and_vanishes_on_a_confident_right_answer():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 8, 8)
    masks = torch.randint(0, 3, (5, 8, 8))
    per_image = seg.SegmentationLoss("none")(logits, masks)
    assert per_image.shape == (5,)
    assert seg.SegmentationLoss("mean")(logits, masks) == pytest.approx(float(per_image.mean()), rel=1e-6)
    assert seg.SegmentationLoss("sum")(logits, masks) == pytest.approx(float(per_image.sum()), rel=1e-6)
    one = seg.SegmentationLoss("none")(logits[:1], masks[:1])
    assert one[0] == pytest.approx(float(per_image[0]), rel=1e-5)  # an image's loss does not depend on its batch
    perfect = torch.nn.functional.one_hot(masks, 3).movedim(-1, 1).float() * 50.0
    assert float(seg.SegmentationLoss()(perfect, masks)) < 1e-4
    with pytest.raises(ValueError, match="do not match"):
        seg.SegmentationLoss()(logits, masks[:, :4])


def test_the_loss_signal_gives_the_loss_attack_minus_each_images_loss():
    torch.manual_seed(1)
    logits = torch.randn(6, 3, 8, 8)
    masks = torch.randint(0, 3, (6, 8, 8))
    signals = tasks.SEGMENTATION.image_signals(logits.numpy(), masks.numpy())
    scores = membership.loss_attack(signals["loss"], np.zeros(6, dtype=np.int64))
    np.testing.assert_allclose(scores, -seg.per_image_loss(logits.double(), masks).numpy(), rtol=1e-6)
    dice, _ = seg.dice_iou(logits.argmax(1).numpy(), masks.numpy(), 3)
    dice_scores = membership.loss_attack(signals["dice"], np.zeros(6, dtype=np.int64))
    np.testing.assert_allclose(np.exp(dice_scores), np.clip(dice[:, 1:].mean(1), 1e-6, 1 - 1e-6), rtol=1e-6)


def test_masks_move_with_their_images_under_augmentation():
    x = torch.rand(6, 1, 10, 10)
    masks = (x[:, 0] > 0.4).long() + (x[:, 0] > 0.8).long()
    views, moved = augment(x, ["shift", "hflip"], torch.Generator().manual_seed(3), masks=masks)
    assert moved.dtype == torch.long and moved.shape == masks.shape
    assert torch.equal((views[:, 0] > 0.4).long() + (views[:, 0] > 0.8).long(), moved)
    alone = augment(x, ["shift", "hflip"], torch.Generator().manual_seed(3))
    assert torch.equal(alone, views)  # the images' views do not depend on whether masks come along


def test_mislabelled_mask_canaries_move_every_pixel_to_another_class():
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, size=(20, 6, 6))
    x = rng.random((20, 1, 6, 6)).astype(np.float32)
    cx, cy = make_canaries("mislabelled", x, masks, 10, 3, np.random.default_rng(1))
    assert cy.shape == (10, 6, 6)
    pick = np.random.default_rng(1).choice(20, size=10, replace=False)
    assert (cy != masks[pick]).all()  # every pixel's class changed
    shift = (cy - masks[pick]) % 3
    assert all(len(np.unique(s)) == 1 for s in shift)  # one shift per canary, the whole mask
    _, ood_y = make_canaries("ood", x, masks, 10, 3, np.random.default_rng(1))
    assert ood_y.shape == (10, 6, 6)


@pytest.mark.parametrize("args, message", [
    (["task=segmentation", "model=cnn"], "model='cnn' is a classifier; task=segmentation needs a segmenter"),
    (["dataset=phantom2d"], "holds segmentation masks; add task=segmentation"),
    (["task=segmentation", "dataset=synthetic"], "has one label per image, not masks"),
    (["task=segmentation", "attack.lira.signals=[logits]"], "is not valid for task=segmentation"),
    (["task=segmentation", "attack=[gradient_inversion]", "attack.gradient_inversion.labels=recovered"],
     "a mask cannot be recovered"),
    (["task=segmentation", "dataset.size=30"], "dataset.size=30"),
])
def test_a_task_that_does_not_fit_the_model_or_data_is_refused_in_one_line(tmp_path, args, message):
    result = run_cli([*args, "privacy.epsilon=8", f"results_root={tmp_path}"], timeout=300)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())


TINY_SEGMENTATION = [
    "task=segmentation", "model.width=4", "dataset.n_train=40", "dataset.n_val=8", "dataset.n_test=8",
    "train.epochs=1", "train.batch_size=20", "train.nonprivate.batch_size=20", "train.nonprivate.epochs=1",
    "progress=off", "membership.num_models=4", "attack.rmia.n_references=1", "attack.lira.online=false",
    "sizing.inversion_images=1", "sizing.inversion_iterations=5", "sizing.whitebox_canaries=50",
    "sizing.audit_canaries=6", "sizing.prior_trials=5", "attack.prior_aware.pool_size=20", "privacy.references=[same_recipe]",
]
EVERY_ATTACK = ("loss", "lira", "rmia", "tail", "audit", "whitebox", "prior_aware", "gradient_inversion", "imprint")


def _check_sweep(folder, spatial: list[int], n_classes: int) -> pd.DataFrame:
    records = [json.loads(p.read_text()) for p in folder.glob("runs/*/metrics.json")]
    assert len(records) == 2
    for record in records:
        assert record["dataset"]["task"] == "segmentation" and record["dataset"]["image_size"] == spatial
        assert record["utility"]["task"] == "segmentation"
        assert 0.0 <= record["utility"]["test"]["dice"] <= 1.0
        for name in EVERY_ATTACK:
            assert name in record["attacks"], name
        assert set(record["attacks"]["loss"]["variants"]) == {"loss", "loss_dice"}
        assert set(record["attacks"]["lira"]["variants"]) == {"lira_offline", "lira_offline_dice"}
    table = pd.read_csv(folder / "table.csv")
    for column in ("test_dice", "test_iou", "mia_loss_auc", "mia_loss_dice_auc", "mia_rmia_dice_auc", "recon_best_rero"):
        assert column in table and table[column].notna().all(), column
    assert (table["task"] == "segmentation").all()
    assert len([c for c in table if c.startswith("test_dice_")]) == n_classes
    report = (folder / "report.md").read_text()
    assert "test Dice" in report and "test accuracy" not in report
    return table


@pytest.mark.slow
def test_tiny_phantom2d_sweep_runs_every_attack_and_reports_dice(tmp_path):
    result = run_cli([*TINY_SEGMENTATION, "dataset.size=16", "privacy.epsilon=8,inf", f"results_root={tmp_path}"],
                     timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    table = _check_sweep(tmp_path / "phantom2d-unet", [16, 16], 3)
    # no noise, one image, known mask: the imprint block reads the image back exactly
    assert table.loc[np.isinf(table["epsilon"]), "recon_imprint_rero_psnr"].iloc[0] > 0.5


@pytest.mark.slow
def test_tiny_phantom3d_sweep_runs_every_attack(tmp_path):
    result = run_cli([*TINY_SEGMENTATION, "dataset=phantom3d", "dataset.size=12", "privacy.epsilon=8,inf",
                      f"results_root={tmp_path}"], timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    _check_sweep(tmp_path / "phantom3d-unet", [12, 12, 12], 3)


@pytest.mark.slow
def test_a_sweep_on_an_image_and_mask_folder_runs_every_attack(tmp_path):
    from PIL import Image

    from medprivbench.datasets.phantom import load_phantom

    ds = load_phantom(spatial_dims=2, n_train=48, n_val=2, n_test=2, seed=5, size=16)
    root = tmp_path / "data"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i, (x, y) in enumerate(zip(ds.train_x, ds.train_y)):
        Image.fromarray(np.rint(x[0] * 255).astype(np.uint8)).save(root / "images" / f"case{i:03d}.png")
        Image.fromarray(y.astype(np.uint8)).save(root / "masks" / f"case{i:03d}.png")
    result = run_cli([*TINY_SEGMENTATION, "dataset=segfolder", f"dataset.root={root}", "dataset.size=16",
                      "dataset.test_fraction=0.25", "privacy.epsilon=8,inf", f"results_root={tmp_path / 'out'}"], timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    _check_sweep(tmp_path / "out" / "segfolder-unet", [16, 16], 3)
    assert not math.isnan(pd.read_csv(tmp_path / "out" / "segfolder-unet" / "table.csv")["test_dice"].iloc[0])
