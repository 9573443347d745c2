"""The manifest of a folder of externally made clips (format: eval/serving/external.py), read without audio.

Apart from eval/serving/external.py so that a test plan (eval/serving/trials.py) can learn a folder's labels
without importing the audio checks, which themselves use the plan's text and prompt assets.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST_NAME = "manifest.json"


class ExternalClipsError(ValueError):
    """The folder or its manifest cannot be used; the message lists every problem found."""


def read_manifest(folder: Path) -> dict:
    """The manifest as a dict with a non-empty ``clips`` list (ExternalClipsError otherwise)."""
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ExternalClipsError(f"external clips folder not found: {folder}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExternalClipsError(f"{folder} has no {MANIFEST_NAME} (see eval/serving/external.py for its format)") from None
    except (ValueError, OSError) as err:
        raise ExternalClipsError(f"{path} is not readable JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("clips"), list) or not doc["clips"]:
        raise ExternalClipsError(f"{path} must be an object with a non-empty 'clips' list")
    return doc


def manifest_labels(folder: str | Path) -> tuple[str, ...]:
    """The configuration labels a manifest names, in first-seen order (no audio is read)."""
    clips = read_manifest(Path(folder))["clips"]
    return tuple(dict.fromkeys(str(c.get("config", "")) for c in clips if isinstance(c, dict)))
