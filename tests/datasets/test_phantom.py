"""The embedded segmentation phantoms (datasets/phantom.py): the dataset contract for masks, the
generator's determinism, and that intensity alone does not give the masks."""

import numpy as np
import pytest

from medprivbench.datasets import load_dataset
from medprivbench.datasets.base import DataError, check_usable, drop_duplicates
from medprivbench.datasets.phantom import CLASS_NAMES, generate_phantoms, load_phantom, threshold_baseline


@pytest.fixture(scope="module")
def ds2d():
    return load_phantom(spatial_dims=2, n_train=400, n_val=50, n_test=200, seed=0)


def test_deterministic_from_seed():
    a, ma = generate_phantoms(32, seed=5)
    b, mb = generate_phantoms(32, seed=5)
    c, mc = generate_phantoms(32, seed=6)
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c) and not np.array_equal(ma, mc)


def test_segmentation_contract_2d(ds2d):
    ds = ds2d
    assert ds.info.task == "segmentation" and ds.info.class_names == CLASS_NAMES == ("background", "organ", "lesion")
    assert ds.info.image_size == (32, 32) and ds.info.n_channels == 1 and ds.info.real_patient_data is False
    assert ds.info.source == "generated (seed 0)" and ds.info.licence.startswith("CC0")
    for x, y, n in ((ds.train_x, ds.train_y, 400), (ds.val_x, ds.val_y, 50), (ds.test_x, ds.test_y, 200)):
        assert x.shape == (n, 1, 32, 32) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
        assert y.shape == (n, 32, 32) and y.dtype == np.int64 and set(np.unique(y)) == {0, 1, 2}
    check_usable(ds)
    assert "train pixels background=" in ds.summary()


def test_every_image_has_an_organ_lesions_lie_inside_it_and_some_images_have_none():
    images, masks = generate_phantoms(400, seed=1)
    flat = masks.reshape(len(masks), -1)
    foreground = flat > 0
    assert foreground.any(axis=1).all()  # every image shows its organ
    has_lesion = (flat == 2).any(axis=1)
    assert 0.15 < 1 - has_lesion.mean() < 0.35  # about 25 % of images without a lesion
    # each lesion pixel is surrounded (4-neighbourhood) by organ, lesion or, at its border, nothing else
    lesion = masks == 2
    neighbours = np.zeros_like(lesion)
    for axis in (1, 2):
        for shift in (1, -1):
            neighbours |= np.roll(lesion, shift, axis=axis) & (masks == 0)
    assert not neighbours.any(), "a lesion pixel touches the background: lesions must lie inside the organ"
    radii = np.sqrt((flat == 2).sum(1)[has_lesion] / np.pi)
    assert np.median(radii) > 2.5  # lesions large enough to segment at 32²


def test_splits_are_disjoint_draws(ds2d):
    train = {row.tobytes() for row in ds2d.train_x.reshape(len(ds2d.train_x), -1)}
    assert not any(row.tobytes() in train for row in ds2d.test_x.reshape(len(ds2d.test_x), -1))
    assert not np.array_equal(ds2d.train_y[:50], ds2d.val_y)
    assert drop_duplicates(ds2d).info.duplicates_dropped == {"train_internal": 0, "val_in_train": 0,
                                                              "test_in_train_or_val": 0}


def test_intensity_alone_does_not_give_the_masks(ds2d):
    # The class intensity ranges overlap: the organ's middle 90 % lies inside the background's.
    x, y = ds2d.train_x[:, 0], ds2d.train_y
    bg_lo, bg_hi = np.percentile(x[y == 0], [5, 95])
    organ_lo, organ_hi = np.percentile(x[y == 1], [5, 95])
    assert bg_lo < organ_lo and organ_hi < bg_hi
    result = threshold_baseline(ds2d)
    assert result["dice"] < 0.5, result  # a small U-Net reaches about 0.93 (measured, module docstring)
    assert result["dice_lesion"] < 0.4 and result["dice_organ"] < 0.65
    assert 0.0 <= result["thresholds"][0] <= result["thresholds"][1] <= 1.0
    assert sorted(result["order"]) == sorted(CLASS_NAMES)


def test_threshold_search_agrees_with_monai_dice_at_its_choice(ds2d):
    # the search's own per-image Dice (from histograms) must equal dice_iou's on the training split
    from medprivbench.benchmark.segmentation import dice_iou

    result = threshold_baseline(ds2d)
    band = np.digitize(ds2d.train_x[:, 0], result["thresholds"])
    pred = np.asarray([CLASS_NAMES.index(c) for c in result["order"]])[band]
    dice, _ = dice_iou(pred, ds2d.train_y, 3)
    assert dice[:, 1:].mean() == pytest.approx(result["train_dice"], abs=1e-9)


def test_threshold_baseline_finds_a_planted_intensity_code():
    # if intensity did give the masks, the baseline must find it: Dice 1 with the right order
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, size=(20, 8, 8))
    levels = np.array([0.5, 0.1, 0.9])  # background mid, organ dark, lesion bright
    ds = load_phantom(spatial_dims=2, n_train=20, n_val=1, n_test=20, size=8)
    from dataclasses import replace

    planted = replace(ds, train_x=levels[masks][:, None].astype(np.float32), train_y=masks,
                      test_x=levels[masks][:, None].astype(np.float32), test_y=masks)
    result = threshold_baseline(planted)
    assert result["dice"] == pytest.approx(1.0) and result["order"] == ["organ", "background", "lesion"]


def test_volumes_3d():
    ds = load_phantom(spatial_dims=3, n_train=40, n_val=10, n_test=20, seed=0)
    assert ds.info.name == "phantom3d" and ds.info.image_size == (16, 16, 16) and ds.info.spatial_dims == 3
    assert ds.train_x.shape == (40, 1, 16, 16, 16) and ds.train_y.shape == (40, 16, 16, 16)
    assert ds.train_y.dtype == np.int64 and set(np.unique(ds.train_y)) == {0, 1, 2}
    assert threshold_baseline(ds)["dice"] < 0.5
    check_usable(ds)


def test_load_dataset_wires_the_phantoms_and_subsamples_masks():
    from medprivbench.benchmark.config import DatasetConfig

    ds = load_dataset(DatasetConfig(name="phantom2d", size=16, n_train=60, n_val=5, n_test=10, max_train=25))
    assert ds.n_train == 25 and ds.train_y.shape == (25, 16, 16) and ds.info.task == "segmentation"
    ds3 = load_dataset(DatasetConfig(name="phantom3d", size=8, n_train=10, n_val=2, n_test=4))
    assert ds3.train_x.shape == (10, 1, 8, 8, 8)


def test_background_only_masks_are_not_usable(ds2d):
    from dataclasses import replace

    with pytest.raises(DataError, match="a segmenter needs at least one foreground class"):
        check_usable(replace(ds2d, train_y=np.zeros_like(ds2d.train_y)))


def test_to_masks_refusals():
    from medprivbench.datasets.base import to_masks

    ok = to_masks(np.zeros((2, 1, 4, 4), np.uint8), 2, (4, 4), 3, what="m")
    assert ok.shape == (2, 4, 4) and ok.dtype == np.int64
    with pytest.raises(DataError, match=r"masks must have shape \(2, 4, 4\)"):
        to_masks(np.zeros((2, 4, 5), np.int64), 2, (4, 4), 3, what="m")
    with pytest.raises(DataError, match="integer labels"):
        to_masks(np.zeros((2, 4, 4), np.float32), 2, (4, 4), 3, what="m")
    with pytest.raises(DataError, match=r"0\.\.2"):
        to_masks(np.full((2, 4, 4), 3), 2, (4, 4), 3, what="m")
