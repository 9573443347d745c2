"""What a clip of a listening test is: one condition, named by its label in the ratings log.

A plan compares *conditions*. Most are configurations of our own pipeline (``bfloat16-n5``); a
plan may add a hidden low anchor (a configuration such as ``float32-n1``, or the baseline low-passed
at 3.5 kHz as MUSHRA does, labelled ``<baseline>-lp3500``) and clips made elsewhere (labels from an
import manifest, e.g. ``trtllm-bf16-n5``). Every condition has one label; the bank finds its clip
by (text id, prompt id, label). Torch-free, like :mod:`tts_core.config_id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tts_core.config_id import ConfigId

SOURCES = ("rendered", "lowpass", "external")
LOWPASS_CUTOFF_HZ = 3_500  # ITU-R BS.1534-3 (MUSHRA) low anchor
ANCHOR_LOWPASS = "lowpass"  # what a plan writes for the low-passed baseline anchor
LOWPASS_SUFFIX = f"-lp{LOWPASS_CUTOFF_HZ}"
EXTERNAL_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
EXTERNAL_RAN = "external"  # dtype/backend cells of a clip made by another system


@dataclass(frozen=True)
class Condition:
    """One condition: its label, where its clips come from, and the configuration behind it."""

    label: str  # as in the ratings log ("float16-n10", "float16-n10-lp3500", "trtllm-bf16-n5")
    source: str  # "rendered" (our pipeline), "lowpass" (config's clip filtered), "external"
    config: ConfigId | None = None  # rendered: what runs; lowpass: the filtered one's (if ours)
    filtered: str = ""  # lowpass: label of the condition whose clips are filtered

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"condition source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "rendered" and self.config is None:
            raise ValueError(f"condition {self.label!r}: a rendered condition needs its configuration")
        if (self.source == "lowpass") != bool(self.filtered):
            raise ValueError(f"condition {self.label!r}: only a low-pass condition filters another")

    @classmethod
    def rendered(cls, config: ConfigId) -> Condition:
        return cls(config.label, "rendered", config)

    @classmethod
    def lowpass(cls, base: Condition) -> Condition:
        """The clips of ``base`` low-passed at :data:`LOWPASS_CUTOFF_HZ` (a MUSHRA low anchor)."""
        return cls(base.label + LOWPASS_SUFFIX, "lowpass", base.config, base.label)

    @classmethod
    def external(cls, label: str) -> Condition:
        return cls(check_external_label(label), "external", None)

    @property
    def flow_steps(self) -> int:
        """Flow steps for the log (0: not ours to know, for clips of another system)."""
        return self.config.flow_steps if self.config is not None else 0


def check_external_label(label: str) -> str:
    """An external system's label: 1-48 of ``A-Z a-z 0-9 . _ -``, and never one of our own labels
    (then its judgements could never be mixed up with ours in the statistics)."""
    text = str(label).strip()
    if not EXTERNAL_LABEL.match(text):
        raise ValueError(
            f"external configuration label {label!r} must be 1-48 letters, digits, '.', '_' or '-'"
        )
    try:
        ConfigId.parse(text)
    except ValueError:
        return text
    raise ValueError(
        f"external configuration label {text!r} reads as one of this app's configurations; "
        "name it after the system that made the clips, e.g. 'trtllm-bf16-n5'"
    )


def anchor_condition(anchor: str, baseline: Condition) -> Condition:
    """The plan's anchor entry: ``"lowpass"`` (the baseline filtered) or a configuration label."""
    if anchor.strip().lower() == ANCHOR_LOWPASS:
        return Condition.lowpass(baseline)
    return Condition.rendered(ConfigId.parse(anchor))
