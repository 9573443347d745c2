"""The report CLI and summarize(): fields checked against an independent computation, bad logs refused."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from eval.serving.ratings_schema import COLUMNS
from eval.statistics import analysis, report
from eval.statistics.options import StatsOptions

BASE, FAST, ANCHOR = "float16-n10", "bfloat16-n5", "float32-n1"
EFFECTS = {FAST: -0.1, ANCHOR: -2.0}
REPO = Path(__file__).resolve().parents[3]
JSON_FIELDS = {"config", "n_ratings", "n_listeners", "n_texts", "mos", "ci_low", "ci_high", "rel_change"}
JSON_FIELDS |= {"noninferiority_lower_bound", "verdict"}


def _guard(value: str) -> str:
    # What the app writes: a leading quote on text a spreadsheet would evaluate.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def write_log(path: Path, n_listeners: int = 8, n_texts: int = 6, seed: int = 0) -> list[dict]:
    """A simulated log (BASE against FAST and ANCHOR, sides shuffled); returns the rows unguarded."""
    rng = np.random.default_rng(seed)
    offset_l, offset_t = rng.normal(0, 0.5, n_listeners), rng.normal(0, 0.3, n_texts)
    rows = []
    for i in range(n_listeners):
        for j in range(n_texts):
            for config, effect in EFFECTS.items():
                mean = 4.0 + offset_l[i] + offset_t[j]
                base = int(np.clip(np.rint(mean + rng.normal(0, 0.6)), 1, 5))
                other = int(np.clip(np.rint(mean + effect + rng.normal(0, 0.6)), 1, 5))
                flip = bool(rng.random() < 0.5)
                row = dict.fromkeys(COLUMNS, "")
                row |= {
                    "schema_version": "1",
                    "listener_id": f"=L{i}" if i == 0 else f"L{i}",  # a formula-looking id
                    "trial_id": f"{i}-{j}-{config}",
                    "mode": "blind",
                    "text_id": f"t{j}",
                    "text": f"-text {j}, with a comma",
                    "a_config": config if flip else BASE,
                    "b_config": BASE if flip else config,
                    "score_a": str(other if flip else base),
                    "score_b": str(base if flip else other),
                    "preference": "none" if base == other else ("A" if (other > base) == flip else "B"),
                }
                rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_guard(row[c]) for c in COLUMNS])
    return rows


def _independent(rows: list[dict]) -> dict[str, dict]:
    """Per configuration: counts and mean computed by plain loops over the rows."""
    out: dict[str, dict] = {}
    for row in rows:
        for side in ("a", "b"):
            entry = out.setdefault(row[f"{side}_config"], {"scores": [], "listeners": set(), "texts": set()})
            entry["scores"].append(int(row[f"score_{side}"]))
            entry["listeners"].add(row["listener_id"])
            entry["texts"].add(row["text_id"])
    return out


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eval.statistics.report", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_cli_writes_json_matching_an_independent_computation(tmp_path):
    log = tmp_path / "ratings.csv"
    rows = write_log(log)
    out = tmp_path / "out" / "report.json"
    plot = tmp_path / "out" / "report.png"
    done = _run_cli(
        str(log),
        "--baseline",
        BASE,
        "--margin",
        "0.05",
        "--anchor",
        ANCHOR,
        "--json",
        str(out),
        "--plot",
        str(plot),
        "--bootstrap",
        "500",
    )
    assert done.returncode == 0, done.stderr
    assert BASE in done.stdout and "verdict" in done.stdout
    assert plot.stat().st_size > 10_000
    # Strict JSON: no NaN/Infinity tokens anywhere.
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    truth = _independent(rows)
    configs = {c["config"]: c for c in data["configs"]}
    assert [c["config"] for c in data["configs"]] == [BASE, FAST, ANCHOR]
    for label, c in configs.items():
        assert set(c) >= JSON_FIELDS
        scores = np.array(truth[label]["scores"], dtype=float)
        assert c["n_ratings"] == scores.size
        assert c["n_listeners"] == len(truth[label]["listeners"])
        assert c["n_texts"] == len(truth[label]["texts"])
        assert c["mos"] == pytest.approx(scores.mean(), abs=1e-12)
        low, high = sps.t.interval(0.95, scores.size - 1, loc=scores.mean(), scale=sps.sem(scores))
        assert (c["naive_ci_low"], c["naive_ci_high"]) == pytest.approx((low, high), abs=1e-12)
        # Clustering by listener and text widens the interval beyond the naive one.
        assert c["ci_low"] < c["mos"] < c["ci_high"]
        assert c["ci_high"] - c["ci_low"] > high - low
    assert configs[BASE]["verdict"] == "baseline" and configs[BASE]["noninferiority_lower_bound"] is None
    assert configs[ANCHOR]["verdict"] == "fail"
    assert configs[FAST]["verdict"] in ("pass", "fail")
    # The ratio of the paired means, recomputed from the rows.
    paired = [r for r in rows if FAST in (r["a_config"], r["b_config"])]
    v = [int(r["score_a"] if r["a_config"] == FAST else r["score_b"]) for r in paired]
    b = [int(r["score_b"] if r["a_config"] == FAST else r["score_a"]) for r in paired]
    assert configs[FAST]["ratio"] == pytest.approx(np.mean(v) / np.mean(b), abs=1e-12)
    # The relative change is the tested one (paired judgements), not the ratio of all-ratings MOS.
    assert configs[FAST]["comparison"] == "paired"
    assert configs[FAST]["rel_change"] == pytest.approx(np.mean(v) / np.mean(b) - 1, abs=1e-12)
    assert configs[BASE]["rel_change"] == 0.0 and configs[BASE]["comparison"] is None
    assert configs[FAST]["noninferiority_lower_bound"] <= configs[FAST]["ratio"]
    assert (configs[FAST]["noninferiority_lower_bound"] > 0.95) == (configs[FAST]["verdict"] == "pass")
    # The formula guard is stripped when reading: the listener id is the one that was typed.
    assert "=L0" in {s["listener_id"] for s in data["listeners"]}
    assert data["methods"]["mos_ci"] and data["margin"] == 0.05
    pair = next(p for p in data["preferences"] if p["config_y"] == ANCHOR)
    assert pair["config_x"] == BASE and pair["n"] == 48


def _cgm_variance_by_groupby(frame: pd.DataFrame, column: str = "score") -> tuple[float, float]:
    """CGM (2011) two-way variance of the mean of ``column``, written from the paper's formula with
    pandas groupby: sum over clusters of (summed deviations / N)^2 times G / (G - 1); and its
    Satterthwaite df (each part a scaled chi^2 with G - 1 df), clamped to
    [1 / (1/(L-1) + 1/(T-1)), min(L, T) - 1] as eval/statistics/cgm.py documents."""
    dev = (frame[column] - frame[column].mean()) / len(frame)

    def one_way(keys: list[str]) -> tuple[float, int]:
        sums = dev.groupby([frame[k] for k in keys]).sum()
        return len(sums) / (len(sums) - 1) * float((sums**2).sum()), len(sums)

    (v_l, n_l), (v_t, n_t), (v_c, n_c) = (
        one_way(["listener_id"]),
        one_way(["text_id"]),
        one_way(["listener_id", "text_id"]),
    )
    v = v_l + v_t - v_c
    v = v if v > 0 else max(v_l, v_t)
    satt = v**2 / (v_l**2 / (n_l - 1) + v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))
    return v, min(max(satt, 1 / (1 / (n_l - 1) + 1 / (n_t - 1))), min(n_l, n_t) - 1)


def test_cli_method_cgm_matches_the_formula_and_is_recorded(tmp_path, capsys):
    log = tmp_path / "ratings.csv"
    rows = write_log(log)
    out = tmp_path / "report.json"
    args = [str(log), "--baseline", BASE, "--anchor", ANCHOR, "--json", str(out)]
    assert report.main([*args, "--method", "cgm"]) == 0
    assert "cluster-robust" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["method"] == "cgm" and data["n_boot"] is None and "Gelbach" in data["methods"]["mos_ci"]
    scores = pd.DataFrame(
        [
            {"config": r[f"{side}_config"], "listener_id": r["listener_id"], "text_id": r["text_id"]}
            | {"score": float(r[f"score_{side}"])}
            for r in rows
            for side in ("a", "b")
        ]
    )
    configs = {c["config"]: c for c in data["configs"]}
    for label, c in configs.items():
        mine = scores.loc[scores["config"] == label]
        var, df = _cgm_variance_by_groupby(mine)
        half = sps.t.ppf(0.975, df) * np.sqrt(var)
        assert (c["ci_low"], c["ci_high"]) == pytest.approx((c["mos"] - half, c["mos"] + half), abs=1e-9)
    # The bound of D = score_v - 0.95 score_base on the paired judgements, carried to the ratio scale.
    paired = pd.DataFrame(
        [
            {"listener_id": r["listener_id"], "text_id": r["text_id"]}
            | {"v": int(r["score_a" if r["a_config"] == FAST else "score_b"])}
            | {"b": int(r["score_b" if r["a_config"] == FAST else "score_a"])}
            for r in rows
            if FAST in (r["a_config"], r["b_config"])
        ]
    )
    paired["d"] = paired["v"] - 0.95 * paired["b"]
    var, df = _cgm_variance_by_groupby(paired, "d")
    d_lower = paired["d"].mean() - sps.t.ppf(0.95, df) * np.sqrt(var)
    fast = configs[FAST]
    assert fast["d_lower_bound"] == pytest.approx(d_lower, abs=1e-9)
    assert fast["noninferiority_lower_bound"] == pytest.approx(0.95 + d_lower / paired["b"].mean(), abs=1e-9)
    assert (fast["noninferiority_lower_bound"] > 0.95) == (fast["verdict"] == "pass") == (d_lower > 0)
    assert report.main([*args, "--method", "bootstrap"]) == 0
    boot = json.loads(out.read_text())
    assert boot["method"] == "bootstrap" and boot["n_boot"] == 2000
    assert report.main(args) == 0
    default = json.loads(out.read_text())
    assert default["method"] == "cluster-t" and default["n_boot"] is None


def test_summary_is_reproducible_and_accepts_tables(tmp_path):
    log = tmp_path / "ratings.csv"
    rows = write_log(log, n_listeners=5, n_texts=4)
    boot = StatsOptions(method="bootstrap", n_boot=300, seed=3)
    first = analysis.summarize(log, BASE, boot, anchor=ANCHOR).to_json_dict()
    again = analysis.summarize(pd.read_csv(log, dtype=str, keep_default_na=False), BASE, boot, anchor=ANCHOR)
    from_rows = analysis.summarize([dict(r) for r in rows], BASE, boot, anchor=ANCHOR)
    assert again.to_json_dict() == first
    assert from_rows.to_json_dict()["configs"] == first["configs"]
    other_seed = analysis.summarize(log, BASE, replace(boot, seed=4), anchor=ANCHOR).to_json_dict()
    assert other_seed["configs"][0]["ci_low"] != first["configs"][0]["ci_low"]
    # The default (analytic) method needs no random numbers: the seed changes nothing.
    analytic = [analysis.summarize(log, BASE, StatsOptions(seed=k), anchor=ANCHOR).to_json_dict() for k in (3, 4)]
    assert analytic[0]["configs"] == analytic[1]["configs"]


def test_plot_summary_returns_a_figure(tmp_path):
    log = tmp_path / "ratings.csv"
    write_log(log, n_listeners=4, n_texts=3)
    fig = report.plot_summary(analysis.summarize(log, BASE))
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "f.png")


def _corrupt(path: Path, column: str, value: str, row: int = 2) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[row, column] = value
    table.to_csv(path, index=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.write_text("name,age\nann,3\n"), "not a ratings log"),
        (lambda p: pd.read_csv(p, dtype=str).drop(columns=["score_b"]).to_csv(p, index=False), "'score_b'"),
        (lambda p: _corrupt(p, "schema_version", "7"), "unknown schema_version 7"),
        (lambda p: _corrupt(p, "score_a", "6"), "'score_a' must be in 1..5"),
        (lambda p: _corrupt(p, "score_b", "0"), "'score_b' must be in 1..5"),
        (lambda p: _corrupt(p, "score_b", "good"), "'score_b' must hold integers"),
        (lambda p: _corrupt(p, "score_a", "3.5"), "'score_a' must hold integers"),
        (lambda p: _corrupt(p, "preference", "left"), "'preference' must be one of"),
        (lambda p: _corrupt(p, "listener_id", ""), "'listener_id' is empty in data row 3"),
        (lambda p: p.write_text(p.read_text() + "1,2,3\n"), f"3 fields where the header has {len(COLUMNS)}"),
        (lambda p: p.write_text(""), "empty"),
        (lambda p: p.write_text(",".join(COLUMNS) + "\n"), "no ratings"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage\x00\x81"), "cannot be read"),
    ],
)
def test_bad_logs_give_a_clear_error_and_exit_code_2(tmp_path, capsys, change, message):
    log = tmp_path / "ratings.csv"
    write_log(log, n_listeners=3, n_texts=2)
    change(log)
    assert report.main([str(log), "--baseline", BASE]) == report.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_unknown_baseline_lists_configs_without_traceback(tmp_path):
    log = tmp_path / "ratings.csv"
    write_log(log, n_listeners=3, n_texts=2)
    done = _run_cli(str(log), "--baseline", "float64-n99")
    assert done.returncode == 2
    assert "float64-n99" in done.stderr and f"{FAST}, {BASE}, {ANCHOR}" in done.stderr
    assert "Traceback" not in done.stderr
    missing = _run_cli(str(tmp_path / "nope.csv"), "--baseline", BASE)
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr


def test_duplicates_modes_and_insufficient_data(tmp_path):
    log = tmp_path / "ratings.csv"
    write_log(log, n_listeners=1, n_texts=4)  # one listener: no verdict possible
    table = pd.read_csv(log, dtype=str, keep_default_na=False)
    table = pd.concat([table, table.iloc[[0]]], ignore_index=True)  # a repeated trial
    table.loc[1, "mode"] = "playground"
    summary = analysis.summarize(table, BASE)
    assert summary.n_judgements == 8
    assert summary.config(FAST).verdict == "insufficient" and "listener" in summary.config(FAST).reason
    assert any("repeated trial_id" in w for w in summary.warnings)
    assert any("playground" in w for w in summary.warnings)
    blind = analysis.summarize(table, BASE, modes=["blind"])
    assert blind.n_judgements == 7 and blind.modes == ("blind",)


def test_ratings_written_by_the_app_store_are_read(tmp_path):
    ratings = pytest.importorskip("eval.serving.ratings")
    store = ratings.RatingsStore(tmp_path / "ratings.csv")
    for i, row in enumerate(write_log(tmp_path / "sim.csv", n_listeners=3, n_texts=2)):
        cells = {k: v for k, v in row.items() if k not in ("schema_version", "timestamp_utc")}
        cells |= {"a_flow_steps": 10, "b_flow_steps": 5, "a_seed": 0, "b_seed": 0, "shown_first": "A"}
        cells |= {"session_id": "s", "trial_id": f"trial-{i}", "a_plays": 1, "b_plays": 1, "trial_kind": "test"}
        store.append(cells)
    summary = analysis.summarize(store.path, BASE)
    assert summary.n_judgements == 12
    assert "=L0" in {s.listener_id for s in summary.listeners}


def _judgement(listener, text, a, b, score_a, score_b, trial="", stamp="2026-11-26T12:00:00.000Z") -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row |= {
        "schema_version": "1",
        "timestamp_utc": stamp,
        "listener_id": listener,
        "text_id": text,
        "trial_id": trial,
        "mode": "blind",
        "a_config": a,
        "b_config": b,
        "score_a": str(score_a),
        "score_b": str(score_b),
        "preference": "none",
    }
    return row


def test_rows_without_trial_id_repeated_field_for_field_are_counted_once():
    rows = [
        _judgement(f"L{i}", f"t{j}", FAST, BASE, 4 - (i + j) % 2, 4, trial="")
        for i in range(6)
        for j in range(6)
    ]
    again = dict(rows[3]) | {"timestamp_utc": "2026-11-26T13:00:00.000Z"}  # the same judgement, later
    near = dict(rows[4]) | {"score_a": "1"}  # differs in one field: a real judgement
    table = pd.DataFrame([*rows, again, dict(rows[5]), near], columns=COLUMNS)
    summary = analysis.summarize(table, BASE)
    assert summary.n_judgements == 36 + 1 and summary.n_repeated_rows == 2
    assert any(
        "2 row(s) without trial_id repeat an earlier row" in w and "37, 38" in w for w in summary.warnings
    )
    data = summary.to_json_dict()
    assert data["excluded_rows"] == {"repeated_trial_id": 0, "repeated_without_trial_id": 2}
    # Counted once: the MOS is that of the 37 distinct judgements.
    fast = [int(r["score_a"]) for r in [*rows, near]]
    assert summary.config(FAST).mos == pytest.approx(np.mean(fast), abs=1e-12)
    assert "repeated without trial_id" in sheets_report_keys(summary)


def sheets_report_keys(summary) -> str:
    from eval.statistics import sheets

    return " ".join(str(k) for k in sheets.report_table(summary)["key"])


def test_rel_change_is_the_tested_paired_change_in_a_multi_configuration_plan():
    # FAST vs BASE by strict listeners (BASE 3, FAST a little better); BASE vs ANCHOR by lenient
    # ones (BASE 5). All-ratings MOS of BASE is high, so MOS_FAST / MOS_BASE - 1 < 0, while the
    # paired test (the one the verdict is about) sees FAST about 7% better.
    rows = [_judgement(f"S{i}", f"t{j}", FAST, BASE, 3 + (j % 5 == 0), 3) for i in range(6) for j in range(8)]
    rows += [_judgement(f"N{i}", f"t{j}", BASE, ANCHOR, 5, 2) for i in range(6) for j in range(8)]
    summary = analysis.summarize(pd.DataFrame(rows, columns=COLUMNS), BASE, anchor=ANCHOR)
    fast = summary.config(FAST)
    all_ratings = fast.mos / summary.config(BASE).mos - 1
    paired = np.mean([3 + (j % 5 == 0) for j in range(8)]) / 3 - 1
    assert all_ratings < 0 < paired
    assert (fast.comparison, fast.rel_change) == ("paired", pytest.approx(paired, abs=1e-12))
    table = report.format_table(summary)
    assert "on the judgements the test compares" in table


def test_insufficient_verdict_says_why_in_text_json_and_sheets(tmp_path):
    log = tmp_path / "ratings.csv"
    write_log(log, n_listeners=4, n_texts=8)
    out, xlsx = tmp_path / "r.json", tmp_path / "r.csv"
    done = _run_cli(str(log), "--baseline", BASE, "--json", str(out), "--csv", str(xlsx))
    assert done.returncode == 0, done.stderr
    reason = "4 listeners: at least 5 needed for a clustered bound"
    assert "insufficient" in done.stdout and reason in done.stdout
    fast = next(c for c in json.loads(out.read_text())["configs"] if c["config"] == FAST)
    assert (fast["verdict"], fast["reason"], fast["noninferiority_lower_bound"]) == (
        "insufficient",
        reason,
        None,
    )
    assert fast["ci_low"] is not None  # a MOS interval needs only 3 listeners
    with xlsx.open(newline="") as f:
        sheet = {r["config"]: r for r in csv.DictReader(f)}
    assert (sheet[FAST]["verdict"], sheet[FAST]["reason"]) == ("insufficient", reason)


def test_near_the_ceiling_with_few_listeners_the_report_warns():
    rows = [
        _judgement(f"L{i}", f"t{j}", FAST, BASE, 5 - (i + j) % 3 // 2, 5) for i in range(6) for j in range(8)
    ]
    summary = analysis.summarize(pd.DataFrame(rows, columns=COLUMNS), BASE)
    assert summary.config(BASE).mos >= analysis.CEILING_MOS and summary.config(FAST).verdict in ("pass", "fail")
    assert any("near the top of the scale" in w for w in summary.warnings)
    lower = [dict(r) | {"score_b": "4"} for r in rows]  # baseline MOS 4: no warning
    assert not any(
        "near the top" in w for w in analysis.summarize(pd.DataFrame(lower, columns=COLUMNS), BASE).warnings
    )
