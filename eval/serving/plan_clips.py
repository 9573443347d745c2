"""Every clip a test plan needs, whatever its condition: rendered, low-passed anchor or imported.

* rendered configurations (those under test and a configuration anchor): ``eval.serving.clipbank``;
* clips of another system: validated and imported from the plan's folder (``eval.serving.external``);
* the low-passed anchor: derived from the baseline's clip of the same stimulus (``eval.serving.anchors``).

:func:`plan_clip_keys` names every clip's bank key up front (no model needed), so the app knows how
many are missing; :func:`make_plan_clips` fills the bank.
"""

from __future__ import annotations

from eval.serving.anchors import lowpass_clip, lowpass_key
from eval.serving.clipbank import ClipBank, Progress, build_bank, stimulus_keys
from eval.serving.external import import_folder, validate_folder
from eval.serving.trials import PromptAsset, TestPlan, TextItem

ClipKeys = dict[tuple[str, str, str], str]  # (text id, prompt id, condition label) -> bank key
MAX_MISSING_LISTED = 6


def import_external(
    plan: TestPlan, bank: ClipBank, texts: dict[str, TextItem], prompts: dict[str, PromptAsset]
) -> ClipKeys:
    """Validate the plan's external folder and import its clips into ``bank`` ({} without one)."""
    if not plan.external_configs:
        return {}
    folder = validate_folder(plan.external_dir, texts, prompts)
    unknown = sorted(set(plan.external_configs) - set(folder.labels))
    if unknown:
        raise ValueError(f"the external folder has no clips of {unknown}; it has {list(folder.labels)}")
    return import_folder(folder, bank, plan.external_configs)


def plan_clip_keys(
    plan: TestPlan,
    model_hash: str,
    texts: dict[str, TextItem],
    prompts: dict[str, PromptAsset],
    external: ClipKeys,
) -> ClipKeys:
    """The bank key of every clip of every stimulus and condition of ``plan``.

    ValueError when the external folder lacks a clip the plan needs (they are listed).
    """
    rendered = stimulus_keys(plan, model_hash, texts, prompts)
    keys: ClipKeys = {}
    missing = []
    for text_id, prompt_id in plan.stimuli(texts, prompts):
        for condition in plan.all_conditions:  # the anchor comes last: its base is known by then
            at = (text_id, prompt_id, condition.label)
            if condition.source == "rendered":
                keys[at] = rendered[at]
            elif condition.source == "external":
                if at in external:
                    keys[at] = external[at]
                else:
                    missing.append(f"{condition.label} for {text_id} / {prompt_id}")
            else:
                base = keys.get((text_id, prompt_id, condition.filtered))
                if base is not None:
                    keys[at] = lowpass_key(base)
    if missing:
        more = f" and {len(missing) - MAX_MISSING_LISTED} more" if len(missing) > MAX_MISSING_LISTED else ""
        raise ValueError(f"the external folder lacks clips the plan needs: {', '.join(missing[:MAX_MISSING_LISTED])}{more}")
    return keys


def make_plan_clips(
    plan: TestPlan,
    pipeline,
    bank: ClipBank,
    texts: dict[str, TextItem],
    prompts: dict[str, PromptAsset],
    keys: ClipKeys,
    progress: Progress | None = None,
) -> None:
    """Synthesise the missing rendered clips, then derive the missing low-passed anchors."""
    if plan.rendered_configs:
        build_bank(plan, pipeline, bank, texts, prompts, progress)
    anchor = plan.anchor_condition
    if anchor is None or anchor.source != "lowpass":
        return
    stimuli = plan.stimuli(texts, prompts)
    for done, (text_id, prompt_id) in enumerate(stimuli, start=1):
        base = bank.get(keys[(text_id, prompt_id, anchor.filtered)])
        if base is None:
            raise RuntimeError(f"the baseline clip of {text_id} / {prompt_id} is missing; generate again")
        lowpass_clip(bank, base, anchor.label)
        if progress is not None:
            progress(done, len(stimuli), f"{text_id} / {prompt_id} / {anchor.label}")
