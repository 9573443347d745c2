"""An in-process app server with the demo model, for tests that drive it through gradio_client.

Each ``Client`` is one browser session (its own ``gr.State``); a new Client with the same listener id
is what a page reload looks like to the server. The app's playback clock is a :class:`FakeClock`,
so "listening to a clip to its end" takes no wall-clock time in tests.
"""

from __future__ import annotations

import csv
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gradio_client import Client  # noqa: E402

from eval.serving.ratings import RatingsStore  # noqa: E402
from eval.serving.ratings_schema import COLUMNS  # noqa: E402

CLIP_LONGER_THAN_S = 120.0  # fake seconds a listener takes per clip: longer than any demo clip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """The app's playback clock: moves only when a test says so (a listener taking time to listen)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@contextmanager
def running_app(data: Path, admin_password: str | None):
    """Serve the demo app over ``data`` on a free port; yields {url, data, csv, clock}."""
    from app import build_ui
    from tts_core import load_pipeline
    from tts_core.model.factory import demo_model_dir

    clock = FakeClock()
    pipe = load_pipeline(demo_model_dir(), device="cpu")
    demo = build_ui(pipe, RatingsStore(data / "ratings.csv"), data, admin_password=admin_password, clock=clock)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "data": data, "csv": data / "ratings.csv", "clock": clock}
    finally:
        demo.close()


def client(app, listener: str | None = None, **kwargs) -> Client:
    c = Client(app["url"], verbose=False, **kwargs)
    if listener is not None:
        c.predict(listener, api_name="/set_listener")
    return c


def listen(app, c: Client, clip: str, seconds: float = CLIP_LONGER_THAN_S) -> None:
    """Play ``clip`` ("1"/"2" in the blind test, "a"/"b" in the playground) to its end."""
    prefix = "/blind_" if clip in "12" else "/"
    c.predict(api_name=f"{prefix}played_{clip}")
    app["clock"].advance(seconds)
    c.predict(api_name=f"{prefix}ended_{clip}")


def listen_both(app, c: Client, clips: str = "12") -> None:
    for clip in clips:
        listen(app, c, clip)


def rows(app) -> list[dict[str, str]]:
    with open(app["csv"], newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == list(COLUMNS)
        return [dict(zip(COLUMNS, r, strict=True)) for r in reader]
