"""``medprivbench-audit``: membership audit of a model or of outputs a user already has.

Two inputs. ``--model NAME --weights FILE --dataset NAME --members FILE``: a trained model of the
registry's architecture ``NAME`` (weights as safetensors; TorchScript only with
``--torchscript-executes-code``), evaluated on the dataset's raw training split, with a file saying
which training images were members (0/1 per image, or the members' indices); the other training
images (or, if every one was a member, the test split) are the non-members. Together they are the
candidates. ``--outputs FILE``: per-sample outputs computed elsewhere, as below.

Attacks (``--attacks``; default: every one the inputs allow): the loss attack (no model needed
beyond its outputs; with an empirical ε lower bound), and, with ``--reference-models K``, offline
LiRA and offline RMIA against K reference models the audit trains with ``--recipe`` (the sweep's
overrides of ``train.*`` and ``privacy.*``) on random halves of the candidates
(benchmark/audit_references.py). Written to ``<out>/`` all or nothing: audit.json, audit.md,
roc_<attack>.csv and scores.parquet (benchmark/audit_report.py) and, for a model, the audit as one
run of a results folder (``runs/``, table.csv, report.html/.md; benchmark/audit_record.py), so that
``medprivbench-report <out> <sweep>`` sets the model beside a sweep of the same data. The audit
does not know the model's ε: ``--epsilon`` is the user's claim, recorded as the run's ε (default
∞: not stated or not private), and what the model's training was (σ, q, T, C) is recorded unknown.

The case of TensorFlow Privacy's ``AttackInputData(loss_train, loss_test, …)``: a file of
per-sample losses, or logits with labels, and which samples were training members. Files are read
without unpickling: ``.npz`` with ``allow_pickle=False``; ``.csv``/``.parquet`` through pandas.

File layout (arrays of equal length n):
  ``member`` (0/1 or bool) and either ``loss`` (n,) or ``logits`` (n, K) with ``label`` (n,).
  In a table, logits are the columns ``logit_0 … logit_{K-1}``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import audit_references as refs
from .audit_outputs import attack_metrics, loss_audit
from .audit_record import AuditedModel, run_record, utility_of
from .audit_report import check_out_folder, summary_lines, write_audit
from .audit_tail import reference_tail
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


@dataclass(frozen=True)
class Candidates:
    """The images audited, in the order of the scores: the raw training split (then the test split
    when every training image was a member), with the audited model's membership of each."""

    x: np.ndarray
    y: np.ndarray
    member: np.ndarray  # ground truth: enters the metrics only
    split: np.ndarray  # "train" or "test"
    index: np.ndarray  # the image's index in its split

    @property
    def includes_test(self) -> bool:
        return bool((self.split == "test").any())


def candidates_of(ds, member: np.ndarray) -> Candidates:
    """The candidates of ``ds`` given the training images' membership (both kinds must occur)."""
    if not member.any():
        raise ConfigError("--members marks no training image as a member; give the images the model trained on")
    n_train = len(ds.train_y)
    if not member.all():
        return Candidates(ds.train_x, ds.train_y, member, np.full(n_train, "train"), np.arange(n_train))
    n_test = len(ds.test_y)  # every training image was a member: the test split are the non-members
    return Candidates(np.concatenate([ds.train_x, ds.test_x]), np.concatenate([ds.train_y, ds.test_y]),
                      np.r_[member, np.zeros(n_test, bool)], np.r_[np.full(n_train, "train"), np.full(n_test, "test")],
                      np.r_[np.arange(n_train), np.arange(n_test)])


def _image(args, ds) -> dict:  # noqa: ANN001 - argparse namespace
    """The shape of the audited model's inputs and outputs (what its architecture is built for)."""
    return {"in_channels": ds.info.n_channels, "n_classes": len(ds.info.class_names), "image_size": args.size,
            "spatial_dims": ds.info.spatial_dims}


def load_model(args, ds):  # noqa: ANN001 - argparse namespace
    """The user's model: safetensors weights in the registry's architecture, or TorchScript if allowed."""
    import torch

    from .models import MODELS, build_model

    if args.weights is None or not Path(args.weights).is_file():
        raise ConfigError(f"--weights={args.weights}: no such file; give the model's weights (.safetensors)")
    if str(args.weights).endswith(".safetensors"):
        from omegaconf import OmegaConf
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if args.model not in MODELS:
            raise ConfigError(f"--model={args.model!r} is not valid; choose one of {', '.join(sorted(MODELS))}")
        model = build_model(OmegaConf.create(refs.model_dict(args.model, args.width)), **_image(args, ds))
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
        return model
    if args.torchscript_executes_code:
        try:
            return torch.jit.load(str(args.weights), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises several kinds for a file that is not TorchScript
            raise ConfigError(f"{args.weights}: not a readable TorchScript file ({type(exc).__name__})") from None
    raise ConfigError(f"{args.weights}: only .safetensors weights are read; a TorchScript file runs code when loaded, "
                      "pass --torchscript-executes-code to allow it")


def _population(ds, candidates: Candidates) -> tuple[str, np.ndarray, np.ndarray] | None:
    """RMIA's population: a split no model saw and no candidate is from (validation, else test)."""
    if ds.val_y is not None and len(ds.val_y) >= 2:
        return "validation", ds.val_x, ds.val_y
    if not candidates.includes_test and len(ds.test_y) >= 2:
        return "test", ds.test_x, ds.test_y
    return None


def _audit_model(args, recipe_cfg) -> tuple[dict, pd.DataFrame, tuple[dict, dict]]:  # noqa: ANN001 - argparse namespace
    """Every chosen attack on the user's model: the loss attack on its logits, LiRA and RMIA with references;
    the audit's record, the per-candidate scores, and the audit as a run record (benchmark/audit_record.py)."""
    import time

    import torch

    from medprivbench.datasets import load_raw

    from .config import DatasetConfig
    from .training import predict_logits

    started = time.perf_counter()
    # the sweep's dataset settings (configs/dataset/), without de-duplication: indices stay the file's
    ds = load_raw(DatasetConfig(name=args.dataset, root=str(args.data_root), size=args.size))
    if ds.info.task == "segmentation":
        raise ConfigError(f"--dataset {args.dataset} holds segmentation masks; medprivbench-audit audits classifiers. "
                          "Audit a segmenter through a sweep: medprivbench task=segmentation dataset=segfolder")
    candidates = candidates_of(ds, read_members(args.members, len(ds.train_y)))
    population = _population(ds, candidates)
    attacks, not_run = refs.attacks_to_run(args.attacks, args.reference_models, population and population[0])
    recipe = refs.recipe_for(recipe_cfg, int(candidates.member.sum())) if recipe_cfg is not None else None
    model = load_model(args, ds)
    record = _record(args, candidates.member, not_run)
    scores = {}
    if "loss" in attacks:
        logits = predict_logits(model, torch.as_tensor(candidates.x)).astype(np.float64)
        record["attacks"]["loss"], scores["loss"] = loss_audit(candidates.member, logits=logits, labels=candidates.y,
                                                               delta=args.delta, alpha=args.alpha, seed=args.seed)
    names = [name for name in attacks if refs.AUDIT_ATTACKS[name].uses_references]
    if names:
        found, record["references"] = _reference_attacks(args, recipe_cfg, recipe, ds, candidates, population, model, names)
        for name in names:
            record["attacks"][name] = attack_metrics(name, found[name], candidates.member, alpha=args.alpha, seed=args.seed)
            record["attacks"][name]["options"] = refs.AUDIT_ATTACKS[name].options_for(args.reference_models)
        scores.update(found)
    table = pd.DataFrame({"record": np.arange(len(candidates.y)), "split": candidates.split, "index": candidates.index,
                          "label": candidates.y, "member": candidates.member})
    table = table.assign(**{f"score_{name}": values for name, values in scores.items()})
    run = run_record(record, table, _audited(args, ds, model, candidates), time.perf_counter() - started)
    return record, table, run


def _audited(args, ds, model, candidates: Candidates) -> AuditedModel:  # noqa: ANN001 - argparse namespace
    """What the audit knows of the model, for its run record: data, architecture, utility, the claimed ε."""
    member = candidates.member[candidates.split == "train"]
    dataset = {**ds.info.to_record(), "n_train": len(ds.train_y), "n_test": len(ds.test_y),
               "n_val": 0 if ds.val_y is None else len(ds.val_y)}
    return AuditedModel(dataset=dataset, utility=utility_of(model.cpu(), ds, member),
                        model={"name": args.model, "width": args.width,
                               "parameters": int(sum(p.numel() for p in model.parameters()))},
                        epsilon=math.inf if args.epsilon is None else args.epsilon, delta=args.delta, alpha=args.alpha,
                        seed=args.seed, source=_record(args, member, {})["source"])


def _reference_attacks(args, cfg, recipe_hp, ds, candidates: Candidates, population, model,  # noqa: ANN001
                       names: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Train the reference models, query the user's model as they are queried, and score ``names``."""
    import torch

    from .experiment import resolve_device
    from .models import grad_sample_mode
    from .progress import count_bar
    from .shadow import query_logits
    from .training import predict_logits

    recipe, hp = recipe_hp
    where, pop_x, pop_y = population or ("none", ds.test_x, ds.test_y)  # without one, RMIA is not among ``names``
    queries, device, k = list(cfg.membership.queries), resolve_device("auto"), args.reference_models
    print(f"training {k} reference models on random halves of the {len(candidates.y)} candidates: "
          f"{refs.describe_recipe(recipe, hp)}", file=sys.stderr)
    data = refs.ReferenceData(candidates.x, candidates.y, pop_x, pop_y, ds.test_x, ds.test_y)
    with count_bar("auto", "reference models", total=k, unit="model") as bar:
        pool = refs.train_references(model=refs.model_dict(args.model, args.width), image=_image(args, ds), data=data,
                                     recipe=recipe, hp=hp, grad_sample_mode=grad_sample_mode(cfg.model), n_references=k,
                                     queries=queries, seed=args.seed, device=device, progress=bar)
    model = model.to(device)
    target = query_logits(model, torch.as_tensor(candidates.x), queries, device)
    target_population = query_logits(model, torch.as_tensor(pop_x), queries, device)
    found = {name: refs.reference_scores(name, target, target_population, candidates.y, pool) for name in names}
    tail = reference_tail(pool, alpha=args.alpha, seed=args.seed)  # the recipe's per-record risk over the references
    record = refs.references_record(cfg, args.recipe, recipe, hp, pool, population and f"{where} split ({len(pop_y)} images)",
                                    len(candidates.y), args.seed)
    if candidates.includes_test:  # the references trained on half of the test split: their accuracy there says little
        record["test_accuracy"], record["target_test_accuracy"] = [], None
    else:
        test_logits = predict_logits(model, torch.as_tensor(ds.test_x), device=device)
        record["target_test_accuracy"] = float((test_logits.argmax(1) == ds.test_y).mean())
    if tail is not None:
        record["tail"] = tail[0].to_record()
    return found, record


def _record(args, member: np.ndarray, not_run: dict) -> dict:  # noqa: ANN001 - argparse namespace
    source = str(args.outputs) if args.outputs is not None else \
        f"model={args.model} weights={args.weights} dataset={args.dataset} members={args.members}"
    return {"source": source, "n_members": int(member.sum()), "n_nonmembers": int((~member).sum()), "delta": args.delta,
            "alpha": args.alpha, "attacks": {}, "not_run": not_run}


def _audit_file(args) -> tuple[dict, pd.DataFrame, None]:  # noqa: ANN001 - argparse namespace
    """The loss attack on an outputs file (the only attack its outputs allow)."""
    arrays = read_outputs(args.outputs)
    _, not_run = refs.attacks_to_run(args.attacks, None, None)
    result, scores = loss_audit(arrays["member"], logits=arrays.get("logits"), labels=arrays.get("label"),
                                losses=arrays.get("loss") if "logits" not in arrays else None,
                                delta=args.delta, alpha=args.alpha, seed=args.seed)
    record = _record(args, np.asarray(arrays["member"]).astype(bool), not_run)
    record["attacks"]["loss"] = result
    table = pd.DataFrame({"record": np.arange(len(scores)), "member": np.asarray(arrays["member"]).astype(bool)})
    if "label" in arrays:
        table["label"] = arrays["label"]
    return record, table.assign(score_loss=scores), None


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--reference-models", type=int, metavar="K",
                        help="train K reference models with --recipe and add offline LiRA and RMIA (needs --model)")
    parser.add_argument("--recipe", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="the reference models' training: medprivbench's train.* and privacy.* overrides, e.g. "
                             "train.epochs=40 privacy.epsilon=8 (default: the sweep's recipe)")
    parser.add_argument("--recipe-from", type=Path, metavar="RUN",
                        help="a recorded run's folder (<sweep>/runs/<run>/): its train.* and privacy.* settings are the "
                             "recipe, with --recipe overrides on top")
    parser.add_argument("--attacks", nargs="+", action="extend", metavar="NAME",
                        help=f"attacks to run, of {', '.join(refs.AUDIT_ATTACKS)} (default: every one the inputs allow)")
    parser.add_argument("--out", type=Path, default=Path("audit"),
                        help="folder for audit.json, audit.md, roc_<attack>.csv, scores.parquet and, for a model, the run and "
                             "report that medprivbench-report reads (default: ./audit)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="the ε the model is claimed to have (for the report beside a sweep; the audit does not know "
                             "it): default ∞, not stated or not private")
    parser.add_argument("--delta", type=float, default=1e-5, help="δ of the empirical ε lower bound (default 1e-5)")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 − confidence of intervals and bound (default 0.05)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the bootstrap, the selection split and the reference models' streams")
    return parser


def _check_flags(args) -> None:  # noqa: ANN001 - argparse namespace
    """The flags together, before any data is read or model trained."""
    from .models import MODELS

    if not 0 < args.alpha < 1 or not 0 <= args.delta < 1:
        raise ConfigError(f"--alpha={args.alpha} and --delta={args.delta}: use alpha in (0, 1) and delta in [0, 1)")
    if (args.outputs is None) == (args.model is None):
        raise ConfigError("give either --outputs FILE, or --model NAME with --weights, --dataset and --members")
    if args.epsilon is not None and (args.model is None or not args.epsilon > 0):
        raise ConfigError(f"--epsilon={args.epsilon} is not valid; give the model's claimed ε > 0 (inf: not private) "
                          "with --model (an outputs file is audited without a run record)")
    if args.model is not None and (args.dataset is None or args.members is None):
        raise ConfigError("--model needs --weights, --dataset and --members (which training images were members)")
    k = args.reference_models
    if k is not None and k < 1:
        raise ConfigError(f"--reference-models {k} is not valid; give the number of reference models to train, "
                          "at least 1 (8 or more recommended)")
    if k is not None and args.model not in MODELS:
        raise ConfigError(f"--reference-models needs --model, one of {', '.join(sorted(MODELS))}: the references are "
                          "trained with the model's architecture on its dataset")
    if k is None and (args.recipe or args.recipe_from is not None):
        raise ConfigError("--recipe and --recipe-from give the reference models' training recipe; give --reference-models K "
                          "with them")
    refs.check_attacks(args.attacks, k)
    if k is not None and args.attacks is not None and not any(refs.AUDIT_ATTACKS[a].uses_references for a in args.attacks):
        raise ConfigError(f"--reference-models {k} is unused by --attacks {' '.join(args.attacks)}; drop one of them")
    check_out_folder(args.out)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.attacks is not None:
        args.attacks = [a for value in args.attacks for a in value.split(",") if a]
    try:
        _check_flags(args)
        recipe_cfg = None
        if args.reference_models is not None:
            if args.recipe_from is not None:  # the recorded run's settings first: --recipe overrides them
                args.recipe = [*refs.recorded_recipe(args.recipe_from), *args.recipe]
            recipe_cfg = refs.compose_recipe(args.recipe, refs.model_dict(args.model, args.width))
        record, scores, run = _audit_file(args) if args.outputs is not None else _audit_model(args, recipe_cfg)
    except USER_ERRORS as exc:
        _fail(str(exc))
    write_audit(args.out, record, scores, run)
    for line in summary_lines(record, args.out, args.delta, args.alpha):
        print(line)
    return 0


if __name__ == "__main__":
    main()
