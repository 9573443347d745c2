"""The ratings log schema: one CSV row per listener judgement of an A/B pair.

Shared by the app (which appends rows, eval/serving/ratings.py) and the statistics (which read them).
Bump SCHEMA_VERSION when columns change; readers refuse versions they do not know.

Configurations are named by :class:`tts_core.options.ConfigId` labels (``bfloat16-n5``): what was
asked for. What actually ran (flow backend, LLM decoder, dtype after a fallback) has columns of its
own. Version history: 1 (first release; its labels carried the flow backend when it was not
``torch``, e.g. ``float16-n10-torch-cudagraph``), 2 (adds ``a_llm_backend``/``b_llm_backend``),
3 (adds ``a_plays``/``b_plays``, how often each clip was heard to its end, and ``trial_kind``:
test trials and the hidden anchor / reference trials of a plan). A configuration label may also
name a condition that is not one of ours: the low-passed baseline (``float16-n10-lp3500``) or a
clip made by another system (``trtllm-bf16-n5``).
"""

from __future__ import annotations

SCHEMA_VERSION = 3

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
    "a_config",  # ConfigId label of configuration A as asked for, e.g. "bfloat16-n5"
    "a_flow_steps",
    "a_dtype",  # the dtype that ran (differs from the label's only after a visible fallback)
    "a_backend",  # flow backend that ran: "torch", "torch-cudagraph", "tensorrt"
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
    "a_llm_backend",  # LLM decoder that made A's tokens ("eager", "cuda-graph-triton", ...)
    "b_llm_backend",
    "a_plays",  # times clip A was played to its end before the rating (blind and playground)
    "b_plays",
    "trial_kind",  # "test" | "anchor" (hidden low anchor vs baseline) | "reference" (baseline vs itself)
)
# Columns added after version 1 and 2: older logs lack them, and readers take them as empty.
ADDED_IN_V2: tuple[str, ...] = ("a_llm_backend", "b_llm_backend")
ADDED_IN_V3: tuple[str, ...] = ("a_plays", "b_plays", "trial_kind")
V2_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in ADDED_IN_V3)
V1_COLUMNS: tuple[str, ...] = tuple(c for c in V2_COLUMNS if c not in ADDED_IN_V2)
# Flow backends that version 1 appended to a label ("float16-n10-tensorrt"); readers strip them.
V1_LABEL_BACKEND_SUFFIXES: tuple[str, ...] = ("-torch-cudagraph", "-tensorrt", "-torch")

# A cell starting with one of these is a formula to a spreadsheet; the store writes a leading ' before
# it and readers strip that guard again.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
SCORE_LABELS: dict[int, str] = {5: "Excellent", 4: "Good", 3: "Fair", 2: "Poor", 1: "Bad"}
PREFERENCES: tuple[str, ...] = ("A", "B", "none")
MODES: tuple[str, ...] = ("playground", "blind")
TRIAL_KINDS: tuple[str, ...] = ("test", "anchor", "reference")

