"""Seeded Monte Carlo of the verdict: one-sided level at the margin, MOS coverage, power.

    python -m eval.statistics.simulate_verdict --replicates 10000 --seed 0 --designs all \\
        --methods cluster-t cgm bootstrap --bootstrap-replicates 2000 \\
        --planner-check --json docs/verdict-validation.json --markdown TABLES.md

For every design (eval/statistics/listening_model.py: latent normal listener, text, listener x configuration,
text x configuration and residual effects, rounded and clipped to 1..5) it simulates R paired
tests at a true drop equal to the margin (the boundary of the null hypothesis) and reports, per
method, the share of "pass" verdicts (the one-sided level; Clopper-Pearson 95% interval), the
coverage of the baseline's and the tested configuration's MOS intervals, and the power at true
drops of 0% and 2%. The analytic methods run on all R tests at once through eval/statistics/verdict_bounds.py,
the arithmetic that eval.statistics.stats (and so eval.statistics.report and the Results tab) uses; the bootstrap runs
eval.statistics.stats.noninferiority_test one test at a time on the first ``--bootstrap-replicates`` tests.
Every method sees the same simulated tests. ``--planner-check`` also plans sample sizes with
eval.statistics.planner and simulates the recommended designs (power at the planned drop, level at the margin).
``--ignore-minimum`` shows what the minimum of 5 listeners and texts prevents. This is a
measurement, not a unit test: tests/eval/statistics/test_verdict.py runs a reduced version; the results are in
docs/verdict-validation.md (about a minute for the analytic methods, half an hour with the bootstrap).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

from scipy import stats as sps

from eval.statistics import cluster_t, planner, stats, verdict_bounds, working_model
from eval.statistics.listening_model import PairedDesign, simulate_tests
from eval.statistics.options import (
    CI_METHODS,
    CONFIDENCE,
    DEFAULT_MARGIN,
    DEFAULT_METHOD,
    METHOD_BOOTSTRAP,
    StatsOptions,
)
from eval.statistics.verdict_designs import (
    GROUPS,
    PLANNER_SCENARIOS,
    DesignSpec,
    select_designs,
)

DEFAULT_REPLICATES = 10_000
DEFAULT_BOOTSTRAP_REPLICATES = 2_000
SIM_N_BOOT = 1_000  # bootstrap replicates inside each simulated test (the report uses 2000)
POWER_SHARE = 0.25  # power is simulated with this share of --replicates
POWER_DROPS = (0.0, 0.02)
MARGIN = DEFAULT_MARGIN
BOOTSTRAP_OPTIONS = StatsOptions(margin=MARGIN, method=METHOD_BOOTSTRAP, n_boot=SIM_N_BOOT)
CHUNK = 2_000  # simulated tests per batch (memory: CHUNK x judgements floats)


@dataclass(frozen=True)
class SimulationOptions:
    """What one run simulates (validated here, passed down)."""

    replicates: int = DEFAULT_REPLICATES  # simulated tests per design for level and coverage
    bootstrap_replicates: int = DEFAULT_BOOTSTRAP_REPLICATES  # the same for the (slow) bootstrap
    seed: int = 0
    enforce_minimum: bool = True  # False: verdicts below stats.min_clusters_for_verdict too

    def __post_init__(self) -> None:
        for name in ("replicates", "bootstrap_replicates"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        stats.derived_rng(self.seed)  # validates the seed

    def tests_for(self, method: str) -> int:
        return self.bootstrap_replicates if method == METHOD_BOOTSTRAP else self.replicates


@dataclass(frozen=True)
class Rate:
    """A share of k successes in n tests with its Clopper-Pearson 95% interval (NaN when n = 0)."""

    k: int
    n: int
    share: float
    low: float
    high: float

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        if n == 0:
            return cls(0, 0, float("nan"), float("nan"), float("nan"))
        ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="exact")
        return cls(int(k), int(n), k / n, float(ci.low), float(ci.high))


@dataclass(frozen=True)
class MethodResult:
    """One method on one design."""

    design: str
    group: str
    method: str
    n_listeners: int
    n_texts: int
    n_judgements: int
    insufficient_reason: str  # the verdict's reason when the design is too small, else ""
    level: Rate  # pass share at a true drop = margin
    coverage_base: Rate  # the baseline's MOS interval covers its true MOS
    coverage_v: Rate  # the tested configuration's MOS interval covers its true MOS
    mean_half_width: float  # of the baseline's MOS interval
    power: dict[str, Rate]  # true drop (e.g. "0.02") -> pass share


def _chunks(n: int) -> list[int]:
    return [min(CHUNK, n - start) for start in range(0, n, CHUNK)]


@dataclass
class _Tally:
    passed: int = 0
    cover_b: int = 0
    cover_v: int = 0
    half_width: float = 0.0
    n_intervals: int = 0


@dataclass(frozen=True, eq=False)
class DesignEstimators:
    """The report's two estimators on one design, with their working-model traces."""

    mos: cluster_t.LinearEstimator  # a configuration's MOS over the design's judgements
    contrast: cluster_t.LinearEstimator  # mean_v - (1 - margin) * mean_base, paired
    mos_traces: working_model.WorkingTraces | None
    contrast_traces: working_model.WorkingTraces | None

    @classmethod
    def build(cls, design: PairedDesign, rule: verdict_bounds.BoundRule) -> DesignEstimators:
        single = cluster_t.ClusterDesign.from_codes(design.listener, design.text)
        paired = cluster_t.ClusterDesign.paired(design.listener, design.text)
        mos = cluster_t.LinearEstimator.mean(single)
        contrast = cluster_t.LinearEstimator.contrast(paired, design.n_judgements, 1 - MARGIN)
        if not rule.small_sample or min(single.n_listeners, single.n_texts) < cluster_t.MIN_VARIANCE_CLUSTERS:
            return cls(mos, contrast, None, None)
        return cls(mos, contrast, working_model.working_traces(mos), working_model.working_traces(contrast))


def _analytic_chunk(
    method,
    y_v,
    y_b,
    est: DesignEstimators,
    mos: tuple[float, float],
    tally: _Tally,
    verdict_ok: bool,
    min_interval_clusters: int,
):
    """Add one batch (R, N) of simulated tests to the tally, through eval.statistics.verdict_bounds."""
    rule = stats.ANALYTIC_RULES[method]
    if verdict_ok:
        bounds = verdict_bounds.ratio_lower_bounds(
            y_v,
            y_b,
            est.contrast,
            keep=1 - MARGIN,
            confidence=CONFIDENCE,
            rule=rule,
            traces=est.contrast_traces,
        )
        tally.passed += int(bounds.passed.sum())
    design = est.mos.design
    if min(design.n_listeners, design.n_texts) >= min_interval_clusters:
        for y, truth, attr in ((y_b, mos[0], "cover_b"), (y_v, mos[1], "cover_v")):
            _, low, high = verdict_bounds.mean_intervals(y, est.mos, CONFIDENCE, rule, est.mos_traces)
            setattr(tally, attr, getattr(tally, attr) + int(((low <= truth) & (truth <= high)).sum()))
            if attr == "cover_b":
                tally.half_width += float(((high - low) / 2).sum())
        tally.n_intervals += y_v.shape[0]


def _bootstrap_chunk(
    y_v, y_b, design: PairedDesign, mos, tally: _Tally, verdict_ok: bool, seed: int, start: int
):
    """Add a batch to the tally by running eval.statistics.stats one simulated test at a time."""
    l_ids, t_ids = design.listener, design.text
    for i in range(y_v.shape[0]):
        rng = stats.derived_rng(seed, "bootstrap", str(start + i))
        if verdict_ok:
            result = stats.noninferiority_test(
                (y_v[i], l_ids, t_ids),
                (y_b[i], l_ids, t_ids),
                paired=True,
                options=BOOTSTRAP_OPTIONS,
                rng=rng,
            )
            tally.passed += result.verdict == stats.VERDICT_PASS
        if design.n_listeners < stats.MIN_LISTENERS or design.n_texts < stats.MIN_TEXTS:
            continue  # no MOS interval is shown (eval.statistics.stats)
        for y, truth, attr in ((y_b[i], mos[0], "cover_b"), (y_v[i], mos[1], "cover_v")):
            ci = stats.cluster_bootstrap_mean(y, l_ids, t_ids, rng=rng, n_boot=SIM_N_BOOT)
            setattr(tally, attr, getattr(tally, attr) + int(ci.low <= truth <= ci.high))
            if attr == "cover_b":
                tally.half_width += (ci.high - ci.low) / 2
        tally.n_intervals += 1


def _simulate(
    spec: DesignSpec, design: PairedDesign, method: str, drop: float, n: int, seed: int, enforce_minimum: bool
) -> _Tally:
    """n simulated tests of one design at one true drop, through one method."""
    rng = stats.derived_rng(seed, "tests", spec.name, f"{drop:.4f}")  # the same tests for every method
    mos = (spec.base_mos, spec.base_mos * (1 - drop))
    reason = stats.insufficient_reason(design.n_judgements, design.n_listeners, design.n_texts)
    reason = reason if enforce_minimum or method == METHOD_BOOTSTRAP else ""  # stats enforces it
    tally, start = _Tally(), 0
    rule = stats.ANALYTIC_RULES.get(method)
    estimators = DesignEstimators.build(design, rule) if rule is not None else None
    for size in _chunks(n):
        y_v, y_b = simulate_tests(
            spec.components, design, base_mos=spec.base_mos, true_drop=drop, n_tests=size, rng=rng
        )
        if method == METHOD_BOOTSTRAP:
            _bootstrap_chunk(y_v, y_b, design, mos, tally, not reason, seed, start)
        else:
            # Without the minimum, MOS intervals down to 2 listeners (what eval.statistics.stats does not show).
            min_interval = stats.MIN_LISTENERS if enforce_minimum else cluster_t.MIN_VARIANCE_CLUSTERS
            _analytic_chunk(method, y_v, y_b, estimators, mos, tally, not reason, min_interval)
        start += size
    return tally


def run_design(spec: DesignSpec, method: str, options: SimulationOptions) -> MethodResult:
    """Level and coverage with options.tests_for(method) tests, power with POWER_SHARE of them."""
    design, seed, replicates = spec.build(options.seed), options.seed, options.tests_for(method)
    reason = stats.insufficient_reason(design.n_judgements, design.n_listeners, design.n_texts)
    reason = reason if options.enforce_minimum or method == METHOD_BOOTSTRAP else ""
    at_margin = _simulate(spec, design, method, MARGIN, replicates, seed, options.enforce_minimum)
    n_power = max(1, int(replicates * POWER_SHARE))
    power = {
        f"{drop:.2f}": Rate.of(
            _simulate(spec, design, method, drop, n_power, seed, options.enforce_minimum).passed, n_power
        )
        for drop in POWER_DROPS
    }
    n_int = at_margin.n_intervals
    return MethodResult(
        design=spec.name,
        group=spec.group,
        method=method,
        n_listeners=design.n_listeners,
        n_texts=design.n_texts,
        n_judgements=design.n_judgements,
        insufficient_reason=reason,
        level=Rate.of(at_margin.passed, replicates),
        coverage_base=Rate.of(at_margin.cover_b, n_int),
        coverage_v=Rate.of(at_margin.cover_v, n_int),
        mean_half_width=at_margin.half_width / n_int if n_int else float("nan"),
        power=power,
    )


@dataclass(frozen=True)
class PlannerCheck:
    """A plan of eval.statistics.planner and what an independent simulation of its advice measured."""

    scenario: str
    target_power: float
    true_drop: float
    n_listeners: int  # recommended (0 when none)
    n_texts: int
    planned_power: float  # the planner's own simulated power
    power: Rate  # independent tests (other seed) at the planned drop
    level: Rate  # independent tests at a true drop = margin


def planner_check(options: SimulationOptions, scenarios=PLANNER_SCENARIOS) -> list[PlannerCheck]:
    """Plan each scenario with eval.statistics.planner (default method), then simulate the recommended design."""
    out, seed, replicates = [], options.seed, options.replicates
    for sc in scenarios:
        plan = planner.plan_sample_size(
            sc.components,
            base_mos=sc.base_mos,
            true_drop=sc.true_drop,
            options=replace(planner.PLANNER_OPTIONS, margin=MARGIN, seed=seed),
            target_power=sc.target_power,
        )
        rec = plan.recommended
        if rec is None:
            nan = Rate.of(0, 0)
            out.append(PlannerCheck(sc.name, sc.target_power, sc.true_drop, 0, 0, float("nan"), nan, nan))
            continue
        spec = DesignSpec(
            f"planner {sc.name}",
            "planner",
            rec.n_listeners,
            rec.n_texts,
            sc.components.listener_drop_sd,
            base_mos=sc.base_mos,
            text_drop_sd=sc.components.text_drop_sd,
            base_components=sc.components,
        )
        design = spec.build(seed)
        check_seed = seed + 1  # other tests than the planner's own
        power = _simulate(
            spec, design, DEFAULT_METHOD, sc.true_drop, replicates, check_seed, True
        ).passed
        level = _simulate(spec, design, DEFAULT_METHOD, MARGIN, replicates, check_seed, True).passed
        out.append(
            PlannerCheck(
                sc.name,
                sc.target_power,
                sc.true_drop,
                rec.n_listeners,
                rec.n_texts,
                rec.power,
                Rate.of(power, replicates),
                Rate.of(level, replicates),
            )
        )
    return out


# ---------------------------------------------------------------- output


def _pct(rate: Rate) -> str:
    if rate.n == 0:
        return "-"
    return f"{100 * rate.share:.1f} [{100 * rate.low:.1f}, {100 * rate.high:.1f}]"


def markdown_table(results: list[MethodResult]) -> str:
    """One row per design and method: level, coverages, half-width, power."""
    head = (
        "| design (listeners x texts, listener x config sd) | judgements | method | level at the 5% margin, % [CP 95%] "
        "| MOS coverage base, % | MOS coverage v, % | MOS half-width | power 0% drop | power 2% drop |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for r in results:
        level = "insufficient (0)" if r.insufficient_reason else _pct(r.level)
        width = "-" if r.mean_half_width != r.mean_half_width else f"{r.mean_half_width:.3f}"
        rows.append(
            f"| {r.design} | {r.n_judgements} | {r.method} | {level} | {_pct(r.coverage_base)} | "
            f"{_pct(r.coverage_v)} | {width} | {_pct(r.power['0.00'])} | {_pct(r.power['0.02'])} |"
        )
    return "\n".join(rows)


def planner_markdown(checks: list[PlannerCheck]) -> str:
    rows = [
        "| scenario | recommended | planner's power | simulated power, % [CP 95%] | level at the margin, % |",
        "|---|---|---|---|---|",
    ]
    for c in checks:
        rec = f"{c.n_listeners} x {c.n_texts}" if c.n_listeners else "none in the grid"
        rows.append(f"| {c.scenario} | {rec} | {c.planned_power:.3f} | {_pct(c.power)} | {_pct(c.level)} |")
    return "\n".join(rows)


def _jsonable(value):
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.statistics.simulate_verdict", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--replicates",
        type=int,
        default=DEFAULT_REPLICATES,
        help="simulated tests per design (level, coverage)",
    )
    parser.add_argument(
        "--bootstrap-replicates",
        type=int,
        default=DEFAULT_BOOTSTRAP_REPLICATES,
        help="simulated tests per design for the (slow) bootstrap",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--designs", nargs="+", default=["all"], help=f"design names or groups {GROUPS} or all"
    )
    parser.add_argument("--methods", nargs="+", choices=CI_METHODS, default=list(CI_METHODS))
    parser.add_argument("--planner-check", action="store_true", help="also check eval.statistics.planner's advice")
    parser.add_argument(
        "--ignore-minimum",
        action="store_true",
        help="analytic methods: give verdicts below the minimum of listeners and texts too (what the "
        "minimum prevents; the bootstrap goes through eval.statistics.stats, which always applies it)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every number as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables as markdown")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        specs = select_designs(args.designs)
        options = SimulationOptions(
            args.replicates, args.bootstrap_replicates, args.seed, enforce_minimum=not args.ignore_minimum
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = []
    for spec in specs:
        for method in args.methods:
            result = run_design(spec, method, options)
            results.append(result)
            print(
                f"{spec.name:<28} {method:<10} level {_pct(result.level):<22} "
                f"coverage {_pct(result.coverage_base)}",
                flush=True,
            )
    checks = planner_check(options) if args.planner_check else []
    command = "python -m eval.statistics.simulate_verdict " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = f"Command: `{command}` (seed {args.seed}, {date.today().isoformat()})\n\n" + markdown_table(
        results
    )
    if checks:
        text += "\n\nPlanner advice checked by simulation:\n\n" + planner_markdown(checks)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "command": command,
            "seed": args.seed,
            "date": date.today().isoformat(),
            "margin": MARGIN,
            "confidence": CONFIDENCE,
            "sim_n_boot": SIM_N_BOOT,
            "results": [asdict(r) for r in results],
            "planner_check": [asdict(c) for c in checks],
        }
        args.json.write_text(json.dumps(_jsonable(doc), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
