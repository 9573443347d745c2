"""After listening: the screen's measures beside the listeners' scores, and how well they rank alike.

Ratings and screened clips are joined by clip: a blind-test rating row names each clip by the
first 16 hex digits of its bank key (``a_clip_id`` / ``b_clip_id``), and the screen's per-clip CSV
(:mod:`eval.screen.plan`) holds the full key. Playground ratings rate clips that are not in a bank
and are counted as unmatched.

* per configuration: the human MOS (mean of every score its screened clips received) beside the
  screen's mean of each measure over all of the configuration's screened clips;
* Spearman rank correlations between the human score and each measure, across configurations
  (needs at least MIN_RANKED points) and across the rated clips (a clip's mean human score). A
  good measure correlates positively, the error rate negatively.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from eval.statistics.ratings_io import drop_duplicate_trials, read_ratings
from eval.statistics.summary import format_number

from .summary import MEASURE_COLUMNS, ClipRow, read_rows, summarize

CLIP_ID_CHARS = 16  # abapp.blind: a rating's clip id is the bank key's first 16 characters
MIN_RANKED = 3  # fewer points than this give no rank correlation
LEVEL_CONFIGS = "configurations"
LEVEL_CLIPS = "clips"


@dataclass(frozen=True)
class ConfigAgreement:
    """One configuration: human MOS over its rated clips and the screen's means over all its clips."""

    config: str
    n_clips: int  # screened clips
    n_rated_clips: int
    n_scores: int  # human scores those clips received
    human_mos: float  # NaN when none of its clips was rated
    screen_means: tuple[tuple[str, float | None], ...]  # (measure, mean over the screened clips)

    def screen_mean(self, measure: str) -> float | None:
        return dict(self.screen_means).get(measure)


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho between the human score and one measure (NaN with ``note`` when not computable)."""

    measure: str
    level: str  # LEVEL_CONFIGS | LEVEL_CLIPS
    n: int
    rho: float
    p_value: float  # two-sided, scipy.stats.spearmanr
    note: str = ""


@dataclass(frozen=True)
class ScreenAgreement:
    configs: tuple[ConfigAgreement, ...]
    correlations: tuple[RankCorrelation, ...]
    n_scores_matched: int
    n_scores_unmatched: int  # scores of clips that are not in the screen CSV (e.g. playground)

    def correlation(self, measure: str, level: str) -> RankCorrelation:
        return next(c for c in self.correlations if c.measure == measure and c.level == level)

    def to_json_dict(self) -> dict:
        def safe(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: safe(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [safe(v) for v in value]
            return value

        return safe(
            {
                "method": "ratings joined to screened clips by clip id; Spearman rank correlation of the "
                "human score with each measure across configurations (MOS vs mean) and across rated clips",
                "n_scores_matched": self.n_scores_matched,
                "n_scores_unmatched": self.n_scores_unmatched,
                "configs": [{**asdict(c), "screen_means": dict(c.screen_means)} for c in self.configs],
                "correlations": [asdict(c) for c in self.correlations],
            }
        )


def clip_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per human score: ``clip_id, score`` (each judgement scores its A and its B clip)."""
    parts = [
        pd.DataFrame(
            {
                "clip_id": ratings[f"{side}_clip_id"].astype(str),
                "score": ratings[f"score_{side}"].astype(float),
            }
        )
        for side in ("a", "b")
    ]
    return pd.concat(parts, ignore_index=True)


def _spearman(
    measure: str, level: str, human: Sequence[float], screen: Sequence[float | None]
) -> RankCorrelation:
    pairs = [(h, s) for h, s in zip(human, screen) if s is not None and math.isfinite(h) and math.isfinite(s)]
    if len(pairs) < MIN_RANKED:
        return RankCorrelation(
            measure, level, len(pairs), math.nan, math.nan, f"fewer than {MIN_RANKED} {level}"
        )
    h, s = (np.array(x, dtype=float) for x in zip(*pairs))
    if np.ptp(h) == 0 or np.ptp(s) == 0:
        return RankCorrelation(measure, level, len(pairs), math.nan, math.nan, "one side is constant")
    result = sps.spearmanr(h, s)
    return RankCorrelation(measure, level, len(pairs), float(result.statistic), float(result.pvalue))


def compare_with_listeners(ratings: pd.DataFrame, rows: Sequence[ClipRow]) -> ScreenAgreement:
    """Join a validated ratings table with the screen's per-clip rows (see the module docstring)."""
    scores = clip_scores(ratings)
    by_id = {r.clip_key[:CLIP_ID_CHARS]: r for r in rows}
    matched = scores.loc[scores["clip_id"].isin(by_id)]
    per_clip = matched.groupby("clip_id")["score"].agg(["mean", "count"])
    summary = summarize(rows)
    configs = []
    for s in summary:
        ids = [r.clip_key[:CLIP_ID_CHARS] for r in rows if r.config == s.config]
        mine = matched.loc[matched["clip_id"].isin(ids), "score"]
        configs.append(
            ConfigAgreement(
                s.config,
                s.n_clips,
                int(per_clip.index.isin(ids).sum()),
                int(mine.size),
                float(mine.mean()) if mine.size else math.nan,
                tuple((m, s.mean(m)) for m in MEASURE_COLUMNS),
            )
        )
    rated = [(by_id[cid], float(row["mean"])) for cid, row in per_clip.iterrows()]
    correlations = []
    for measure in MEASURE_COLUMNS:
        correlations.append(
            _spearman(
                measure,
                LEVEL_CONFIGS,
                [c.human_mos for c in configs],
                [c.screen_mean(measure) for c in configs],
            )
        )
        correlations.append(
            _spearman(measure, LEVEL_CLIPS, [h for _, h in rated], [getattr(r, measure) for r, _ in rated])
        )
    return ScreenAgreement(
        tuple(configs), tuple(correlations), int(matched.shape[0]), int(scores.shape[0] - matched.shape[0])
    )


def agreement_from_files(
    ratings_path: str | Path, screen_csv: str | Path, modes: Sequence[str] | None = None
) -> ScreenAgreement:
    """:func:`compare_with_listeners` on a ratings log (repeated trials dropped, ``modes`` kept) and a
    ``clips.csv`` of ``python -m eval.screen.plan``."""
    table, _ = drop_duplicate_trials(read_ratings(ratings_path))
    if modes:
        table = table.loc[table["mode"].isin(list(modes))].reset_index(drop=True)
    return compare_with_listeners(table, read_rows(Path(screen_csv)))




SHOWN = (("dnsmos_ovrl", "OVRL"), ("dnsmos_p808", "P.808"), ("sim_campplus", "sim CAM++"),
         ("sim_resemblyzer", "sim resem."), ("error_rate", "WER/CER"))  # fmt: skip


def format_agreement(agreement: ScreenAgreement) -> str:
    """The per-configuration table and the rank correlations, as fixed-width text."""
    head = ["config", "rated clips", "human MOS", *[name for _, name in SHOWN]]
    lines = [head]
    for c in agreement.configs:
        cells = [c.config, f"{c.n_rated_clips}/{c.n_clips}", format_number(c.human_mos)]
        lines.append(cells + [format_number(c.screen_mean(m), ".3f") for m, _ in SHOWN])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    table = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in lines)
    corr = ["Spearman rank correlation with the human score (rho, n; WER/CER should be negative):"]
    for m, name in SHOWN:
        parts = []
        for level in (LEVEL_CONFIGS, LEVEL_CLIPS):
            rc = agreement.correlation(m, level)
            parts.append(f"{level} {format_number(rc.rho)} (n={rc.n}{', ' + rc.note if rc.note else ''})")
        corr.append(f"  {name}: " + "; ".join(parts))
    tail = (
        f"{agreement.n_scores_matched} scores matched to screened clips, {agreement.n_scores_unmatched} not"
    )
    return "\n".join(["screen beside the listeners:", table, *corr, tail])
