"""The active blind test of this app process: its plan, its clip bank, and listener assignments.

One object per process (made in ``app.main``), shared by all sessions: the experimenter sets the
plan and pre-generates the clips; listeners only read clips from the bank (no GPU work while
rating). The active plan is saved next to the ratings, so a restarted app continues the same
test, and the content-addressed bank means nothing is generated twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

from eval.clipbank import Clip, ClipBank, build_bank, stimulus_keys
from eval.trials import PromptAsset, TestPlan, TextItem, Trial, assign_trials, load_plan

log = logging.getLogger(__name__)

ACTIVE_PLAN_NAME = "active_plan.json"
SERVED_DIRNAME = "cosyvoice2-ab-served"
SERVED_SECRET_BYTES = 16
SERVED_TOKEN_CHARS = 32


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
        self._secret = secrets.token_bytes(SERVED_SECRET_BYTES)
        # NOTE: under the system temp dir because gradio only serves files from there, the working
        # directory or allowed_paths; the data dir may be a Space's /data.
        self._served_dir = Path(tempfile.gettempdir()) / SERVED_DIRNAME
        self._keys: dict[tuple[str, str, str], str] = {}
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
        keys = stimulus_keys(plan, self.pipeline.info.model_hash, self.texts, self.prompts)
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
        self._plan, self._keys = plan, keys

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
        try:
            build_bank(plan, self.pipeline, self.bank, self.texts, self.prompts, progress)
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

    def served_path(self, clip: Clip) -> str:
        """A neutral copy of ``clip`` for the browser: ``<temp>/<token>/audio.wav``.

        The token is an HMAC of the clip key under a per-process secret, so the URL the browser
        sees says nothing about the configuration (the bank key could be recomputed from public
        inputs). The copy is written under a temporary name and renamed, so concurrent listeners
        never read a half-written file.
        """
        token = hmac.new(self._secret, clip.key.encode(), hashlib.sha256).hexdigest()[:SERVED_TOKEN_CHARS]
        target = self._served_dir / token / "audio.wav"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".audio.", suffix=".tmp")
            os.close(fd)
            shutil.copyfile(clip.wav_path, tmp)
            os.replace(tmp, target)
        return str(target)

    def summary_markdown(self) -> str:
        plan = self.plan
        if plan is None:
            return "No test plan is active yet."
        ready, total = self.readiness()
        configs = ", ".join(f"`{c.label}`" for c in plan.configs)
        pairs = ", ".join(f"`{a.label}` vs `{b.label}`" for a, b in plan.pairs)
        state = "ready for listeners" if ready == total else "clips missing: press **Pre-generate clips**"
        return (
            f"**Active plan:** {plan.name}  \n"
            f"{len(plan.text_ids)} texts · {len(plan.prompt_ids)} prompts · configurations {configs} · "
            f"baseline `{plan.baseline}` · pairs {pairs} · {plan.trials_per_listener} trials per listener  \n"
            f"**Clips:** {ready} / {total} generated ({state})"
        )


def plan_json(plan: TestPlan) -> str:
    return json.dumps(json.loads(plan.to_json()), ensure_ascii=False, indent=2)
