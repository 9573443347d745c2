"""Statistics against independent truth: scipy, hand-computed tables and simulations with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from eval import planner, stats
from eval.ratings_schema import COLUMNS

BASE, FAST, ANCHOR = "float16-n10", "bfloat16-n5", "float32-n1"


def _row(listener, text, a_config, b_config, score_a, score_b, preference="none", trial=None):
    row = dict.fromkeys(COLUMNS, "")
    row |= {
        "schema_version": 1,
        "listener_id": listener,
        "text_id": text,
        "trial_id": trial or f"{listener}|{text}|{a_config}|{b_config}",
        "mode": "blind",
        "a_config": a_config,
        "b_config": b_config,
        "score_a": score_a,
        "score_b": score_b,
        "preference": preference,
    }
    return row


def _table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def simulate_log(
    n_listeners, n_texts, *, mu_base, mu_v, listener_sd, text_sd, residual_sd, drop_sd=0.0, seed
) -> pd.DataFrame:
    """Paired judgements FAST vs BASE, every listener x text, integer scores (written independently
    of eval.planner: latent normal model, rounded and clipped to 1..5, sides shuffled)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, listener_sd, n_listeners)
    s = rng.normal(0, drop_sd, n_listeners)
    b = rng.normal(0, text_sd, n_texts)
    rows = []
    for i in range(n_listeners):
        for j in range(n_texts):
            base = int(np.clip(np.rint(mu_base + a[i] + b[j] + rng.normal(0, residual_sd)), 1, 5))
            fast = int(np.clip(np.rint(mu_v + a[i] + s[i] + b[j] + rng.normal(0, residual_sd)), 1, 5))
            if rng.random() < 0.5:
                rows.append(_row(f"L{i}", f"T{j}", FAST, BASE, fast, base))
            else:
                rows.append(_row(f"L{i}", f"T{j}", BASE, FAST, base, fast))
    return _table(rows)


# ---------------------------------------------------------------- textbook intervals


def test_naive_t_interval_matches_scipy():
    x = np.array([4, 5, 3, 4, 4, 2, 5, 3, 4, 4], dtype=float)
    got = stats.naive_t_interval(x, 0.95)
    low, high = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert (got.estimate, got.low, got.high) == pytest.approx((x.mean(), low, high), rel=1e-12)
    assert np.isnan(stats.naive_t_interval(np.array([3.0])).low)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (57, 120), (1, 1)])
def test_wilson_interval_matches_scipy(k, n):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    got = stats.wilson_interval(k, n, 0.95)
    assert got.estimate == pytest.approx(k / n)
    assert (got.low, got.high) == pytest.approx((ci.low, ci.high), abs=1e-12)


# ---------------------------------------------------------------- hand-computed tables


def _hand_table() -> pd.DataFrame:
    # Two listeners x two texts; FAST appears on both sides. Preferences in configuration terms.
    return _table(
        [
            _row("ann", "t1", BASE, FAST, 5, 4, "A"),  # BASE preferred
            _row("ann", "t2", FAST, BASE, 4, 4, "none"),
            _row("bob", "t1", FAST, BASE, 3, 5, "B"),  # BASE preferred
            _row("bob", "t2", BASE, FAST, 2, 4, "B"),  # FAST preferred
            _row("bob", "t2", BASE, ANCHOR, 4, 1, "A"),  # BASE preferred over the anchor
        ]
    )


def test_long_scores_hand_table():
    scores = stats.long_scores(_hand_table())
    by_config = scores.groupby("config")["score"]
    assert by_config.size().to_dict() == {BASE: 5, FAST: 4, ANCHOR: 1}
    assert by_config.mean()[BASE] == pytest.approx((5 + 4 + 5 + 2 + 4) / 5)
    assert by_config.mean()[FAST] == pytest.approx((4 + 4 + 3 + 4) / 4)


def test_paired_scores_in_configuration_terms():
    pairs = stats.paired_scores(_hand_table(), FAST, BASE)
    assert pairs["score_v"].tolist() == [4, 4, 3, 4]
    assert pairs["score_base"].tolist() == [5, 4, 5, 2]


def test_preference_shares_hand_table():
    shares = stats.preference_shares(_hand_table(), [BASE, FAST, ANCHOR])
    assert [(p.config_x, p.config_y) for p in shares] == [(BASE, FAST), (BASE, ANCHOR)]
    fast = shares[0]
    assert (fast.n, fast.n_x, fast.n_y, fast.n_none) == (4, 2, 1, 1)
    assert fast.share_x.estimate == pytest.approx(0.5)
    assert fast.p_value == pytest.approx(sps.binomtest(2, 3, 0.5).pvalue)
    assert (shares[1].n, shares[1].n_x) == (1, 1)


def test_screening_flags_hand_table():
    rows = [_row("ok", f"t{i}", BASE, ANCHOR, 5, 2) for i in range(6)]
    rows += [_row("flat", f"t{i}", BASE, ANCHOR, 3, 3) for i in range(6)]
    rows += [_row("odd", f"t{i}", BASE, ANCHOR, 2, 4 if i < 4 else 2) for i in range(6)]
    rows += [_row("brief", "t0", BASE, FAST, 4, 3)]
    flags = {s.listener_id: s.flags for s in stats.screen_listeners(_table(rows), BASE, ANCHOR)}
    assert flags["ok"] == ()
    assert flags["flat"] == (stats.FLAG_CONSTANT_SCORES,)
    assert flags["odd"] == (stats.FLAG_ANCHOR_ABOVE_BASELINE,)  # anchor mean 3.33 > baseline mean 2
    assert flags["brief"] == (stats.FLAG_TOO_FEW_JUDGEMENTS,)
    odd = next(s for s in stats.screen_listeners(_table(rows), BASE, ANCHOR) if s.listener_id == "odd")
    assert (odd.mean_baseline, odd.mean_anchor) == pytest.approx((2.0, 20 / 6))


def test_noninferiority_with_no_spread_has_exact_bounds():
    # Every judgement identical: every bootstrap replicate gives the same ratio.
    equal = _table([_row(f"L{i}", f"T{j}", FAST, BASE, 4, 4) for i in range(3) for j in range(4)])
    worse = _table([_row(f"L{i}", f"T{j}", BASE, FAST, 4, 3) for i in range(3) for j in range(4)])
    rng = np.random.default_rng(0)
    ok = stats.compare_to_baseline(equal, FAST, BASE, margin=0.05, rng=rng, n_boot=200)
    assert (ok.comparison, ok.verdict, ok.ratio_lower, ok.d_lower) == (
        "paired",
        "pass",
        1.0,
        pytest.approx(0.2),
    )
    bad = stats.compare_to_baseline(worse, FAST, BASE, margin=0.05, rng=rng, n_boot=200)
    assert (bad.verdict, bad.ratio_lower, bad.d_lower) == ("fail", 0.75, pytest.approx(3 - 0.95 * 4))


def test_insufficient_data_thresholds():
    rng = np.random.default_rng(0)
    few = _table([_row(f"L{i}", f"T{i % 3}", FAST, BASE, 4, 4) for i in range(stats.MIN_JUDGEMENTS - 1)])
    one_listener = _table([_row("solo", f"T{j}", FAST, BASE, 4, 4) for j in range(20)])
    for table in (few, one_listener):
        result = stats.compare_to_baseline(table, FAST, BASE, margin=0.05, rng=rng, n_boot=200)
        assert result.verdict == stats.VERDICT_INSUFFICIENT
        assert np.isnan(result.ratio_lower) and result.reason


def test_unpaired_comparison_when_never_rated_together():
    rows = [_row(f"L{i}", f"T{j}", BASE, ANCHOR, 4, 2) for i in range(4) for j in range(4)]
    rows += [_row(f"L{i}", f"T{j}", FAST, ANCHOR, 4, 2) for i in range(4) for j in range(4)]
    result = stats.compare_to_baseline(
        _table(rows), FAST, BASE, margin=0.05, rng=np.random.default_rng(0), n_boot=200
    )
    assert (result.comparison, result.verdict, result.ratio) == ("unpaired", "pass", 1.0)


# ---------------------------------------------------------------- simulations with known answers


def test_clustered_interval_covers_and_naive_does_not():
    # Crossed random effects: mean 3.5, listener sd 0.6, text sd 0.4, residual 0.5 (continuous).
    rng = np.random.default_rng(123)
    n_l, n_t, covered, naive_covered, sims = 15, 12, 0, 0, 60
    listener, text = np.repeat(np.arange(n_l), n_t), np.tile(np.arange(n_t), n_l)
    for _ in range(sims):
        y = (
            3.5
            + rng.normal(0, 0.6, n_l)[listener]
            + rng.normal(0, 0.4, n_t)[text]
            + rng.normal(0, 0.5, n_l * n_t)
        )
        ci = stats.cluster_bootstrap_mean(y, listener, text, rng=rng, n_boot=500)
        naive = stats.naive_t_interval(y)
        covered += ci.low <= 3.5 <= ci.high
        naive_covered += naive.low <= 3.5 <= naive.high
    assert covered / sims >= 0.9
    assert naive_covered / sims <= 0.75  # treating ratings as independent is far too narrow


def test_ratio_and_difference_bounds_give_the_same_verdict():
    for seed in range(12):
        log = simulate_log(
            6, 5, mu_base=3.6, mu_v=3.45, listener_sd=0.5, text_sd=0.3, residual_sd=0.6, seed=seed
        )
        r = stats.compare_to_baseline(
            log, FAST, BASE, margin=0.05, rng=np.random.default_rng(seed), n_boot=300
        )
        assert (r.ratio_lower > 0.95) == (r.d_lower > 0)
        assert r.ratio_lower <= r.ratio


def test_results_are_reproducible_per_seed():
    log = simulate_log(10, 8, mu_base=3.6, mu_v=3.5, listener_sd=0.5, text_sd=0.3, residual_sd=0.6, seed=1)

    def bound(seed):
        rng = stats.derived_rng(seed, "ni", FAST)
        return stats.compare_to_baseline(log, FAST, BASE, margin=0.05, rng=rng, n_boot=300).ratio_lower

    assert bound(7) == bound(7)
    assert bound(7) != bound(8)


def test_expected_discrete_mos_matches_monte_carlo():
    x = np.random.default_rng(0).normal(4.2, 0.9, 2_000_000)
    mc = np.clip(np.rint(x), 1, 5).mean()
    assert planner.expected_discrete_mos(4.2, 0.9) == pytest.approx(mc, abs=3e-3)
    assert planner.expected_discrete_mos(planner.latent_mean_for(4.0, 0.9), 0.9) == pytest.approx(
        4.0, abs=1e-8
    )


def test_estimate_components_recovers_simulated_spread():
    log = simulate_log(
        40, 30, mu_base=3.0, mu_v=2.9, listener_sd=0.5, text_sd=0.3, residual_sd=0.6, drop_sd=0.3, seed=3
    )
    est = planner.estimate_components(log)
    assert est.listener_sd == pytest.approx(0.5, rel=0.3)
    assert est.text_sd == pytest.approx(0.3, rel=0.35)
    assert est.residual_sd == pytest.approx(np.sqrt(0.6**2 + 1 / 12), rel=0.15)  # rounding adds 1/12
    assert est.listener_drop_sd == pytest.approx(0.3, rel=0.35)


def test_planner_size_passes_a_2_percent_drop_and_fails_a_10_percent_drop():
    """The seed's acceptance check: at the planned size, 2% drop passes, 10% drop fails (>= 8 of 10)."""
    spread = {"listener_sd": 0.4, "text_sd": 0.3, "residual_sd": 0.5}
    components = planner.VarianceComponents(**spread)
    plan = planner.plan_sample_size(
        components, base_mos=3.5, true_drop=0.02, margin=0.05, target_power=0.9, n_sims=60, n_boot=400, seed=0
    )
    assert plan.recommended is not None
    n_l, n_t = plan.recommended.n_listeners, plan.recommended.n_texts
    # The latent mean 3.5 sits far from 1 and 5, so the expected integer MOS is 3.5 to within 0.1%.
    verdicts = {}
    for drop in (0.02, 0.10):
        verdicts[drop] = [
            stats.compare_to_baseline(
                simulate_log(n_l, n_t, mu_base=3.5, mu_v=3.5 * (1 - drop), **spread, seed=100 + k),
                FAST,
                BASE,
                margin=0.05,
                rng=stats.derived_rng(k, "ni"),
                n_boot=1000,
            ).verdict
            for k in range(10)
        ]
    assert verdicts[0.02].count("pass") >= 8, verdicts
    assert verdicts[0.10].count("fail") >= 8, verdicts


def test_test_holds_its_level_at_the_margin():
    # A true drop exactly at the margin must pass rarely (one-sided 5% test; the bootstrap is conservative).
    power = planner.simulate_power(
        planner.VarianceComponents(0.4, 0.3, 0.5),
        base_mos=3.5,
        true_drop=0.05,
        margin=0.05,
        n_listeners=12,
        n_texts=10,
        n_sims=80,
        n_boot=300,
    )
    assert power <= 0.08


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="seed"):
        stats.derived_rng(-1)
    with pytest.raises(ValueError, match="n_boot"):
        stats.check_bootstrap_args(0.95, 10)
    with pytest.raises(ValueError, match="margin"):
        stats.noninferiority_test(
            ([1.0], [0], [0]), ([1.0], [0], [0]), margin=1.5, paired=True, rng=np.random.default_rng()
        )
    with pytest.raises(ValueError, match="residual_sd"):
        planner.VarianceComponents(0.1, 0.1, 0.0)
    with pytest.raises(ValueError, match="not within the margin"):
        planner.plan_sample_size(planner.VarianceComponents(0.1, 0.1, 0.5), true_drop=0.06, margin=0.05)
