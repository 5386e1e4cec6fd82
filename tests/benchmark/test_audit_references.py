"""``medprivbench-audit`` with reference models (benchmark/audit_references.py): a model trained outside
the benchmark is audited with offline LiRA and RMIA beside the loss attack; LiRA's AUC is checked
against offline LiRA computed here by hand from the same reference models' logits; bad inputs are
one line, exit 2 and nothing written; the audit folder is written all or nothing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medprivbench.benchmark import audit_references
from medprivbench.benchmark.audit_cli import main
from medprivbench.benchmark.audit_report import check_out_folder, write_audit
from medprivbench.benchmark.config import DatasetConfig, ModelConfig
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.models import build_model
from medprivbench.benchmark.store import publish_folder
from medprivbench import datasets
from medprivbench.datasets.synthetic import load_synthetic

SIZE, WIDTH, EPOCHS, BATCH, LR, K = 16, 8, 40, 32, 5e-3, 4  # 16-pixel images, a narrow CNN: a second per model
N_TRAIN, N_VAL, N_TEST = 240, 100, 100
RUN_FILES = ("runs", "table.csv", "table.parquet", "report.html", "report.md", "figures")  # the audit as a results folder
# the references' recipe: the plain loop's below (Adam, constant lr, no DP)
RECIPE = ["privacy.epsilon=inf", "train.optimizer=adam", f"train.lr={LR}", "train.lr_schedule=constant",
          f"train.epochs={EPOCHS}", f"train.batch_size={BATCH}"]


def _run(args: list[str], capsys=None) -> tuple[int, list[str]]:
    """The command in this process: exit status and its non-empty printed lines (when ``capsys`` is given)."""
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    if capsys is None:
        return status, []
    captured = capsys.readouterr()
    return status, [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def _train_outside(x: torch.Tensor, y: torch.Tensor, member: np.ndarray) -> torch.nn.Module:
    """A plain PyTorch loop (no medprivbench training code) that overfits the members."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn", width=WIDTH), in_channels=1, n_classes=2, image_size=SIZE)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    xm, ym = x[torch.from_numpy(member)], y[torch.from_numpy(member)]
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(ym)).split(BATCH):
            optimizer.zero_grad()
            F.cross_entropy(model(xm[batch]), ym[batch]).backward()
            optimizer.step()
    return model.eval()


def _model_args(folder) -> list[str]:
    return ["--model", "cnn", "--width", str(WIDTH), "--size", str(SIZE), "--weights", str(folder / "model.safetensors"),
            "--dataset", "synthetic", "--members", str(folder / "members.npy")]


def _small_synthetic(cfg):
    """The synthetic dataset with a few hundred images (the command's own loader reads 1000 training images)
    and a long tail (a fifth of atypical images whose label is a coin flip), which a model memorises."""
    return load_synthetic(n_train=N_TRAIN, n_val=N_VAL, n_test=N_TEST, image_size=int(cfg.size), rare_fraction=0.2)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """One audit with K reference models of a model trained outside the benchmark on a small synthetic
    dataset, and the references the command trained (recorded on the way)."""
    folder = tmp_path_factory.mktemp("audited")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this small train several times faster on one thread when cores are shared
    ds = _small_synthetic(DatasetConfig(name="synthetic", size=SIZE))
    x, y = torch.from_numpy(ds.train_x), torch.from_numpy(ds.train_y).long()
    member = np.random.default_rng(0).random(len(y)) < 0.5
    model = _train_outside(x, y, member)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    np.save(folder / "members.npy", np.flatnonzero(member))
    trained = []
    real = audit_references.train_references

    def recording(**kwargs):
        trained.append(real(**kwargs))
        return trained[-1]

    out = folder / "audit"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit_references, "train_references", recording)
        patch.setattr(datasets, "load_raw", _small_synthetic)
        status, _ = _run([*_model_args(folder), "--reference-models", str(K), "--recipe", *RECIPE, "--out", str(out)])
    torch.set_num_threads(threads)
    assert status == 0
    return SimpleNamespace(folder=folder, out=out, model=model, x=x, y=ds.train_y, member=member, references=trained[0],
                           record=json.loads((out / "audit.json").read_text()))


def _scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """φ = log p_y − log(1 − p_y) of softmax(logits): z_y − logsumexp of the other classes' logits."""
    true = np.eye(logits.shape[-1], dtype=bool)[labels][:, None, :]  # (N, 1, C), broadcast over queries
    z_true = np.where(true, logits, 0.0).sum(-1)
    return z_true - logsumexp(np.where(true, -np.inf, logits), axis=-1)


def _offline_lira_by_hand(target: np.ndarray, references: np.ndarray, reference_member: np.ndarray,
                          labels: np.ndarray) -> np.ndarray:
    """Offline LiRA (Carlini et al. 2022) with the fixed variance of few references: per record the
    Gaussian of the OUT references' φ (their mean; one variance per query pooled over records),
    the one-sided likelihood Φ(T) of the target's φ, T combining the queries' standard scores."""
    phi_target = _scaled_confidence(target, labels)  # (N, A)
    phi = np.stack([_scaled_confidence(r, labels) for r in references])  # (K, N, A)
    out = ~reference_member
    count = out.sum(0)
    mean = np.zeros_like(phi_target)
    has_out = count > 0
    mean[has_out] = (phi * out[..., None]).sum(0)[has_out] / count[has_out, None]
    mean[~has_out] = mean[has_out].mean(0)  # a record no reference left out: the other records' mean
    residuals = ((phi - mean) ** 2 * out[..., None]).sum((0, 1))
    std = np.sqrt(residuals / np.maximum(count - 1, 0).sum())
    standard = ((phi_target - mean) / std).sum(1) / np.sqrt(phi_target.shape[1])
    return norm.cdf(standard)


def test_lira_auc_equals_offline_lira_computed_by_hand_on_the_same_references(audited):
    references, record = audited.references, audited.record
    assert references.num_models == K and record["references"]["queries"] == ["identity", "hflip"]
    with torch.no_grad():
        target = np.stack([audited.model(audited.x).numpy(), audited.model(audited.x.flip(-1)).numpy()], axis=1)
    scores = _offline_lira_by_hand(target.astype(np.float64), references.logits.astype(np.float64), references.member,
                                   audited.y)
    assert record["attacks"]["lira"]["options"] == {"fixed_variance": True}
    assert record["attacks"]["lira"]["auc"] == pytest.approx(roc_auc_score(audited.member, scores), abs=0.01)


def test_audit_with_references_reports_every_attack_with_intervals(audited):
    record, out = audited.record, audited.out
    assert list(record["attacks"]) == ["loss", "lira", "rmia"] and record["not_run"] == {}
    for result in record["attacks"].values():
        assert 0.0 <= result["auc_ci"][0] <= result["auc"] <= result["auc_ci"][1] <= 1.0
        assert 0.0 <= result["tpr_at_0.1%fpr"] <= 1.0 and len(result["tpr_at_fpr_ci"]) == 2
    # the model memorised its members; the reference attacks see it clearly
    for name in ("lira", "rmia"):
        assert record["attacks"][name]["auc"] > 0.6 and record["attacks"][name]["auc_ci"][0] > 0.5
    assert {p.name for p in out.iterdir()} == {"audit.json", "audit.md", "scores.parquet", "roc_loss.csv", "roc_lira.csv",
                                               "roc_rmia.csv", *RUN_FILES}
    table = pd.read_parquet(out / "scores.parquet")
    assert np.array_equal(table["member"], audited.member) and np.array_equal(table["index"], np.arange(len(audited.y)))
    for name in ("loss", "lira", "rmia"):
        assert roc_auc_score(table["member"], table[f"score_{name}"]) == pytest.approx(record["attacks"][name]["auc"])
    references = record["references"]
    assert references["count"] == K and references["recipe_overrides"] == RECIPE and references["train"]["epochs"] == EPOCHS
    assert references["population"] == f"validation split ({N_VAL} images)"
    text = (out / "audit.md").read_text()
    assert audit_references.RECIPE_NOTE in text and "| AUC |" in text and "offline RMIA" in text


def test_attacks_loss_gives_only_the_loss_attack(audited, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "load_raw", _small_synthetic)
    out = tmp_path / "loss-only"
    status, lines = _run([*_model_args(audited.folder), "--attacks", "loss", "--epsilon", "8", "--out", str(out)], capsys)
    assert status == 0 and len(lines) == 1 and lines[0].startswith("loss attack on ")
    record = json.loads((out / "audit.json").read_text())
    assert list(record["attacks"]) == ["loss"] and "references" not in record
    assert record["attacks"]["loss"] == audited.record["attacks"]["loss"]  # the same numbers as beside the references
    assert {p.name for p in out.iterdir()} == {"audit.json", "audit.md", "scores.parquet", "roc_loss.csv", *RUN_FILES}
    run = json.loads(next((out / "runs").glob("eps=8_*/metrics.json")).read_text())  # the claimed ε, as the run's
    assert run["privacy"]["epsilon_spent"] == 8.0 and run["summary"]["epsilon"] == 8.0
    bound = run["attacks"]["loss"]["variants"]["loss"]["empirical_epsilon"]  # one attack: the whole α
    assert bound["alpha"] == 0.05 and bound["epsilon_lb"] == pytest.approx(record["attacks"]["loss"]["epsilon_lb"])


def _untrained_weights(folder):
    model = build_model(ModelConfig(name="cnn", width=WIDTH), in_channels=1, n_classes=2, image_size=SIZE)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    np.save(folder / "members.npy", np.arange(500))


BAD = [
    ("no-reference-models", ["--reference-models", "0"], "--reference-models 0 is not valid"),
    ("negative-epochs", ["--reference-models", "4", "--recipe", "train.epochs=-1"], "train.epochs=-1 is not valid"),
    ("epsilon-overflowing-to-infinity", ["--reference-models", "4", "--recipe", "privacy.epsilon='1e400'"],
     "privacy.epsilon=1e400 overflows to infinity"),
    ("unknown-attack", ["--attacks", "foo"], "--attacks foo is not valid; choose from loss, lira, rmia"),
    ("lira-without-references", ["--attacks", "lira"], "--attacks lira needs reference models"),
    ("recipe-without-references", ["--recipe", "train.epochs=3"], "give --reference-models K with them"),
    ("recipe-from-without-references", ["--recipe-from", "runs/x"], "give --reference-models K with them"),
    ("references-unused", ["--reference-models", "4", "--attacks", "loss"], "--reference-models 4 is unused"),
    ("not-a-recipe-setting", ["--reference-models", "4", "--recipe", "model.width=4"], "the recipe takes train.* and privacy.*"),
    ("a-sweep", ["--reference-models", "4", "--recipe", "privacy.epsilon=1,8"], "is a sweep"),
    ("batch-larger-than-the-members", ["--reference-models", "4", "--recipe", "train.batch_size=600"],
     "train.batch_size=600 is larger than the 500 training images"),
]


@pytest.mark.parametrize("case_id, extra, message", BAD, ids=[c[0] for c in BAD])
def test_bad_inputs_are_one_line_exit_2_and_no_folder(tmp_path, capsys, case_id, extra, message):
    _untrained_weights(tmp_path)
    out = tmp_path / "audit"
    status, lines = _run([*_model_args(tmp_path), *extra, "--out", str(out)], capsys)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("medprivbench-audit: error: ") and message in lines[0], lines[0]
    assert not out.exists()


def test_the_folder_is_written_all_or_nothing(tmp_path):
    curve = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}
    record = {"attacks": {"loss": {"auc": 0.5, "auc_ci": [0.4, 0.6], "tpr_at_0.1%fpr": 0.0, "tpr_at_1%fpr": 0.0,
                                   "tpr_at_fpr_ci": None, "roc_curve": curve}},
              "n_members": 1, "n_nonmembers": 1, "alpha": 0.05, "source": "test"}
    out = tmp_path / "audit"
    write_audit(out, record, pd.DataFrame({"record": [0, 1], "member": [True, False], "score_loss": [1.0, 0.0]}))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    check_out_folder(out)  # an earlier audit may be replaced
    with pytest.raises(Exception):  # a scores table that cannot be written: nothing changes, nothing is left behind
        write_audit(out, record, pd.DataFrame({"record": [0, 1], "bad": [object(), object()]}))
    with pytest.raises(OSError):  # a failure while the files are written, after the first one
        publish_folder(out, {"audit.json": b"{}", "missing/roc_loss.csv": b""})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and [p.name for p in tmp_path.iterdir()] == ["audit"]
    publish_folder(out, {"audit.json": b"{}"})  # a new audit replaces the earlier one whole: no file of it is left
    assert [p.name for p in out.iterdir()] == ["audit.json"] and [p.name for p in tmp_path.iterdir()] == ["audit"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds other files \\(notes.txt\\)"):
        check_out_folder(out)
    with pytest.raises(ConfigError, match="is a file"):
        check_out_folder(out / "notes.txt")


# --- the audit folder is a results folder (benchmark/audit_record.py) -----------------------------
def test_the_audit_folder_is_a_results_folder_with_a_run_the_report_reads(audited):
    from medprivbench.benchmark import store
    from medprivbench.benchmark.summary import summarise

    runs = list(store.iter_complete_runs(audited.out))
    assert len(runs) == 1 and store.validate_run(runs[0][0]) is None
    record = runs[0][1]
    assert record["schema"] == store.SCHEMA_VERSION and record["summary"] == pytest.approx(summarise(record), nan_ok=True)
    # unknown, never guessed: the claimed ε (default ∞) and the model's training recipe
    privacy = record["privacy"]
    assert privacy["epsilon_target"] == privacy["epsilon_spent"] == np.inf and privacy["accountant"] == "unknown"
    assert np.isnan(privacy["noise_multiplier"]) and privacy["steps"] is None and record["train"]["epochs"] is None
    assert record["model"] == {"name": "cnn", "parameters": sum(p.numel() for p in audited.model.parameters()),
                               "grad_sample_mode": None}
    assert record["dataset"]["n_train"] == N_TRAIN and record["dataset"]["class_names"]
    assert record["protocols"]["membership"]["num_models"] == K
    # every attack a typed membership result, its empirical ε computed at α shared by the three (Bonferroni)
    assert list(record["attacks"]) == ["loss", "lira", "rmia", "tail"]
    variants = {name: result["variants"] for name, result in record["attacks"].items() if name != "tail"}
    assert list(variants["lira"]) == ["lira_offline"]
    # the recipe's privacy tail over the K references (benchmark/audit_tail.py), as the sweep computes it over its pool
    tail = record["attacks"]["tail"]
    assert tail["n_models"] == K and {s["criterion"] for s in tail["shares"].values()} == {"auc", "tpr"}
    assert tail == audited.record["references"]["tail"]
    for (metrics,) in (v.values() for v in variants.values()):
        bound = metrics["empirical_epsilon"]
        assert bound["alpha"] == pytest.approx(0.05 / 3) and 0.0 <= bound["epsilon_lb"] <= bound["epsilon_ceiling"] < np.inf
    # utility: the test split, and the members for train (the model memorised them)
    assert record["utility"]["train"]["accuracy"] == 1.0 and 0.5 < record["utility"]["test"]["accuracy"] < 1.0
    table = pd.read_csv(audited.out / "table.csv")
    for name, column in (("loss", "mia_loss_auc"), ("lira", "mia_lira_offline_auc"), ("rmia", "mia_rmia_auc")):
        assert table[column].iloc[0] == pytest.approx(audited.record["attacks"][name]["auc"], rel=1e-12)
    report = (audited.out / "report.md").read_text()
    assert "## Membership inference" in report and "| ε | black box |" in report and "beats chance" in report
    assert "## The privacy tail: training images at high risk" in report  # the tail section, from the references
    # per-class risk: the strongest attack's AUC among each class's candidates, recomputed here
    from sklearn.metrics import roc_auc_score

    risk = record["audit"]["per_class_risk"]
    scores = pd.read_parquet(audited.out / "scores.parquet")
    for index, name in enumerate(record["dataset"]["class_names"]):
        part = scores[scores["label"] == index]
        assert risk["auc"][name] == pytest.approx(roc_auc_score(part["member"], part[f"score_{risk['attack']}"]))
    from .test_report import markdown_table_after

    per_class = markdown_table_after(report, "## Per-class risk")
    assert list(per_class["class"]) == list(record["dataset"]["class_names"])
    assert all(v != "–" for v in per_class["mean per-sample membership AUC"])
    assert str(audited.out) in report and ".partial" not in report  # it names where the folder is, not its staging


def _tiny_sweep(root):
    """One tiny run of the sweep at ε = ∞ on the synthetic data (the TINY overrides of tests/conftest.py)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from medprivbench.benchmark.config import register_configs
    from medprivbench.benchmark.experiment import run_experiment
    from medprivbench.benchmark.paths import CONFIG_DIR
    from medprivbench.benchmark.report import build_report

    from ..conftest import TINY

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, "privacy.epsilon=inf", f"results_root={root}", "name=tiny"])
    outcome = run_experiment(cfg)
    build_report([outcome.sweep_dir])
    return outcome.sweep_dir


@pytest.mark.slow
def test_medprivbench_report_sets_the_audit_beside_a_sweep(audited, tmp_path, monkeypatch):
    from medprivbench.benchmark.cli import report_main

    sweep = _tiny_sweep(tmp_path / "results")
    out = tmp_path / "comparison"
    assert report_main([str(audited.out), str(sweep), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert text.startswith("# medprivbench budget comparison: audit vs tiny")
    assert "## Membership inference" in text and "### Side by side" in text
    assert "| ε | audit: test accuracy | audit: black box | tiny: test accuracy | tiny: black box |" in text
    side = text[text.index("### Side by side"):text.index("## Headline table")]
    audit_row = next(line for line in side.splitlines() if line.startswith("| ∞ (non-private) |"))
    assert audit_row.split(" | ")[2:] == ["beats chance", "–", "– |"]  # the audit's model beside nothing of the sweep's
    assert next(line for line in side.splitlines() if line.startswith("| ∞ (same recipe) |")).split(" | ")[1:3] == ["–", "–"]


def test_a_failure_while_writing_the_run_leaves_no_folder(audited, tmp_path, monkeypatch):
    from medprivbench.benchmark import report, store

    run_dir, run = next(store.iter_complete_runs(audited.out))
    curve = {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]}
    record = {"attacks": {"loss": {"auc": 0.5, "auc_ci": [0.4, 0.6], "tpr_at_0.1%fpr": 0.0, "tpr_at_1%fpr": 0.0,
                                   "tpr_at_fpr_ci": None, "roc_curve": curve}},
              "n_members": 1, "n_nonmembers": 1, "alpha": 0.05, "source": "test"}
    scores = pd.DataFrame({"record": [0, 1], "member": [True, False], "score_loss": [1.0, 0.0]})
    out = tmp_path / "audit"

    def broken(*args, **kwargs):
        raise RuntimeError("the report failed")

    monkeypatch.setattr(report, "build_report", broken)
    with pytest.raises(RuntimeError, match="the report failed"):
        write_audit(out, record, scores, (run, {"seed": 0}))
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging
    monkeypatch.undo()
    write_audit(out, record, scores, (run, {"seed": 0}))  # the same, working: a complete results folder
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(list(store.iter_complete_runs(out))) == 1 and (out / "report.md").is_file()
    monkeypatch.setattr(report, "build_report", broken)
    with pytest.raises(RuntimeError):  # a failure replacing it leaves the earlier audit as it was
        write_audit(out, record, scores, (run, {"seed": 0}))
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_epsilon_is_a_claim_given_with_a_model(tmp_path, capsys):
    _untrained_weights(tmp_path)
    status, lines = _run([*_model_args(tmp_path), "--epsilon", "0", "--out", str(tmp_path / "a")], capsys)
    assert status == 2 and "--epsilon=0.0 is not valid" in lines[0]
    sweep = tmp_path / "sweep"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "table.csv").write_text("")
    with pytest.raises(ConfigError, match="no audit.json"):  # a sweep's folder is never taken for an earlier audit
        check_out_folder(sweep)


def test_a_recorded_runs_config_is_the_recipe(tmp_path):
    """--recipe-from: a run folder's config.yaml gives train.* and privacy.* (the tuned reference's
    non-private settings where the run was one); --recipe overrides come on top."""
    from omegaconf import OmegaConf

    from medprivbench.benchmark.audit_references import compose_recipe, model_dict, recorded_recipe
    from medprivbench.benchmark.errors import ConfigError

    run = {"dataset": {"name": "synthetic"}, "model": {"name": "cnn"},
           "privacy": {"epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 2.5, "accountant": "prv", "secure_rng": False,
                       "reference": None},
           "train": {"epochs": 7, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0,
                     "lr_schedule": "cosine", "ema_decay": None, "augmult": 0, "augmentations": ["shift", "hflip"],
                     "nonprivate": {"optimizer": "adam", "lr": 0.001, "epochs": 3, "batch_size": None, "momentum": None}}}
    (tmp_path / "dp").mkdir()
    OmegaConf.save(OmegaConf.create(run), tmp_path / "dp" / "config.yaml")
    overrides = recorded_recipe(tmp_path / "dp")
    assert "train.augmentations=[shift,hflip]" in overrides and not any("nonprivate" in o for o in overrides)
    cfg = compose_recipe([*overrides, "train.epochs=9"], model_dict("cnn", 16))
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size, cfg.privacy.max_grad_norm) == (9, 0.05, 32, 2.5)
    tuned = {**run, "privacy": {**run["privacy"], "epsilon": float("inf"), "reference": "tuned"}}
    (tmp_path / "tuned").mkdir()
    OmegaConf.save(OmegaConf.create(tuned), tmp_path / "tuned" / "config.yaml")
    cfg = compose_recipe(recorded_recipe(tmp_path / "tuned"), model_dict("cnn", 16))
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.epochs, cfg.train.batch_size) == ("adam", 0.001, 3, 32)
    with pytest.raises(ConfigError, match="no config.yaml there"):
        recorded_recipe(tmp_path / "nowhere")
