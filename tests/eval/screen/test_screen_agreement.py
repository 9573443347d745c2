"""The screen beside the listeners: the join by clip id and Spearman's rho against textbook values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from eval.screen.agreement import LEVEL_CLIPS, LEVEL_CONFIGS, agreement_from_files, compare_with_listeners
from eval.screen.summary import ClipRow, write_rows
from eval.serving.ratings_schema import COLUMNS
from eval.statistics import report
from eval.statistics.ratings_io import read_ratings
from tests.conftest import judgement

# scipy.stats.spearmanr's documented example: spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) = 0.8207826816681233
TEXTBOOK_RHO = 0.8207826816681233
OVRL = [1.0, 2.0, 3.0, 4.0, 5.0]  # screen value of clips 0..4
HUMAN = [1, 2, 3, 4, 3]  # every score clip k receives (the example's y minus 4: same ranks)
CONFIG_OF = ["c0", "c0", "c1", "c2", "c2"]
KEYS = [f"{k:x}" * 64 for k in range(10, 15)]  # 64-hex bank keys; ratings carry the first 16


def _row(k: int) -> ClipRow:
    return ClipRow(
        text_id=f"t{k}", prompt_id="en_flite_slt", config=CONFIG_OF[k], clip_key=KEYS[k], duration_s=3.0,
        dnsmos_ovrl=OVRL[k], dnsmos_sig=3.0, dnsmos_bak=3.0, dnsmos_p808=None, sim_campplus=None,
        sim_resemblyzer=0.8, error_rate=1.0 - OVRL[k] / 10, metric="wer", asr="asr_pocketsphinx",
        transcript="", flags="", flag_details="", notes="", screen_s=0.1,
    )  # fmt: skip


def _ratings() -> pd.DataFrame:
    rows = []
    for n, (i, j) in enumerate([(0, 1), (2, 3), (4, 0), (1, 3)]):
        cells = judgement(f"t{n}")
        cells |= {
            "a_clip_id": KEYS[i][:16],
            "b_clip_id": KEYS[j][:16],
            "score_a": HUMAN[i],
            "score_b": HUMAN[j],
        }
        rows.append(cells)
    playground = judgement("pg-1") | {"mode": "playground", "a_clip_id": "feed", "b_clip_id": "beef"}
    rows.append(playground)
    table = pd.DataFrame(rows)
    table.insert(0, "schema_version", 1)
    table.insert(1, "timestamp_utc", "2026-11-26T12:00:00.000Z")
    return read_ratings(table[list(COLUMNS)])


def test_rank_correlations_are_the_textbook_values():
    agreement = compare_with_listeners(_ratings(), [_row(k) for k in range(5)])
    clips = agreement.correlation("dnsmos_ovrl", LEVEL_CLIPS)
    assert clips.n == 5 and clips.rho == pytest.approx(TEXTBOOK_RHO)
    configs = agreement.correlation("dnsmos_ovrl", LEVEL_CONFIGS)
    assert configs.n == 3 and configs.rho == pytest.approx(1.0)  # MOS 1.5 < 3 < 3.67, OVRL 1.5 < 3 < 4.5
    assert agreement.correlation("error_rate", LEVEL_CONFIGS).rho == pytest.approx(-1.0)
    constant = agreement.correlation("dnsmos_sig", LEVEL_CLIPS)
    assert math.isnan(constant.rho) and constant.note == "one side is constant"
    assert agreement.correlation("dnsmos_p808", LEVEL_CONFIGS).n == 0


def test_per_configuration_means_and_the_join():
    agreement = compare_with_listeners(_ratings(), [_row(k) for k in range(5)])
    c0, c1, c2 = agreement.configs
    assert (c0.config, c0.n_clips, c0.n_rated_clips, c0.n_scores) == (
        "c0",
        2,
        2,
        4,
    )  # clip 0 twice, clip 1 twice
    assert c0.human_mos == pytest.approx(1.5) and c0.screen_mean("dnsmos_ovrl") == pytest.approx(1.5)
    assert c1.human_mos == pytest.approx(3.0)
    assert c2.human_mos == pytest.approx((4 + 4 + 3) / 3)  # every score of its clips: clip 3 was rated twice
    assert agreement.n_scores_matched == 8 and agreement.n_scores_unmatched == 2  # the playground row


def test_report_cli_prints_and_writes_the_agreement(tmp_path, capsys):
    ratings, clips, out = tmp_path / "ratings.csv", tmp_path / "clips.csv", tmp_path / "report.json"
    _ratings().to_csv(ratings, index=False)
    write_rows(clips, [_row(k) for k in range(5)])
    argv = [
        str(ratings),
        "--baseline",
        "float16-n10",
        "--screen",
        str(clips),
        "--json",
        str(out),
        "--bootstrap",
        "200",
    ]
    assert report.main(argv) == 0
    text = capsys.readouterr().out
    assert "screen beside the listeners" in text and "Spearman" in text
    doc = __import__("json").loads(out.read_text())
    corr = {(c["measure"], c["level"]): c for c in doc["screen_agreement"]["correlations"]}
    assert corr[("dnsmos_ovrl", "clips")]["rho"] == pytest.approx(TEXTBOOK_RHO)
    assert agreement_from_files(ratings, clips, ["blind"]).n_scores_unmatched == 0


def test_a_file_that_is_not_a_screen_csv_is_refused(tmp_path, capsys):
    ratings, bogus = tmp_path / "ratings.csv", tmp_path / "bogus.csv"
    _ratings().to_csv(ratings, index=False)
    bogus.write_text("a,b\n1,2\n")
    assert report.main([str(ratings), "--baseline", "float16-n10", "--screen", str(bogus)]) == 2
    assert "not a screen CSV" in capsys.readouterr().err
