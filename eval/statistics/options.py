"""How a listening test's statistics are computed: one frozen options object, validated once.

``StatsOptions`` travels from the command line (``eval.statistics.report``, ``eval.statistics.planner``)
or the Results tab down to the functions that use it (``stats.compare_to_baseline``,
``stats.cluster_mean``, ``analysis.summarize``, the planner's simulations), as ``SynthesisOptions``
does for synthesis. Change a field with ``dataclasses.replace``; the new object is validated again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # two-sided level of MOS intervals; one-sided level of the non-inferiority bound
DEFAULT_MARGIN = 0.05  # the project's criterion: MOS at most 5% below the baseline
DEFAULT_N_BOOT = 2000  # bootstrap replicates
MIN_N_BOOT = 100

METHOD_CLUSTER_T = "cluster-t"  # small-sample two-way cluster t, one-sided skewness correction (default)
METHOD_CGM = "cgm"  # plain two-way cluster-robust (CGM) variance, symmetric Student t bounds
METHOD_BOOTSTRAP = "bootstrap"  # two-way cluster (pigeonhole) bootstrap, percentile bounds
CI_METHODS = (METHOD_CLUSTER_T, METHOD_CGM, METHOD_BOOTSTRAP)
DEFAULT_METHOD = METHOD_CLUSTER_T


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_method(method: str) -> None:
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")


def check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")


def check_n_boot(n_boot: int) -> None:
    if not _is_int(n_boot) or n_boot < MIN_N_BOOT:
        raise ValueError(f"n_boot must be an integer >= {MIN_N_BOOT}, got {n_boot!r}")


def check_seed(seed: int) -> None:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


@dataclass(frozen=True)
class StatsOptions:
    """The settings of one analysis of a ratings log (every field validated in ``__post_init__``)."""

    margin: float = DEFAULT_MARGIN  # relative non-inferiority margin: pass iff MOS_v > (1 - margin) MOS_base
    confidence: float = CONFIDENCE  # one-sided level of the bound, two-sided level of MOS intervals
    method: str = DEFAULT_METHOD  # how intervals and bounds are computed (CI_METHODS; eval/statistics/stats.py)
    n_boot: int = DEFAULT_N_BOOT  # bootstrap replicates (used by method "bootstrap" only)
    seed: int = 0  # seeds the bootstrap's draws (per analysis, see stats.derived_rng)

    def __post_init__(self) -> None:
        if not 0.0 < self.margin < 1.0:
            raise ValueError(f"margin must be in (0, 1), e.g. 0.05 for 5%, got {self.margin}")
        check_confidence(self.confidence)
        check_method(self.method)
        check_n_boot(self.n_boot)
        check_seed(self.seed)

    @property
    def keep(self) -> float:
        """The share of the baseline's MOS a configuration must keep: 1 - margin."""
        return 1.0 - self.margin

    @property
    def uses_bootstrap(self) -> bool:
        return self.method == METHOD_BOOTSTRAP
