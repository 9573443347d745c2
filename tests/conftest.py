"""Shared fixtures: where the official reference vectors live, markers that skip with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.serving.trials import load_prompts, load_texts
from tts_core.flow.estimator_net import CausalConditionalDecoder
from tts_core.flow.model import FlowModel
from tts_core.model.factory import ModelConfigs, model_configs

# Parity tests read the official reference vectors from here; override with this variable.
REFERENCE_ENV = "COSYVOICE2_REFERENCE_DIR"

# Without a GPU the Triton decode kernels run under Triton's CPU interpreter. Set before any test
# imports a kernel module (triton reads it when a kernel is defined); a CUDA machine compiles them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
DEFAULT_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_root() -> Path:
    return Path(os.environ.get(REFERENCE_ENV, DEFAULT_REFERENCE))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference folder (README.md, tiny/, frontend/); skips when it is absent."""
    root = reference_root()
    if not (root / "tiny" / "model" / "cosyvoice2.yaml").is_file():
        pytest.skip(f"official reference vectors not found at {root} (set {REFERENCE_ENV})")
    return root


@pytest.fixture(scope="session")
def load_ref(reference_dir: Path):
    """load_ref('fp32_n10', 'flow_mel') -> np.ndarray from reference/tiny/<case>/<name>.npy."""

    def _load(case: str, name: str) -> np.ndarray:
        return np.load(reference_dir / "tiny" / case / f"{name}.npy")

    return _load


@pytest.fixture(scope="session")
def tiny_configs() -> ModelConfigs:
    """The random tiny model's LLM, flow and HiFT configs, from the factory (the reference model's widths)."""
    return model_configs("tiny")


@pytest.fixture(scope="module")
def tiny_flow(tiny_configs: ModelConfigs) -> FlowModel:
    """A seeded random-weight flow of the tiny model (eval mode, CPU, float32)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FlowModel(tiny_configs.flow).eval()


@pytest.fixture(scope="session")
def make_estimator(tiny_configs: ModelConfigs):
    """make_estimator(seed) -> a seeded random-weight estimator network of the tiny model."""

    def _make(seed: int = 0) -> CausalConditionalDecoder:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return CausalConditionalDecoder(tiny_configs.flow.estimator).eval()

    return _make


@pytest.fixture(scope="session")
def texts():
    """The shipped test sentences by id (assets/texts/sentences.json)."""
    return load_texts()


@pytest.fixture(scope="session")
def prompts():
    """The shipped voice prompts by id (assets/prompts/manifest.json)."""
    return load_prompts()


def judgement(trial_id: str, listener: str = "alice", text: str = "Hello, world.") -> dict[str, object]:
    """The cells of one valid blind judgement, as the app appends it to the ratings CSV (tests share it)."""
    return {
        "listener_id": listener,
        "session_id": "s1",
        "trial_id": trial_id,
        "mode": "blind",
        "text_id": "en_01",
        "text": text,
        "prompt_id": "en_flite_slt",
        "a_config": "float16-n10",
        "a_flow_steps": 10,
        "a_dtype": "float16",
        "a_backend": "torch",
        "a_seed": 0,
        "a_clip_id": "aaaa",
        "b_config": "bfloat16-n5",
        "b_flow_steps": 5,
        "b_dtype": "bfloat16",
        "b_backend": "torch",
        "b_seed": 0,
        "b_clip_id": "bbbb",
        "shown_first": "B",
        "score_a": 4,
        "score_b": 3,
        "preference": "A",
        "model_id": "demo",
        "model_hash": "abc123",
        "app_version": "0.1.0",
        "a_llm_backend": "eager",
        "b_llm_backend": "eager",
        "a_plays": 1,
        "b_plays": 2,
        "trial_kind": "test",
    }


@pytest.fixture(autouse=True)
def _deterministic_torch():
    # Parity tolerances are stated for IEEE fp32; keep TF32 and thread count from leaking in.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_cuda: needs a CUDA device (skipped elsewhere)")
    config.addinivalue_line("markers", "requires_trt: needs TensorRT on a CUDA device (skipped elsewhere)")
    config.addinivalue_line("markers", "browser: drives Debian's Chromium through Playwright")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    try:
        import tensorrt  # noqa: F401

        has_trt = has_cuda
    except ImportError:
        has_trt = False
    for item in items:
        if "requires_cuda" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))
        if "requires_trt" in item.keywords and not has_trt:
            item.add_marker(
                pytest.mark.skip(reason="TensorRT is not installed (not on PyPI) or no CUDA device")
            )
