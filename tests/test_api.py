"""The Python API: the README's examples run, and outputs a user brings are audited with the
numbers computed by hand, or refused in one line with nothing written."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_softmax
from sklearn.metrics import roc_auc_score

import medprivbench
from medprivbench.benchmark.errors import ConfigError

from .conftest import REPO, TINY, run_cli


def _audit_in_process(args: list[str], capsys) -> tuple[int, list[str]]:
    """``medprivbench-audit`` in this process (the command's own code path, without a fresh
    interpreter's start-up): exit status and the non-empty lines it printed."""
    from medprivbench.benchmark.audit_cli import main

    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, [line for line in (captured.out + captured.err).splitlines() if line.strip()]


def _readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_package_has_a_version_and_type_marker():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*|0\+unknown", medprivbench.__version__)
    assert (REPO / "medprivbench" / "py.typed").is_file()
    assert medprivbench.attacks.rero_bound is not None and "roc_metrics" in medprivbench.attacks.__all__


@pytest.mark.slow
def test_the_readme_examples_run(tmp_path, monkeypatch):
    examples = _readme_examples()
    assert len(examples) == 2
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {}
    exec(compile(examples[0], "README: tiny sweep", "exec"), namespace)  # noqa: S102 - the README's own code
    table = namespace["table"]
    assert sorted(table["epsilon"]) == [8.0, float("inf"), float("inf")] and (tmp_path / "api-demo" / "synthetic-cnn" / "table.csv").is_file()
    assert table.equals(medprivbench.load_results(tmp_path / "api-demo" / "synthetic-cnn"))
    exec(compile(examples[1], "README: outputs", "exec"), namespace)  # noqa: S102
    assert 0.55 < namespace["result"]["auc"] < 0.75 and namespace["result"]["epsilon_lb"] > 0


def test_a_bad_override_raises_the_command_lines_message(tmp_path):
    with pytest.raises(ConfigError, match=r"^privacy\.epsilon=-1\.0 is not valid"):
        medprivbench.run_sweep([*TINY, "privacy.epsilon=-1", f"results_root={tmp_path}"])
    assert not any(tmp_path.iterdir())


def test_audit_of_logits_equals_the_hand_computation():
    rng = np.random.default_rng(3)
    n, k = 3000, 4
    member = rng.random(n) < 0.5
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += np.where(member, 1.0, 0.4)  # members are fitted better
    result = medprivbench.audit_outputs(member, logits=logits, labels=labels)
    by_hand = roc_auc_score(member, log_softmax(logits, axis=1)[np.arange(n), labels])  # score = −loss
    assert result["auc"] == pytest.approx(by_hand, abs=1e-12)
    assert result["auc_ci"][0] < by_hand < result["auc_ci"][1] and result["n_members"] == member.sum()
    chance = medprivbench.audit_outputs(member, losses=rng.exponential(size=n))
    assert abs(chance["auc"] - 0.5) < 0.04 and chance["epsilon_lb"] < 0.5


def _outputs(path, **arrays):
    np.savez(path, **arrays)
    return path


def _pickle_as_npz(path):
    path.write_bytes(pickle.dumps({"member": [1, 0], "loss": [0.1, 0.2]}))
    return path


N = 400
MEMBER = np.arange(N) % 2 == 0
BAD_OUTPUTS = [
    ("pickle-disguised-as-npz", _pickle_as_npz, "a Python pickle, not an .npz archive; refusing to unpickle"),
    ("object-arrays", lambda p: _outputs(p, member=MEMBER, loss=np.array([0.1] * (N - 1) + [None], dtype=object)),
     "holds Python objects (object arrays); refusing to unpickle"),
    ("membership-of-wrong-length", lambda p: _outputs(p, member=MEMBER[:-7], loss=np.ones(N)),
     "losses has shape (400,); expected (393,), one loss per sample"),
    ("nan-logits", lambda p: _outputs(p, member=MEMBER, logits=np.where(np.eye(N, 3) > 0, np.nan, 0.0), label=np.zeros(N, int)),
     "logits holds 3 NaN or infinite values"),
    ("no-member-array", lambda p: _outputs(p, loss=np.ones(N)), "no 'member' array"),
    ("member-not-binary", lambda p: _outputs(p, member=np.arange(N), loss=np.ones(N)), "member must be a 1-D array of 0/1"),
    ("logits-without-labels", lambda p: _outputs(p, member=MEMBER, logits=np.zeros((N, 2))), "logits need labels"),
]


@pytest.mark.parametrize("case_id, build, message", BAD_OUTPUTS, ids=[c[0] for c in BAD_OUTPUTS])
def test_bad_outputs_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case_id, build, message):
    path = build(tmp_path / "outputs.npz")
    out = tmp_path / "audit"
    status, lines = _audit_in_process(["--outputs", str(path), "--out", str(out)], capsys)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("medprivbench-audit: error: ") and message in lines[0]
    assert not out.exists()


def test_audit_command_writes_the_numbers_of_the_api(tmp_path):
    rng = np.random.default_rng(5)
    losses = rng.exponential(np.where(MEMBER, 0.5, 1.0))
    path = _outputs(tmp_path / "outputs.npz", member=MEMBER, loss=losses)
    result = run_cli(["--outputs", str(path), "--out", str(tmp_path / "audit")], program="medprivbench-audit")
    assert result.returncode == 0, result.stderr[-800:]
    written = json.loads((tmp_path / "audit" / "audit.json").read_text())
    loss = written["attacks"]["loss"]
    assert list(written["attacks"]) == ["loss"] and "needs reference models" in written["not_run"]["lira"]
    assert loss["auc"] == pytest.approx(roc_auc_score(MEMBER, -losses), abs=1e-12)
    assert loss["epsilon_lb"] == medprivbench.audit_outputs(MEMBER, losses=losses)["epsilon_lb"]
    assert (tmp_path / "audit" / "roc_loss.csv").read_text().startswith("fpr,tpr\n")
    table = pd.read_parquet(tmp_path / "audit" / "scores.parquet")
    assert np.array_equal(table["member"], MEMBER) and np.allclose(table["score_loss"], -losses)


def test_help_describes_the_application_and_its_groups(tmp_path):
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("medprivbench: train medical imaging classifiers and segmenters under a sweep of DP-SGD")
    assert ("dataset: adrenalmnist3d, breastmnist, imagefolder, medmnist, phantom2d, phantom3d, pneumoniamnist, segfolder, "
            "synthetic, synthetic3d") in result.stdout
    assert "task: classification, segmentation" in result.stdout
    assert "medprivbench-audit" in result.stdout and not any(tmp_path.iterdir())


def _plain_cnn_weights(path, width: int = 16, n_classes: int = 2):
    """Weights of the registry's CNN architecture, saved as safetensors (never trained here)."""
    from safetensors.torch import save_file

    from medprivbench.benchmark.config import ModelConfig
    from medprivbench.benchmark.models import build_model

    model = build_model(ModelConfig(name="cnn", width=width), in_channels=1, n_classes=n_classes, image_size=28)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


BAD_MODELS = [
    ("weights-of-another-architecture", lambda p: ["--weights", str(_plain_cnn_weights(p / "w.safetensors", width=8))],
     "the weights do not fit model=cnn (width 16) on synthetic"),
    ("torchscript-without-opt-in", lambda p: ["--weights", str(_write(p / "m.pt", b"PK\x03\x04"))],
     "a TorchScript file runs code when loaded, pass --torchscript-executes-code"),
    ("membership-file-of-wrong-length", lambda p: ["--weights", str(_plain_cnn_weights(p / "w.safetensors")),
                                                   "--members", str(_save(p / "m.npy", np.array([0, 1] * 7 + [1])))],
     "are neither 1000 0/1 flags (one per training image) nor distinct indices"),
    ("pickled-membership-file", lambda p: ["--weights", str(_plain_cnn_weights(p / "w.safetensors")),
                                           "--members", str(_write(p / "m.npy", pickle.dumps([1, 2, 3])))],
     "cannot read the membership file"),
]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _save(path, array):
    np.save(path, array)
    return path


@pytest.mark.parametrize("case_id, build, message", BAD_MODELS, ids=[c[0] for c in BAD_MODELS])
def test_bad_model_inputs_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, case_id, build, message):
    extra = build(tmp_path)
    if "--members" not in extra:
        extra += ["--members", str(_save(tmp_path / "members.npy", np.arange(500)))]
    out = tmp_path / "audit"
    status, lines = _audit_in_process(["--model", "cnn", "--dataset", "synthetic", *extra, "--out", str(out)], capsys)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("medprivbench-audit: error: ") and message in lines[0] and not out.exists()


@pytest.mark.realdata
def test_audit_of_a_model_trained_outside_the_benchmark(tmp_path):
    # a plain PyTorch training loop on half of BreastMNIST's training split (no medprivbench code
    # trains it), weights saved as safetensors, then audited from the command line
    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file

    from medprivbench.benchmark.config import ModelConfig
    from medprivbench.benchmark.models import build_model

    from .conftest import shared_file

    data = np.load(shared_file("breastmnist.npz"), allow_pickle=False)
    x = torch.tensor(data["train_images"][:, None] / 255.0, dtype=torch.float32)
    y = torch.tensor(data["train_labels"].reshape(-1), dtype=torch.long)
    member = np.random.default_rng(0).random(len(y)) < 0.5
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn"), in_channels=1, n_classes=2, image_size=28)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    xm, ym = x[member], y[member]
    model.train()
    for _ in range(40):
        for batch in torch.randperm(len(ym)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(xm[batch]), ym[batch]).backward()
            optimizer.step()
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    np.save(tmp_path / "members.npy", np.flatnonzero(member))
    with torch.no_grad():
        losses = F.cross_entropy(model(x), y, reduction="none").double().numpy()
    by_hand = roc_auc_score(member, -losses)

    out = tmp_path / "audit"
    result = run_cli(["--model", "cnn", "--weights", str(tmp_path / "model.safetensors"), "--dataset", "breastmnist",
                      "--data-root", str(shared_file("breastmnist.npz").parent), "--members", str(tmp_path / "members.npy"),
                      "--out", str(out)], program="medprivbench-audit")
    assert result.returncode == 0, result.stderr[-1500:]
    written = json.loads((out / "audit.json").read_text())
    assert written["attacks"]["loss"]["auc"] == pytest.approx(by_hand, abs=1e-6)
    assert written["n_members"] == member.sum() and "| AUC |" in (out / "audit.md").read_text()
