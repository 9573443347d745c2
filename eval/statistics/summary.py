"""What a report is: its summary types, their JSON form, and what each method's statistics are.

Apart from the computation (eval/statistics/analysis.py) and the presentations (text and CLI in eval/statistics/report.py, eval/statistics/sheets.py,
eval/statistics/plots.py), so that each presentation imports the types without importing the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from eval.statistics import controls, screening, stats
from eval.statistics.options import (
    METHOD_BOOTSTRAP,
    METHOD_CGM,
    METHOD_CLUSTER_T,
    StatsOptions,
    check_method,
)

REPORT_VERSION = 1
VERDICT_BASELINE = "baseline"


def format_number(value: float | None, fmt: str = ".2f", missing: str = "-") -> str:
    """``value`` formatted, or ``missing`` when it is None, NaN or infinite (every report table uses this)."""
    return missing if value is None or not math.isfinite(value) else format(value, fmt)


_SHARED_METHODS: dict[str, str] = {
    "naive_ci": "Student t interval treating every rating as independent (comparison only)",
    "preference_ci": "Wilson score interval (votes treated as independent); sign test p-value",
    "screening": "anchor rated above baseline on average; one score for everything; too few judgements",
    "insufficient": "a verdict needs at least 5 listeners and 5 texts (95%): below that no test holds its "
    "level without assuming a shape for the listener distribution; a MOS interval needs 3",
}
_NI_BOUND = (
    "on paired judgements (unpaired when too few pairs); ratio bound = (1 - margin) + D bound / MOS_base; "
    "pass iff bound > 1 - margin (iff D bound > 0)"
)
# What each statistic is under each method (CI_METHODS); the JSON's "methods".
METHOD_DESCRIPTIONS: dict[str, dict[str, str]] = {
    METHOD_CLUSTER_T: {
        "mos_ci": "two-way cluster-robust variance (Cameron, Gelbach & Miller 2011) in small-sample form: "
        "jackknife (CV3) listener and text sums, V_listener x text without the listener and text spread, "
        "Student t with the Satterthwaite df of a crossed random-effects working model",
        "noninferiority": "one-sided t lower bound of D = score_v - (1 - margin) * score_base with the same "
        "variance, critical value raised by Hall's (1992) skewness correction when D is skewed to the left, "
        + _NI_BOUND,
        **_SHARED_METHODS,
    },
    METHOD_CGM: {
        "mos_ci": "two-way cluster-robust variance of the mean (Cameron, Gelbach & Miller 2011: "
        "V_listener + V_text - V_listener x text; max(V_listener, V_text) when not positive), Student t "
        "interval with a Satterthwaite df clamped to [harmonic, min(listeners, texts) - 1]",
        "noninferiority": "one-sided symmetric t lower bound of D = score_v - (1 - margin) * score_base with "
        "the same variance, " + _NI_BOUND,
        **_SHARED_METHODS,
    },
    METHOD_BOOTSTRAP: {
        "mos_ci": "two-way cluster bootstrap (listeners and texts resampled independently, "
        "pigeonhole/product weights), percentile interval",
        "noninferiority": "one-sided lower bound of MOS_v / MOS_base from the same two-way cluster "
        "bootstrap on paired judgements (unpaired when too few pairs); pass iff bound > 1 - margin",
        **_SHARED_METHODS,
    },
}


# Measured properties (docs/verdict-validation.md; python -m eval.statistics.simulate_verdict, seed 0).
METHOD_PROPERTIES: dict[str, str] = {
    METHOD_CLUSTER_T: "(default) one-sided level 3.6-5.1%% at a true drop equal to the margin (upper "
    "Clopper-Pearson bound at most 5.5%%) and MOS interval coverage 94.6-97.1%% over 17 simulated designs "
    "of 5-40 listeners, balanced and unbalanced; 6.1%% at MOS 4.5 with 6 listeners",
    METHOD_CGM: "level 5.0-9.6%% (liberal near the top of the scale and when listeners rate very "
    "different numbers of texts), coverage 88.4-96.0%%",
    METHOD_BOOTSTRAP: "level 0.4-8.2%% (very conservative in large tests, liberal with few or unequal "
    "listeners), coverage 83-97%% (83-87%% with 3-4 listeners)",
}


def method_descriptions(method: str) -> dict[str, str]:
    """The descriptions of every statistic of the report under ``method`` (CI_METHODS)."""
    check_method(method)
    return dict(METHOD_DESCRIPTIONS[method])


@dataclass(frozen=True)
class ConfigSummary:
    """One row of the report table; see the module docstring for the meaning of each field."""

    config: str
    n_ratings: int
    n_listeners: int
    n_texts: int
    mos: float
    ci_low: float
    ci_high: float
    naive_ci_low: float
    naive_ci_high: float
    rel_change: float
    comparison: str | None
    n_compared: int
    ratio: float
    noninferiority_lower_bound: float
    d_mean: float
    d_lower_bound: float
    verdict: str
    reason: str


@dataclass(frozen=True)
class ReportSummary:
    """Everything the report shows; ``to_json_dict()`` is what ``--json`` writes."""

    baseline: str
    options: StatsOptions  # margin, confidence, method, bootstrap replicates and seed of the analysis
    anchor: str | None
    modes: tuple[str, ...] | None  # judgement modes kept (None: all)
    n_judgements: int
    n_listeners: int
    n_texts: int
    configs: tuple[ConfigSummary, ...]
    preferences: tuple[screening.PreferenceShare, ...]
    listeners: tuple[screening.ListenerScreen, ...]
    warnings: tuple[str, ...]
    excluded_listeners: tuple[str, ...] = ()  # left out by eval.statistics.controls.EXCLUSION_RULE (--exclude-flagged)
    n_repeated_trial_ids: int = 0  # judgements of an already rated trial_id, not counted
    n_repeated_rows: int = 0  # rows without trial_id repeating an earlier row, not counted

    def config(self, label: str) -> ConfigSummary:
        for row in self.configs:
            if row.config == label:
                return row
        raise KeyError(
            f"no configuration {label!r} in the report; present: {[c.config for c in self.configs]}"
        )

    def to_json_dict(self) -> dict:
        preferences = []
        for p in self.preferences:
            row = {k: v for k, v in asdict(p).items() if not k.startswith("share_")}
            for name in ("x", "y", "none"):
                share = getattr(p, f"share_{name}")
                row |= {
                    f"share_{name}": share.estimate,
                    f"share_{name}_low": share.low,
                    f"share_{name}_high": share.high,
                }
            preferences.append(row)
        out = {
            "report_version": REPORT_VERSION,
            "baseline": self.baseline,
            "margin": self.options.margin,
            "anchor": self.anchor,
            "confidence": self.options.confidence,
            "seed": self.options.seed,
            "method": self.options.method,
            "n_boot": self.options.n_boot if self.options.uses_bootstrap else None,
            "modes": list(self.modes) if self.modes else None,
            "n_judgements": self.n_judgements,
            "n_listeners": self.n_listeners,
            "n_texts": self.n_texts,
            "excluded_rows": {
                "repeated_trial_id": self.n_repeated_trial_ids,
                "repeated_without_trial_id": self.n_repeated_rows,
            },
            "thresholds": {
                "min_listeners": stats.MIN_LISTENERS,
                "min_texts": stats.MIN_TEXTS,
                "min_listeners_for_verdict": stats.min_clusters_for_verdict(self.options.confidence),
                "min_texts_for_verdict": stats.min_clusters_for_verdict(self.options.confidence),
                "min_judgements": stats.MIN_JUDGEMENTS,
                "min_listener_judgements": screening.MIN_LISTENER_JUDGEMENTS,
            },
            "methods": method_descriptions(self.options.method),
            "configs": [asdict(c) for c in self.configs],
            "preferences": preferences,
            "listeners": [asdict(s) | {"flags": list(s.flags)} for s in self.listeners],
            "warnings": list(self.warnings),
            "excluded_listeners": list(self.excluded_listeners),
            "exclusion_rule": controls.EXCLUSION_RULE if self.excluded_listeners else None,
        }
        return _json_safe(out)


def _json_safe(value):
    """NaN/inf -> None and numpy scalars -> Python numbers, recursively (strict JSON)."""
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
