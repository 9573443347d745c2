"""The active blind test of this app process: its plan, its clip bank, and listener assignments.

One object per process (made in ``app.main``), shared by all sessions: the experimenter sets the
plan and pre-generates the clips; listeners only read clips from the bank (no GPU work while
rating). The active plan is saved next to the ratings, so a restarted app continues the same
test, and the content-addressed bank means nothing is generated twice. A configuration that the
automatic screen found broken can be dropped from the active plan (:meth:`BlindTestRunner.drop`,
rules in eval/serving/plan_drop.py); the saved plan records the drop, so a restart sees it too.

A plan's clips are of every condition (eval/serving/plan_clips.py): our renderings, the hidden anchor and
clips imported from another system, which are validated and imported when the plan is set. What
a browser receives is a fresh copy per listener and trial (abapp/served_clips.py).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from abapp.served_clips import served_length, write_served
from eval.serving.assignment import Trial, assign_trials
from eval.serving.clipbank import Clip, ClipBank
from eval.serving.loudness import TARGET_LUFS, TRUE_PEAK_CEILING_DBTP
from eval.serving.plan_clips import ClipKeys, import_external, make_plan_clips, plan_clip_keys
from eval.serving.plan_drop import drop_condition
from eval.serving.trials import PromptAsset, TestPlan, TextItem, load_plan

log = logging.getLogger(__name__)

ACTIVE_PLAN_NAME = "active_plan.json"


@dataclass(frozen=True)
class ServedPair:
    """The two clips of a trial as this listener receives them (paths of fresh copies)."""

    first: Clip
    second: Clip
    first_path: str
    second_path: str
    duration_s: float  # of both served files


class PlanNotReady(RuntimeError):
    """No plan is active, or its clips have not all been generated yet."""


class BlindTestRunner:
    """Active plan + clip bank; thread-safe. ``generate`` runs at most once at a time."""

    def __init__(
        self,
        pipeline,
        bank: ClipBank,
        texts: dict[str, TextItem],
        prompts: dict[str, PromptAsset],
        state_dir: Path,
    ) -> None:
        self.pipeline = pipeline
        self.bank = bank
        self.texts = texts
        self.prompts = prompts
        self._plan_file = Path(state_dir) / ACTIVE_PLAN_NAME
        self._lock = threading.Lock()
        self._generating = threading.Lock()
        self._plan: TestPlan | None = None
        self._keys: ClipKeys = {}
        self._lengths: dict[tuple[str, str], int] = {}  # stimulus -> served samples, once all clips exist
        if self._plan_file.is_file():
            try:
                self._activate(load_plan(self._plan_file), save=False)
                log.info("resumed the active blind test plan %r from %s", self._plan.name, self._plan_file)
            except (ValueError, OSError) as err:
                log.warning("ignoring the saved plan %s: %s", self._plan_file, err)

    @property
    def plan(self) -> TestPlan | None:
        with self._lock:
            return self._plan

    def set_plan(self, plan: TestPlan) -> None:
        """Make ``plan`` the active test (ValueError when it does not fit the assets)."""
        with self._lock:
            self._activate(plan, save=True)

    def _activate(self, plan: TestPlan, save: bool) -> None:
        external = import_external(plan, self.bank, self.texts, self.prompts)
        keys = plan_clip_keys(plan, self.pipeline.info.model_hash, self.texts, self.prompts, external)
        n_pairs = len(plan.stimuli(self.texts, self.prompts)) * len(plan.pairs)
        if plan.trials_per_listener > n_pairs:
            raise ValueError(
                f"the plan asks {plan.trials_per_listener} trials per listener but has only {n_pairs} distinct pairs"
            )
        if save:
            self._plan_file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._plan_file.parent, prefix=".plan.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(plan.to_json())
            os.replace(tmp, self._plan_file)
        self._plan, self._keys, self._lengths = plan, keys, {}

    def drop(self, label: str, reason: str) -> TestPlan:
        """Take ``label`` out of the active plan (saved, with ``reason``); ValueError when not allowed.

        The caller checks that nobody has rated the plan yet (eval/serving/plan_drop.py says why)."""
        with self._lock:
            if self._plan is None:
                raise PlanNotReady("no test plan is active: define one or load a plan file first")
            plan = drop_condition(self._plan, label, reason)
            try:
                self._activate(plan, save=True)
            except ValueError as err:
                raise ValueError(f"cannot drop `{label}`: {err}") from None
        log.info("dropped %s from the blind test plan %r: %s", label, plan.name, reason)
        return plan

    def condition_clips(self) -> tuple[TestPlan | None, dict[tuple[str, str, str], Clip], int]:
        """(the active plan, {(text id, prompt id, label): clip} of its conditions under test that are in
        the bank, how many of those clips are missing). The hidden anchor is left out: it is meant to be bad."""
        with self._lock:
            plan, keys = self._plan, dict(self._keys)
        if plan is None:
            return None, {}, 0
        under_test = {c.label for c in plan.conditions}
        found = {at: self.bank.get(key) for at, key in keys.items() if at[2] in under_test}
        return plan, {at: c for at, c in found.items() if c is not None}, sum(c is None for c in found.values())

    def readiness(self) -> tuple[int, int]:
        """(clips in the bank, clips the plan needs)."""
        with self._lock:
            keys = list(self._keys.values())
        return sum(self.bank.get(k) is not None for k in keys), len(keys)

    def generate(self, progress) -> tuple[int, int]:
        """Synthesise every missing clip of the active plan; ``progress(done, total, message)``."""
        plan = self.plan
        if plan is None:
            raise PlanNotReady("no test plan is active: define one or load a plan file first")
        if not self._generating.acquire(blocking=False):
            raise RuntimeError(
                "clips are already being generated (by another session); wait for it to finish"
            )
        with self._lock:
            keys = dict(self._keys)
        try:
            make_plan_clips(plan, self.pipeline, self.bank, self.texts, self.prompts, keys, progress)
        finally:
            self._generating.release()
        return self.readiness()

    def trials_for(self, listener_id: str) -> tuple[TestPlan, list[Trial]]:
        plan = self.plan
        if plan is None:
            raise PlanNotReady("no blind test is running yet: the experimenter has to set up a test plan")
        ready, total = self.readiness()
        if ready < total:
            raise PlanNotReady(
                f"the test is not ready: {ready} of {total} clips are generated; ask the experimenter to pre-generate them"
            )
        return plan, assign_trials(plan, listener_id, self.texts, self.prompts)

    def clip(self, plan: TestPlan, text_id: str, prompt_id: str, label: str) -> Clip:
        with self._lock:
            key = self._keys.get((text_id, prompt_id, label)) if self._plan == plan else None
        clip = self.bank.get(key) if key else None
        if clip is None:
            raise PlanNotReady(
                "this trial's clip is no longer available (the test plan changed?); press Start again"
            )
        return clip

    def _served_length(self, plan: TestPlan, text_id: str, prompt_id: str) -> int:
        """Samples of every served clip of this stimulus: its longest clip over all conditions."""
        with self._lock:
            cached = self._lengths.get((text_id, prompt_id)) if self._plan == plan else None
        if cached is not None:
            return cached
        clips = [self.clip(plan, text_id, prompt_id, c.label) for c in plan.all_conditions]
        length = served_length(max(c.meta["n_samples"] for c in clips), clips[0].meta["sample_rate"])
        with self._lock:
            if self._plan == plan:
                self._lengths[(text_id, prompt_id)] = length
        return length

    def serve(self, plan: TestPlan, trial: Trial) -> ServedPair:
        """Fresh copies of the trial's clips, first and second as the listener sees them."""
        a = self.clip(plan, trial.text_id, trial.prompt_id, trial.config_a.label)
        b = self.clip(plan, trial.text_id, trial.prompt_id, trial.config_b.label)
        first, second = (a, b) if trial.shown_first == "A" else (b, a)
        length = self._served_length(plan, trial.text_id, trial.prompt_id)
        paths = []
        for clip in (first, second):
            audio, rate = clip.stimulus_audio()
            paths.append(write_served(audio, rate, length))
        return ServedPair(first, second, paths[0], paths[1], length / first.meta["sample_rate"])

    def summary_markdown(self) -> str:
        plan = self.plan
        if plan is None:
            return "No test plan is active yet."
        ready, total = self.readiness()
        configs = ", ".join(f"`{c.label}`" for c in plan.conditions)
        pairs = ", ".join(f"`{a.label}` vs `{b.label}`" for a, b in plan.pairs)
        state = "ready for listeners" if ready == total else "clips missing: press **Pre-generate clips**"
        n_anchor, n_reference = plan.controls_per_listener()
        lines = [
            f"**Active plan:** {plan.name}  ",
            f"{len(plan.text_ids)} texts · {len(plan.prompt_ids)} prompts · configurations {configs} · "
            f"baseline `{plan.baseline}` · pairs {pairs} · {plan.trials_per_listener} trials per listener  ",
            f"**Hidden controls per listener:** {n_anchor} anchor trial(s)"
            + (f" (`{plan.anchor_condition.label}` vs the baseline)" if n_anchor else "")
            + f" · {n_reference} hidden-reference trial(s) (baseline vs itself) · "
            + ("the listener sees their mean score per configuration at the end  " if plan.reveal_at_end
               else "nothing is revealed to listeners  "),
        ]
        if plan.external_configs:
            lines.append(f"**External clips:** {', '.join(plan.external_configs)} from `{plan.external_dir}`  ")
        lines += [f"**Dropped before the test:** `{d.label}` ({d.reason})  " for d in plan.dropped]
        lines.append(f"**Clips:** {ready} / {total} generated ({state})  ")
        lines.append(self._loudness_line())
        return "\n".join(lines)

    def _loudness_line(self) -> str:
        """Loudness of the clips in the bank: before matching, and how many the ceiling held back."""
        with self._lock:
            keys = list(self._keys.values())
        records = [clip.loudness for clip in map(self.bank.get, keys) if clip is not None]
        if not records:
            return f"**Loudness:** every clip is matched to {TARGET_LUFS:.0f} LUFS (ITU-R BS.1770)."
        before = [r.before_lufs for r in records if math.isfinite(r.before_lufs)]
        limited = sum(r.peak_limited for r in records)
        span = f"{min(before):.1f} … {max(before):.1f} LUFS before" if before else "all silent"
        return (
            f"**Loudness:** {len(records)} clips matched to {TARGET_LUFS:.0f} LUFS (ITU-R BS.1770; {span}); "
            f"{limited} held lower by the {TRUE_PEAK_CEILING_DBTP:.0f} dBTP true-peak ceiling."
        )
