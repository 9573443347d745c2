"""Statistics against independent truth: scipy, hand-computed tables and simulations with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from eval.serving.ratings_schema import COLUMNS
from eval.statistics import cgm, planner, screening, stats
from eval.statistics.options import CI_METHODS, StatsOptions

BASE, FAST, ANCHOR = "float16-n10", "bfloat16-n5", "float32-n1"
DEFAULT = StatsOptions()  # cluster-t, 5% margin, 95%


def boot(n_boot: int) -> StatsOptions:
    return StatsOptions(method="bootstrap", n_boot=n_boot)


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
    of eval.statistics.planner: latent normal model, rounded and clipped to 1..5, sides shuffled)."""
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
    got = screening.wilson_interval(k, n, 0.95)
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
    shares = screening.preference_shares(_hand_table(), [BASE, FAST, ANCHOR])
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
    flags = {s.listener_id: s.flags for s in screening.screen_listeners(_table(rows), BASE, ANCHOR)}
    assert flags["ok"] == ()
    assert flags["flat"] == (screening.FLAG_CONSTANT_SCORES,)
    assert flags["odd"] == (screening.FLAG_ANCHOR_ABOVE_BASELINE,)  # anchor mean 3.33 > baseline mean 2
    assert flags["brief"] == (screening.FLAG_TOO_FEW_JUDGEMENTS,)
    odd = next(s for s in screening.screen_listeners(_table(rows), BASE, ANCHOR) if s.listener_id == "odd")
    assert (odd.mean_baseline, odd.mean_anchor) == pytest.approx((2.0, 20 / 6))


def test_noninferiority_with_no_spread_has_exact_bounds():
    # Every judgement identical: every bootstrap replicate gives the same ratio.
    equal = _table([_row(f"L{i}", f"T{j}", FAST, BASE, 4, 4) for i in range(5) for j in range(5)])
    worse = _table([_row(f"L{i}", f"T{j}", BASE, FAST, 4, 3) for i in range(5) for j in range(5)])
    rng = np.random.default_rng(0)
    ok = stats.compare_to_baseline(equal, FAST, BASE, boot(200), rng)
    assert (ok.comparison, ok.verdict, ok.ratio_lower, ok.d_lower) == (
        "paired",
        "pass",
        1.0,
        pytest.approx(0.2),
    )
    bad = stats.compare_to_baseline(worse, FAST, BASE, boot(200), rng)
    assert (bad.verdict, bad.ratio_lower, bad.d_lower) == ("fail", 0.75, pytest.approx(3 - 0.95 * 4))


def test_insufficient_data_thresholds():
    rng = np.random.default_rng(0)
    few = _table([_row(f"L{i}", f"T{i % 3}", FAST, BASE, 4, 4) for i in range(stats.MIN_JUDGEMENTS - 1)])
    one_listener = _table([_row("solo", f"T{j}", FAST, BASE, 4, 4) for j in range(20)])
    for table in (few, one_listener):
        result = stats.compare_to_baseline(table, FAST, BASE, boot(200), rng)
        assert result.verdict == stats.VERDICT_INSUFFICIENT
        assert np.isnan(result.ratio_lower) and result.reason


@pytest.mark.parametrize("method", CI_METHODS)
def test_unpaired_comparison_when_never_rated_together(method):
    rows = [_row(f"L{i}", f"T{j}", BASE, ANCHOR, 4, 2) for i in range(5) for j in range(5)]
    rows += [_row(f"L{i}", f"T{j}", FAST, ANCHOR, 4, 2) for i in range(5) for j in range(5)]
    result = stats.compare_to_baseline(
        _table(rows), FAST, BASE, StatsOptions(method=method, n_boot=200), np.random.default_rng(0)
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
        r = stats.compare_to_baseline(log, FAST, BASE, DEFAULT)
        assert (r.ratio_lower > 0.95) == (r.d_lower > 0)
        assert r.ratio_lower <= r.ratio


def test_results_are_reproducible_per_seed():
    log = simulate_log(10, 8, mu_base=3.6, mu_v=3.5, listener_sd=0.5, text_sd=0.3, residual_sd=0.6, seed=1)

    def bound(seed):
        rng = stats.derived_rng(seed, "ni", FAST)
        return stats.compare_to_baseline(log, FAST, BASE, boot(300), rng).ratio_lower

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
        components, base_mos=3.5, true_drop=0.02, options=StatsOptions(n_boot=400), target_power=0.9, n_sims=60
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
                DEFAULT,
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
        n_listeners=12,
        n_texts=10,
        options=boot(300),
        n_sims=80,
    )
    assert power <= 0.08


# ---------------------------------------------------------------- analytic two-way variance (CGM)


def _crossed(n_l: int, n_t: int) -> tuple[np.ndarray, np.ndarray]:
    """Listener and text codes of a balanced design, every listener x text once: (L*T,) each."""
    return np.repeat(np.arange(n_l), n_t), np.tile(np.arange(n_t), n_l)


def test_one_way_parts_match_textbook_variances_of_a_mean():
    # Singleton clusters give s^2 / N; balanced clusters give the variance of the cluster means / G.
    rng = np.random.default_rng(5)
    listener, text = _crossed(6, 4)
    y = rng.normal(3.0, 1.0, listener.size)
    var = cgm.two_way_variance(cgm.mean_influence(y), listener, text)
    assert var.v_cell == pytest.approx(y.var(ddof=1) / y.size, rel=1e-12)
    by_listener = y.reshape(6, 4).mean(axis=1)
    by_text = y.reshape(6, 4).mean(axis=0)
    assert var.v_listener == pytest.approx(by_listener.var(ddof=1) / 6, rel=1e-12)
    assert var.v_text == pytest.approx(by_text.var(ddof=1) / 4, rel=1e-12)
    expected = var.v_listener + var.v_text - var.v_cell
    assert var.variance == pytest.approx(expected if expected > 0 else max(var.v_listener, var.v_text))
    # Satterthwaite: each part a scaled chi^2 with (clusters - 1) df; 6 listeners, 4 texts, 24 cells,
    # clamped to [1 / (1/5 + 1/3), 3] = [1.875, 3].
    satt = var.variance**2 / (var.v_listener**2 / 5 + var.v_text**2 / 3 + var.v_cell**2 / 23)
    assert var.df == pytest.approx(min(max(satt, 1.875), 3.0), rel=1e-12)


@pytest.mark.parametrize(
    ("spread", "expected_df"),
    [((2.0, 0.05), 11.0), ((0.0, 0.0), 1 / (1 / 11 + 1 / 9))],
)
def test_cgm_df_follows_the_dominant_part(spread, expected_df):
    # Listener spread dominant: df -> L - 1 = 11, capped at min(L, T) - 1 = 9; a residual only gives
    # two noisy parts of equal size and the harmonic-type 1 / (1/(L-1) + 1/(T-1)) floor.
    rng = np.random.default_rng(8)
    listener, text = _crossed(12, 10)
    dfs = []
    for _ in range(50):
        y = rng.normal(0, spread[0], 12)[listener] + rng.normal(0, spread[1], 10)[text]
        y += rng.normal(0, 0.2, listener.size)
        dfs.append(cgm.two_way_variance(cgm.mean_influence(y), listener, text).df)
    assert np.median(dfs) == pytest.approx(min(expected_df, 9.0), abs=0.3)


def test_cgm_one_sided_level_with_only_a_residual():
    # The case where df = min(L, T) - 1 was liberal (6.2% at nominal 5%, 12 x 10); this rule: 4.8%
    # in 20 000 simulations. 4000 here: Monte Carlo standard error 0.35 points.
    rng = np.random.default_rng(31)
    listener, text = _crossed(12, 10)
    y = rng.normal(0.0, 1.0, (4000, listener.size))
    rejected = 0
    for row in y:
        var = cgm.two_way_variance(cgm.mean_influence(row), listener, text)
        rejected += row.mean() - cgm.t_quantile(0.95, var.df) * var.se > 0.0
    assert rejected / len(y) <= 0.06


def test_cgm_variance_is_unbiased_with_only_a_residual():
    # sigma^2 / N is the true variance of the mean; the bootstrap would give about 3 sigma^2 / N.
    rng = np.random.default_rng(11)
    n_l, n_t, sigma, sims = 12, 10, 0.8, 2000
    listener, text = _crossed(n_l, n_t)
    y = rng.normal(0.0, sigma, (sims, n_l * n_t))
    variances = [cgm.two_way_variance(cgm.mean_influence(row), listener, text).variance for row in y]
    empirical = y.mean(axis=1).var(ddof=1)
    assert np.mean(variances) / empirical == pytest.approx(1.0, abs=0.15)
    assert np.mean(variances) / (sigma**2 / y.shape[1]) == pytest.approx(1.0, abs=0.15)


def test_cgm_interval_covers_with_listener_and_text_effects():
    rng = np.random.default_rng(21)
    n_l, n_t, sims, covered = 15, 12, 400, 0
    listener, text = _crossed(n_l, n_t)
    for _ in range(sims):
        y = (
            3.5
            + rng.normal(0, 0.6, n_l)[listener]
            + rng.normal(0, 0.4, n_t)[text]
            + rng.normal(0, 0.5, n_l * n_t)
        )
        ci = stats.cgm_mean(y, listener, text)
        covered += ci.low <= 3.5 <= ci.high
    assert 0.92 <= covered / sims <= 0.98


def test_cgm_interval_is_wider_than_naive_with_strong_listener_effects():
    rng = np.random.default_rng(2)
    listener, text = _crossed(10, 8)
    for _ in range(5):
        y = 3.0 + rng.normal(0, 1.0, 10)[listener] + rng.normal(0, 0.3, listener.size)
        ci, naive = stats.cgm_mean(y, listener, text), stats.naive_t_interval(y)
        assert ci.estimate == pytest.approx(y.mean())
        assert ci.high - ci.low > 1.5 * (naive.high - naive.low)


@pytest.mark.parametrize("paired", [True, False])
def test_cgm_noninferiority_bound_is_d_bound_on_the_ratio_scale(paired):
    log = simulate_log(8, 11, mu_base=3.6, mu_v=3.5, listener_sd=0.5, text_sd=0.3, residual_sd=0.6, seed=4)
    pairs = stats.paired_scores(log, FAST, BASE)
    # Unpaired: v from the even judgements, the baseline from the odd ones.
    rows_v, rows_b = (pairs, pairs) if paired else (pairs.iloc[::2], pairs.iloc[1::2])
    v = (rows_v["score_v"].to_numpy(), rows_v["listener_id"].to_numpy(), rows_v["text_id"].to_numpy())
    b = (rows_b["score_base"].to_numpy(), rows_b["listener_id"].to_numpy(), rows_b["text_id"].to_numpy())
    r = stats.noninferiority_test(v, b, paired=paired, options=StatsOptions(method="cgm"))
    mean_v, mean_b = np.mean(v[0]), np.mean(b[0])
    assert r.method == "cgm" and r.d_mean == pytest.approx(mean_v - 0.95 * mean_b)
    assert r.ratio_lower == pytest.approx(0.95 + r.d_lower / mean_b, rel=1e-12)
    assert r.d_lower < r.d_mean and r.ratio_lower < r.ratio
    assert (r.ratio_lower > 0.95) == (r.d_lower > 0) == (r.verdict == "pass")


@pytest.mark.parametrize("method", ["cgm", "cluster-t"])
def test_cgm_with_no_spread_has_exact_bounds(method):
    equal = _table([_row(f"L{i}", f"T{j}", FAST, BASE, 4, 4) for i in range(5) for j in range(5)])
    worse = _table([_row(f"L{i}", f"T{j}", BASE, FAST, 4, 3) for i in range(5) for j in range(5)])
    ok = stats.compare_to_baseline(equal, FAST, BASE, StatsOptions(method=method))
    assert (ok.verdict, ok.ratio_lower, ok.d_lower) == ("pass", pytest.approx(1.0), pytest.approx(0.2))
    bad = stats.compare_to_baseline(worse, FAST, BASE, StatsOptions(method=method))
    assert (bad.verdict, bad.ratio_lower, bad.d_lower) == ("fail", pytest.approx(0.75), pytest.approx(-0.8))


def test_cgm_planner_needs_fewer_judgements_and_its_size_decides():
    """The seed's acceptance check with method="cgm": fewer judgements than the bootstrap, and at the
    planned size a 2% drop passes and a 10% drop fails in >= 8 of 10 simulated logs."""
    spread = {"listener_sd": 0.4, "text_sd": 0.3, "residual_sd": 0.5}
    components = planner.VarianceComponents(**spread)
    args = {"base_mos": 3.5, "true_drop": 0.02, "target_power": 0.9, "n_sims": 60}
    by_bootstrap = planner.plan_sample_size(components, options=boot(400), **args)
    plan = planner.plan_sample_size(components, options=StatsOptions(method="cgm"), **args)
    assert plan.recommended is not None and by_bootstrap.recommended is not None
    assert plan.recommended.n_judgements < by_bootstrap.recommended.n_judgements
    n_l, n_t = plan.recommended.n_listeners, plan.recommended.n_texts
    verdicts = {}
    for drop in (0.02, 0.10):
        verdicts[drop] = [
            stats.compare_to_baseline(
                simulate_log(n_l, n_t, mu_base=3.5, mu_v=3.5 * (1 - drop), **spread, seed=100 + k),
                FAST,
                BASE,
                StatsOptions(method="cgm"),
            ).verdict
            for k in range(10)
        ]
    assert verdicts[0.02].count("pass") >= 8, verdicts
    assert verdicts[0.10].count("fail") >= 8, verdicts


def test_cgm_test_holds_its_level_at_the_margin():
    power = planner.simulate_power(
        planner.VarianceComponents(0.4, 0.3, 0.5),
        base_mos=3.5,
        true_drop=0.05,
        n_listeners=12,
        n_texts=10,
        options=StatsOptions(method="cgm"),
        n_sims=1000,
    )
    # Level about 5.0% (10 000 simulations, two seeds: 4.9%, 5.1%); this seed's 1000 give 5.7%
    # (Monte Carlo standard error 0.7 points) and the old df = min(L, T) - 1 gave 7.1% on them.
    assert power <= 0.065


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="seed"):
        stats.derived_rng(-1)
    with pytest.raises(ValueError, match="n_boot"):
        StatsOptions(n_boot=10)
    with pytest.raises(ValueError, match="margin"):
        StatsOptions(margin=1.5)
    with pytest.raises(ValueError, match="confidence"):
        StatsOptions(confidence=1.0)
    with pytest.raises(ValueError, match="seed"):
        StatsOptions(seed=-2)
    with pytest.raises(ValueError, match="residual_sd"):
        planner.VarianceComponents(0.1, 0.1, 0.0)
    with pytest.raises(ValueError, match="not within the margin"):
        planner.plan_sample_size(planner.VarianceComponents(0.1, 0.1, 0.5), true_drop=0.06)
    with pytest.raises(ValueError, match="method"):
        StatsOptions(method="jackknife")
    with pytest.raises(ValueError, match="rng"):
        stats.noninferiority_test(([1.0], [0], [0]), ([1.0], [0], [0]), paired=True, options=boot(200))
