"""benchmark/membership_run.py directly: the per-sample scores table, the table columns, the entries'
pool checks, and the shared protocol on a tiny pool with a stand-in for the experiment's context."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from medprivbench.attacks import membership
from medprivbench.attacks.auditing import CanaryAuditConfig
from medprivbench.attacks.lira import LiRAConfig
from medprivbench.attacks.membership import LossConfig
from medprivbench.attacks.rmia import RMIAConfig
from medprivbench.benchmark import membership_run, registry, tasks
from medprivbench.benchmark.errors import ConfigError
from medprivbench.benchmark.families.membership import MembershipResult
from medprivbench.benchmark.shadow import PoolResult
from medprivbench.benchmark.streams import Streams
from medprivbench.benchmark.training import DPRecipe

registry.load()  # the audit entry too: it is selected below beside the membership attacks

HP = dict(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, lr_schedule="constant", ema_decay=None,
          augmult=0, augmentations=[])
RECIPE = DPRecipe(epsilon_target=1.0, delta=1e-5, sample_rate=0.25, steps=8, steps_per_epoch=4,
                  noise_multiplier=1.0, max_grad_norm=1.0, accountant="rdp")
M, N, N_VAL, N_TEST, SIDE = 4, 40, 12, 16, 4
ALPHA, BOUND_ALPHA, DELTA = 0.05, 0.0125, 1e-5


def _cfg(num_models: int = M, queries=("identity",)):
    return OmegaConf.create({"membership": {"num_models": num_models, "queries": list(queries)},
                             "privacy": {"delta": DELTA}, "progress": "off", "shadow_workers": 1})


# ----------------------------------------------------------------------------- scores_table
def _pool(m: int = 3, n: int = 5, seed: int = 0) -> PoolResult:
    rng = np.random.default_rng(seed)
    return PoolResult(logits=rng.normal(size=(m, n, 1, 2)).astype(np.float32), member=rng.random((m, n)) < 0.5,
                      labels=rng.integers(0, 2, n), queries=["identity"], wall_time_s=0.0)


def test_scores_table_has_one_row_per_model_and_sample():
    pool = _pool()
    rng = np.random.default_rng(1)
    scores = {"loss": rng.normal(size=(3, 5)), "lira_online": rng.normal(size=(3, 5))}
    df = membership_run.scores_table(pool, scores)
    assert len(df) == 3 * 5
    assert list(df.columns) == ["target_model", "sample", "label", "member", "score_loss", "score_lira_online"]
    for _, row in df.iterrows():
        m, i = int(row["target_model"]), int(row["sample"])
        assert row["member"] == pool.member[m, i] and row["label"] == pool.labels[i]
        assert row["score_loss"] == scores["loss"][m, i] and row["score_lira_online"] == scores["lira_online"][m, i]
    assert sorted(zip(df["target_model"], df["sample"])) == [(m, i) for m in range(3) for i in range(5)]
    assert df["score_loss"].dtype == np.float64 and df["member"].dtype == np.bool_


def test_scores_table_names_each_images_group_when_the_dataset_has_them():
    pool = _pool()
    groups = np.array(["common", "rare finding", "common", "common", "rare finding"], dtype=object)
    df = membership_run.scores_table(pool, {"loss": np.zeros((3, 5))}, groups)
    assert list(df.columns) == ["target_model", "sample", "label", "member", "group", "score_loss"]
    assert list(df["group"]) == [groups[i] for i in df["sample"]]
    assert "group" not in membership_run.scores_table(pool, {}).columns


# ----------------------------------------------------------------------------- the result's columns
def test_membership_columns_flatten_every_variant():
    def variant(auc, tprs, lb):
        return {"auc": auc, "auc_ci": [auc, auc], "fpr_levels": [0.001, 0.01], "tpr_at_fpr": tprs,
                "tpr_at_fpr_ci": [[0, 1], [0, 1]], "empirical_epsilon": {"epsilon_lb": lb, "epsilon_ceiling": 9.0}}

    result = {"threat_model": "…", "variants": {"lira_online": variant(0.61, [0.01, 0.05], 0.3),
                                               "lira_offline": variant(0.55, [0.002, 0.02], 0.0)}}
    typed = MembershipResult.from_record(result)
    assert typed.to_record() == {**result, "variants": {k: {**v, "confidence": 0.95, "roc_curve": {}}
                                                        for k, v in result["variants"].items()}}  # nothing lost
    assert typed.columns("lira") == {
        "mia_lira_online_auc": 0.61, "mia_lira_online_tpr_at_0.1%fpr": 0.01, "mia_lira_online_tpr_at_1%fpr": 0.05,
        "mia_lira_online_epsilon_lb": 0.3,
        "mia_lira_offline_auc": 0.55, "mia_lira_offline_tpr_at_0.1%fpr": 0.002, "mia_lira_offline_tpr_at_1%fpr": 0.02,
        "mia_lira_offline_epsilon_lb": 0.0,
    }
    assert membership_run.FPR_LEVELS == (0.001, 0.01)  # the levels those two column names state


# ----------------------------------------------------------------------------- the entries' checks
@pytest.mark.parametrize("name, settings, num_models, match", [
    ("loss", LossConfig(), 1, "num_models=1 is too small; membership attacks need at least 2 models"),
    ("lira", LiRAConfig(online=False), 2, "num_models=2 is too small for attack 'lira'.*at least 3"),
    ("rmia", RMIAConfig(n_references=1), 2, "num_models=2 is too small for attack 'rmia'.*at least 3"),
    ("lira", LiRAConfig(online=True), 4, "too small for online LiRA.*at least 5"),
    ("rmia", RMIAConfig(n_references=4), 5, r"leaves 3 reference models.*n_references=4; use num_models ≥ 6"),
    ("rmia", RMIAConfig(n_references=4, online=True), 9, r"online needs twice as many.*num_models ≥ 10"),
])
def test_too_few_pool_models_are_rejected_with_what_would_do(name, settings, num_models, match):
    with pytest.raises(ConfigError, match=match):
        registry.ATTACKS[name].check(settings, _cfg(num_models))


@pytest.mark.parametrize("name, settings, num_models", [
    ("loss", LossConfig(), 2), ("lira", LiRAConfig(online=False), 3), ("lira", LiRAConfig(online=True), 5),
    ("rmia", RMIAConfig(n_references=4), 6), ("rmia", RMIAConfig(n_references=4, online=True), 10),
])
def test_just_enough_pool_models_are_accepted(name, settings, num_models):
    registry.ATTACKS[name].check(settings, _cfg(num_models))


def test_check_pool_itself():
    membership_run.check_pool(_cfg(2), shadows=False, name="x")
    with pytest.raises(ConfigError, match="attack 'x'"):
        membership_run.check_pool(_cfg(2), shadows=True, name="x")


def test_lira_uses_the_fixed_variance_below_64_shadows_unless_told():
    def variants(num_models, **kw):
        return registry.ATTACKS["lira"].scorers(SimpleNamespace(cfg=_cfg(num_models)), LiRAConfig(**kw))

    assert variants(64) == {"lira_online": ("lira_online", {"fixed_variance": True}),
                            "lira_offline": ("lira_offline", {"fixed_variance": True})}
    assert variants(65)["lira_online"][1] == {"fixed_variance": False}  # 64 shadows
    assert variants(200, variance="fixed")["lira_offline"][1] == {"fixed_variance": True}
    assert variants(5, variance="per_sample")["lira_offline"][1] == {"fixed_variance": False}
    assert list(variants(10, online=False)) == ["lira_offline"]


def test_rmia_passes_its_settings_and_offline_a_only_offline():
    offline = registry.ATTACKS["rmia"].scorers(None, RMIAConfig(n_references=2, offline_a=0.4, gamma=1.5))
    assert offline == {"rmia": ("rmia", {"online": False, "gamma": 1.5, "n_references": 2, "offline_a": 0.4})}
    online = registry.ATTACKS["rmia"].scorers(None, RMIAConfig(n_references=2, online=True))
    assert "offline_a" not in online["rmia"][1] and online["rmia"][1]["online"] is True


# ----------------------------------------------------------------------------- MembershipProtocol
def _build(streams: Streams) -> nn.Module:
    torch.manual_seed(streams.seed_for("init"))
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2))


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, SIDE, SIDE), dtype=np.float32), rng.integers(0, 2, n)


class Writer:
    """Stands in for store.RunWriter: keeps what would be written."""

    def __init__(self):
        self.parquet: dict[str, pd.DataFrame] = {}

    def write_parquet(self, name: str, df: pd.DataFrame) -> None:
        self.parquet[name] = df


@dataclass
class FakeContext:
    """What MembershipProtocol reads of benchmark/experiment.py's Context, and nothing more."""

    cfg: object
    ds: object
    settings: dict
    writer: Writer = field(default_factory=Writer)
    recipe: DPRecipe = RECIPE
    hp: dict = field(default_factory=lambda: dict(HP))
    grad_sample_mode: str = "hooks"
    device: str = "cpu"
    label: str = "[test]"
    streams: Streams = Streams(7)
    alpha: float = ALPHA
    bound_alpha: float = BOUND_ALPHA  # distinct from α: the ε bounds must use this one
    train_features: object = None
    _shared: dict = field(default_factory=dict)
    task: object = tasks.CLASSIFICATION

    build_model = staticmethod(_build)
    model_builder = staticmethod(_build)

    @property
    def x_train(self) -> torch.Tensor:
        return torch.from_numpy(self.ds.train_x)

    @property
    def y_train(self) -> torch.Tensor:
        return torch.from_numpy(self.ds.train_y)

    def shared(self, key, factory):
        if key not in self._shared:
            self._shared[key] = factory(self)
        return self._shared[key]


def _context(*, with_val: bool = True, queries=("identity", "hflip"), settings=None) -> FakeContext:
    train_x, train_y = _split(N, 0)
    val_x, val_y = _split(N_VAL, 1) if with_val else (None, None)
    test_x, test_y = _split(N_TEST, 2)
    groups = np.where(np.arange(N) % 5 == 0, "rare finding", "common")
    ds = SimpleNamespace(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x, test_y=test_y,
                         train_groups=groups, n_train=N)
    settings = settings if settings is not None else {
        "loss": LossConfig(), "lira": LiRAConfig(online=True, offline=True), "audit": CanaryAuditConfig()}
    return FakeContext(cfg=_cfg(M, queries), ds=ds, settings=settings)


@pytest.fixture(scope="module")
def evaluated():
    """One protocol (4 models, 40 images, two queries) scoring the loss attack and offline LiRA."""
    ctx = _context()
    calls = []
    real = membership_run.auditing.held_out_target_epsilon

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(membership_run.auditing, "held_out_target_epsilon", recording)
        protocol = membership_run.MembershipProtocol(ctx)
        out = protocol.evaluate({"loss": ("loss", {}), "lira_offline": ("lira_offline", {"fixed_variance": True})})
    return ctx, protocol, out, calls


def test_protocol_trains_the_configured_pool_on_the_training_set(evaluated):
    ctx, protocol, _, _ = evaluated
    pool = protocol.pool
    assert pool.member.shape == (M, N) and pool.logits.shape == (M, N, 2, 2)
    assert protocol.queries == pool.queries == ["identity", "hflip"]
    assert np.array_equal(pool.labels, ctx.ds.train_y)
    # RMIA's population: the validation split, which no pool model trains on
    assert protocol.population == "validation" and np.array_equal(pool.population_labels, ctx.ds.val_y)
    assert pool.population_logits.shape == (M, N_VAL, 2, 2)


def test_population_falls_back_to_the_test_split_without_a_validation_split():
    ctx = _context(with_val=False, queries=("identity",), settings={"loss": LossConfig()})
    ctx.cfg.membership.num_models = 2
    protocol = membership_run.MembershipProtocol(ctx)
    assert protocol.population == "test" and np.array_equal(protocol.pool.population_labels, ctx.ds.test_y)
    assert protocol.pool.population_logits.shape == (2, N_TEST, 1, 2)
    assert protocol.confidence == pytest.approx(1 - ALPHA / 3)  # one variant, AUC and two TPR levels
    assert protocol.finish()["population"] == f"test split ({N_TEST} images)"


def test_confidence_is_bonferroni_over_the_runs_membership_variants(evaluated):
    _, protocol, out, _ = evaluated
    # loss (1) + LiRA online and offline (2) = 3 membership variants; the audit is not one of them
    expected = 1 - ALPHA / (3 * (1 + len(membership_run.FPR_LEVELS)))
    assert protocol.confidence == pytest.approx(expected) == pytest.approx(1 - ALPHA / 9)
    assert all(metrics["confidence"] == pytest.approx(expected) for metrics in out.values())


def test_evaluate_returns_auc_tpr_and_epsilon_bound_per_variant(evaluated):
    _, protocol, out, _ = evaluated
    assert set(out) == {"loss", "lira_offline"}
    member = protocol.pool.member
    for variant, metrics in out.items():
        scores = protocol.scores[variant]
        assert scores.shape == (M, N) and np.isfinite(scores).all()
        assert metrics["auc"] == pytest.approx(roc_auc_score(member.ravel(), scores.ravel()))
        lo, hi = metrics["auc_ci"]
        assert lo <= metrics["auc"] <= hi
        assert metrics["fpr_levels"] == list(membership_run.FPR_LEVELS) and len(metrics["tpr_at_fpr"]) == 2
        assert metrics["n_bootstrap"] == membership_run.N_BOOTSTRAP and metrics["bootstrap"] == "cluster"
        bound = metrics["empirical_epsilon"]
        assert 0.0 <= bound["epsilon_lb"] <= bound["epsilon_ceiling"]
        assert bound["alpha"] == BOUND_ALPHA and bound["delta"] == DELTA and bound["m"] == N
    # the row of tables: every column read from these metrics
    columns = MembershipResult.from_record({"variants": {"loss": out["loss"]}}).columns("loss")
    assert columns["mia_loss_auc"] == out["loss"]["auc"]


def test_loss_scores_are_minus_the_cross_entropy_averaged_over_queries(evaluated):
    _, protocol, _, _ = evaluated
    pool = protocol.pool
    logits = torch.from_numpy(pool.logits).double()  # (M, N, A, K)
    labels = torch.from_numpy(pool.labels).long()
    ce = torch.stack([torch.stack([nn.functional.cross_entropy(logits[m, :, a], labels, reduction="none")
                                   for a in range(2)]).mean(0) for m in range(M)])
    np.testing.assert_allclose(protocol.scores["loss"], -ce.numpy(), rtol=1e-6, atol=1e-9)


def test_empirical_epsilon_holds_out_model_zero_and_selects_without_it(evaluated):
    _, protocol, _, calls = evaluated
    pool = protocol.pool
    assert membership_run.EVALUATION_TARGET == 0 and len(calls) == 2
    for (args, kwargs), (attack, options) in zip(calls, (("loss", {}), ("lira_offline", {"fixed_variance": True}))):
        selection, selection_member, evaluation, evaluation_member, delta = args
        assert np.array_equal(selection_member, pool.member[1:]) and np.array_equal(evaluation_member, pool.member[0])
        assert delta == DELTA and kwargs == {"alpha": BOUND_ALPHA}
        variant = "loss" if attack == "loss" else "lira_offline"
        assert np.array_equal(evaluation, protocol.scores[variant][0])
        # the other targets scored without model 0 among their shadows
        without = membership.score_all_targets(attack, pool.logits, pool.labels, pool.member, exclude=0,
                                               seed=protocol.ctx.streams.of(variant).seed_for("attack"), **options)
        np.testing.assert_allclose(selection, without[1:])
    # LiRA's selection scores do change when model 0 is no longer a shadow: the exclusion acts
    lira_selection = calls[1][0][0]
    assert not np.allclose(lira_selection, protocol.scores["lira_offline"][1:])


def test_finish_writes_the_scores_and_records_the_protocol(evaluated):
    ctx, protocol, _, _ = evaluated
    record = protocol.finish()
    written = ctx.writer.parquet["membership_scores.parquet"]
    pd.testing.assert_frame_equal(written, membership_run.scores_table(protocol.pool, protocol.scores, ctx.ds.train_groups))
    assert len(written) == M * N and {"group", "score_loss", "score_lira_offline"} <= set(written.columns)
    pool = protocol.pool
    assert record["num_models"] == M and record["queries"] == ["identity", "hflip"]
    assert record["evaluation_target"] == 0 and record["population"] == f"validation split ({N_VAL} images)"
    assert record["members_per_model_mean"] == pytest.approx(pool.member.sum(1).mean())
    assert record["pool_test_accuracy_mean"] == pytest.approx(np.mean(pool.test_accuracy))


def test_entries_share_one_pool_through_the_context(monkeypatch):
    ctx = _context(queries=("identity",), settings={"loss": LossConfig(), "lira": LiRAConfig(online=False)})
    built = []
    real = membership_run.MembershipProtocol

    def counting(c):
        built.append(c)
        return real(c)

    monkeypatch.setattr(membership_run, "MembershipProtocol", counting)
    loss = registry.ATTACKS["loss"].run(ctx, LossConfig())
    lira = registry.ATTACKS["lira"].run(ctx, LiRAConfig(online=False))
    assert len(built) == 1  # the second attack reuses the pool
    assert list(loss.variants) == ["loss"] and list(lira.variants) == ["lira_offline"]
    assert loss.threat_model == registry.ATTACKS["loss"].threat_model
    assert lira.threat_model == registry.ATTACKS["lira"].threat_model
