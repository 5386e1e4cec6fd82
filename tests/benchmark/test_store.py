import json

import pandas as pd
import pytest

from medprivbench.benchmark import store


def _cfg(**over):
    cfg = {"dataset": {"name": "synthetic"}, "model": {"name": "cnn"}, "privacy": {"epsilon": 8.0},
           "seed": 0, "name": "x", "results_root": "r", "device": "cpu", "progress": "off"}
    cfg.update(over)
    return cfg


def test_hash_ignores_where_results_go_but_not_what_is_computed():
    base = store.config_hash(_cfg())
    assert store.config_hash(_cfg(name="other", results_root="/elsewhere", device="cuda", progress="on")) == base
    assert store.config_hash(_cfg(seed=1)) != base
    assert store.config_hash(_cfg(privacy={"epsilon": 1.0})) != base


@pytest.mark.parametrize("eps, text", [(1.0, "1"), (8.0, "8"), (0.5, "0.5"), (1e6, "1e6"), (2.5e9, "2.5e9"), (float("inf"), "inf")])
def test_format_epsilon(eps, text):
    assert store.format_epsilon(eps) == text


def _publish(sweep, run_id, value=1.0):
    w = store.RunWriter(sweep, run_id)
    w.write_json(store.METRICS, {"schema": store.SCHEMA_VERSION, "summary": {"dataset": "d", "model": "m", "epsilon": value, "seed": 0, "acc": value}})
    w.write_text("weights.bin", "x" * 100)
    return w.publish()


def test_publish_is_all_or_nothing(tmp_path):
    w = store.RunWriter(tmp_path, "run-a")
    w.write_json(store.METRICS, {"summary": {}})
    assert not (tmp_path / "runs" / "run-a").exists()  # nothing visible before publish
    w.discard()
    assert store.find_complete_run(tmp_path, "run-a") is None
    run_dir = _publish(tmp_path, "run-a")
    assert store.validate_run(run_dir) is None
    assert store.find_complete_run(tmp_path, "run-a") == run_dir
    assert not any((tmp_path / "runs" / ".partial").iterdir())


def _rewrite_with_matching_checksums(run_dir, rel: str, data: bytes) -> None:
    """Damage that checksums cannot see: new content, and a manifest updated to match it."""
    import json

    (run_dir / rel).write_bytes(data)
    manifest = json.loads((run_dir / store.MANIFEST).read_text())
    manifest["files"][rel] = {"bytes": len(data), "sha256": store.sha256_file(run_dir / rel)}
    (run_dir / store.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["truncate", "delete_manifest", "corrupt_manifest", "delete_file", "flip_bytes",
                                    "record_does_not_parse", "record_is_not_a_record"])
def test_damaged_runs_are_detected_quarantined_and_not_aggregated(tmp_path, damage):
    good = _publish(tmp_path, "good", 1.0)
    bad = _publish(tmp_path, "bad", 2.0)
    if damage == "truncate":
        (bad / "weights.bin").write_text("x" * 10)
    elif damage == "delete_manifest":
        (bad / store.MANIFEST).unlink()
    elif damage == "corrupt_manifest":
        (bad / store.MANIFEST).write_text("{not json")
    elif damage == "delete_file":
        (bad / "weights.bin").unlink()
    elif damage == "flip_bytes":
        (bad / "weights.bin").write_text("y" * 100)
    elif damage == "record_does_not_parse":
        _rewrite_with_matching_checksums(bad, store.METRICS, b'{"schema": 3, "summary": {')
    elif damage == "record_is_not_a_record":
        _rewrite_with_matching_checksums(bad, store.METRICS, b"[1, 2, 3]")
    assert store.validate_run(bad) is not None
    df = store.aggregate(tmp_path)
    assert list(df["run_dir"]) == ["good"]
    assert store.find_complete_run(tmp_path, "bad") is None  # quarantined, to be redone
    assert not bad.exists() and any((tmp_path / "runs" / ".damaged").iterdir())
    assert store.find_complete_run(tmp_path, "good") == good


def test_second_writer_of_the_same_run_keeps_the_first_copy(tmp_path):
    first = _publish(tmp_path, "same", 1.0)
    again = _publish(tmp_path, "same", 5.0)
    assert again == first
    assert json.loads((first / store.METRICS).read_text())["summary"]["acc"] == 1.0


def test_table_round_trips_through_csv_and_parquet(tmp_path):
    for i, eps in enumerate([8.0, float("inf"), 1.0]):
        _publish(tmp_path, f"r{i}", eps)
    df = store.aggregate(tmp_path)
    assert list(df["epsilon"]) == [1.0, 8.0, float("inf")]
    csv, parquet = store.write_table(tmp_path, df)
    assert pd.read_parquet(parquet)["epsilon"].tolist() == [1.0, 8.0, float("inf")]
    assert pd.read_csv(csv)["epsilon"].tolist() == [1.0, 8.0, float("inf")]


def test_runs_recorded_by_another_version_are_left_out_of_the_table(tmp_path, caplog):
    _publish(tmp_path, "current", 1.0)
    w = store.RunWriter(tmp_path, "older")
    w.write_json(store.METRICS, {"schema": store.SCHEMA_VERSION - 1, "summary": {"dataset": "d", "model": "m", "epsilon": 2.0,
                                                                                 "seed": 0, "acc": 2.0}})
    w.publish()
    table = store.aggregate(tmp_path)
    assert table["acc"].tolist() == [1.0]
    assert "recorded by another version" in caplog.text
