"""Bad input: one clear line naming the bad value and what is valid, before any training starts.

One row per bad input. Each row is checked through the same preflight the command line runs
(in-process, fast); a few rows also go through the real command to check the exit status, that
only one error line is printed, and that nothing is written.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from medprivbench.benchmark.paths import CONFIG_DIR
from medprivbench.benchmark.errors import USER_ERRORS
from medprivbench.benchmark.preflight import preflight

from ..conftest import SHARED_DATA, run_cli


def _npz(folder: Path, name: str = "breastmnist", **changes) -> Path:
    """A small MedMNIST-layout file with the given arrays replaced."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 10), ("test", 20)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1))
    arrays.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{name}.npz", **arrays)
    return folder


def _png_folder(root: Path, classes: list[str], broken: bool = False) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / c / f"{i}.png")
    if broken:
        (root / classes[-1] / "scan.png").write_bytes(b"\x89PNG broken")
    return root


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width × height pixels in its header and holds no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def _with(extra: Callable[[Path], None]) -> Callable[[Path], Path]:
    """A valid two-class image folder plus one bad entry made by ``extra(class_folder)``."""

    def build(root: Path) -> Path:
        _png_folder(root, ["a", "b"])
        extra(root / "b")
        return root

    return build


def _empty_test_split(root: Path) -> Path:
    _png_folder(root / "train", ["a", "b"])
    (root / "test" / "a").mkdir(parents=True)
    (root / "test" / "b").mkdir()
    return root


def _non_utf8_class(root: Path) -> Path:
    _png_folder(root, ["a"])
    os.mkdir(os.fsencode(root) + b"/b\xff")
    return root


def _truncated(folder: Path) -> Path:
    path = _npz(folder) / "breastmnist.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return folder


def _adrenal_as_2d(folder: Path) -> Path:
    src = SHARED_DATA / "adrenalmnist3d.npz"
    if not src.is_file():
        pytest.skip(f"real-data case: {src} is absent")
    folder.mkdir(parents=True)
    shutil.copy(src, folder / "breastmnist.npz")  # 3D volumes under a 2D subset's name
    return folder


RNG = np.random.default_rng(1)
NAN_IMAGES = RNG.random((60, 28, 28)).astype(np.float32)
NAN_IMAGES[3, 4, 5] = np.nan
INF_IMAGES = RNG.random((60, 28, 28)).astype(np.float32)
INF_IMAGES[0, 0, 0] = np.inf

# (id, overrides, builder of files in tmp_path -> dataset root or None, expected message fragment)
CASES = [
    ("unknown-dataset", ["dataset=cifar"], None, "dataset=cifar is not valid; choose one of adrenalmnist3d, breastmnist, imagefolder, medmnist"),
    ("unknown-model", ["model=vgg16"], None, "model=vgg16 is not valid; choose one of cnn, densenet121, resnet18, resnet9"),
    ("unknown-attack", ["attack=[loss,shokri]"], None, "attack=shokri is not valid; choose one of audit"),
    ("unknown-accountant", ["privacy.accountant=gdp"], None, "privacy.accountant='gdp' is not valid; choose one of prv, rdp"),
    ("unknown-medmnist-subset", ["dataset=medmnist", "dataset.name=foomnist"], None, "dataset.name='foomnist' is not a MedMNIST subset"),
    ("medmnist-without-subset", ["dataset=medmnist"], None, "dataset=medmnist needs the subset"),
    ("unknown-key", ["privacy.epsilom=8"], None, "privacy.epsilom is not a setting of privacy; valid: accountant, delta, epsilon"),
    ("epsilon-zero", ["privacy.epsilon=0"], None, "privacy.epsilon=0.0 is not valid; use a positive number, or inf"),
    ("epsilon-negative-in-sweep", ["privacy.epsilon=8,-1"], None, "privacy.epsilon=-1.0 is not valid"),
    ("epsilon-not-a-number", ["privacy.epsilon=eight"], None, "privacy.epsilon='eight' is not valid; it must be a number"),
    ("delta-zero", ["privacy.delta=0"], None, "privacy.delta=0.0 is not valid; use a number in (0, 1/N)"),
    ("delta-above-1-over-n", ["privacy.delta=0.001", "dataset.n_train=2000"], None, "privacy.delta=0.001 is not below 1/N = 0.0005 for N=2000"),
    ("unknown-activation", ["model.activation=swish"], None, "model.activation='swish' is not valid; choose one of tanh, relu"),
    ("unknown-pool", ["model.pool=min"], None, "model.pool='min' is not valid; choose one of max, avg"),
    ("clip-norm-zero", ["privacy.max_grad_norm=0"], None, "privacy.max_grad_norm=0.0 is not valid; use a positive number"),
    ("batch-zero", ["train.batch_size=0"], None, "train.batch_size=0 is not valid; use a positive number"),
    ("batch-above-n", ["train.batch_size=5000", "dataset.n_train=2000"], None, "train.batch_size=5000 is larger than the 2000 training images"),
    ("epochs-zero", ["train.epochs=0"], None, "train.epochs=0 is not valid; use a positive number"),
    ("epochs-fraction", ["train.epochs=1.5"], None, "train.epochs='1.5' is not valid; it must be a whole number"),
    ("missing-file", ["dataset=pneumoniamnist"], lambda p: p, "pneumoniamnist.npz not found: put the MedMNIST file there"),
    ("truncated-npz", ["dataset=breastmnist"], _truncated, "the file is damaged or truncated"),
    ("nan-images", ["dataset=breastmnist"], lambda p: _npz(p, train_images=NAN_IMAGES), "pixel values are NaN or infinite"),
    ("inf-images", ["dataset=breastmnist"], lambda p: _npz(p, train_images=INF_IMAGES), "pixel values are NaN or infinite"),
    ("wrong-shape", ["dataset=breastmnist"], lambda p: _npz(p, train_images=np.zeros((60, 784), np.uint8)), "images must have shape"),
    ("wrong-dtype", ["dataset=breastmnist"], lambda p: _npz(p, train_images=np.zeros((60, 28, 28), np.int32)), "image dtype int32 is not supported"),
    ("labels-out-of-range", ["dataset=breastmnist"], lambda p: _npz(p, train_labels=np.full((60, 1), 7)), "labels must lie in 0..1"),
    ("single-class", ["dataset=breastmnist"], lambda p: _npz(p, train_labels=np.zeros((60, 1), int)), "holds a single class"),
    ("3d-volumes-under-a-2d-name", ["dataset=breastmnist"], _adrenal_as_2d, "are 3D volumes, but 'breastmnist' names a 2D subset"),
    ("volumes-to-a-2d-only-model", ["dataset=synthetic3d", "model=scatternet"], None, "model='scatternet' cannot train on volumes"),
    ("synthetic-volumes-too-small", ["dataset=synthetic3d", "dataset.size=6"], None, "dataset.size=6 is not valid for synthetic3d"),
    ("too-small-for-ssim", ["dataset.size=8", "attack=[gradient_inversion]"], None, "dataset.size=8 is too small for attack 'gradient_inversion'"),
    ("3d-subset-size", ["dataset=adrenalmnist3d", "dataset.size=128"], None, "dataset.size=128 is not a MedMNIST size for 3D"),
    ("imagefolder-one-class", ["dataset=imagefolder"], lambda p: _png_folder(p, ["tumour"]), "a classifier needs at least two"),
    ("imagefolder-unreadable", ["dataset=imagefolder"], lambda p: _png_folder(p, ["a", "b"], broken=True), "scan.png: cannot read this image"),
    ("imagefolder-missing-root", ["dataset=imagefolder"], None, "dataset=imagefolder needs dataset.root"),
    ("too-few-shadows-lira", ["membership.num_models=4"], None, "membership.num_models=4 is too small for online LiRA"),
    ("too-few-shadows-rmia", ["attack=[rmia]", "membership.num_models=3"], None, "too few for attack.rmia.n_references=4"),
    ("one-model-only", ["attack=[loss]", "membership.num_models=1"], None, "membership.num_models=1 is too small"),
    ("attack-setting-unselected", ["attack=[loss]", "attack.lira.online=false"], None, "configures attack 'lira', which is not selected"),
    ("bad-lira-variance", ["attack.lira.variance=global"], None, "attack.lira.variance='global' is not valid"),
    ("path-traversal-name", ["name=../../etc"], None, "name='../../etc' is not a valid folder name"),
    ("absolute-name", ["name=/tmp/x"], None, "name='/tmp/x' is not a valid folder name"),
    ("bad-grad-sample-mode", ["model.grad_sample_mode=fast"], None, "model.grad_sample_mode='fast' is not valid"),
    ("bad-device", ["device=tpu"], None, "device='tpu' is not valid"),
    ("absent-gpu", ["device=cuda:97"], None, "device='cuda:97' is not available"),
    ("epsilon-overflows", ["privacy.epsilon=1e400"], None, "privacy.epsilon=1e400 overflows to infinity"),
    ("epsilon-overflows-quoted", ["privacy.epsilon='1e400'"], None, "privacy.epsilon=1e400 overflows to infinity"),
    ("epsilon-infinity-spelled-out", ["privacy.epsilon='Infinity'"], None,
     "privacy.epsilon='Infinity' is read as infinity, which trains without DP; write inf"),
    ("bad-references", ["privacy.references=[same_recipe,tuned,tuned]"], None, "privacy.references=['same_recipe', 'tuned', 'tuned'] is not valid"),
    ("reference-set-by-hand", ["privacy.reference=tuned"], None, "privacy.reference='tuned' is set per run"),
    ("epsilon-overflows-in-sweep", ["privacy.epsilon=1,-2e999"], None, "privacy.epsilon=-2e999 overflows to infinity"),
    ("clip-norm-overflows", ["privacy.max_grad_norm=1e309"], None, "privacy.max_grad_norm=1e309 overflows to infinity"),
    ("negative-seed", ["seed=-1"], None, "seed=-1 is not valid; use a whole number in [0, 2^63)"),
    ("seed-beyond-2-63", ["seed=9223372036854775808"], None, "seed=9223372036854775808 is not valid"),
    ("rare-fraction-one", ["dataset.rare_fraction=1"], None, "dataset.rare_fraction=1.0 is not valid; use a share in [0, 1)"),
    ("label-noise-negative", ["dataset.label_noise=-0.1"], None, "dataset.label_noise=-0.1 is not valid"),
    ("too-few-canaries", ["attack.whitebox.n_canaries=5"], None, "attack.whitebox.n_canaries=5 is not valid"),
    ("imagefolder-bomb", ["dataset=imagefolder"], _with(lambda d: (d / "big.png").write_bytes(_png_header(100_000, 100_000))),
     "big.png: declares more pixels than PIL will decode"),
    ("imagefolder-over-the-cap", ["dataset=imagefolder"], _with(lambda d: (d / "big.png").write_bytes(_png_header(9000, 9000))),
     "big.png: declares 9000 × 9000 pixels; images must have between 1 and 67,108,864 pixels"),
    ("imagefolder-zero-width", ["dataset=imagefolder"], _with(lambda d: (d / "flat.png").write_bytes(_png_header(0, 28))),
     "flat.png: "),
    ("imagefolder-fifo", ["dataset=imagefolder"], _with(lambda d: os.mkfifo(d / "pipe.png")),
     "pipe.png: not a regular file (a FIFO, device or socket)"),
    ("imagefolder-link-outside", ["dataset=imagefolder"], _with(lambda d: (d / "link.png").symlink_to("/etc/hostname")),
     "link.png: a link to /etc/hostname, outside the image folder"),
    ("imagefolder-non-utf8-class", ["dataset=imagefolder"], _non_utf8_class, "the class folder's name is not valid UTF-8"),
    ("imagefolder-empty-test-split", ["dataset=imagefolder"], _empty_test_split, "test holds no readable images"),
    ("results-root-is-a-file", ["results_root=/etc/hostname"], None, "results_root='/etc/hostname' is a file, not a folder"),
    ("results-root-under-a-file", ["results_root=/etc/hostname/results"], None, "results_root='/etc/hostname/results' cannot be written"),
    ("name-too-long", ["name=" + "n" * 300], None, "is 300 bytes long; the file system allows 255"),
    ("epsilon-unreachable", ["privacy.epsilon=1e-4"], None, "privacy.epsilon=0.0001 is not reachable with delta=1e-05 in 320 steps"),
    ("epsilon-beyond-any-noise", ["privacy.epsilon=1e300"], None, "privacy.epsilon=1e+300 needs σ below 1e-12"),
    ("momentum-one", ["train.momentum=1"], None, "train.momentum=1.0 is not valid; use a number in [0, 1)"),
    ("weight-decay-negative", ["train.weight_decay=-1e-4"], None, "train.weight_decay=-0.0001 is not valid"),
    ("ema-decay-one", ["train.ema_decay=1"], None, "train.ema_decay=1.0 is not valid; use a value in [0, 1) or null"),
    ("object-array-npz", ["dataset=breastmnist"], lambda p: _npz(p, train_labels=np.array([[1]] * 59 + [[None]], dtype=object)),
     "holds Python objects (object arrays); refusing to unpickle"),
]


@pytest.mark.parametrize("case_id, overrides, build, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(tmp_path, case_id, overrides, build, message):
    args = list(overrides)
    if build is not None:
        root = build(tmp_path / "data")
        args.append(f"dataset.root={root}")
    with pytest.raises(USER_ERRORS) as info:
        preflight(args, str(CONFIG_DIR))
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_a_gpu_is_looked_for_only_where_the_jobs_run():
    # Slurm jobs run on the cluster's nodes: the submitting host needs no GPU of its own
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the Slurm launcher is in the scale extra")
    assert preflight(["device=cuda:97", "hydra/launcher=slurm", "privacy.epsilon=8"], str(CONFIG_DIR)) == 1
    with pytest.raises(USER_ERRORS, match="device='cuda:97' is not available"):
        preflight(["device=cuda:97", "hydra/launcher=submitit_local", "privacy.epsilon=8"], str(CONFIG_DIR))


@pytest.mark.parametrize("args", [["privacy.epsilon=1,8,-3"], ["model=vgg16"], ["privacy.delta=0.5"]])
def test_command_line_exits_non_zero_with_one_line_and_writes_nothing(tmp_path, args):
    root = tmp_path / "results"
    result = run_cli([*args, f"results_root={root}"])
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medprivbench: error: ")
    assert not root.exists()
