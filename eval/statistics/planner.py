"""Sample-size planner: how many listeners x texts decide "within 5%" with the wanted power.

The model of a paired judgement is eval/statistics/listening_model.py's: listener, text, listener x
configuration (``listener_drop_sd``: listeners differ in how much they hear the degradation),
text x configuration (``text_drop_sd``) and residual effects on a latent scale, rounded and
clipped to the 1..5 buttons, with the latent means chosen so that the EXPECTED observed MOS is
``base_mos`` and ``(1 - true_drop) * base_mos``. Each listener judges every text once.

The listener x configuration spread is the variance that matters: the paired difference cancels
each listener's and text's offset, but not how much a listener hears the degradation, so that
spread divided by the number of listeners dominates the error of the verdict when listeners are
few. Give it (``--listener-drop-sd``; 0.3 by default, a prudent guess without a pilot) or let
``--pilot`` estimate every component from a pilot ratings log.

Power is the share of simulated tests that pass, where the test is exactly
:func:`eval.statistics.stats.noninferiority_test` with the chosen ``method`` (default: the report's, "cluster-t";
the analytic methods are simulated for all tests at once through eval/statistics/cluster_t.py, the bootstrap
one test at a time). A normal approximation ranks the candidate designs first, so that only a few
of them are simulated. Designs below the verdict's minimum (eval.statistics.stats.min_clusters_for_verdict)
are never recommended: their verdict is "insufficient". The recommended sizes were checked by
an independent simulation (python -m eval.statistics.simulate_verdict --planner-check; docs/verdict-validation.md).

Command line (spread given directly or estimated from a pilot ratings log)::

    python -m eval.statistics.planner --listener-sd 0.5 --text-sd 0.3 --residual-sd 0.7 --listener-drop-sd 0.3 --drop 0.02 --power 0.8
    python -m eval.statistics.planner --pilot pilot.csv --base-mos 4.1 --drop 0.02 [--method cgm]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from eval.statistics import cluster_t, stats, verdict_bounds, working_model
from eval.statistics.listening_model import (  # noqa: F401  (expected_discrete_mos, latent_mean_for: planner API)
    PairedDesign,
    VarianceComponents,
    expected_discrete_mos,
    latent_mean_for,
    simulate_tests,
)
from eval.statistics.options import (
    CI_METHODS,
    DEFAULT_MARGIN,
    DEFAULT_METHOD,
    StatsOptions,
)
from eval.statistics.ratings_io import SCORE_MAX, SCORE_MIN

DEFAULT_LISTENER_GRID: tuple[int, ...] = (5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
DEFAULT_TEXT_GRID: tuple[int, ...] = (10, 15, 20, 30, 40, 60)
DEFAULT_N_SIMS = 1000  # simulated listening tests per evaluated design (MC error +-0.013 at 80%)
DEFAULT_LISTENER_DROP_SD = 0.3  # CLI default without a pilot: listeners do differ in what they hear
PLANNER_N_BOOT = 500  # replicates per simulated test: power needs many tests more than exact bounds
PLANNER_OPTIONS = StatsOptions(n_boot=PLANNER_N_BOOT)  # the report's test, fewer bootstrap replicates
MAX_SIMULATED_DESIGNS = 40  # stop simulating after this many candidate designs (analytic tests)
MAX_SIMULATED_BOOTSTRAP = 8  # the same for the bootstrap, whose simulations are slow
# A design is recommended when its simulated power is this many Monte Carlo standard errors above
# the target: the first design to cross the target is, by chance, often one just below it.
POWER_SAFETY_SE = 1.0
APPROX_SLACK = 0.15  # simulate designs whose approximate power is within this of the target
ROUNDING_VARIANCE = 1.0 / 12.0  # variance added by rounding a continuous score to an integer
# The pigeonhole bootstrap counts the residual variance about three times (eval/statistics/stats.py).
BOOTSTRAP_RESIDUAL_FACTOR = 3.0
BACKFIT_ITERATIONS = 50
SIM_CHUNK = 2000  # simulated tests per batch (memory: SIM_CHUNK x judgements floats)


@dataclass(frozen=True)
class DesignPower:
    """Power of the non-inferiority test for one design (n_listeners x n_texts judgements)."""

    n_listeners: int
    n_texts: int
    n_judgements: int
    power_approx: float  # normal approximation
    power: float  # simulated share of passing tests (NaN when not simulated)
    n_sims: int


@dataclass(frozen=True)
class SampleSizePlan:
    """The smallest evaluated design (in judgements) whose simulated power reaches the target."""

    components: VarianceComponents
    base_mos: float
    true_drop: float
    options: StatsOptions  # the test whose power was simulated (margin, method, confidence)
    target_power: float
    recommended: DesignPower | None  # None when no design of the grid reached the target
    evaluated: tuple[DesignPower, ...]


def _check_plan_args(base_mos: float, true_drop: float) -> None:
    if not 0.0 <= true_drop < 1.0:
        raise ValueError(f"true_drop must be in [0, 1), got {true_drop}")
    if not (base_mos * (1 - true_drop) > SCORE_MIN and base_mos < SCORE_MAX):
        raise ValueError(f"base_mos and the dropped MOS must lie in ({SCORE_MIN}, {SCORE_MAX})")


def approx_power(
    components: VarianceComponents,
    *,
    base_mos: float,
    true_drop: float,
    n_listeners: int,
    n_texts: int,
    options: StatsOptions = PLANNER_OPTIONS,
    discrete: bool = True,
) -> float:
    """Normal approximation of the power of the test (ignores clipping and skewness).

    With k = 1 - m, D = score_v - k * score_base has listener variance m^2 sl^2 + sd_l^2, text
    variance m^2 st^2 + sd_t^2 (sd_l, sd_t: the drop spreads) and residual variance
    (1 + k^2) se^2. The estimate's spread is the true one; the test's spread is that of the
    bootstrap (residual counted BOOTSTRAP_RESIDUAL_FACTOR times, normal quantile) or, for the
    analytic methods, the true one with the t quantile of the clamped Satterthwaite df that the
    expected one-way parts give (eval/statistics/cgm.py).
    """
    margin, confidence = options.margin, options.confidence
    if stats.insufficient_reason(n_listeners * n_texts, n_listeners, n_texts, confidence):
        return 0.0
    c, k, n = components, 1.0 - margin, n_listeners * n_texts
    resid = (1 + k**2) * (c.residual_sd**2 + (ROUNDING_VARIANCE if discrete else 0.0)) / n
    part_l = (margin**2 * c.listener_sd**2 + c.listener_drop_sd**2) / n_listeners
    part_t = (margin**2 * c.text_sd**2 + c.text_drop_sd**2) / n_texts
    var_true = part_l + part_t + resid
    mean_d = base_mos * (margin - true_drop)
    if options.method in stats.ANALYTIC_RULES:
        var_test = var_true
        spread = (part_l + resid) ** 2 / (n_listeners - 1) + (part_t + resid) ** 2 / (n_texts - 1)
        spread += resid**2 / (n - 1)
        df = cluster_t.satterthwaite_df(np.array([var_true]), np.array([spread]), n_listeners, n_texts)[0]
        quantile = sps.t.ppf(confidence, df)
    else:
        var_test = part_l + part_t + BOOTSTRAP_RESIDUAL_FACTOR * resid
        quantile = sps.norm.ppf(confidence)
    return float(sps.norm.cdf((mean_d - quantile * math.sqrt(var_test)) / math.sqrt(var_true)))


def simulate_power(
    components: VarianceComponents,
    *,
    base_mos: float,
    true_drop: float,
    n_listeners: int,
    n_texts: int,
    options: StatsOptions = PLANNER_OPTIONS,
    n_sims: int = DEFAULT_N_SIMS,
    discrete: bool = True,
) -> float:
    """Share of ``n_sims`` simulated balanced tests (eval/statistics/listening_model.py) whose verdict is "pass".

    The test is ``options``'s (margin, method, confidence; ``options.seed`` seeds the simulation).
    0.0 for a design below the verdict's minimum (its verdict is "insufficient").
    """
    _check_plan_args(base_mos, true_drop)
    rng = stats.derived_rng(options.seed, "power", f"{n_listeners}x{n_texts}")
    design = PairedDesign.balanced(n_listeners, n_texts)
    if stats.insufficient_reason(design.n_judgements, n_listeners, n_texts, options.confidence):
        return 0.0
    rule = stats.ANALYTIC_RULES.get(options.method)
    if rule is not None:
        est = cluster_t.LinearEstimator.contrast(
            cluster_t.ClusterDesign.paired(design.listener, design.text), design.n_judgements, options.keep
        )
        traces = working_model.working_traces(est) if rule.small_sample else None
    passes = 0
    for start in range(0, n_sims, SIM_CHUNK):
        y_v, y_b = simulate_tests(
            components,
            design,
            base_mos=base_mos,
            true_drop=true_drop,
            n_tests=min(SIM_CHUNK, n_sims - start),
            rng=rng,
            discrete=discrete,
        )
        if rule is not None:
            bounds = verdict_bounds.ratio_lower_bounds(
                y_v, y_b, est, keep=options.keep, confidence=options.confidence, rule=rule, traces=traces
            )
            passes += int(bounds.passed.sum())
            continue
        for one_v, one_b in zip(y_v, y_b):
            result = stats.noninferiority_test(
                (one_v, design.listener, design.text),
                (one_b, design.listener, design.text),
                paired=True,
                options=options,
                rng=rng,
            )
            passes += result.verdict == stats.VERDICT_PASS
    return passes / n_sims


def plan_sample_size(
    components: VarianceComponents,
    *,
    base_mos: float = 4.0,
    true_drop: float = 0.02,
    options: StatsOptions = PLANNER_OPTIONS,
    target_power: float = 0.8,
    listener_grid: tuple[int, ...] = DEFAULT_LISTENER_GRID,
    text_grid: tuple[int, ...] = DEFAULT_TEXT_GRID,
    n_sims: int = DEFAULT_N_SIMS,
    discrete: bool = True,
) -> SampleSizePlan:
    """Walk the listener x text grid from the fewest judgements up; simulate promising designs.

    A design is simulated when its approximate power is within APPROX_SLACK of the target; the
    first whose simulated power is POWER_SAFETY_SE Monte Carlo standard errors above
    ``target_power`` is recommended. At most MAX_SIMULATED_DESIGNS (bootstrap:
    MAX_SIMULATED_BOOTSTRAP) designs are simulated. ``options`` is the test's (margin, method,
    confidence; ``n_boot`` is used by the bootstrap only). NOTE: a simulated power carries Monte
    Carlo error of about sqrt(p (1 - p) / n_sims) (+-0.013 at 1000 simulations near p = 0.8).
    """
    _check_plan_args(base_mos, true_drop)
    if not 0.0 < target_power < 1.0:
        raise ValueError(f"target_power must be in (0, 1), got {target_power}")
    if true_drop >= options.margin:
        raise ValueError(
            f"a true drop of {true_drop} is not within the margin {options.margin}: no design can pass"
        )
    designs = sorted(
        ((nl, nt) for nl in listener_grid for nt in text_grid), key=lambda d: (d[0] * d[1], d[0])
    )
    evaluated: list[DesignPower] = []
    recommended = None
    n_simulated = 0
    max_simulated = MAX_SIMULATED_BOOTSTRAP if options.uses_bootstrap else MAX_SIMULATED_DESIGNS
    for n_l, n_t in designs:
        sizes = {"base_mos": base_mos, "true_drop": true_drop, "n_listeners": n_l, "n_texts": n_t}
        approx = approx_power(components, **sizes, options=options, discrete=discrete)
        power = float("nan")
        if approx >= target_power - APPROX_SLACK and n_simulated < max_simulated:
            n_simulated += 1
            power = simulate_power(components, **sizes, options=options, n_sims=n_sims, discrete=discrete)
        design = DesignPower(n_l, n_t, n_l * n_t, approx, power, n_sims if math.isfinite(power) else 0)
        evaluated.append(design)
        if power - POWER_SAFETY_SE * math.sqrt(power * (1 - power) / n_sims) >= target_power:
            recommended = design
            break
    return SampleSizePlan(components, base_mos, true_drop, options, target_power, recommended, tuple(evaluated))


def _one_way_between(values: np.ndarray, groups: np.ndarray) -> float:
    """Moment (ANOVA) estimate of the between-group variance of a one-way random effects model."""
    frame = pd.DataFrame({"y": values, "g": groups})
    sizes = frame.groupby("g")["y"].size().to_numpy()
    k, n = sizes.size, values.size
    if k < 2 or n <= k:
        return 0.0
    means = frame.groupby("g")["y"].transform("mean").to_numpy()
    ms_within = float(((values - means) ** 2).sum() / (n - k))
    ms_between = float(((means - values.mean()) ** 2).sum() / (k - 1))
    n0 = (n - (sizes**2).sum() / n) / (k - 1)
    return max(0.0, (ms_between - ms_within) / n0)


def estimate_components(ratings: pd.DataFrame) -> VarianceComponents:
    """Rough moment estimates of the variance components from a (pilot) ratings table.

    Scores are centred per configuration; listener and text offsets are fitted by backfitting an
    additive model; their variances are corrected for the noise in the fitted offsets
    (var(a_hat) - residual_var * mean(1 / n_l)). ``listener_drop_sd`` is the one-way ANOVA estimate
    of the listener spread of the within-judgement difference (score of one configuration minus
    the other, centred per configuration pair), ``text_drop_sd`` the same by text. NOTE: from a
    pilot of a few listeners the listener drop spread is itself very uncertain (its estimate has
    listeners - 1 degrees of freedom); plan with a larger value when in doubt. Estimates are on the observed integer scale, so
    the residual already contains rounding noise.
    """
    scores = stats.long_scores(ratings)
    r = (scores["score"] - scores.groupby("config")["score"].transform("mean")).to_numpy()
    listener, _ = pd.factorize(scores["listener_id"])
    text, _ = pd.factorize(scores["text_id"])
    n_l, n_t = np.bincount(listener), np.bincount(text)
    a, b = np.zeros(n_l.size), np.zeros(n_t.size)
    for _ in range(BACKFIT_ITERATIONS):
        a = np.bincount(listener, weights=r - b[text]) / n_l
        b = np.bincount(text, weights=r - a[listener]) / n_t
    resid = r - a[listener] - b[text]
    dof = max(1, r.size - n_l.size - n_t.size + 1)
    var_e = float((resid**2).sum() / dof)
    var_l = max(0.0, float(np.var(a, ddof=1)) - var_e * float(np.mean(1.0 / n_l))) if n_l.size > 1 else 0.0
    var_t = max(0.0, float(np.var(b, ddof=1)) - var_e * float(np.mean(1.0 / n_t))) if n_t.size > 1 else 0.0

    mixed = ratings.loc[ratings["a_config"] != ratings["b_config"]]
    a_first = (mixed["a_config"] < mixed["b_config"]).to_numpy()
    diff = np.where(a_first, 1.0, -1.0) * (mixed["score_a"] - mixed["score_b"]).to_numpy(dtype=float)
    pair = np.where(
        a_first, mixed["a_config"] + "|" + mixed["b_config"], mixed["b_config"] + "|" + mixed["a_config"]
    )
    diff = diff - pd.Series(diff).groupby(pair).transform("mean").to_numpy()
    var_s = _one_way_between(diff, mixed["listener_id"].to_numpy()) if diff.size else 0.0
    var_c = _one_way_between(diff, mixed["text_id"].to_numpy()) if diff.size else 0.0
    return VarianceComponents(
        math.sqrt(var_l), math.sqrt(var_t), math.sqrt(max(var_e, 1e-12)), math.sqrt(var_s), math.sqrt(var_c)
    )


def format_plan(plan: SampleSizePlan) -> str:
    c = plan.components
    lines = [
        f"spread: listener sd {c.listener_sd:.3f}, text sd {c.text_sd:.3f}, residual sd {c.residual_sd:.3f}, "
        f"listener drop sd {c.listener_drop_sd:.3f}, text drop sd {c.text_drop_sd:.3f}; base MOS {plan.base_mos}, true drop {plan.true_drop:.1%}, "
        f"margin {plan.options.margin:.1%}, target power {plan.target_power:.0%}; test: {plan.options.method}",
        f"{'listeners':>9} {'texts':>5} {'judgements':>10} {'approx':>7} {'simulated':>9}",
    ]
    for d in plan.evaluated:
        if d.n_sims:
            lines.append(
                f"{d.n_listeners:>9} {d.n_texts:>5} {d.n_judgements:>10} {d.power_approx:>7.2f} {d.power:>9.2f}"
            )
    r = plan.recommended
    lines.append(
        f"recommended: {r.n_listeners} listeners x {r.n_texts} texts ({r.n_judgements} paired judgements)"
        if r
        else "no design of the grid reached the target power; widen --listeners/--texts"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.statistics.planner", description=__doc__.split("\n")[0])
    parser.add_argument("--pilot", default=None, help="pilot ratings log CSV to estimate the spread from")
    for name, default in (
        ("listener-sd", 0.5),
        ("text-sd", 0.3),
        ("residual-sd", 0.7),
        ("listener-drop-sd", DEFAULT_LISTENER_DROP_SD),
        ("text-drop-sd", 0.0),
    ):
        parser.add_argument(
            f"--{name}", type=float, default=default, help=f"score points (default {default}; ignored with --pilot)"
        )
    parser.add_argument("--base-mos", type=float, default=4.0, help="expected MOS of the baseline")
    parser.add_argument(
        "--drop", type=float, default=0.02, help="true relative drop to detect as non-inferior"
    )
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="relative non-inferiority margin")
    parser.add_argument("--power", type=float, default=0.8, help="target power")
    parser.add_argument("--listeners", type=int, nargs="+", default=list(DEFAULT_LISTENER_GRID))
    parser.add_argument("--texts", type=int, nargs="+", default=list(DEFAULT_TEXT_GRID))
    parser.add_argument("--sims", type=int, default=DEFAULT_N_SIMS, help="simulated tests per design")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--method",
        choices=CI_METHODS,
        default=DEFAULT_METHOD,
        help="the test to plan for (default: the report's, cluster-t); see python -m eval.statistics.report --help",
    )
    args = parser.parse_args(argv)
    try:
        if args.pilot:
            from eval.statistics.ratings_io import read_ratings

            components = estimate_components(read_ratings(args.pilot))
        else:
            components = VarianceComponents(
                args.listener_sd, args.text_sd, args.residual_sd, args.listener_drop_sd, args.text_drop_sd
            )
        options = StatsOptions(margin=args.margin, method=args.method, n_boot=PLANNER_N_BOOT, seed=args.seed)
        plan = plan_sample_size(
            components,
            base_mos=args.base_mos,
            true_drop=args.drop,
            options=options,
            target_power=args.power,
            listener_grid=tuple(args.listeners),
            text_grid=tuple(args.texts),
            n_sims=args.sims,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_plan(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
