"""``medprivbench-audit``: membership audit of a model or of outputs a user already has (no retraining).

Two inputs. ``--model NAME --weights FILE --dataset NAME --members FILE``: a trained model of the
registry's architecture ``NAME`` (weights as safetensors; TorchScript only with
``--torchscript-executes-code``), evaluated on the dataset's raw training split, with a file saying
which training images were members (0/1 per image, or the members' indices); the other training
images (or, if every one was a member, the test split) are the non-members.
``--outputs FILE``: per-sample outputs computed elsewhere, as below.

The case of TensorFlow Privacy's ``AttackInputData(loss_train, loss_test, …)``: a file of
per-sample losses, or logits with labels, and which samples were training members. It gives the
loss attack's ROC metrics with intervals and an empirical ε lower bound, written to
``<out>/audit.json`` and ``<out>/roc.csv`` (all or nothing). Files are read without unpickling:
``.npz`` with ``allow_pickle=False``; ``.csv``/``.parquet`` through pandas.

File layout (arrays of equal length n):
  ``member`` (0/1 or bool) and either ``loss`` (n,) or ``logits`` (n, K) with ``label`` (n,).
  In a table, logits are the columns ``logit_0 … logit_{K-1}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import USER_ERRORS, ConfigError, fail


def _fail(message: str) -> None:
    fail("medprivbench-audit", message)


def read_outputs(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an outputs file: member, and loss or logits + label."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; give a .npz, .csv or .parquet of per-sample outputs")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from medprivbench.datasets.base import read_plain_npz

        arrays = read_plain_npz(path, damaged_hint="save the arrays with numpy.savez")
    elif suffix in (".csv", ".parquet"):
        import pandas as pd

        try:
            table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault here
            raise ConfigError(f"{path}: cannot read this table ({type(exc).__name__})") from exc
        arrays = {k: table[k].to_numpy() for k in ("member", "loss", "label") if k in table}
        logit_columns = sorted((c for c in table if str(c).startswith("logit_")), key=lambda c: int(str(c)[6:]))
        if logit_columns:
            arrays["logits"] = table[logit_columns].to_numpy(dtype=np.float64)
    else:
        raise ConfigError(f"{path}: unknown format {suffix or '(none)'}; use .npz, .csv or .parquet")
    if "member" not in arrays:
        raise ConfigError(f"{path}: no 'member' array (which samples were in the training set)")
    if "loss" not in arrays and "logits" not in arrays:
        raise ConfigError(f"{path}: needs 'loss' or 'logits' (with 'label'); found {', '.join(sorted(arrays))}")
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ConfigError(f"{path}: '{key}' holds {value.dtype} values; expected numbers")
    return arrays


def read_members(path: Path, n_train: int) -> np.ndarray:
    """Membership of each raw training image: a 0/1 vector of length N, or the members' indices."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such membership file; give a .npy or .txt of 0/1 per training image or of indices")
    try:
        values = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(path, delimiter=",", ndmin=1)
    except (ValueError, OSError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read the membership file ({type(exc).__name__}); save numbers with numpy.save "
                          "or one per line") from exc
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind not in "biuf" or not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise ConfigError(f"{path}: the membership file must hold whole numbers (0/1 flags or indices)")
    values = values.astype(np.int64)
    if len(values) == n_train and np.isin(values, (0, 1)).all():
        return values.astype(bool)
    if len(np.unique(values)) != len(values) or values.min(initial=0) < 0 or values.max(initial=0) >= n_train:
        raise ConfigError(f"{path}: {len(values)} entries are neither {n_train} 0/1 flags (one per training image) nor "
                          f"distinct indices in 0..{n_train - 1}")
    member = np.zeros(n_train, dtype=bool)
    member[values] = True
    return member


def model_outputs(args) -> dict[str, np.ndarray]:  # noqa: ANN001 - argparse namespace
    """Logits of the user's model on the raw training split (and the test split when needed)."""
    import torch

    from medprivbench.datasets import load_raw

    from .config import DatasetConfig, ModelConfig
    from .models import MODELS, build_model
    from .training import predict_logits

    # the sweep's dataset settings (configs/dataset/), without de-duplication: indices stay the file's
    ds = load_raw(DatasetConfig(name=args.dataset, root=str(args.data_root), size=args.size))
    member = read_members(args.members, len(ds.train_y))
    x, y, member_all = ds.train_x, ds.train_y, member
    if member.all():  # every training image was a member: the test split are the non-members
        x = np.concatenate([ds.train_x, ds.test_x])
        y, member_all = np.concatenate([ds.train_y, ds.test_y]), np.r_[member, np.zeros(len(ds.test_y), bool)]
    if args.weights is None or not Path(args.weights).is_file():
        raise ConfigError(f"--weights={args.weights}: no such file; give the model's weights (.safetensors)")
    if str(args.weights).endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if args.model not in MODELS:
            raise ConfigError(f"--model={args.model!r} is not valid; choose one of {', '.join(sorted(MODELS))}")
        model = build_model(ModelConfig(name=args.model, width=args.width), in_channels=ds.info.n_channels,
                            n_classes=len(ds.info.class_names), image_size=args.size)
        try:
            state = load_file(str(args.weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ConfigError(f"{args.weights}: not a readable safetensors file ({type(exc).__name__})") from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
            raise ConfigError(f"{args.weights}: the weights do not fit model={args.model} (width {args.width}) on "
                              f"{args.dataset}: {first[:160]}") from None
    elif args.torchscript_executes_code:
        try:
            model = torch.jit.load(str(args.weights), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises several kinds for a file that is not TorchScript
            raise ConfigError(f"{args.weights}: not a readable TorchScript file ({type(exc).__name__})") from None
    else:
        raise ConfigError(f"{args.weights}: only .safetensors weights are read; a TorchScript file runs code when loaded, "
                          "pass --torchscript-executes-code to allow it")
    logits = predict_logits(model, torch.as_tensor(x))
    return {"member": member_all, "logits": logits.astype(np.float64), "label": y}


def _markdown(result: dict) -> str:
    rows = [("attack", "loss threshold (Yeom et al. 2018): score = −loss"), ("members / non-members",
            f"{result['n_members']} / {result['n_nonmembers']}"),
            ("AUC", f"{result['auc']:.4f} [{result['auc_ci'][0]:.4f}, {result['auc_ci'][1]:.4f}]"),
            ("TPR at 0.1 % FPR", f"{result['tpr_at_0.1%fpr']:.4f}"), ("TPR at 1 % FPR", f"{result['tpr_at_1%fpr']:.4f}"),
            ("empirical ε lower bound", f"{result['epsilon_lb']:.4f} (δ = {result['delta']:g}, confidence {1 - result['alpha']:g})"),
            ("input", str(result.get("source", "")).replace("|", "\\|"))]
    return ("# Membership audit\n\nA lower bound on what the model leaks about membership; chance is AUC 0.5 and ε 0. "
            "Intervals are bootstrap intervals over samples.\n\n| quantity | value |\n|---|---|\n"
            + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n")


def _write_all_or_nothing(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    curve = result.pop("roc_curve")
    (staging / "audit.json").write_text(json.dumps(result, indent=2))
    rows = "\n".join(f"{f!r},{t!r}" for f, t in zip(curve["fpr"], curve["tpr"]))
    (staging / "roc.csv").write_text("fpr,tpr\n" + rows + "\n")
    (staging / "audit.md").write_text(_markdown(result))
    if out.exists():
        for name in ("audit.json", "roc.csv", "audit.md"):
            os.replace(staging / name, out / name)
        staging.rmdir()
    else:
        os.rename(staging, out)


def main(argv: list[str] | None = None) -> int:
    from medprivbench import audit_outputs

    parser = argparse.ArgumentParser(prog="medprivbench-audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=Path, help="per-sample outputs: .npz, .csv or .parquet")
    parser.add_argument("--model", help="the model's architecture, a name of the model registry (e.g. cnn)")
    parser.add_argument("--width", type=int, default=16, help="model.width the model was built with (default 16)")
    parser.add_argument("--weights", type=Path, help="the trained weights (.safetensors)")
    parser.add_argument("--torchscript-executes-code", action="store_true",
                        help="allow --weights to be a TorchScript file (loading it runs code from the file)")
    parser.add_argument("--dataset", help="synthetic, imagefolder or a MedMNIST subset (e.g. breastmnist)")
    parser.add_argument("--data-root", default="~/.medmnist", help="folder with the dataset's files")
    parser.add_argument("--size", type=int, default=28, help="image size (default 28)")
    parser.add_argument("--members", type=Path, help="which training images were members: 0/1 per image, or indices")
    parser.add_argument("--out", type=Path, default=Path("audit"), help="folder for audit.json and roc.csv (default: ./audit)")
    parser.add_argument("--delta", type=float, default=1e-5, help="δ of the empirical ε lower bound (default 1e-5)")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 − confidence of intervals and bound (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the selection split")
    args = parser.parse_args(argv)
    try:
        if not 0 < args.alpha < 1 or not 0 <= args.delta < 1:
            raise ConfigError(f"--alpha={args.alpha} and --delta={args.delta}: use alpha in (0, 1) and delta in [0, 1)")
        if (args.outputs is None) == (args.model is None):
            raise ConfigError("give either --outputs FILE, or --model NAME with --weights, --dataset and --members")
        if args.model is not None and (args.dataset is None or args.members is None):
            raise ConfigError("--model needs --weights, --dataset and --members (which training images were members)")
        arrays = read_outputs(args.outputs) if args.outputs is not None else model_outputs(args)
        result = audit_outputs(arrays["member"], logits=arrays.get("logits"), labels=arrays.get("label"),
                               losses=arrays.get("loss") if "logits" not in arrays else None,
                               delta=args.delta, alpha=args.alpha, seed=args.seed)
    except USER_ERRORS as exc:
        _fail(str(exc))
    result["source"] = str(args.outputs) if args.outputs is not None else f"model={args.model} weights={args.weights} " \
        f"dataset={args.dataset} members={args.members}"
    _write_all_or_nothing(args.out, dict(result))
    print(f"loss attack on {result['n_members']} members and {result['n_nonmembers']} non-members: AUC {result['auc']:.3f} "
          f"[{result['auc_ci'][0]:.3f}, {result['auc_ci'][1]:.3f}], TPR at 0.1% FPR {result['tpr_at_0.1%fpr']:.4f}, "
          f"empirical ε ≥ {result['epsilon_lb']:.3f} (δ = {args.delta:g}, confidence {1 - args.alpha:g}) -> {args.out}")
    return 0


if __name__ == "__main__":
    main()
