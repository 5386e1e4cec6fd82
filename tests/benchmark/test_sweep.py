"""End to end through the command line: a tiny sweep, resume, and real data."""

import time

import pandas as pd
import pytest

from ..conftest import TINY, run_cli, shared_file


@pytest.mark.slow
def test_tiny_sweep_writes_table_and_report_then_resumes(tmp_path):
    args = [*TINY, f"results_root={tmp_path}", "privacy.epsilon=1,inf", "privacy.references=[same_recipe,tuned]"]
    first = run_cli(args)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "synthetic-cnn"
    table = pd.read_csv(sweep / "table.csv")
    assert sorted(table["epsilon"]) == [1.0, float("inf"), float("inf")]  # ε = ∞: the two references
    assert sorted(table["reference"].fillna("")) == ["", "same_recipe", "tuned"]
    assert set(table["verdict_black_box"]) <= {"beats chance", "no attack beat chance"}
    assert pd.read_parquet(sweep / "table.parquet").shape == table.shape
    private = table[table["epsilon"] == 1.0].iloc[0]
    assert private["epsilon_spent"] <= 1.0 and private["sigma"] > 0
    assert (table[table["epsilon"] == float("inf")]["sigma"] == 0).all()
    for column in ("test_accuracy", "test_auroc", "test_mcc", "test_sensitivity", "test_specificity", "train_accuracy"):
        assert table[column].between(-1, 1).all()
    # two attacks ran on every run, with per-sample scores saved beside the record
    for column in ("mia_loss_auc", "mia_lira_offline_auc", "mia_loss_epsilon_lb", "mia_best_epsilon_lb"):
        assert table[column].notna().all()
    assert "mia_lira_online_auc" not in table and "mia_rmia_auc" not in table
    assert (table["epsilon_lb_max"] <= table["epsilon_spent"]).all()
    scores = pd.read_parquet(next((sweep / "runs").glob("eps=1_*")) / "membership_scores.parquet")
    assert len(scores) == 4 * 300 and {"score_loss", "score_lira_offline", "member"} <= set(scores)
    html = (sweep / "report.html").read_text()
    assert "utility_vs_epsilon" not in html and "data:image/png;base64," in html
    assert f"{private['test_accuracy']:.3f}" in html
    assert "results table:" in first.stdout and "report.html" in first.stdout

    started = time.perf_counter()
    again = run_cli(args)
    assert again.returncode == 0
    log = again.stdout + again.stderr
    assert log.count("skipped") == 3 and "training cnn" not in log
    assert time.perf_counter() - started < 60

    more = run_cli([*TINY, f"results_root={tmp_path}", "privacy.epsilon=1,8,inf", "privacy.references=[same_recipe,tuned]"])
    assert more.returncode == 0
    log = more.stdout + more.stderr
    assert log.count("skipped") == 3 and log.count("training cnn") == 1
    assert sorted(pd.read_csv(sweep / "table.csv")["epsilon"]) == [1.0, 8.0, float("inf"), float("inf")]


@pytest.mark.slow
def test_real_breastmnist_sweep(tmp_path):
    path = shared_file("breastmnist.npz")
    result = run_cli([
        "dataset=breastmnist", f"dataset.root={path.parent}", "train.epochs=10", "train.nonprivate.epochs=null", "progress=off",
        f"results_root={tmp_path}", "privacy.epsilon=8,inf", "attack=[loss,gradient_inversion]",
        "membership.num_models=2", "sizing.inversion_images=2", "sizing.inversion_iterations=50",
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "breastmnist-cnn" / "table.csv")
    assert len(table) == 3 and set(table["n_train"]) == {546}  # ε = 8 and the two non-private references
    assert (table["test_auroc"] > 0.5).all()
    assert table["recon_gradient_inversion_psnr_mean"].notna().all()
    report = (tmp_path / "breastmnist-cnn" / "report.html").read_text()
    assert "withheld" in report  # real patient images: reconstructions not shown without opt-in


def test_bad_delta_is_one_line_and_writes_nothing(tmp_path):
    result = run_cli([*TINY, f"results_root={tmp_path}", "privacy.epsilon=1", "privacy.delta=0.01"])
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("medprivbench: error:")]
    assert len(errors) == 1 and "privacy.delta=0.01 is not below 1/N" in errors[0]
    assert not (tmp_path / "synthetic-cnn" / "runs").exists() or not any(
        p for p in (tmp_path / "synthetic-cnn" / "runs").iterdir() if not p.name.startswith(".")
    )
