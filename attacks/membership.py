"""Membership inference: the scoring functions (:data:`SCORERS`), the loss attack, and the LiRA protocol loop.

Every attack scores samples from model outputs, and every score follows one convention: **higher
means more likely a member** of the target model's training set. The array conventions (logits,
labels, membership) and their checks live in :mod:`.membership_signals`; LiRA in :mod:`.lira`,
RMIA in :mod:`.rmia`; training the shadow/reference models and querying them is done elsewhere.

The registry :data:`SCORERS` maps attack names to functions with one calling convention
(:class:`Scorer`, entries added with :func:`register_scorer`), and
:func:`score_all_targets` runs one of them with every model of the protocol as the target in turn;
:func:`score_target` runs one against a single target outside the protocol (a model trained elsewhere).
This module is the family's front door: the engine imports the attacks' settings and signals from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import log_softmax

from .lira import LiRAConfig, lira_attack
from .membership_signals import SIGNALS, SIGNALS_DOC, check_labels, logit_confidence, membership_matrix, model_queries, stacked_queries
from .rmia import RMIAConfig, rmia_attack
from .settings import Validated, choices

__all__ = [
    "SCORERS",
    "LiRAConfig",
    "LossConfig",
    "Scorer",
    "RMIAConfig",
    "lira_attack",
    "logit_confidence",
    "loss_attack",
    "register_scorer",
    "rmia_attack",
    "score_all_targets",
    "score_target",
]


# ----------------------------------------------------------------------------------------------
# Loss attack
# ----------------------------------------------------------------------------------------------


@dataclass
class LossConfig(Validated):
    """Loss threshold (Yeom et al. 2018): score = −loss of the target model; ``signals``: what it reads."""

    signals: list = choices(["logits"], SIGNALS, doc=SIGNALS_DOC)


def loss_attack(target_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Loss-threshold attack (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018).

    score(x) = −ℓ(x), the negative cross-entropy loss of the target on x,
    ℓ = logsumexp_j z_j − z_y, averaged over the A augmentation queries when there are several.
    Thresholding it is the attack; no shadow models are needed.

    Args:
        target_logits: (N, K) or (N, A, K).
        labels: (N,) integer classes.

    Returns:
        scores (N,).
    """
    logits = model_queries(target_logits, "target_logits")
    labels = check_labels(labels, logits.shape[0], logits.shape[-1])
    log_p = log_softmax(logits, axis=-1)
    log_p_true = np.take_along_axis(log_p, np.broadcast_to(labels[:, None, None], log_p.shape[:-1] + (1,)), axis=-1)
    return log_p_true[..., 0].mean(axis=-1)


# ----------------------------------------------------------------------------------------------
# Registry with one calling convention
# ----------------------------------------------------------------------------------------------


class Scorer(Protocol):
    """The common calling convention of :data:`SCORERS` entries.

    ``attack(target_logits, labels, reference_logits, reference_member, population, **options)``
    returns scores (N,), higher = more likely a member. ``reference_logits`` (R, N, [A,] K) and
    ``reference_member`` (R, N) are the shadow/reference models; ``population`` is a bool mask of
    samples known to be non-members of the target (RMIA's population z). Attacks that need no
    references or population ignore them (see ``uses_references``, ``uses_population``). ``options`` are the
    attack-specific keyword arguments; unknown ones raise TypeError.
    """

    uses_references: bool
    uses_population: bool

    def __call__(
        self,
        target_logits: np.ndarray,
        labels: np.ndarray,
        reference_logits: np.ndarray,
        reference_member: np.ndarray,
        population: np.ndarray,
        **options: object,
    ) -> np.ndarray: ...


SCORERS: dict[str, Scorer] = {}


def register_scorer(name: str, *, uses_references: bool = True, uses_population: bool = False) -> Callable[[Callable], Callable]:
    """Decorator adding a function with the :class:`Scorer` convention to :data:`SCORERS`."""

    def decorate(function: Callable) -> Callable:
        if name in SCORERS:
            raise ValueError(f"attack {name!r} is already registered")
        function.uses_references = uses_references  # type: ignore[attr-defined]
        function.uses_population = uses_population  # type: ignore[attr-defined]
        SCORERS[name] = function  # type: ignore[assignment]
        return function

    return decorate


@register_scorer("loss", uses_references=False)
def _loss(
    target_logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    reference_member: np.ndarray,
    population: np.ndarray,
) -> np.ndarray:
    return loss_attack(target_logits, labels)


def _lira(online: bool) -> Callable:
    """LiRA in the :class:`Scorer` convention, online or offline."""

    def attack(
        target_logits: np.ndarray,
        labels: np.ndarray,
        reference_logits: np.ndarray,
        reference_member: np.ndarray,
        population: np.ndarray,
        *,
        fixed_variance: bool = False,
    ) -> np.ndarray:
        return lira_attack(target_logits, labels, reference_logits, reference_member, online=online,
                           fixed_variance=fixed_variance)

    return attack


register_scorer("lira_online")(_lira(True))
register_scorer("lira_offline")(_lira(False))
# rmia_attack already has the convention's signature (the population is its fifth argument)
register_scorer("rmia", uses_population=True)(rmia_attack)


# ----------------------------------------------------------------------------------------------
# The LiRA evaluation protocol: every model the target in turn
# ----------------------------------------------------------------------------------------------


def score_all_targets(
    attack_name: str,
    logits: np.ndarray,
    labels: np.ndarray,
    member: np.ndarray,
    *,
    population_logits: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
    n_references: int | None = None,
    exclude: int | None = None,
    seed: int = 0,
    **options: object,
) -> np.ndarray:
    """Score every sample against every model of the LiRA evaluation protocol.

    Model m is the target in turn; the other models are its shadows/references (all of them, or
    ``n_references`` drawn without replacement with ``numpy.random.default_rng(seed)``, a fresh
    draw per target, for attacks meant to run with few references, e.g. RMIA with 1–4).
    ``exclude`` names one model that is neither a target nor anyone's reference: scores computed
    without it are independent of that model's training (what a held-out evaluation target needs,
    :func:`medprivbench.attacks.auditing.held_out_target_epsilon`); its row is NaN.

    The RMIA population is every model's logits on ``population_logits``' images, which no model
    trained on (a held-out split): appended to the arrays with membership False, so the attack never
    sees which candidates are the target's non-members.

    Args:
        attack_name: a key of :data:`SCORERS`.
        logits: (M, N, K) or (M, N, A, K), M ≥ 2 models.
        labels: (N,) integer classes.
        member: (M, N) bool.
        population_logits: (M, P, K) or (M, P, A, K), the same models on P ≥ 2 population images;
            required by attacks that compare with a population (RMIA).
        population_labels: (P,) integer classes of the population images.
        n_references: number of references per target, 1 ≤ n ≤ M − 1 (M − 2 with ``exclude``);
            None uses all of them. Rejected for attacks that use no references.
        exclude: index of a model left out of the protocol, or None.
        seed: seed of the reference draw.
        **options: passed to the attack: ``fixed_variance`` for the LiRA entries; ``online``,
            ``offline_a`` (offline only), ``gamma``, ``temperature`` for ``rmia``.

    Returns:
        scores (M, N): ``scores[m, i]`` is the score of sample i against target m; evaluate it
        against ``member[m, i]``.
    """
    if attack_name not in SCORERS:
        raise ValueError(f"attack_name={attack_name!r}; expected one of {sorted(SCORERS)}")
    attack = SCORERS[attack_name]
    logits = stacked_queries(logits, "logits")
    n_models, n_samples = logits.shape[:2]
    member = membership_matrix(member, (n_models, n_samples), "member")
    models = _protocol_models(attack_name, n_models, exclude, n_references)
    if attack.uses_population:
        logits, labels, member = _append_population(attack_name, logits, labels, member, population_logits, population_labels)
    is_population = np.arange(logits.shape[1]) >= n_samples
    return _score_each_target(attack, models, logits, labels, member, is_population, n_samples, n_references, seed, options)


def score_target(
    attack_name: str,
    target_logits: np.ndarray,
    labels: np.ndarray,
    reference_logits: np.ndarray,
    reference_member: np.ndarray,
    *,
    target_population_logits: np.ndarray | None = None,
    reference_population_logits: np.ndarray | None = None,
    population_labels: np.ndarray | None = None,
    **options: object,
) -> np.ndarray:
    """Score every sample against one target model that is not a model of the protocol.

    A model trained elsewhere (the one ``medprivbench-audit`` audits) has no turn among the
    protocol's models: it is the only target, and ``reference_logits`` are the auditor's reference
    models. The target's membership is never an input. For attacks that compare with a population
    (RMIA), the target's and the references' logits on P images none of them trained on are
    appended as every reference's non-members, as in :func:`score_all_targets`.

    Args:
        attack_name: a key of :data:`SCORERS`.
        target_logits: (N, K) or (N, A, K), the target model's logits.
        labels: (N,) integer classes.
        reference_logits: (R, N, K) or (R, N, A, K), R ≥ 1 reference models on the same samples.
        reference_member: (R, N) bool, True where the sample was in the reference's training set.
        target_population_logits: (P, K) or (P, A, K), the target on the population images.
        reference_population_logits: (R, P, K) or (R, P, A, K), the references on them.
        population_labels: (P,) integer classes of the population images.
        **options: passed to the attack (see :func:`score_all_targets`).

    Returns:
        scores (N,), higher = more likely a member of the target's training set.
    """
    if attack_name not in SCORERS:
        raise ValueError(f"attack_name={attack_name!r}; expected one of {sorted(SCORERS)}")
    attack = SCORERS[attack_name]
    target = model_queries(target_logits, "target_logits")
    references = stacked_queries(reference_logits, "reference_logits")
    if references.shape[1:] != target.shape:
        raise ValueError(f"reference_logits has per-model shape {references.shape[1:]}; expected {target.shape} like target_logits")
    n_samples = target.shape[0]
    logits = np.concatenate([target[None], references])
    # the target's row is a placeholder: the attack receives the references' membership only
    member = np.concatenate([np.zeros((1, n_samples), dtype=bool),
                             membership_matrix(reference_member, references.shape[:2], "reference_member")])
    if attack.uses_population:
        population = None
        if target_population_logits is not None and reference_population_logits is not None:
            population = np.concatenate([model_queries(target_population_logits, "target_population_logits")[None],
                                         stacked_queries(reference_population_logits, "reference_population_logits")])
        logits, labels, member = _append_population(attack_name, logits, labels, member, population, population_labels)
    is_population = np.arange(logits.shape[1]) >= n_samples
    return attack(logits[0], labels, logits[1:], member[1:], is_population, **options)[:n_samples]


def _score_each_target(attack: Scorer, models: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                       member: np.ndarray, is_population: np.ndarray, n_samples: int, n_references: int | None,
                       seed: int, options: dict) -> np.ndarray:
    """Scores (M, n_samples): each of ``models`` the target in turn, the other ones its references (all,
    or ``n_references`` drawn per target from one generator seeded with ``seed``); other rows NaN.

    ``logits``, ``labels`` and ``member`` may hold population images after the first ``n_samples``
    (``is_population``); the attack scores them too, and only the first ``n_samples`` are kept.
    """
    rng = np.random.default_rng(seed)
    scores = np.full((logits.shape[0], n_samples), np.nan)
    for target in models:
        others = models[models != target]
        if n_references is not None:
            others = np.sort(rng.choice(others, size=n_references, replace=False))
        # the target's own membership never enters: attacks without a population get an empty one
        scored = attack(logits[target], labels, logits[others], member[others], is_population, **options)
        scores[target] = scored[:n_samples]
    return scores


def _protocol_models(attack_name: str, n_models: int, exclude: int | None, n_references: int | None) -> np.ndarray:
    """The models that take part (all but ``exclude``), after checking the protocol's options."""
    attack = SCORERS[attack_name]
    if exclude is not None and not 0 <= exclude < n_models:
        raise ValueError(f"exclude={exclude}; expected a model index in [0, {n_models - 1}]")
    models = np.array([m for m in range(n_models) if m != exclude])
    if models.size < 2 and attack.uses_references:
        raise ValueError(f"logits holds {models.size} usable model(s); attack {attack_name!r} needs at least 2 (a target and a reference)")
    if n_references is not None:
        if not attack.uses_references:
            raise ValueError(f"n_references={n_references} given, but attack {attack_name!r} uses no reference models")
        if not 1 <= n_references <= models.size - 1:
            raise ValueError(f"n_references={n_references}; expected an integer in [1, {models.size - 1}]")
    return models


def _append_population(
    attack_name: str,
    logits: np.ndarray,
    labels: np.ndarray,
    member: np.ndarray,
    population_logits: np.ndarray | None,
    population_labels: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, labels, member) with the population images appended as every model's non-members."""
    if population_logits is None or population_labels is None:
        raise ValueError(f"attack {attack_name!r} compares with population data: pass population_logits and population_labels "
                         "(the models' logits on images none of them trained on)")
    n_models, n_samples = member.shape
    pop = stacked_queries(population_logits, "population_logits")
    if pop.shape[0] != n_models or pop.shape[2:] != logits.shape[2:]:
        raise ValueError(f"population_logits has shape {pop.shape}; expected ({n_models}, P, {', '.join(map(str, logits.shape[2:]))})")
    labels = np.concatenate([check_labels(labels, n_samples, logits.shape[-1]),
                             check_labels(np.asarray(population_labels), pop.shape[1], logits.shape[-1])])
    logits = np.concatenate([logits, pop], axis=1)
    member = np.concatenate([member, np.zeros((n_models, pop.shape[1]), dtype=bool)], axis=1)
    return logits, labels, member
