"""What every tab shares: the loaded pipeline, the ratings store, the assets, and error handling.

The :class:`AppContext` is built once in ``app.main`` and captured by the event handlers; it
holds process-wide resources only. Anything that belongs to one listener lives in ``gr.State``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from abapp.access import AdminAccess
from eval.serving.ratings import RatingsFileError, RatingsStore
from eval.serving.trials import PromptAsset, TextItem
from tts_core.lru import LruCache

if TYPE_CHECKING:
    from abapp.bank_screen import BankScreener
    from abapp.blind_runner import BlindTestRunner
    from abapp.screen_view import PlaygroundScreen
    from tts_core import Pipeline, PromptFeatures

log = logging.getLogger(__name__)

PROMPT_CACHE_SIZE = 32  # prepared voice prompts kept in memory (uploads and manifest clips)
TEMP_KEEP_S = 600  # seconds a response's temporary files are kept (gradio copies them at once)

RANDOM_WEIGHTS_NOTICE = (
    "⚠️ **Demo model with random weights: the audio is noise, not speech.** "
    "It exercises the app end to end; start with `--model_dir DIR` or `--model_id iic/CosyVoice2-0.5B` "
    "for real speech."
)


class PromptCache:
    """Prepared :class:`PromptFeatures` by content digest (bounded, thread-safe, process-wide)."""

    def __init__(self, size: int = PROMPT_CACHE_SIZE) -> None:
        self._items: LruCache[str, PromptFeatures] = LruCache(size)
        self._lock = threading.Lock()

    def get_or_make(self, digest: str, make: Callable[[], PromptFeatures]) -> PromptFeatures:
        with self._lock:
            features = self._items.get(digest)
        if features is None:
            features = make()  # outside the lock: the pipeline serialises device work itself
            with self._lock:
                self._items.put(digest, features)
        return features


def fresh_temp_dir(kind: str) -> Path:
    """A new folder under ``<system temp>/<kind>/`` for files handed to gradio; old ones are pruned.

    NOTE: gradio serves files only from its cache, copying them there from the temp dir, the
    working directory or allowed_paths (never from a Space's /data); it copies atomically, so a
    fresh folder per response keeps concurrent sessions from ever sharing a half-written file.
    """
    base = Path(tempfile.gettempdir()) / kind
    base.mkdir(exist_ok=True)
    now = time.time()
    for old in base.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > TEMP_KEEP_S:  # long since copied by gradio
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=base))


def audio_digest(audio: np.ndarray, sample_rate: int, transcript: str | None) -> str:
    h = hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes())
    h.update(f"|{sample_rate}|{transcript or ''}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class AppContext:
    pipeline: Pipeline
    store: RatingsStore
    texts: dict[str, TextItem]
    prompts: dict[str, PromptAsset]
    blind: BlindTestRunner
    prompt_cache: PromptCache
    access: AdminAccess  # who may use the experimenter controls and the Results tab
    app_version: str
    notice: str  # Markdown shown on top of every tab ("" for a real model)
    screen: PlaygroundScreen  # the automatic screen's models (playground pairs and the bank)
    bank_screen: BankScreener  # the screen of the active plan's bank, saved beside the ratings
    clock: Callable[[], float] = time.monotonic  # seconds; times how long each clip was played

    def check_admin(self, password: str | None, request) -> bool:
        """Whether this request may use the experimenter controls (see abapp/access.py)."""
        return self.access.allows(password, request)

    def require_admin(self, password: str | None, request, what: str = "the experimenter controls") -> None:
        if not self.check_admin(password, request):
            raise ValueError(f"wrong admin password: {what} are locked")

    def prompt_features(self, audio: np.ndarray, sample_rate: int, transcript: str | None) -> PromptFeatures:
        digest = audio_digest(audio, sample_rate, transcript)
        return self.prompt_cache.get_or_make(
            digest, lambda: self.pipeline.prepare_prompt(audio, sample_rate, transcript)
        )


def user_errors(fn: Callable) -> Callable:
    """Turn exceptions into ``gr.Error`` with a readable message (never a traceback in the UI).

    ValueError/RuntimeError carry messages written for users (bad text, bad audio, refused
    rating); anything else is logged with its traceback and shown as a short internal error.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, RuntimeError, RatingsFileError, OSError) as err:
            log.info("refused in %s: %s", fn.__name__, err)
            raise gr.Error(_first_line(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - the UI must stay usable whatever happens
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(
                f"internal error ({type(err).__name__}): {_first_line(err)}; see the server log",
                print_exception=False,
            ) from None

    return wrapper


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:500]


# Tiny literal functions on purpose: with ``js=True`` gradio transpiles them to JavaScript, so
# buttons switch in the browser at once instead of after a round trip to the server.
def _disable_one():
    return gr.Button(interactive=False)


def _enable_one():
    return gr.Button(interactive=True)


def _disable_two():
    return gr.Button(interactive=False), gr.Button(interactive=False)


def _enable_two():
    return gr.Button(interactive=True), gr.Button(interactive=True)


_SWITCHES = {
    (1, False): _disable_one,
    (1, True): _enable_one,
    (2, False): _disable_two,
    (2, True): _enable_two,
}


def run_with_buttons_disabled(
    trigger, buttons: list, fn: Callable, inputs, outputs, enable=None, **event_kwargs
):
    """Wire ``trigger`` (e.g. ``button.click``) as: disable ``buttons`` -> ``fn`` -> enable them again.

    ``enable`` (optional) is ``(function, inputs)`` deciding the buttons' state after a success
    (e.g. keep "Submit" off once the trial is rated). After a failure they are always enabled.
    NOTE: in gradio 6 a ``.then`` step does not run after a failed step; ``.failure`` does.
    """
    n = len(buttons)
    client = {"queue": False, "api_visibility": "private", "js": True}
    step = trigger(_SWITCHES[n, False], None, buttons, **client).then(fn, inputs, outputs, **event_kwargs)
    if enable is None:
        step.success(_SWITCHES[n, True], None, buttons, **client)
    else:
        step.success(enable[0], enable[1], buttons, queue=False, api_visibility="private")
    step.failure(_SWITCHES[n, True], None, buttons, **client)
    return step
