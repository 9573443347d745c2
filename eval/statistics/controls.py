"""Hidden controls of a listening test in the statistics: which judgements count, which listeners.

A plan mixes hidden anchor trials (the low anchor against the baseline) and hidden-reference trials
(the baseline against itself) into every listener's list (eval/serving/trials.py). They exist to screen
listeners (eval/statistics/screening.py), not to estimate how good a configuration is, so:

* the MOS table, the non-inferiority verdicts and the preference shares use the test trials only
  (``trial_kind`` "test", or empty in logs written before trial kinds existed);
* with ``exclude_flagged`` the listeners whose controls say they did not listen are left out, by
  this rule: :data:`EXCLUSION_RULE`.

Pure functions of a validated ratings table (eval/statistics/ratings_io.py), like eval/statistics/stats.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from eval.statistics.screening import (
    FLAG_ANCHOR_ABOVE_BASELINE,
    FLAG_INCONSISTENT_REFERENCE,
    REFERENCE_MAX_MISS_SHARE,
    REFERENCE_MISMATCH_POINTS,
    ListenerScreen,
)

TEST_KINDS = ("test", "")  # "" : logs of schema 1-2, which had test trials only
EXCLUDING_FLAGS = (FLAG_ANCHOR_ABOVE_BASELINE, FLAG_INCONSISTENT_REFERENCE)
EXCLUSION_RULE = (
    f"a listener is excluded when flagged {FLAG_ANCHOR_ABOVE_BASELINE} (their mean score of the hidden "
    f"low anchor is above their mean score of the baseline) or {FLAG_INCONSISTENT_REFERENCE} (in more "
    f"than {REFERENCE_MAX_MISS_SHARE:.0%} of their hidden-reference trials the two identical clips were "
    f"scored {REFERENCE_MISMATCH_POINTS} or more points apart)"
)


@dataclass(frozen=True)
class StatisticsTable:
    """The judgements the statistics use, and what was left out (with a note for each reason)."""

    table: pd.DataFrame
    excluded_listeners: tuple[str, ...]
    n_control_trials: int
    notes: tuple[str, ...]


def statistics_table(
    ratings: pd.DataFrame, screens: Sequence[ListenerScreen], exclude_flagged: bool = False
) -> StatisticsTable:
    """Test trials only; without the excluded listeners when ``exclude_flagged`` (see :data:`EXCLUSION_RULE`).

    ValueError when nothing is left.
    """
    is_test = ratings["trial_kind"].isin(TEST_KINDS)
    n_control = int((~is_test).sum())
    notes = []
    if n_control:
        kinds = ratings.loc[~is_test, "trial_kind"].value_counts()
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        notes.append(f"{n_control} hidden control trial(s) ({counts}) used for screening only, not in the MOS")
    excluded = tuple(s.listener_id for s in screens if exclude_flagged and set(s.flags) & set(EXCLUDING_FLAGS))
    flagged_kept = [s.listener_id for s in screens if s.flags and s.listener_id not in excluded]
    if excluded:
        notes.append(f"{len(excluded)} listener(s) excluded ({', '.join(excluded)}): {EXCLUSION_RULE}")
    if flagged_kept:
        notes.append(f"{len(flagged_kept)} listener(s) flagged by screening (kept in the statistics)")
    keep = is_test & ~ratings["listener_id"].isin(excluded)
    table = ratings.loc[keep].reset_index(drop=True)
    if table.empty:
        raise ValueError("no test judgements are left once the hidden controls and excluded listeners are set aside")
    return StatisticsTable(table, excluded, n_control, tuple(notes))
