"""App pieces without a server: rating rules, listener ids, prompt checks, options, plots, results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from abapp.playback import ClipPlayback
from abapp.spectrogram import pair_figure
from abapp.state import Judgement, PairState, RatingRefused, Side, clean_listener_id, rating_row
from abapp.synthesis import check_text, make_options, read_prompt_audio
from eval.serving.conditions import Condition
from eval.serving.ratings import format_row
from tts_core.config_id import ConfigId
from tts_core.constants import MAX_TEXT_CHARS

ROOT = Path(__file__).resolve().parents[2]


def pair(shown_first: str = "B", rated: bool = False) -> PairState:
    return PairState(
        trial_id="t1",
        mode="blind",
        text_id="en_01",
        text="Hello, world.",
        prompt_id="en_flite_slt",
        a=Side(Condition.rendered(ConfigId("float16", 10)), "float16", "torch", "eager", 0, "aaaa"),
        b=Side(Condition.rendered(ConfigId("bfloat16", 5)), "bfloat16", "torch", "eager", 0, "bbbb"),
        shown_first=shown_first,
        model_id="m",
        model_hash="h",
        rated=rated,
    )


def heard(times: int = 1, seconds: float = 2.0) -> ClipPlayback:
    """A clip of ``seconds`` played to its end ``times`` times (server clock)."""
    playback, now = ClipPlayback(seconds), 0.0
    for _ in range(times):
        playback = playback.started(now)
        now += seconds
        playback = playback.ended(now)
    return playback


BOTH = (heard(1), heard(3))


def row_for(p, first, second, pref, playback=BOTH, listener="alice"):
    return rating_row(p, playback, Judgement(first, second, pref), listener_id=listener, session_id="s", app_version="x")


def test_screen_positions_map_to_configurations() -> None:
    # B is shown first: clip 1 is B. Scores, preference and play counts land on the right configuration.
    row = row_for(pair("B"), 2, 5, "second")
    assert (row["score_a"], row["score_b"], row["preference"], row["shown_first"]) == (5, 2, "A", "B")
    assert (row["a_plays"], row["b_plays"], row["trial_kind"]) == (3, 1, "test")
    assert row["a_config"] == "float16-n10" and row["b_config"] == "bfloat16-n5"
    row = row_for(pair("A"), 2, 5, "second")
    assert (row["score_a"], row["score_b"], row["preference"], row["a_plays"]) == (2, 5, "B", 1)
    assert row_for(pair("A"), "3", "4", "none")["preference"] == "none"
    format_row(row)  # the store accepts it as is


@pytest.mark.parametrize(
    "state, listener, scores, pref, playback, message",
    [
        (None, "alice", (3, 3), "none", BOTH, "no pair"),
        (pair(), None, (3, 3), "none", BOTH, "listener id"),
        (pair(), "alice", (3, 3), "none", (heard(), ClipPlayback(2.0)), "clip 2"),
        (pair(), "alice", (3, 3), "none", (None, ClipPlayback(2.0).started(0.0)), "clip 1 and 2"),
        (pair(rated=True), "alice", (3, 3), "none", BOTH, "already rated"),
        (pair(), "alice", (None, 3), "none", BOTH, "clip 1 a score"),
        (pair(), "alice", (3, 6), "none", BOTH, "1-5"),
        (pair(), "alice", (3, 3), None, BOTH, "preference"),
    ],
)
def test_refusals(state, listener, scores, pref, playback, message) -> None:
    with pytest.raises(RatingRefused, match=message):
        row_for(state, *scores, pref, playback=playback, listener=listener)


def test_a_clip_is_heard_only_when_played_to_its_end() -> None:
    clip = ClipPlayback(10.0)
    assert not clip.started(0.0).ended(2.0).heard  # skipped to the end after 2 s
    assert not clip.ended(100.0).heard  # an end without a start
    resumed = clip.started(0.0).paused(4.0).started(60.0).ended(65.5)  # 4 s + 5.5 s, a pause between
    assert resumed.heard and resumed.plays == 1 and resumed.listened_s == pytest.approx(9.5)
    twice = resumed.started(70.0).ended(80.0)
    assert twice.plays == 2
    assert twice.started(90.0).ended(91.0).plays == 2  # a third end needs a third listening


def test_listener_ids() -> None:
    assert clean_listener_id("  Ann   Lee ") == "Ann Lee"
    for bad in ("", "   ", None, "x" * 65, "a\x00b"):
        with pytest.raises(ValueError):
            clean_listener_id(bad)


def test_prompt_audio_checks(tmp_path: Path) -> None:
    ok = ROOT / "assets" / "prompts" / "en_flite_slt.wav"
    audio, rate = read_prompt_audio(ok)
    assert rate == 22_050 and audio.dtype == np.float32 and audio.ndim == 1
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([audio, audio], axis=1), rate)
    assert read_prompt_audio(stereo)[0].shape == audio.shape
    silent, short, text = tmp_path / "silent.wav", tmp_path / "short.wav", tmp_path / "notes.wav"
    sf.write(silent, np.zeros(3 * 16_000, dtype=np.float32), 16_000)
    sf.write(short, 0.3 * np.sin(np.arange(3_200) / 4.0), 16_000)
    text.write_text("not audio at all")
    for path, message in ((silent, "silent"), (short, "0.20 s"), (text, "as audio"), (None, "voice prompt")):
        with pytest.raises(ValueError, match=message):
            read_prompt_audio(path)


def test_text_and_option_checks() -> None:
    assert check_text("  hi ") == "hi"
    with pytest.raises(ValueError, match="empty"):
        check_text("   ")
    with pytest.raises(ValueError, match=str(MAX_TEXT_CHARS)):
        check_text("a" * 10_000)
    opts = make_options(5.0, "bfloat16", 3, "B")
    assert (opts.flow_steps, opts.dtype, opts.seed) == (5, "bfloat16", 3)
    for args, message in (
        ((0, "float32", 0), "flow_steps"),
        ((2.5, "float32", 0), "whole"),
        ((5, "int8", 0), "dtype"),
        ((5, "float32", None), "seed"),
    ):
        with pytest.raises(ValueError, match=message):
            make_options(*args, "A")


def test_pair_figure_shares_colour_scale_and_labels_axes() -> None:
    gen = torch.Generator().manual_seed(0)
    mel_a = torch.randn(80, 100, generator=gen) - 5.0
    mel_b = torch.randn(80, 120, generator=gen)  # louder and longer: the scale must cover both
    fig = pair_figure(mel_a, mel_b)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert images[0].get_clim() == images[1].get_clim()
    both = np.concatenate([mel_a.numpy().ravel(), mel_b.numpy().ravel()])
    assert images[0].get_clim()[0] < np.median(mel_a.numpy()) and images[0].get_clim()[1] > np.median(
        mel_b.numpy()
    )
    assert images[0].get_clim()[0] >= both.min()
    low, high = images[2].get_clim()
    assert low == -high  # symmetric difference scale
    np.testing.assert_allclose(images[2].get_array(), (mel_b[:, :100] - mel_a).numpy(), rtol=1e-6)
    plot_axes = [ax for ax in fig.axes if ax.images]
    assert all(ax.get_ylabel() == "mel bin" for ax in plot_axes)
    assert plot_axes[-1].get_xlabel() == "time (s)"
    assert plot_axes[1].get_xlim()[1] == pytest.approx(120 * 0.02)  # 50 frames per second


def test_edge_distance_separates_chunk_edges_from_the_rest() -> None:
    import numpy as np

    from abapp.spectrogram import BOUNDARY_HALF_WIDTH_FRAMES, edge_mel_l1

    a = np.zeros((80, 200), dtype=np.float32)
    b = a.copy()
    b[:, 100 - BOUNDARY_HALF_WIDTH_FRAMES : 100 + BOUNDARY_HALF_WIDTH_FRAMES] = 0.5  # differs only at the edge
    near, far, frames = edge_mel_l1(a, b, (100,))
    assert (near, far, frames) == (0.5, 0.0, 2 * BOUNDARY_HALF_WIDTH_FRAMES)


def test_warmup_covers_the_offered_step_counts_in_every_dtype() -> None:
    from app import warmup_configs

    labels = [c.label for c in warmup_configs(("float16", "bfloat16"), (ConfigId("float16", 3, True),))]
    assert labels == [
        f"{d}-n{n}{s}" for d in ("float16", "bfloat16") for n in (10, 8, 5, 3) for s in ("", "-stream")
    ]


def test_results_table_shows_why_a_verdict_is_insufficient() -> None:
    from abapp.results_tab import summary_frame
    from eval.serving.ratings_schema import COLUMNS
    from eval.statistics import analysis

    rows = []
    for i in range(4):
        for j in range(6):
            row = dict.fromkeys(COLUMNS, "")
            row |= {"schema_version": "1", "listener_id": f"L{i}", "text_id": f"t{j}", "trial_id": f"{i}-{j}"}
            row |= {
                "mode": "blind",
                "a_config": "bfloat16-n5",
                "b_config": "float16-n10",
                "preference": "none",
            }
            row |= {"score_a": str(3 + (i + j) % 3), "score_b": "4"}
            rows.append(row)
    frame = summary_frame(analysis.summarize(rows, baseline="float16-n10"))
    fast = frame.set_index("config").loc["bfloat16-n5"]
    assert fast["verdict"].endswith("insufficient: 4 listeners: at least 5 needed for a clustered bound")
    assert fast["test"] == "paired"
