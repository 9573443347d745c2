"""The designs the verdict simulation runs (eval/statistics/simulate_verdict.py) and the planner scenarios it checks.

Each design says who judges what (balanced, listeners dropping out, a few heavy and many light
listeners), the spread of the crossed effects (eval/statistics/listening_model.py) and the
baseline's MOS; the groups are the issue's designs, balanced and unbalanced layouts and stress cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eval.statistics import stats
from eval.statistics.listening_model import PairedDesign, VarianceComponents

PLANNER_MODEL = VarianceComponents(0.5, 0.3, 0.7)  # eval.statistics.planner's CLI defaults


@dataclass(frozen=True)
class DesignSpec:
    """One simulated design: who judges what, the spread, and the baseline's MOS."""

    name: str
    group: str  # "issue" | "balanced" | "unbalanced" | "stress"
    n_listeners: int
    n_texts: int
    listener_drop_sd: float
    base_mos: float = 4.0
    layout: str = "balanced"  # "balanced" | "dropout" (share kept >= min_share) | "heavy-light"
    min_share: float = 1.0  # dropout: each listener judges at least this share of the texts
    n_heavy: int = 0  # heavy-light: listeners who judge all texts; the others judge light_texts
    light_texts: int = 0
    text_drop_sd: float = 0.0
    base_components: VarianceComponents = field(default=PLANNER_MODEL)

    @property
    def components(self) -> VarianceComponents:
        c = self.base_components
        return VarianceComponents(
            c.listener_sd, c.text_sd, c.residual_sd, self.listener_drop_sd, self.text_drop_sd
        )

    def build(self, seed: int) -> PairedDesign:
        if self.layout == "balanced":
            return PairedDesign.balanced(self.n_listeners, self.n_texts)
        if self.layout == "dropout":
            rng = stats.derived_rng(seed, "layout", self.name)
            return PairedDesign.with_dropout(self.n_listeners, self.n_texts, self.min_share, rng)
        if self.layout == "heavy-light":
            n_light = self.n_listeners - self.n_heavy
            return PairedDesign.heavy_and_light(self.n_heavy, n_light, self.n_texts, self.light_texts)
        raise ValueError(f"unknown layout {self.layout!r}")


def _spec(name: str, group: str, n_l: int, n_t: int, drop_sd: float, **kw) -> DesignSpec:
    return DesignSpec(name, group, n_l, n_t, drop_sd, **kw)


DESIGNS: tuple[DesignSpec, ...] = (
    _spec("16x60 none", "issue", 16, 60, 0.0),
    _spec("12x40 0.3", "issue", 12, 40, 0.3),
    _spec("6x20 0.5", "issue", 6, 20, 0.5),
    _spec("4x30 0.3", "issue", 4, 30, 0.3),
    _spec("4x30 0.5", "issue", 4, 30, 0.5),
    _spec("2x40 0.3", "balanced", 2, 40, 0.3),
    _spec("3x30 0.3", "balanced", 3, 30, 0.3),
    _spec("5x30 0.3", "balanced", 5, 30, 0.3),
    _spec("5x20 0.5", "balanced", 5, 20, 0.5),
    _spec("8x20 none", "balanced", 8, 20, 0.0),
    _spec("8x20 0.3", "balanced", 8, 20, 0.3),
    _spec("10x30 0.5", "balanced", 10, 30, 0.5),
    _spec("20x20 0.3", "balanced", 20, 20, 0.3),
    _spec("40x10 0.3", "balanced", 40, 10, 0.3),
    _spec("40x30 0.5", "balanced", 40, 30, 0.5),
    _spec("dropout 6x30 0.3", "unbalanced", 6, 30, 0.3, layout="dropout", min_share=0.3),
    _spec("dropout 12x40 0.3", "unbalanced", 12, 40, 0.3, layout="dropout", min_share=0.25),
    _spec("dropout 24x20 0.5", "unbalanced", 24, 20, 0.5, layout="dropout", min_share=0.3),
    _spec("dropout 40x15 0.3", "unbalanced", 40, 15, 0.3, layout="dropout", min_share=0.2),
    _spec("2 heavy + 8 light 0.3", "unbalanced", 10, 40, 0.3, layout="heavy-light", n_heavy=2, light_texts=8),
    _spec("3 heavy + 3 light 0.5", "unbalanced", 6, 30, 0.5, layout="heavy-light", n_heavy=3, light_texts=6),
    _spec("MOS 3.5 6x20 0.5", "stress", 6, 20, 0.5, base_mos=3.5),
    _spec("MOS 4.5 6x20 0.5", "stress", 6, 20, 0.5, base_mos=4.5),
    _spec("MOS 4.5 12x40 0.3", "stress", 12, 40, 0.3, base_mos=4.5),
    _spec("MOS 4.5 16x60 none", "stress", 16, 60, 0.0, base_mos=4.5),
    _spec("text drop 0.2 12x40 0.3", "stress", 12, 40, 0.3, text_drop_sd=0.2),
)
GROUPS = ("issue", "balanced", "unbalanced", "stress")


def select_designs(names: list[str]) -> list[DesignSpec]:
    """Design specs by name, by group ("issue", "balanced", ...), or "all"."""
    if "all" in names:
        return list(DESIGNS)
    chosen = [d for d in DESIGNS if d.name in names or d.group in names]
    unknown = set(names) - {d.name for d in DESIGNS} - set(GROUPS)
    if unknown:
        raise ValueError(
            f"unknown design(s) {sorted(unknown)}; groups: {GROUPS}, names: {[d.name for d in DESIGNS]}"
        )
    return chosen


@dataclass(frozen=True)
class PlannerScenario:
    name: str
    components: VarianceComponents
    base_mos: float
    true_drop: float
    target_power: float


PLANNER_SCENARIOS: tuple[PlannerScenario, ...] = (
    PlannerScenario(
        "CLI defaults (drop sd 0.3), 2% drop, 80%", VarianceComponents(0.5, 0.3, 0.7, 0.3), 4.0, 0.02, 0.8
    ),
    PlannerScenario("drop sd 0.5, no drop, 80%", VarianceComponents(0.5, 0.3, 0.7, 0.5), 4.0, 0.0, 0.8),
    PlannerScenario("no drop spread, 2% drop, 90%", VarianceComponents(0.4, 0.3, 0.5, 0.0), 3.5, 0.02, 0.9),
    PlannerScenario(
        "drop sd 0.3, MOS 4.5, 1% drop, 80%", VarianceComponents(0.4, 0.3, 0.6, 0.3), 4.5, 0.01, 0.8
    ),
)
