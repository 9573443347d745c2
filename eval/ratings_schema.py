"""The ratings log schema: one CSV row per listener judgement of an A/B pair.

Shared by the app (which appends rows, eval/ratings.py) and the statistics (which read them).
Bump SCHEMA_VERSION when columns change; readers refuse versions they do not know.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Column order of the CSV header. Each row is one judgement: the listener heard clip A and clip B
# (same text and prompt) and gave each a 1-5 score plus a preference.
COLUMNS: tuple[str, ...] = (
    "schema_version",  # SCHEMA_VERSION at write time
    "timestamp_utc",  # ISO 8601 with 'Z', e.g. 2026-11-26T12:00:00.123Z
    "listener_id",  # as typed by the listener (sanitised)
    "session_id",  # one browser session
    "trial_id",  # unique per trial; a trial is rated at most once
    "mode",  # "playground" | "blind"
    "text_id",
    "text",
    "prompt_id",
    "a_config",  # config_label(...) of configuration A, e.g. "bfloat16-n5"
    "a_flow_steps",
    "a_dtype",
    "a_backend",
    "a_seed",
    "a_clip_id",  # content hash of clip A
    "b_config",
    "b_flow_steps",
    "b_dtype",
    "b_backend",
    "b_seed",
    "b_clip_id",
    "shown_first",  # "A" | "B": which configuration was presented as the first/left clip
    "score_a",  # 1..5 (5 Excellent, 4 Good, 3 Fair, 2 Poor, 1 Bad)
    "score_b",  # 1..5
    "preference",  # "A" | "B" | "none"  (in configuration terms, not screen position)
    "model_id",
    "model_hash",
    "app_version",
)

SCORE_LABELS: dict[int, str] = {5: "Excellent", 4: "Good", 3: "Fair", 2: "Poor", 1: "Bad"}
PREFERENCES: tuple[str, ...] = ("A", "B", "none")
MODES: tuple[str, ...] = ("playground", "blind")


def config_label(dtype: str, flow_steps: int, backend: str = "torch") -> str:
    """Canonical name of a configuration, used as its id in ratings and reports.

    ``config_label("bfloat16", 5)`` -> ``"bfloat16-n5"``; a non-default backend is appended:
    ``config_label("float16", 10, "tensorrt")`` -> ``"float16-n10-tensorrt"``.
    """
    label = f"{dtype}-n{int(flow_steps)}"
    return label if backend in ("torch", "") else f"{label}-{backend}"
