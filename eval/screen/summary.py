"""Per-clip rows of a screened clip bank and their per-configuration summary (pure functions).

* :class:`ClipRow`: one screened clip (what the CSV holds), made by :func:`clip_row`;
* :func:`summarize`: per configuration the mean, spread and range of every measure, the number of
  flagged clips and which they are (:class:`ConfigScreen`);
* :func:`write_rows` / :func:`read_rows`: the per-clip CSV; :func:`summary_table`: the summary CSV;
* :func:`plot_summary`: one panel per measure (each clip a dot, the mean a bar) and the flagged counts.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .results import FLAG_CODES, ScreenResult

# Numeric columns of a ClipRow, in table order; "higher is better" except the error rate.
MEASURE_COLUMNS = (
    "dnsmos_ovrl",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_p808",
    "sim_campplus",
    "sim_resemblyzer",
    "error_rate",
)
PLOTTED = ("dnsmos_ovrl", "dnsmos_p808", "sim_resemblyzer", "sim_campplus", "error_rate")
FLAG_SEPARATOR = ";"


@dataclass(frozen=True)
class ClipRow:
    """One screened clip of a plan's bank (None: the measure did not run; ``notes`` says why)."""

    text_id: str
    prompt_id: str
    config: str
    clip_key: str
    duration_s: float
    dnsmos_ovrl: float | None
    dnsmos_sig: float | None
    dnsmos_bak: float | None
    dnsmos_p808: float | None
    sim_campplus: float | None
    sim_resemblyzer: float | None
    error_rate: float | None
    metric: str  # "wer" | "cer"
    asr: str  # the ASR that ran ("" when none)
    transcript: str
    flags: str  # fired flag codes joined by ";"
    flag_details: str  # what each fired flag found, joined by " | "
    notes: str  # why measures are missing, joined by " | "
    screen_s: float

    @property
    def flag_codes(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags.split(FLAG_SEPARATOR) if f)


def clip_row(text_id: str, prompt_id: str, config: str, clip_key: str, result: ScreenResult) -> ClipRow:
    values = result.values()
    missing = [f"{m.name}: {m.reason}" for m in result.measures() if not m.available]
    intel = result.intelligibility
    return ClipRow(
        text_id=text_id,
        prompt_id=prompt_id,
        config=config,
        clip_key=clip_key,
        duration_s=round(result.duration_s, 3),
        **{c: values.get(c) for c in MEASURE_COLUMNS},
        metric=intel.metric,
        asr=intel.info.name if intel.info.available else "",
        transcript=intel.transcript,
        flags=FLAG_SEPARATOR.join(c.code for c in result.flags),
        flag_details=" | ".join(f"{c.code}: {c.detail}" for c in result.flags),
        notes=" | ".join(missing),
        screen_s=round(result.seconds, 3),
    )


@dataclass(frozen=True)
class MeasureStat:
    """One measure over the clips of a configuration where it ran (sd: sample sd, NaN for one clip)."""

    name: str
    n: int
    mean: float
    sd: float
    low: float
    high: float


@dataclass(frozen=True)
class FlaggedClip:
    text_id: str
    prompt_id: str
    clip_key: str
    flags: tuple[str, ...]
    details: str


@dataclass(frozen=True)
class ConfigScreen:
    """The screen of one configuration's clips."""

    config: str
    n_clips: int
    stats: tuple[MeasureStat, ...]  # one per MEASURE_COLUMNS entry that ran on at least one clip
    n_flagged: int
    flag_counts: tuple[tuple[str, int], ...]  # (flag code, clips with it), codes in FLAG_CODES order
    flagged: tuple[FlaggedClip, ...]

    def stat(self, name: str) -> MeasureStat | None:
        return next((s for s in self.stats if s.name == name), None)

    def mean(self, name: str) -> float | None:
        s = self.stat(name)
        return None if s is None else s.mean


def _stat(name: str, values: list[float]) -> MeasureStat:
    x = np.asarray(values, dtype=float)
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return MeasureStat(name, int(x.size), float(x.mean()), sd, float(x.min()), float(x.max()))


def summarize(rows: Sequence[ClipRow], order: Sequence[str] | None = None) -> list[ConfigScreen]:
    """Per configuration, in ``order`` (default: first seen), the statistics of its clips."""
    labels = list(order) if order is not None else list(dict.fromkeys(r.config for r in rows))
    out = []
    for label in labels:
        mine = [r for r in rows if r.config == label]
        stats = []
        for name in MEASURE_COLUMNS:
            values = [getattr(r, name) for r in mine if getattr(r, name) is not None]
            if values:
                stats.append(_stat(name, values))
        flagged = tuple(
            FlaggedClip(r.text_id, r.prompt_id, r.clip_key, r.flag_codes, r.flag_details)
            for r in mine
            if r.flags
        )
        counts = tuple((code, sum(code in f.flags for f in flagged)) for code in FLAG_CODES)
        out.append(ConfigScreen(label, len(mine), tuple(stats), len(flagged), counts, flagged))
    return out


def summary_table(summary: Sequence[ConfigScreen]) -> list[dict[str, object]]:
    """One flat row per configuration: n, mean/sd/min/max per measure, flag counts, flagged clips."""
    table = []
    for s in summary:
        row: dict[str, object] = {"config": s.config, "n_clips": s.n_clips, "n_flagged": s.n_flagged}
        for name in MEASURE_COLUMNS:
            st = s.stat(name)
            for part in ("mean", "sd", "low", "high"):
                row[f"{name}_{part}"] = None if st is None else getattr(st, part)
        row.update({f"flag_{code}": n for code, n in s.flag_counts})
        row["flagged_clips"] = " ".join(f"{f.text_id}/{f.prompt_id}[{','.join(f.flags)}]" for f in s.flagged)
        table.append(row)
    return table


def write_table(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_rows(path: Path, rows: Sequence[ClipRow]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(ClipRow)])
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return path


def _cell(kind: str, text: str) -> str | float | None:
    """A CSV cell back in its ClipRow type (the annotations are strings: postponed evaluation)."""
    if kind == "str":
        return text
    return None if text == "" else float(text)


def read_rows(path: Path) -> list[ClipRow]:
    """The per-clip CSV written by :func:`write_rows` (ValueError naming a missing column)."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        names = [fl.name for fl in fields(ClipRow)]
        absent = [n for n in names if n not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path} is not a screen CSV (eval.screen.plan): missing columns {absent}")
        kinds = {fl.name: fl.type for fl in fields(ClipRow)}
        return [ClipRow(**{n: _cell(kinds[n], rec[n]) for n in names}) for rec in reader]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def plot_summary(rows: Sequence[ClipRow], summary: Sequence[ConfigScreen]):
    """Matplotlib figure (no pyplot): per measure, every clip as a dot and the mean as a bar; flagged clips red."""
    from matplotlib.figure import Figure

    shown = [m for m in PLOTTED if any(s.stat(m) for s in summary)]
    fig = Figure(figsize=(3.2 * (len(shown) + 1), 0.5 * len(summary) + 2.0), layout="constrained")
    axes = fig.subplots(1, len(shown) + 1, sharey=True, squeeze=False)[0]
    labels = [s.config for s in summary]
    for ax, measure in zip(axes, shown):
        for i, s in enumerate(summary):
            mine = [r for r in rows if r.config == s.config and _finite(getattr(r, measure))]
            jitter = np.linspace(-0.15, 0.15, len(mine)) if len(mine) > 1 else np.zeros(len(mine))
            colours = ["tab:red" if r.flags else "tab:blue" for r in mine]
            ax.scatter([getattr(r, measure) for r in mine], i + jitter, s=12, c=colours, alpha=0.7)
            if s.mean(measure) is not None:
                ax.plot([s.mean(measure)] * 2, [i - 0.3, i + 0.3], color="black", lw=2)
        ax.set_title(measure.replace("_", " ") + (" (lower is better)" if measure == "error_rate" else ""))
        ax.grid(axis="x", alpha=0.3)
    flag_ax = axes[-1]
    flag_ax.barh(range(len(summary)), [s.n_flagged for s in summary], color="tab:red")
    flag_ax.set_title("flagged clips")
    flag_ax.set_xlim(0, max([s.n_clips for s in summary] + [1]) * 1.3)  # room for the "k/n" labels
    for i, s in enumerate(summary):
        flag_ax.text(s.n_flagged, i, f" {s.n_flagged}/{s.n_clips}", va="center")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    return fig
