"""The benchmark command measures and prints (no timing is asserted: machines are noisy)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_prints_privacy_cost_and_attack_speed(tmp_path):
    out = tmp_path / "bench.json"
    code = "import sys; from medprivbench.benchmark.bench import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "--phases", "privacy-cost,attacks", "--models", "cnn", "--steps", "1",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Cost of privacy: DP-SGD step / non-private step" in proc.stdout
    rows = json.loads(out.read_text())["privacy-cost"]
    measured = [r for r in rows if "error" not in r]
    assert {r["mode"] for r in measured} >= {"hooks", "ew", "ghost"}
    assert all(r["model"] == "cnn" and r["ratio"] > 0 and r["dp_step_ms"] > 0 for r in measured)
    assert all(r["correct"] for r in measured), [r for r in measured if not r["correct"]]
    assert sum(r["default"] for r in measured) == 1  # the engine the model uses by default is marked
    attacks = json.loads(out.read_text())["attacks"]
    assert "error" not in attacks, attacks.get("error")
    assert attacks["gradient_inversion"]["iterations_per_s"] > 0 and attacks["imprint"]["seconds"] > 0
    assert 0.0 < attacks["rero_bound"]["gamma"] < 1.0
