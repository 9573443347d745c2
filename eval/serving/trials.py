"""Listening-test plans and their text and prompt assets.

* :class:`TestPlan`: which texts, prompts and configurations are compared, and how many trials
  each listener rates; loaded from JSON or YAML (``assets/plans/example.json``).
* The clips of a plan are synthesised into the content-addressed bank of ``eval.serving.clipbank``.
* The balanced blind assignment of a plan's trials to a listener is in eval/serving/assignment.py.
* A condition taken out of a plan before the test (eval/serving/plan_drop.py) is gone from its
  configurations and kept in ``dropped`` with the reason, so the saved plan says what was dropped.

Texts and prompts come from ``assets/texts/sentences.json`` and ``assets/prompts/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.serving.conditions import Condition, anchor_condition
from eval.serving.external_manifest import manifest_labels
from tts_core.config_id import ConfigId

ROOT = Path(__file__).resolve().parents[2]
TEXTS_FILE = ROOT / "assets" / "texts" / "sentences.json"
PROMPT_DIR = ROOT / "assets" / "prompts"
COMPARISONS = ("baseline", "all")  # each config vs the baseline, or every pair of configs
MAX_TRIALS_PER_LISTENER = 500
MAX_CONTROL_RATE = 1.0  # at most one anchor (and one reference) trial per test trial
DEFAULT_ANCHOR_RATE = 0.1  # anchor trials per test trial when a plan names an anchor but no rate
TRIAL_KINDS = ("test", "anchor", "reference")  # the ratings log's trial_kind values
PLAN_TAG_CHARS = 8  # trial ids start with this many hex digits of the plan's digest


# ----------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class TextItem:
    id: str
    language: str  # "en" | "zh"
    text: str
    category: str = ""


@dataclass(frozen=True)
class PromptAsset:
    """One voice prompt clip of the manifest."""

    id: str
    path: Path
    transcript: str
    language: str
    voice: str = ""
    tool: str = ""
    sha256: str = ""

    def digest(self) -> str:
        """Content hash of the audio file and transcript (no model needed to compute it)."""
        h = hashlib.sha256(self.path.read_bytes())
        h.update(self.transcript.encode("utf-8"))
        return h.hexdigest()

    def load(self) -> tuple[np.ndarray, int]:
        """(audio (N,) float32, sample_rate)."""
        audio, rate = sf.read(self.path, dtype="float32", always_2d=False)
        return audio, int(rate)


def load_texts(path: Path = TEXTS_FILE) -> dict[str, TextItem]:
    """Test sentences by id."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    items = [TextItem(s["id"], s["language"], s["text"], s.get("category", "")) for s in doc["sentences"]]
    return {t.id: t for t in items}


def load_prompts(folder: Path = PROMPT_DIR) -> dict[str, PromptAsset]:
    """Prompt clips of ``folder/manifest.json`` by id."""
    folder = Path(folder)
    doc = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return {
        e["id"]: PromptAsset(
            e["id"], folder / e["file"], e["transcript"], e["language"], e["voice"], e["tool"], e["sha256"]
        )
        for e in doc["prompts"]
    }


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class DroppedCondition:
    """A condition taken out of a plan before its test was opened, and why (shown to the experimenter)."""

    label: str
    reason: str  # e.g. "screen: 3 of 4 clips flagged (silent 3)"


@dataclass(frozen=True)
class TestPlan:
    """A listening test: the stimuli (texts x prompts x conditions) and what each listener rates.

    The conditions under test are our configurations (``configs``) plus, optionally, those of a
    folder of clips made by another system (``external_configs``). Hidden controls are mixed into
    every listener's list: anchor trials (the anchor against the baseline) and hidden-reference
    trials (the baseline against itself), ``ceil(rate * trials_per_listener)`` of each.
    """

    name: str
    text_ids: tuple[str, ...]
    prompt_ids: tuple[str, ...]
    configs: tuple[ConfigId, ...]
    baseline: str  # label of the reference condition (side A of every pair)
    trials_per_listener: int  # test trials; the hidden controls come on top
    seed: int = 0  # synthesis seed of every clip (the same for A and B)
    comparisons: str = "baseline"
    match_language: bool = True  # pair each text only with prompts of its language
    anchor: str = ""  # hidden low anchor: "lowpass" (the baseline at 3.5 kHz) or a label ("float32-n1")
    anchor_rate: float = 0.0  # anchor trials per test trial (rounded up per listener)
    reference_rate: float = 0.0  # hidden-reference trials (baseline vs baseline) per test trial
    reveal_at_end: bool = False  # after the last trial: the listener's mean score per condition
    external_dir: str = ""  # folder of clips made elsewhere, with manifest.json (eval/serving/external.py)
    external_configs: tuple[str, ...] = ()  # that folder's configuration labels in this plan
    dropped: tuple[DroppedCondition, ...] = ()  # conditions taken out before the test (not in configs)
    __test__ = False  # not a pytest class, despite the name

    def __post_init__(self) -> None:
        for name in ("text_ids", "prompt_ids"):
            if not getattr(self, name):
                raise ValueError(f"test plan {self.name!r}: '{name}' must not be empty")
        if not self.configs and not self.external_configs:
            raise ValueError(f"test plan {self.name!r}: 'configs' must not be empty")
        if self.external_configs and not self.external_dir:
            raise ValueError(f"test plan {self.name!r}: external configurations need the external folder")
        labels = [c.label for c in self.conditions]
        if len(set(labels)) != len(labels):
            raise ValueError(f"test plan {self.name!r}: configurations repeat: {labels}")
        if len(labels) < 2:
            raise ValueError(f"test plan {self.name!r}: needs at least two configurations to compare")
        if self.baseline not in labels:
            raise ValueError(f"test plan {self.name!r}: baseline {self.baseline!r} is not one of {labels}")
        if self.comparisons not in COMPARISONS:
            raise ValueError(f"test plan {self.name!r}: comparisons must be one of {COMPARISONS}")
        if not 1 <= self.trials_per_listener <= MAX_TRIALS_PER_LISTENER:
            raise ValueError(
                f"test plan {self.name!r}: trials_per_listener must be 1..{MAX_TRIALS_PER_LISTENER}"
            )
        self._check_controls(labels)
        gone = [d.label for d in self.dropped]
        if len(set(gone)) != len(gone) or set(gone) & set(labels):
            raise ValueError(f"test plan {self.name!r}: a dropped configuration repeats or is still in the plan: {gone}")

    def _check_controls(self, labels: list[str]) -> None:
        for name in ("anchor_rate", "reference_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= MAX_CONTROL_RATE:
                raise ValueError(f"test plan {self.name!r}: {name} must be in 0..{MAX_CONTROL_RATE}, got {rate}")
        if bool(self.anchor) != (self.anchor_rate > 0):
            raise ValueError(f"test plan {self.name!r}: an anchor needs anchor_rate > 0 (and a rate an anchor)")
        anchor = self.anchor_condition
        if anchor is not None and anchor.label in labels:
            raise ValueError(f"test plan {self.name!r}: the anchor {anchor.label!r} is also under test")

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """The conditions under test: our configurations, then the external ones."""
        ours = tuple(Condition.rendered(c) for c in self.configs)
        return ours + tuple(Condition.external(label) for label in self.external_configs)

    @property
    def baseline_condition(self) -> Condition:
        return next(c for c in self.conditions if c.label == self.baseline)

    @property
    def anchor_condition(self) -> Condition | None:
        """The hidden low anchor (None when the plan has none)."""
        return anchor_condition(self.anchor, self.baseline_condition) if self.anchor else None

    @property
    def all_conditions(self) -> tuple[Condition, ...]:
        """Every condition a listener may hear: those under test, then the anchor."""
        anchor = self.anchor_condition
        return self.conditions + ((anchor,) if anchor is not None else ())

    @property
    def rendered_configs(self) -> tuple[ConfigId, ...]:
        """Our configurations whose clips the pipeline makes (the anchor's too when it is one)."""
        return tuple(c.config for c in self.all_conditions if c.source == "rendered")

    @property
    def pairs(self) -> tuple[tuple[Condition, Condition], ...]:
        """(A, B) pairs; A is the baseline (or the earlier condition for ``comparisons='all'``)."""
        base = self.baseline_condition
        others = [c for c in self.conditions if c.label != self.baseline]
        if self.comparisons == "baseline":
            return tuple((base, c) for c in others)
        ordered = [base, *others]
        return tuple((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])

    def controls_per_listener(self) -> tuple[int, int]:
        """(anchor trials, hidden-reference trials) added to each listener's test trials."""
        n = self.trials_per_listener
        # NOTE: a small epsilon keeps 0.3 * 10 = 3.0000000000000004 from rounding up to 4.
        return tuple(math.ceil(rate * n - 1e-9) for rate in (self.anchor_rate, self.reference_rate))

    def digest(self) -> str:
        """sha256 of the plan's content; trial ids derive from it, so a changed plan gets new ids.

        Fields added after the first release count only when set, so an older plan keeps its ids.
        """
        doc = {k: v for k, v in asdict(self).items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def stimuli(self, texts: dict[str, TextItem], prompts: dict[str, PromptAsset]) -> list[tuple[str, str]]:
        """The (text id, prompt id) combinations of the plan, checked against the assets."""
        unknown_t = [t for t in self.text_ids if t not in texts]
        unknown_p = [p for p in self.prompt_ids if p not in prompts]
        if unknown_t or unknown_p:
            raise ValueError(
                f"test plan {self.name!r}: unknown text ids {unknown_t} / prompt ids {unknown_p}"
            )
        combos = [
            (t, p)
            for t in self.text_ids
            for p in self.prompt_ids
            if not self.match_language or texts[t].language == prompts[p].language
        ]
        if not combos:
            raise ValueError(f"test plan {self.name!r}: no prompt shares a language with any text")
        return combos

    def to_json(self) -> str:
        doc = asdict(self)
        doc["configs"] = [c.label for c in self.configs]
        doc["external_configs"] = list(self.external_configs)
        return json.dumps(doc, ensure_ascii=False, indent=2)


# Fields added after the first release, with the value that means "not used".
LATER_FIELDS: dict[str, object] = {
    "anchor": "",
    "anchor_rate": 0.0,
    "reference_rate": 0.0,
    "reveal_at_end": False,
    "external_dir": "",
    "external_configs": (),
    "dropped": (),
}


def plan_tag(plan: TestPlan) -> str:
    """The first characters of every trial id of ``plan`` (its digest's, so a changed plan gets new ids)."""
    return plan.digest()[:PLAN_TAG_CHARS]


def _dropped_part(doc: dict) -> tuple[DroppedCondition, ...]:
    """A plan's ``dropped: [{label, reason}]`` (what plan.to_json writes)."""
    entries = doc.get("dropped") or ()
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'dropped' must be a list of {label, reason}")
    return tuple(DroppedCondition(str(e["label"]), str(e.get("reason", ""))) for e in entries)


def plan_config(entry: object) -> ConfigId:
    """A plan's configuration entry: a label (``"bfloat16-n5"``) or ``{dtype, flow_steps}``."""
    if isinstance(entry, str):
        return ConfigId.parse(entry)
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"dtype", "flow_steps"})
        if unknown:
            raise ValueError(f"unknown configuration field(s) {unknown}; use a label like 'bfloat16-n5'")
        return ConfigId(str(entry["dtype"]), int(entry["flow_steps"]))
    raise ValueError(f"a configuration is a label like 'bfloat16-n5', got {entry!r}")


def _external_part(doc: dict, base_dir: Path | None) -> tuple[str, tuple[str, ...]]:
    """(folder, labels) of a plan's ``external: {folder, configs}`` (labels default to the manifest's)."""
    entry = doc.get("external")
    if entry is None:
        return str(doc.get("external_dir", "")), tuple(str(c) for c in doc.get("external_configs", ()))
    if isinstance(entry, str):
        entry = {"folder": entry}
    if not isinstance(entry, dict) or "folder" not in entry:
        raise ValueError("'external' must be a folder or {folder: ..., configs: [...]}")
    unknown = sorted(set(entry) - {"folder", "configs"})
    if unknown:
        raise ValueError(f"unknown 'external' field(s): {', '.join(unknown)}")
    folder = Path(str(entry["folder"])).expanduser()
    if not folder.is_absolute() and base_dir is not None:
        folder = base_dir / folder
    labels = entry.get("configs")
    if labels is None:
        labels = manifest_labels(folder)
    return str(folder.resolve()), tuple(str(c) for c in labels)


def plan_from_dict(
    doc: dict, texts: dict[str, TextItem] | None = None, base_dir: Path | None = None
) -> TestPlan:
    """A plan from its JSON/YAML form. ``texts: "all"`` or ``{"language": "en"}`` select by rule;
    a relative ``external`` folder is taken relative to ``base_dir`` (the plan file's folder)."""
    if not isinstance(doc, dict):
        raise ValueError("a test plan must be a mapping (JSON object / YAML mapping)")
    known = {f for f in TestPlan.__dataclass_fields__} | {"texts", "prompts", "external"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"unknown test plan field(s): {', '.join(unknown)}")
    text_sel = doc.get("texts", doc.get("text_ids"))
    if text_sel == "all" or isinstance(text_sel, dict):
        texts = texts if texts is not None else load_texts()
        lang = text_sel.get("language") if isinstance(text_sel, dict) else None
        text_sel = [t.id for t in texts.values() if lang in (None, t.language)]
    try:
        configs = tuple(plan_config(c) for c in doc.get("configs") or ())
        external_dir, external_configs = _external_part(doc, base_dir)
        baseline = str(doc.get("baseline") or "")
        if baseline and baseline not in external_configs:
            baseline = ConfigId.parse(baseline).label
        first = configs[0].label if configs else (external_configs[0] if external_configs else "")
        anchor = str(doc.get("anchor") or "")
        return TestPlan(
            name=str(doc.get("name", "unnamed plan")),
            text_ids=tuple(str(t) for t in text_sel or ()),
            prompt_ids=tuple(str(p) for p in doc.get("prompts", doc.get("prompt_ids")) or ()),
            configs=configs,
            baseline=baseline or first,
            trials_per_listener=int(doc["trials_per_listener"]),
            seed=int(doc.get("seed", 0)),
            comparisons=str(doc.get("comparisons", "baseline")),
            match_language=bool(doc.get("match_language", True)),
            anchor=anchor,
            anchor_rate=float(doc.get("anchor_rate", DEFAULT_ANCHOR_RATE if anchor else 0.0)),
            reference_rate=float(doc.get("reference_rate", 0.0)),
            reveal_at_end=bool(doc.get("reveal_at_end", False)),
            external_dir=external_dir,
            external_configs=external_configs,
            dropped=_dropped_part(doc),
        )
    except KeyError as err:
        raise ValueError(f"test plan is missing the field {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad test plan: {err}") from None


def load_plan(path: str | os.PathLike) -> TestPlan:
    """A plan from a .json, .yaml or .yml file (ValueError with the reason when it is not one)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = json.loads(text)
    except Exception as err:  # noqa: BLE001 - any parser error becomes one readable message
        raise ValueError(f"{path.name} is not a valid {path.suffix or 'JSON'} test plan: {err}") from None
    return plan_from_dict(doc, base_dir=path.resolve().parent)
