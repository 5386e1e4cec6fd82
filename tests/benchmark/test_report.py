"""The budget report built from small recorded sweeps (fake but schema-correct run folders, no training)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from medprivbench.benchmark import registry, report, store
from medprivbench.benchmark.cli import report_main
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.summary import summarise

HOSTILE = "<script>alert(1)</script>"
MIA_ATTACKS = ("loss", "lira_online")
RECON_ATTACKS = ("gradient_inversion", "imprint")
RECON_SETTINGS = {"gradient_inversion": ("init", 4, 8), "imprint": ("trained", 2, 6)}  # model state, batch size, images
N_POOL, N_MODELS = 40, 4


# ----------------------------------------------------------------------------- a fake sweep
def _roc(strength: float) -> dict:
    fpr = np.concatenate([[0.0], np.logspace(-3, 0, 25)])
    return {"fpr": fpr.tolist(), "tpr": np.minimum(1.0, fpr ** (1.0 / (1.0 + strength))).tolist()}


def _membership_attack(rng, leaks: bool) -> dict:
    auc = 0.62 + 0.02 * rng.random() if leaks else 0.49 + 0.02 * rng.random()
    lo, hi = (auc - 0.04, auc + 0.04) if leaks else (auc - 0.03, auc + 0.03)
    tpr = [0.02, 0.08] if leaks else [0.0, 0.01]
    ci = [[0.005, 0.04], [0.05, 0.11]] if leaks else [[0.0, 0.002], [0.0, 0.02]]
    return {
        "n_members": 80, "n_nonmembers": 80, "auc": auc, "auc_ci": [lo, hi], "best_balanced_accuracy": auc,
        "fpr_levels": [0.001, 0.01], "tpr_at_fpr": tpr, "tpr_at_fpr_ci": ci, "confidence": 0.95, "n_bootstrap": 200,
        "roc_curve": _roc(1.0 if leaks else 0.0),
        "empirical_epsilon": {"epsilon_lb": 0.4 + rng.random() / 10 if leaks else 0.0, "r": 20, "v": 15, "m": 40,
                              "k_plus": 10, "k_minus": 10, "accuracy": 0.75, "selection_epsilon": 0.3,
                              "epsilon_ceiling": 2.9, "delta": 1e-5, "alpha": 0.025},
    }


def _reconstruction(run_dir_writer: store.RunWriter, eps: float, rng) -> dict:
    gamma = 1.0 if math.isinf(eps) else min(1.0, 0.02 * eps)
    prior_gamma = 1.0 if math.isinf(eps) else min(1.0, 0.2 + 0.05 * eps)
    attacks = {}
    for key in RECON_ATTACKS:
        grid = f"reconstructions/{key}.png"
        matplotlib.image.imsave(run_dir_writer.path(grid), rng.random((16, 32)), cmap="gray")
        share = 0.5 if math.isinf(eps) else 0.0
        model_state, batch_size, n_images = RECON_SETTINGS[key]
        attacks[key] = {"threat_model": f"{key} attacker sees the noisy update", "psnr_mean": 12 + rng.random(),
                        "psnr_max": 15.0, "ssim_mean": 0.2, "ssim_max": 0.3, "mse_mean": 0.05, "ncc_mean": 0.4,
                        "rero": {"psnr": share, "ssim": share / 2}, "eta": {"psnr": 20.0, "ssim": 0.5},
                        "model_state": model_state, "batch_size": batch_size, "n_images": n_images,
                        "wall_time_s": 1.0, "grid": grid}
    return {
        "attacks": attacks,
        "prior_aware": {"threat_model": "informed adversary", "success_rate": 0.12, "ci_low": 0.08, "ci_high": 0.17,
                        "bound": prior_gamma, "chance": 0.1, "n_candidates": 10, "trials": 200},
        "bounds": {"rero_prior": {"kappa": 0.1, "gamma": prior_gamma}, "rero_train": {"kappa": 1 / N_POOL, "gamma": gamma},
                   "rero_step": {"kappa": 1 / N_POOL, "gamma": min(1.0, 2 * gamma)}},
    }


def _record(eps: float, seed: int, *, class_names, real: bool, leaky: set, recon: bool, writer, rng,
            reference: str | None = None) -> dict:
    private = math.isfinite(eps)
    accuracy = 0.9 - (0.2 / eps if private else 0.0) + 0.01 * seed + (0.04 if reference == "tuned" else 0.0)
    auroc = min(1.0, accuracy + 0.05)
    leaks = eps in leaky
    test = {"accuracy": accuracy, "balanced_accuracy": accuracy, "mcc": 0.5, "auroc": auroc, "sensitivity": 0.8,
            "specificity": 0.8, "loss": 0.4}
    record = {
        "schema": store.SCHEMA_VERSION, "run_id": writer.run_id, "config_hash": f"hash{eps}{seed}", "seed": seed,
        "dataset": {"name": "fake", "task": "binary", "n_channels": 1, "image_size": [8, 8], "class_names": class_names,
                    "licence": "test", "citation": "none", "source": "generated in a test", "real_patient_data": real,
                    "duplicates_dropped": {"train_internal": 0}, "n_train": N_POOL, "n_test": 20, "n_val": 0},
        "environment": {"medprivbench": "0.1.0", "python": "3", "torch": "2", "opacus": "1", "monai": "1",
                        "numpy": "2", "platform": "test", "device": "cpu", "threads": 1},
        "model": {"name": "cnn", "parameters": 1234, "grad_sample_mode": "hooks" if private else None},
        "privacy": {"epsilon_target": eps, "delta": 1e-5, "sample_rate": 0.25, "steps": 8, "noise_multiplier":
                    (2.0 / eps if private else 0.0), "max_grad_norm": 1.0 if private else math.inf,
                    "accountant": "prv" if private else "none", "accountant_note": "",
                    "epsilon_spent": eps * 0.99 if private else math.inf, "reference": reference},
        "train": {"epochs": 2, "batch_size": 10, "optimizer": "sgd", "lr": 1.0, "momentum": 0.9, "weight_decay": 0.0,
                  "lr_schedule": "cosine", "steps_taken": 8, "wall_time_s": 1.5, "samples_per_s": 50.0, "loss_history": [1.0]},
        "utility": {"test": test, "train": {**test, "accuracy": min(1.0, accuracy + 0.05)},
                    "test_per_class_accuracy": {name: accuracy - 0.1 * i for i, name in enumerate(class_names)}},
        "attacks": {
            "loss": {"threat_model": "black box (loss)", "variants": {"loss": _membership_attack(rng, leaks)}},
            "lira": {"threat_model": "black box (lira)", "variants": {"lira_online": _membership_attack(rng, leaks)}},
            "audit": {"epsilon_lb": 0.0, "r": 20, "v": 11, "m": 40, "k_plus": 10, "k_minus": 10, "accuracy": 0.55,
                      "delta": 1e-5, "alpha": 0.05, "n_included": 20, "wall_time_s": 1.0, "canary": "mislabelled",
                      "threat_model": "auditor with canaries"},
        },
        "protocols": {"membership": {"num_models": N_MODELS, "queries": ["identity"], "pool": "training set"}},
        "wall_time_s": 3.0,
    }
    if recon:
        recon_part = _reconstruction(writer, eps, rng)
        record["attacks"].update(recon_part["attacks"])
        record["attacks"]["prior_aware"] = recon_part["prior_aware"]
        record["bounds"] = recon_part["bounds"]
    record["summary"] = summarise(record)
    return record


def _scores(rng, n_classes: int, leaks: bool) -> pd.DataFrame:
    member = np.zeros((N_MODELS, N_POOL), bool)
    for j in range(N_POOL):
        member[rng.choice(N_MODELS, N_MODELS // 2, replace=False), j] = True
    labels = rng.integers(0, n_classes, N_POOL)
    df = pd.DataFrame({"target_model": np.repeat(np.arange(N_MODELS), N_POOL), "sample": np.tile(np.arange(N_POOL), N_MODELS),
                       "label": np.tile(labels, N_MODELS), "member": member.ravel()})
    for a in MIA_ATTACKS:
        df[f"score_{a}"] = rng.normal(size=member.size) + (2.0 * member.ravel() if leaks else 0.0)
    return df


def make_sweep(folder: Path, *, budgets=(1.0, 8.0, math.inf), seeds=(0, 1), class_names=("benign", HOSTILE),
               real: bool = False, leaky=(math.inf,), recon: bool = True, references=(None,)) -> Path:
    """A sweep folder of complete runs written through the results store, as a real sweep would
    (``references``: the non-private references at ε = ∞; None: a run recorded before they existed)."""
    rng = np.random.default_rng(0)
    points = [(eps, None) for eps in budgets if math.isfinite(eps)]
    points += [(eps, ref) for eps in budgets if math.isinf(eps) for ref in references]
    for eps, reference in points:
        for seed in seeds:
            writer = store.RunWriter(folder, f"eps={store.format_epsilon(eps)}_{reference}_seed={seed}_fake")
            record = _record(eps, seed, class_names=list(class_names), real=real, leaky=set(leaky), recon=recon,
                             writer=writer, rng=rng, reference=reference)
            writer.write_parquet("membership_scores.parquet", _scores(rng, len(class_names), eps in leaky))
            writer.write_text("config.yaml", f"seed: {seed}\n")
            writer.write_json(store.METRICS, record)
            writer.publish()
    return folder


def records(folder: Path) -> list[dict]:
    return [rec for _, rec in store.iter_complete_runs(folder)]


# ----------------------------------------------------------------------------- reading the report back
NUMBER = r"[+−-]?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?"


def numbers(cell_text: str) -> list[float]:
    return [float(x.replace("−", "-").replace(",", "")) for x in re.findall(NUMBER, cell_text)]


def markdown_table_after(md: str, heading: str) -> pd.DataFrame:
    """The first Markdown table after ``heading``, as strings."""
    lines = md[md.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return pd.DataFrame(rows[2:], columns=rows[0])


def close(text: str, value: float) -> bool:
    """The number written in ``text`` (3 decimals or 3 significant digits) is ``value``."""
    written = numbers(text)[0]
    return abs(written - value) <= 5e-4 + 5e-3 * abs(value)


def mean_over_seeds(recs: list[dict], eps: float, get) -> float:
    return float(np.mean([get(r) for r in recs if r["privacy"]["epsilon_target"] == eps]))


def md_figures(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One synthetic sweep (three budgets, two seeds, every attack, a hostile class name) and its report."""
    folder = make_sweep(tmp_path_factory.mktemp("results") / "fake-cnn")
    paths = report.build_report([folder])
    return folder, paths


# ----------------------------------------------------------------------------- tests
def test_report_files_are_written_in_the_sweep_folder(built):
    folder, paths = built
    assert paths == [folder / "report.html", folder / "report.md"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_headline_values_equal_the_run_records(built):
    folder, _ = built
    md = (folder / "report.md").read_text()
    table = pd.concat([markdown_table_after(md, "Utility:"),
                       markdown_table_after(md, "Attack success beside its bounds").drop(columns="ε")], axis=1)
    recs = records(folder)
    # the report reads the sweep table's columns (benchmark/record.py), never recomputing them
    table_columns = {
        "accountant ε spent": "epsilon_spent", "σ": "sigma", "test accuracy": "test_accuracy", "test AUROC": "test_auroc",
        "training accuracy": "train_accuracy",
        "best membership AUC": "mia_best_auc", "best TPR at 0.1% FPR": "mia_best_tpr_at_0.1%fpr",
        "empirical ε lower bound (membership)": "mia_best_epsilon_lb", "ε lower bound (one-run audit)": "audit_epsilon_lb",
        "ReRo@η by PSNR (best attack)": "recon_best_rero", "ReRo bound γ, whole run (κ = 1/N)": "rero_bound_train",
        "ReRo bound γ, one client step (κ = 1/N)": "rero_bound_step",
        "prior-aware success": "prior_aware_success", "ReRo bound γ (κ = 1/n)": "rero_bound_prior",
    }
    sweep_table = store.aggregate(folder)
    columns = {header: (lambda r, c=column: float(sweep_table.loc[sweep_table["config_hash"] == r["config_hash"], c].iloc[0]))
               for header, column in table_columns.items()}
    columns["test accuracy"] = lambda r: r["utility"]["test"]["accuracy"]
    assert list(table["ε"]) == ["1", "8", "∞ (non-private)"]
    for eps, (_, row) in zip((1.0, 8.0, math.inf), table.iterrows()):
        for header, get in columns.items():
            value = mean_over_seeds(recs, eps, get)
            if math.isinf(value):
                assert row[header] == "∞"
            else:
                assert close(row[header], value), (eps, header, row[header], value)
        spread = np.std([r["utility"]["test"]["accuracy"] for r in recs if r["privacy"]["epsilon_target"] == eps], ddof=1)
        assert "±" in row["test accuracy"] and close(row["test accuracy"].split("±")[1], spread)
        assert row["runs"] == "2"
        if math.isfinite(eps):
            accuracy = columns["test accuracy"]
            change = mean_over_seeds(recs, eps, accuracy) - mean_over_seeds(recs, math.inf, accuracy)
            assert close(row["Δ accuracy vs non-private"], change)
    # only the non-private runs leak in this sweep; the audit gets no verdict, only its bound
    verdicts = markdown_table_after(md, "Verdict per threat model")
    assert list(verdicts.columns) == ["ε", "black box", "curious server", "malicious server", "informed adversary",
                                      "worst-case audit: empirical ε vs accountant ε"]
    assert [v.split(":")[0] for v in verdicts["black box"]] == ["no attack beat chance"] * 2 + ["beats chance"]
    assert [v.split(":")[0] for v in verdicts["malicious server"]] == ["no attack beat chance"] * 2 + ["beats chance"]
    assert verdicts["worst-case audit: empirical ε vs accountant ε"].iloc[1] == "ε ≥ 0.000 of 7.920 (0% tight)"
    sweep_table = store.aggregate(folder)
    for column in ("verdict_black_box", "verdict_curious_server", "verdict_malicious_server", "verdict_informed_adversary"):
        assert set(sweep_table[column]) <= {"beats chance", "no attack beat chance", "not run"}
    assert "verdict_worst_case_audit" not in sweep_table  # tightness, not a verdict
    assert set(sweep_table["worst_case_tightness"].dropna()) == {0.0}


def test_summary_names_the_largest_safe_budget_and_its_cost(built):
    folder, _ = built
    md = (folder / "report.md").read_text()
    summary = md[md.index("## Summary"):md.index("## Headline table")]
    for threat in ("Black box", "Curious server", "Malicious server"):
        assert re.search(threat + r" \(.*?\): no attack beat chance at ε = 8, the largest such budget", summary), threat
    assert "Informed adversary" in summary and "no attack of this threat model beat chance either" in summary
    recs = records(folder)
    acc = lambda r: r["utility"]["test"]["accuracy"]  # noqa: E731
    change = mean_over_seeds(recs, 8.0, acc) - mean_over_seeds(recs, math.inf, acc)
    stated = re.search(r"At ε = 8, test accuracy is .*? a change of (\S+);", summary)[1]
    assert close(stated, change)
    assert summary.count("At ε = 8, test accuracy") == 1  # the cost is stated once, not per threat model
    assert "Without DP (∞ (non-private)) it beats chance" in summary
    assert "the largest budget at which no image is reconstructed past η is ε = 8" in summary
    # per run, realistic attacks only: 2 membership attacks × (AUC, 2 TPR levels, ε bound) + prior-aware + 2 × 2 ReRo shares
    assert "up to 13 intervals and tests" in summary
    assert "Worst-case audit" in summary and "the guarantee is at least this tight" in summary
    assert "No empirical ε lower bound exceeds the accountant's ε" in summary
    assert report.CHANCE_RULE_TEXT.split(":")[0] in summary  # the rule is stated


def test_summary_warns_when_an_attack_beats_its_bound(built):
    folder, _ = built
    sweep = report.load_sweeps([folder])[0]
    runs, evidence = report.run_frame(sweep), report.evidence_by_point(sweep)
    assert not any(s.startswith("Warning") for s in report.summary_sentences(sweep, runs, evidence))
    leaky = runs.copy()
    leaky.loc[leaky["epsilon"] == 1.0, "epsilon_lb_max"] = 1.5  # above the accountant's ε = 0.99
    warning = [s for s in report.summary_sentences(sweep, leaky, evidence) if s.startswith("Warning")]
    assert len(warning) == 1 and "ε = 1 seed 0" in warning[0] and "ε = 1 seed 1" in warning[0]
    run = sweep.at(8.0)[0]
    run.record["attacks"]["prior_aware"]["bound"] = 0.05  # below the success interval
    warning = [s for s in report.summary_sentences(sweep, runs, evidence) if s.startswith("Warning")]
    assert len(warning) == 1 and "prior-aware" in warning[0] and "ε = 8 seed 0" in warning[0]


def test_every_figure_exists_and_is_referenced(built):
    folder, _ = built
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    linked = md_figures(md)
    on_disk = sorted(p.relative_to(folder).as_posix() for p in (folder / "figures").glob("*.png"))
    assert sorted(linked) == on_disk
    expected = {"verdicts", "utility_vs_epsilon", "membership_vs_epsilon", "roc_curves", "empirical_vs_accountant_epsilon",
                "reconstruction_vs_epsilon", "per_class_risk"}
    assert Path(linked[0]).stem == "verdicts"  # the report opens with the verdict grid
    assert expected <= {Path(p).stem for p in linked}
    # two reconstruction grids (one per attack) at each of three budgets: synthetic data, shown by default
    assert sum(Path(p).name.startswith("recon_") for p in linked) == 3 * len(RECON_ATTACKS)
    assert html.count('src="data:image/png;base64,') == len(linked)
    assert "figures/" not in html  # self-contained: nothing linked


def test_strings_from_data_are_escaped(built):
    folder, _ = built
    html = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    assert HOSTILE not in html and HOSTILE not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "<script" not in html.lower()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_threat_models_metadata_and_per_class_sections(built):
    folder, _ = built
    md = (folder / "report.md").read_text()
    threats = markdown_table_after(md, "## Threat models")
    assert list(threats["threat model"]) == ["black box", "curious server", "malicious server", "informed adversary",
                                             "worst-case audit"]
    threats = markdown_table_after(md, "| attack | threat model |")
    assert threats.set_index("attack").loc["one-run audit", "threat model"] == "worst-case audit"
    expected = {"loss threshold", "LiRA online", "one-run audit", "gradient inversion", "prior-aware reconstruction"}
    assert expected <= set(threats["attack"])
    meta = markdown_table_after(md, "## Run metadata").set_index("")
    assert meta.loc["seeds", "fake-cnn"] == "0, 1"
    assert meta.loc["real patient data", "fake-cnn"].startswith("no")
    per_class = markdown_table_after(md, "## Per-class risk")
    assert len(per_class) == 3 * 2  # three budgets × two classes
    recs = records(folder)
    accuracy = mean_over_seeds(recs, 1.0, lambda r: r["utility"]["test_per_class_accuracy"]["benign"])
    assert close(per_class[(per_class["ε"] == "1") & (per_class["class"] == "benign")]["test accuracy"].iloc[0], accuracy)
    assert "most exposed training images" in md


def test_reconstruction_settings_name_each_attack_with_the_runs_sigma_and_clip(built):
    folder, _ = built
    md = (folder / "report.md").read_text()
    table = markdown_table_after(md, "Setting of the reconstruction attacks")
    recs = records(folder)
    assert len(table) == 3 * len(RECON_ATTACKS)  # one row per budget and attack: the two seeds agree
    labels = {registry.label(key): key for key in RECON_ATTACKS}
    for _, row in table.iterrows():
        eps = {"1": 1.0, "8": 8.0, "∞ (non-private)": math.inf}[row["ε"]]
        model_state, batch_size, n_images = RECON_SETTINGS[labels[row["attack"]]]
        assert (row["model state"], row["batch size"], row["images"]) == (model_state, str(batch_size), str(n_images))
        privacy = [r["privacy"] for r in recs if r["privacy"]["epsilon_target"] == eps]
        assert close(row["σ"], privacy[0]["noise_multiplier"]) and row["seeds"] == "0, 1"
        assert row["clip norm C"] == "∞" if math.isinf(eps) else close(row["clip norm C"], privacy[0]["max_grad_norm"])
    meta = markdown_table_after(md, "## Run metadata").set_index("")
    assert meta.loc["gradient inversion", "fake-cnn"] == "model state init, batch size 4, 8 images"


def test_every_attack_family_has_a_chance_rule_headline_columns_and_a_section():
    from medprivbench.benchmark.families import Family, ordered

    registry.load()
    assert [f.key for f in ordered()] == ["membership", "tail", "audit", "prior_aware", "reconstruction"]  # the headline's column order
    for family in ordered():
        for method in ("findings", "intervals", "strongest", "headline_columns", "section"):
            assert getattr(type(family), method) is not getattr(Family, method), (family.key, method)
    assert {spec.family.key for spec in registry.ATTACKS.values()} == {f.key for f in ordered()}


@dataclass
class SecondAuditConfig:
    """Settings of a test-only audit (the registry stores a schema for every attack)."""

    n_canaries: int = 64


@pytest.fixture
def second_audit():
    """A second audit-family attack with several bounds, as a white-box audit records them."""
    from medprivbench.benchmark.families import family as family_of

    registry.load()  # the built-in attacks first, so the registry's order does not depend on which test ran before

    class SecondAudit(registry.Attack):
        name, schema, label, family, threat = "second_audit", SecondAuditConfig, "second audit", family_of("audit"), "worst_case_audit"
        threat_model = "auditor who sees every noisy update"

        def lower_bounds(self, settings) -> int:
            return 1

    registry.register_attack(SecondAudit)
    yield "second audit"
    registry.unregister("second_audit")


def test_every_audit_is_reported_under_its_own_label(second_audit, tmp_path):
    folder = tmp_path / "audits"
    rng = np.random.default_rng(2)
    bound = {2.0: 0.0, math.inf: 0.7}
    for eps, epsilon_lb in bound.items():
        writer = store.RunWriter(folder, f"eps={store.format_epsilon(eps)}_seed=0_fake")
        record = _record(eps, 0, class_names=["a", "b"], real=False, leaky=set(), recon=False, writer=writer, rng=rng)
        record["attacks"]["second_audit"] = {"epsilon_lb": epsilon_lb, "m": 64, "alpha": 0.01,
                                             "threat_model": "auditor who sees every noisy update"}
        record["summary"] = summarise(record)
        writer.write_json(store.METRICS, record)
        writer.publish()
    report.build_report([folder])
    md = (folder / "report.md").read_text()
    headline = markdown_table_after(md, "Attack success beside its bounds")
    assert list(headline["ε lower bound (one-run audit)"]) == ["0.000", "0.000"]
    assert list(headline[f"ε lower bound ({second_audit})"]) == ["0.000", "0.700"]
    # an audit is the worst case, never a verdict: its bound is shown as tightness
    verdicts = markdown_table_after(md, "Verdict per threat model")
    assert list(verdicts["worst-case audit: empirical ε vs accountant ε"]) == [
        "ε ≥ 0.000 of 1.980 (0% tight)", "ε ≥ 0.700 (no DP: no accountant ε)"]
    assert "ε lower bound 0.700" not in md.split("## Summary")[1].split("## Headline table")[0]
    assert f"(best attack) and by the one-run audit and the {second_audit}." in md
    meta = markdown_table_after(md, "## Run metadata").set_index("")
    assert meta.loc["one-run audit", "audits"] == "40 mislabelled canaries, 10 + 10 guesses"
    assert meta.loc[second_audit, "audits"] == "64 canaries"
    assert second_audit in set(markdown_table_after(md, "| attack | threat model |")["attack"])


def test_real_patient_reconstructions_are_shown_only_when_opted_in(tmp_path):
    """Opt in, then out again: the copied patient images must go (the comparison test checks the default)."""
    real = make_sweep(tmp_path / "real-cnn", budgets=(8.0, math.inf), seeds=(0,), real=True)
    out = tmp_path / "out"
    report.build_report([real], out_dir=out, show_reconstructions=True)
    md = (out / "report.md").read_text()
    assert "withheld" not in md
    grids = [p for p in md_figures(md) if Path(p).name.startswith("recon_")]
    assert len(grids) == 2 * len(RECON_ATTACKS) and all((out / p).is_file() for p in grids)

    report.build_report([real], out_dir=out)
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "Reconstructed images of real-cnn withheld" in md and "--show-reconstructions" in md
    assert "Reconstructed images of real-cnn withheld" in html
    assert not list((out / "figures").glob("recon_*"))
    assert not [p for p in md_figures(md) if Path(p).name.startswith("recon_")]


def test_comparison_of_two_sweeps_side_by_side(built, tmp_path):
    folder, _ = built
    # a very large budget too: e^ε overflows, the DP bound is 1 there
    other = make_sweep(tmp_path / "other-resnet", budgets=(1.0, 1e6, math.inf), seeds=(0,), real=True,
                       leaky=(1e6, math.inf), class_names=("normal", "pneumonia"))
    out = tmp_path / "comparison"
    report.build_report([folder, other], out_dir=out)
    md = (out / "report.md").read_text()
    assert md.startswith("# medprivbench budget comparison: fake-cnn vs other-resnet")
    side = markdown_table_after(md, "### Side by side")
    assert list(side.columns[1:3]) == [f"fake-cnn: {c}" for c in ("test accuracy", "black box")]
    assert list(side["ε"]) == ["1", "8", "1e6", "∞ (non-private)"]
    no, yes = "no attack beat chance", "beats chance"
    assert list(side["other-resnet: black box"]) == [no, "–", yes, yes]
    assert list(side["fake-cnn: black box"]) == [no, no, "–", yes]
    assert "no attack beat chance at ε = 1, the largest such budget" in md  # other-resnet: the largest safe budget is 1
    # real patient data: withheld by default; synthetic data: shown
    assert "Reconstructed images of other-resnet withheld" in md and "--show-reconstructions" in md
    assert "Reconstructed images of fake-cnn withheld" not in md
    grids = [Path(p).name for p in md_figures(md) if Path(p).name.startswith("recon_")]
    assert grids and all(name.startswith("recon_fake-cnn_") for name in grids)
    assert sorted(md_figures(md)) == sorted(p.relative_to(out).as_posix() for p in (out / "figures").glob("*.png"))
    meta = markdown_table_after(md, "## Run metadata")
    assert list(meta.columns) == ["", "fake-cnn", "other-resnet"]


def test_sweep_with_bounds_only_and_the_report_command(tmp_path, capsys):
    """No attack ran, only the ReRo bounds were computed: the report says so and shows the bounds."""
    folder = tmp_path / "plain"
    rng = np.random.default_rng(1)
    for eps in (2.0, math.inf):
        writer = store.RunWriter(folder, f"eps={store.format_epsilon(eps)}_seed=0_fake")
        record = _record(eps, 0, class_names=["a", "b"], real=True, leaky=set(), recon=False, writer=writer, rng=rng)
        gamma = 0.3 if math.isfinite(eps) else 1.0
        record["attacks"] = {}
        record["bounds"] = {"rero_prior": {"kappa": 0.1, "gamma": gamma}, "rero_train": {"kappa": 1 / N_POOL, "gamma": gamma / 2},
                            "rero_step": {"kappa": 1 / N_POOL, "gamma": gamma}}
        record["summary"] = summarise(record)
        writer.write_json(store.METRICS, record)
        writer.publish()
    assert report_main([str(folder)]) == 0
    assert str(folder / "report.html") in capsys.readouterr().out
    md = (folder / "report.md").read_text()
    assert "## Membership inference" not in md  # a family with no result has no section
    headline = markdown_table_after(md, "Attack success beside its bounds")
    assert "best membership AUC" not in headline.columns
    # no attack ran: the report must not claim that none beat chance
    assert "No attack was run in this sweep" in md and "No attack beat chance" not in md
    assert "Verdict per threat model" not in md and "## Verdicts per threat model" not in md
    assert close(headline["ReRo bound γ, whole run (κ = 1/N)"].iloc[0], 0.15)
    bounds = markdown_table_after(md, "ReRo bounds (Hayes")
    assert list(bounds["ε"]) == ["2", "∞ (non-private)"] and close(bounds.iloc[0, 3], 0.15)
    assert "### Reconstructed images" not in md and "withheld" not in md  # no images to show or withhold
    assert sorted(md_figures(md)) == sorted(p.relative_to(folder).as_posix() for p in (folder / "figures").glob("*.png"))
    with pytest.raises(SystemExit):
        report_main([str(tmp_path / "missing")])


def test_report_options_from_config():
    assert report.report_options({"show_reconstructions": True}) == {"show_reconstructions": True}
    assert report.report_options(None) == {"show_reconstructions": False}
    with pytest.raises(ConfigError, match="show_reconstruction"):
        report.report_options({"show_reconstruction": True})
    with pytest.raises(ConfigError, match="true or false"):
        report.report_options({"show_reconstructions": "yes"})


def _whitebox(eps: float, seed: int) -> dict:
    """A white-box audit result as benchmark/audit_run.run_whitebox records it (3 idealised runs)."""
    private = math.isfinite(eps)
    observations = {}
    for observation, scale in (("all_iterates", 1.0), ("final_model", 0.5)):
        bounds = {"steinke": {"epsilon_lb": (0.8 + 0.1 * seed) * scale if private else 3.0, "r": 100,
                              "v": 80 if private else 100, "m": 400},
                  "fdp_dpsgd": {"epsilon_lb": (1.0 + 0.1 * seed) * scale if private else 8.66, "r": 100,
                                "v": 80 if private else 100, "m": 400, "at_search_limit": not private,
                                "sigma": 1.0, "sigma_rejected": 1.0}}
        observations[observation] = {
            "k_plus": 60, "k_minus": 40, "ceiling_runs": 3,
            "ceiling": {"steinke": 1.0 * scale if private else 3.0, "fdp_dpsgd": 1.5 * scale if private else 8.66},
            "ceiling_sd": {"steinke": 0.1, "fdp_dpsgd": 0.2} if private else {"steinke": 0.0, "fdp_dpsgd": 0.0},
            "ceiling_at_limit": {"steinke": 0.0, "fdp_dpsgd": 0.0} if private else {"steinke": 1.0, "fdp_dpsgd": 1.0},
            "bounds": bounds,
        }
    best = max(b["epsilon_lb"] for o in observations.values() for b in o["bounds"].values())
    return {"threat_model": "auditor of the DP guarantee itself", "m": 400, "n_included": 200, "alpha": 0.01,
            "canary_rows_per_step": 25.0, "observations": observations, "epsilon_lb": best}


def test_whitebox_audit_says_what_its_numbers_show(tmp_path):
    """The white-box table: ceiling ± its spread over the idealised runs, limits of the analysis marked,
    the sum-of-updates observation named for what it is, and no claim that a stronger attack could do better."""
    folder = tmp_path / "whitebox"
    rng = np.random.default_rng(3)
    for eps in (2.0, math.inf):
        for seed in (0, 1):
            writer = store.RunWriter(folder, f"eps={store.format_epsilon(eps)}_seed={seed}_fake")
            record = _record(eps, seed, class_names=["a", "b"], real=False, leaky=set(), recon=False, writer=writer, rng=rng)
            record["attacks"]["whitebox"] = _whitebox(eps, seed)
            record["summary"] = summarise(record)
            writer.write_json(store.METRICS, record)
            writer.publish()
    row = records(folder)[0]["summary"]
    assert row["whitebox_all_iterates_fdp_dpsgd_ceiling_sd"] in (0.2, 0.0)
    assert row["whitebox_all_iterates_fdp_dpsgd_ceiling_runs"] == 3
    report.build_report([folder])
    md = (folder / "report.md").read_text()
    assert "could still close" not in md and "stronger attack could" not in md
    assert "exact for DP-SGD" not in md and "proven" not in md
    assert "only for a training that is DP-SGD at the claimed q and T" in md
    assert "mean over 3 idealised run(s)" in md and "biased upward" in md
    table = markdown_table_after(md, "White-box audit of the training").set_index("ε")
    final = "white-box canary audit: sum of updates (final model of plain constant-rate SGD), f-DP, DP-SGD curves"
    column = f"{final} [ceiling ± sd; ÷ ceiling, ÷ accountant]"
    assert column in table.columns
    assert not any(c.startswith("white-box canary audit: final model") for c in table.columns)
    steinke = "white-box canary audit: all iterates, Steinke et al. (binomial) [ceiling ± sd; ÷ ceiling, ÷ accountant]"
    private, nonprivate = table.loc["2", steinke], table.loc["∞ (non-private)", steinke]
    assert private.startswith("0.850 ± 0.071 [1.000 ± 0.100;") and "†" not in private  # bound ± over seeds; ceiling ± sd
    assert nonprivate.startswith("3.000 † [3.000 ± 0.000 †;")  # every guess right: a limit, not a measurement
    assert table.loc["∞ (non-private)", column].startswith("8.660 † [")  # σ′ search at its limit
    assert "† A limit of the analysis, not a measurement" in md
    # the empirical-ε caption: the membership gap and the white-box gap are different things
    assert "The membership attacks are realistic attacks, weaker than the worst case" in md
    assert "compare its bound with its ceiling" in md


def test_non_private_references_each_get_a_row_and_every_change_is_against_the_same_recipe(tmp_path):
    """ε = ∞ as two runs: the DP recipe without clipping and noise (same_recipe), and the tuned recipe."""
    folder = make_sweep(tmp_path / "refs-cnn", budgets=(8.0, math.inf), seeds=(0,), references=("same_recipe", "tuned"))
    report.build_report([folder])
    md = (folder / "report.md").read_text()
    utility = markdown_table_after(md, "Utility:")
    assert list(utility["ε"]) == ["8", "∞ (same recipe)", "∞ (tuned recipe)"]
    recs = {r["privacy"]["reference"] or "": r["utility"]["test"]["accuracy"] for r in records(folder)}
    change = utility.set_index("ε")["Δ accuracy vs same recipe"]
    assert change["∞ (same recipe)"] == "reference"
    assert close(change["8"], recs[""] - recs["same_recipe"])
    assert close(change["∞ (tuned recipe)"], recs["tuned"] - recs["same_recipe"])  # +0.04 in this fake sweep
    table = store.aggregate(folder)
    assert sorted(table["reference"].fillna("")) == ["", "same_recipe", "tuned"]
    verdicts = markdown_table_after(md, "Verdict per threat model")
    assert list(verdicts["ε"]) == ["8", "∞ (same recipe)", "∞ (tuned recipe)"]
    summary = md[md.index("## Summary"):md.index("## Headline table")]
    assert "against" in summary and "for the same recipe without DP (no clipping, no noise)" in summary
    assert "The tuned non-private recipe reaches" in summary
    assert "Without DP (∞ (same recipe)) it beats chance" in summary
    assert "Without DP (∞ (tuned recipe)) it beats chance" in summary
