"""One verdict per threat model, computed once for the run record (benchmark/chance.py)."""

from __future__ import annotations

import math

import pytest

from medprivbench.benchmark import registry
from medprivbench.benchmark.chance import threat_columns


def _membership(lo: float) -> dict:
    return {"threat_model": "black box", "variants": {"loss": {
        "auc": lo + 0.03, "auc_ci": [lo, lo + 0.06], "fpr_levels": [0.001, 0.01], "tpr_at_fpr": [0.0, 0.01],
        "tpr_at_fpr_ci": [[0.0, 0.002], [0.0, 0.02]], "confidence": 0.95,
        "empirical_epsilon": {"epsilon_lb": 0.0, "alpha": 0.01}}}}


def _recon(share: float) -> dict:
    return {"psnr_max": 31.0 if share else 12.0, "rero": {"psnr": share, "ssim": 0.0}, "eta": {"psnr": 30.0, "ssim": 0.5}}


def test_each_realistic_threat_model_gets_its_own_verdict_and_the_audit_none():
    registry.load()
    attacks = {"loss": _membership(0.47), "imprint": _recon(0.25), "gradient_inversion": _recon(0.0),
               "audit": {"epsilon_lb": 0.6, "alpha": 0.01}}
    row = threat_columns(attacks, epsilon_spent=2.0)
    assert row["verdict_black_box"] == "no attack beat chance" and row["verdict_black_box_evidence"].startswith("loss threshold AUC 0.500")
    assert row["verdict_malicious_server"] == "beats chance" and "ReRo 0.250" in row["verdict_malicious_server_evidence"]
    assert row["verdict_curious_server"] == "no attack beat chance" and "best PSNR 12.000 dB" in row["verdict_curious_server_evidence"]
    assert row["verdict_informed_adversary"] == "not run" and row["verdict_informed_adversary_evidence"] == ""
    # the audit's bound above 0 decides no verdict: it is the guarantee's tightness, 0.6 of ε = 2
    assert "verdict_worst_case_audit" not in row
    assert row["worst_case_epsilon_lb"] == 0.6 and row["worst_case_tightness"] == pytest.approx(0.3)


def test_a_membership_interval_above_chance_beats_it_and_no_dp_has_no_tightness():
    registry.load()
    row = threat_columns({"loss": _membership(0.52), "audit": {"epsilon_lb": 3.0}}, epsilon_spent=math.inf)
    assert row["verdict_black_box"] == "beats chance" and row["verdict_black_box_evidence"].startswith("loss threshold AUC")
    assert math.isnan(row["worst_case_tightness"])
    assert threat_columns({}, 1.0) == {f"verdict_{k}{s}": v for k in ("black_box", "curious_server", "malicious_server",
                                                                      "informed_adversary")
                                       for s, v in (("", "not run"), ("_evidence", ""))}
