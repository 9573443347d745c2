"""Where the project keeps what it makes once: the demo model, exported ONNX files, TensorRT engines."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "COSYVOICE2_AB_CACHE"  # overrides the cache folder


def cache_root() -> Path:
    """``$COSYVOICE2_AB_CACHE``, else ``~/.cache/cosyvoice2-ab``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "cosyvoice2-ab"))
