"""The automatic screen of the active plan's clip bank, for the experimenter before the test is opened.

* :class:`BankScreener` (one per app process): screens every clip of the active plan's conditions
  under test with the app's screener (:class:`abapp.screen_view.PlaygroundScreen`, the models the
  playground uses), and writes what ``python -m eval.screen.plan`` writes (clips.csv, summary.csv,
  summary.json, summary.png) to ``DATA/screen/<plan name>/``; :meth:`BankScreener.saved` reads it
  back for the active plan (after a page reload or a restart, and for the Results tab);
* :class:`BankScreen`: one screen of the active plan, with the configurations that may be dropped
  and the reason a drop records.

The saved rows are matched to the active plan by clip key, so a screen of another plan of the same
name, or of clips since regenerated, is never shown as this plan's. The hidden anchor is not
screened: it is meant to sound bad, and it cannot be dropped.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from abapp.blind_runner import BlindTestRunner, PlanNotReady
from abapp.screen_view import PlaygroundScreen
from eval.screen.plan import screen_bank, summary_document, write_outputs
from eval.screen.summary import ClipRow, ConfigScreen, plot_summary, read_rows, summarize

log = logging.getLogger(__name__)

SCREEN_DIRNAME = "screen"  # under the app's data folder
CLIPS_FILE = "clips.csv"
MAX_FOLDER_CHARS = 60


@dataclass(frozen=True)
class BankScreen:
    """The screen of the active plan's clips (conditions under test), per configuration in plan order."""

    plan_name: str
    baseline: str
    rows: tuple[ClipRow, ...]
    summary: tuple[ConfigScreen, ...]
    n_unscreened: int  # clips of the plan's conditions that were not screened (not generated yet)
    folder: Path  # where clips.csv, summary.csv/json/png are

    @property
    def flagged(self) -> tuple[str, ...]:
        """Configurations with at least one flagged clip."""
        return tuple(s.config for s in self.summary if s.n_flagged)

    @property
    def droppable(self) -> tuple[str, ...]:
        """What the panel offers to drop: flagged configurations except the baseline."""
        return tuple(c for c in self.flagged if c != self.baseline)

    def drop_reason(self, label: str) -> str:
        """What a drop of ``label`` records; ValueError when the screen found nothing wrong with it."""
        s = next((s for s in self.summary if s.config == label), None)
        if s is None or not s.n_flagged:
            raise ValueError(
                f"`{label}` has no flagged clip in the screen of the bank: only a configuration with "
                "failures can be dropped here (define a new plan to change the configurations)"
            )
        counts = ", ".join(f"{code.replace('_', ' ')} {n}" for code, n in s.flag_counts if n)
        return f"automatic screen: {s.n_flagged} of {s.n_clips} clips flagged ({counts})"

    def figure(self):
        """The per-measure plot (matplotlib Figure) of eval.screen.summary.plot_summary."""
        return plot_summary(self.rows, self.summary)


def folder_name(plan_name: str) -> str:
    """A plan's name as a folder name (letters, digits, '.', '_' and '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", plan_name).strip("-.")
    return name[:MAX_FOLDER_CHARS] or "plan"


class BankScreener:
    """Screens the active plan's bank, one screen at a time (thread-safe)."""

    def __init__(self, screen: PlaygroundScreen, data_dir: Path) -> None:
        self._screen = screen
        self._root = Path(data_dir) / SCREEN_DIRNAME
        self._busy = threading.Lock()

    def folder(self, plan_name: str) -> Path:
        return self._root / folder_name(plan_name)

    def run(self, runner: BlindTestRunner, progress=None) -> BankScreen:
        """Screen every generated clip of the active plan; ``progress(done, total, message)``."""
        plan, clips, missing = runner.condition_clips()
        if plan is None:
            raise PlanNotReady("no test plan is active: define one or load a plan file first")
        if not clips:
            raise PlanNotReady("no clip of the active plan is generated yet: press Pre-generate clips first")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("the bank is already being screened (by another session); wait for it to finish")
        try:
            screener = self._screen.screener()
            done = []

            def step(message: str) -> None:
                done.append(message)
                if progress is not None:
                    progress(len(done), len(clips), f"screened {message}")

            rows = screen_bank(plan, clips, screener, runner.texts, runner.prompts, step)
            summary = summarize(rows, [c.label for c in plan.conditions])
            info = runner.pipeline.info
            environment = {"app": "blind tab: Screen the bank", "device": info.device}
            doc = summary_document(plan, runner.bank.root, info, screener, summary, environment)
            folder = self.folder(plan.name)
            write_outputs(folder, rows, summary, doc)
        finally:
            self._busy.release()
        log.info("screened %d clips of plan %r into %s", len(rows), plan.name, folder)
        return BankScreen(plan.name, plan.baseline, tuple(rows), tuple(summary), missing, folder)

    def saved(self, runner: BlindTestRunner) -> BankScreen | None:
        """The last screen of the active plan's clips, from its files (None when there is none)."""
        plan, clips, missing = runner.condition_clips()
        if plan is None:
            return None
        folder = self.folder(plan.name)
        path = folder / CLIPS_FILE
        if not path.is_file():
            return None
        try:
            rows = read_rows(path)
        except (ValueError, OSError) as err:
            log.warning("ignoring the saved screen %s: %s", path, err)
            return None
        keys = {at: clip.key for at, clip in clips.items()}
        mine = [r for r in rows if keys.get((r.text_id, r.prompt_id, r.config)) == r.clip_key]
        if not mine:
            return None
        summary = summarize(mine, [c.label for c in plan.conditions])
        unscreened = len(keys) + missing - len(mine)
        return BankScreen(plan.name, plan.baseline, tuple(mine), tuple(summary), unscreened, folder)
