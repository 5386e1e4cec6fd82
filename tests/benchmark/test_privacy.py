
import pytest

from medprivbench.benchmark.privacy import RELATIVE_TOLERANCE, epsilon_spent, solve_noise_multiplier


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("target", [1.0, 8.0])
def test_solved_sigma_meets_target_from_below(accountant, target):
    sol = solve_noise_multiplier(epsilon=target, delta=1e-5, sample_rate=0.05, steps=200, accountant=accountant)
    assert sol.accountant == accountant
    assert sol.epsilon <= target
    assert target - sol.epsilon <= max(0.01, RELATIVE_TOLERANCE * target) + 1e-9
    # recomputing ε independently at the solved σ gives the same value
    assert epsilon_spent(sol.sigma, 0.05, 200, 1e-5, accountant) == pytest.approx(sol.epsilon, rel=1e-6)
    # a little less noise spends more than the target
    assert epsilon_spent(sol.sigma * 0.98, 0.05, 200, 1e-5, accountant) > target


def test_prv_is_tighter_than_rdp():
    prv = solve_noise_multiplier(epsilon=4.0, delta=1e-5, sample_rate=0.05, steps=200, accountant="prv")
    rdp = solve_noise_multiplier(epsilon=4.0, delta=1e-5, sample_rate=0.05, steps=200, accountant="rdp")
    assert prv.sigma < rdp.sigma


@pytest.mark.parametrize("target", [1e3, 1e6, 1e9, 1e18])
def test_very_large_epsilon_falls_back_to_rdp_and_says_so(target):
    sol = solve_noise_multiplier(epsilon=target, delta=1e-5, sample_rate=0.05, steps=400, accountant="prv")
    assert sol.accountant == "rdp" and "RDP" in sol.note
    assert sol.epsilon <= target and sol.epsilon >= target * (1 - 2 * RELATIVE_TOLERANCE)
    assert 0 < sol.sigma < 1


def test_sigma_decreases_with_epsilon():
    sigmas = [solve_noise_multiplier(epsilon=e, delta=1e-5, sample_rate=0.1, steps=100, accountant="rdp").sigma
              for e in (1, 8, 1e3, 1e6)]
    assert sigmas == sorted(sigmas, reverse=True)

