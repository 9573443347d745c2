"""Listening-test plans, their text and prompt assets, and balanced blind assignment.

* :class:`TestPlan`: which texts, prompts and configurations are compared, and how many trials
  each listener rates; loaded from JSON or YAML (``assets/plans/example.json``).
* The clips of a plan are synthesised into the content-addressed bank of ``eval.clipbank``.
* :func:`assign_trials`: per listener a deterministic (seeded by plan and listener id), balanced and
  shuffled list of trials, so a listener who reloads the page gets the same list back and resumes
  at the first trial without a rating in the CSV.

Texts and prompts come from ``assets/texts/sentences.json`` and ``assets/prompts/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from tts_core.config_id import ConfigId

ROOT = Path(__file__).resolve().parents[1]
TEXTS_FILE = ROOT / "assets" / "texts" / "sentences.json"
PROMPT_DIR = ROOT / "assets" / "prompts"
COMPARISONS = ("baseline", "all")  # each config vs the baseline, or every pair of configs
MAX_TRIALS_PER_LISTENER = 500


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
class TestPlan:
    """A listening test: the stimuli (texts x prompts x configs) and what each listener rates."""

    name: str
    text_ids: tuple[str, ...]
    prompt_ids: tuple[str, ...]
    configs: tuple[ConfigId, ...]
    baseline: str  # label of the reference configuration (side A of every pair)
    trials_per_listener: int
    seed: int = 0  # synthesis seed of every clip (the same for A and B)
    comparisons: str = "baseline"
    match_language: bool = True  # pair each text only with prompts of its language
    __test__ = False  # not a pytest class, despite the name

    def __post_init__(self) -> None:
        for name in ("text_ids", "prompt_ids", "configs"):
            if not getattr(self, name):
                raise ValueError(f"test plan {self.name!r}: '{name}' must not be empty")
        labels = [c.label for c in self.configs]
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

    @property
    def pairs(self) -> tuple[tuple[ConfigId, ConfigId], ...]:
        """(A, B) pairs; A is the baseline (or the earlier config for ``comparisons='all'``)."""
        base = next(c for c in self.configs if c.label == self.baseline)
        others = [c for c in self.configs if c.label != self.baseline]
        if self.comparisons == "baseline":
            return tuple((base, c) for c in others)
        ordered = [base, *others]
        return tuple((a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :])

    def digest(self) -> str:
        """sha256 of the plan's content; trial ids derive from it, so a changed plan gets new ids."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

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
        return json.dumps(doc, ensure_ascii=False, indent=2)


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


def plan_from_dict(doc: dict, texts: dict[str, TextItem] | None = None) -> TestPlan:
    """A plan from its JSON/YAML form. ``texts: "all"`` or ``{"language": "en"}`` select by rule."""
    if not isinstance(doc, dict):
        raise ValueError("a test plan must be a mapping (JSON object / YAML mapping)")
    known = {f for f in TestPlan.__dataclass_fields__} | {"texts", "prompts"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"unknown test plan field(s): {', '.join(unknown)}")
    text_sel = doc.get("texts", doc.get("text_ids"))
    if text_sel == "all" or isinstance(text_sel, dict):
        texts = texts if texts is not None else load_texts()
        lang = text_sel.get("language") if isinstance(text_sel, dict) else None
        text_sel = [t.id for t in texts.values() if lang in (None, t.language)]
    try:
        configs = tuple(plan_config(c) for c in doc["configs"])
        baseline = doc.get("baseline")
        return TestPlan(
            name=str(doc.get("name", "unnamed plan")),
            text_ids=tuple(str(t) for t in text_sel or ()),
            prompt_ids=tuple(str(p) for p in doc.get("prompts", doc.get("prompt_ids")) or ()),
            configs=configs,
            baseline=ConfigId.parse(baseline).label if baseline else (configs[0].label if configs else ""),
            trials_per_listener=int(doc["trials_per_listener"]),
            seed=int(doc.get("seed", 0)),
            comparisons=str(doc.get("comparisons", "baseline")),
            match_language=bool(doc.get("match_language", True)),
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
    return plan_from_dict(doc)


# ----------------------------------------------------------------------------- assignment


@dataclass(frozen=True)
class Trial:
    """One A/B judgement of a listener. Server-side only: it names the configurations."""

    trial_id: str
    index: int  # 0-based position in the listener's list
    text_id: str
    prompt_id: str
    config_a: ConfigId
    config_b: ConfigId
    shown_first: str  # "A" | "B": which configuration plays as the first clip


def listener_digest(listener_id: str) -> str:
    return hashlib.sha256(listener_id.encode("utf-8")).hexdigest()


def assign_trials(
    plan: TestPlan, listener_id: str, texts: dict[str, TextItem], prompts: dict[str, PromptAsset]
) -> list[Trial]:
    """The listener's trials: deterministic in (plan, listener id), balanced, then shuffled.

    Balance within a listener: every pair is compared equally often (+-1); texts and prompts are
    spread as evenly as the pair schedule allows (least-used first); no (text, prompt, pair)
    repeats; within each pair and over the whole list, A is played first in half the trials (+-1). Across listeners the
    choice of ties and the order are randomised by the listener id.
    """
    if not listener_id.strip():
        raise ValueError("listener id must not be empty")
    combos = plan.stimuli(texts, prompts)
    pairs = plan.pairs
    n = plan.trials_per_listener
    if n > len(combos) * len(pairs):
        raise ValueError(
            f"test plan {plan.name!r} asks {n} trials per listener but has only "
            f"{len(combos) * len(pairs)} distinct (text, prompt, pair) stimuli"
        )
    rng = random.Random(f"{plan.digest()}|{listener_id}")
    pair_order = _balanced_cycle(range(len(pairs)), n, rng)
    text_use: Counter[str] = Counter()
    prompt_use: Counter[str] = Counter()
    used: set[tuple[str, str, int]] = set()
    chosen: list[tuple[str, str, int]] = []
    for pair_index in pair_order:
        options = [(t, p) for t, p in combos if (t, p, pair_index) not in used]
        rng.shuffle(options)  # random tie-break among equally used texts/prompts
        t, p = min(options, key=lambda tp: (text_use[tp[0]], prompt_use[tp[1]]))
        used.add((t, p, pair_index))
        chosen.append((t, p, pair_index))
        text_use[t] += 1
        prompt_use[p] += 1
    sides = _balanced_sides(Counter(i for _, _, i in chosen), rng)
    rng.shuffle(chosen)
    plan_tag, listener_tag = plan.digest()[:8], listener_digest(listener_id)[:8]
    trials = []
    for index, (t, p, pair_index) in enumerate(chosen):
        a, b = pairs[pair_index]
        trials.append(
            Trial(f"{plan_tag}-{listener_tag}-{index:03d}", index, t, p, a, b, sides[pair_index].pop())
        )
    return trials


def _balanced_cycle(items: Iterable, n: int, rng: random.Random) -> list:
    """``n`` items drawn by repeating shuffled copies of ``items`` (each count differs by at most 1)."""
    items = list(items)
    out: list = []
    while len(out) < n:
        block = items[:]
        rng.shuffle(block)
        out.extend(block)
    out = out[:n]
    rng.shuffle(out)
    return out


def _balanced_sides(counts: Counter, rng: random.Random) -> dict[int, list[str]]:
    """Per pair a shuffled list of "A"/"B" with equal halves; the odd ones out alternate between
    pairs, so the listener's whole list is balanced too (counts differ by at most 1)."""
    odd_side = rng.choice("AB")
    sides = {}
    for pair_index in sorted(counts, key=lambda _: rng.random()):
        count = counts[pair_index]
        block = ["A", "B"] * (count // 2)
        if count % 2:
            block.append(odd_side)
            odd_side = "B" if odd_side == "A" else "A"
        rng.shuffle(block)
        sides[pair_index] = block
    return sides


def next_trial(trials: list[Trial], rated_ids: set[str]) -> Trial | None:
    """The first trial without a rating (None when the listener is done)."""
    return next((t for t in trials if t.trial_id not in rated_ids), None)
