"""HiFT vocoder vs the official reference vectors (tiny random-weight model, fp32 CPU).

Truth is what the official ``HiFTGenerator.inference`` produced (reference README §3 "HiFT"):
``hift_f0``, ``hift_source`` (the excitation it decoded), ``hift_wav``, and the SineGen2 random
draws ``hift_sine_rand_ini`` / ``hift_sine_noise`` that we inject into our source module.
Measured on this CPU (torch 2.13, 1-2 threads): f0 3.7e-4 Hz, source (injected f0 and draws)
3.0e-8, decode with the injected source 1.1e-7 (all four cases), f0 -> source chain 2.2e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from tts_core.model.yaml_config import read_yaml
from tts_core.vocoder.hift import HiFTConfig, HiFTGenerator, normalize_hift_state_dict

ALL_CASES = ("fp32_n10", "fp32_n5", "bf16_cast_n10", "fp16_cast_n10")  # HiFT is fp32 in every case
F0_ATOL_HZ = 0.05  # measured 3.7e-4 Hz
SOURCE_ATOL = 1e-6  # measured 3.0e-8 (same f0 and draws; only op rounding differs)
# Our own f0 (3.7e-4 Hz off) shifts the accumulated sine phase a little each frame; measured 2.2e-4
# over these 3 s. It grows with length, so this is a check of the chain, not of the phase model.
CHAIN_SOURCE_ATOL = 2e-3
DECODE_ATOL = 1e-5  # measured 1.1e-7 (the issue allows 1e-3)
VOICING_THRESHOLD_HZ = 10.0
SAMPLES_PER_FRAME = 480  # 24 kHz samples per 50 Hz mel frame
AUDIO_LIMIT = 0.99


@pytest.fixture(scope="module")
def model_dir(reference_dir: Path) -> Path:
    return reference_dir / "tiny" / "model"


@pytest.fixture(scope="module")
def hift_state(model_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "hift.pt", weights_only=True)


@pytest.fixture(scope="module")
def hift(model_dir: Path, hift_state: dict[str, torch.Tensor]) -> HiFTGenerator:
    cfg = HiFTConfig.from_yaml(read_yaml(model_dir / "cosyvoice2.yaml")["hift"])
    model = HiFTGenerator(cfg)
    model.load_state_dict(normalize_hift_state_dict(hift_state), strict=True)
    return model.eval()


def _ref(load_ref, case: str, name: str) -> torch.Tensor:
    return torch.from_numpy(load_ref(case, name))


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_config_from_yaml_reads_tiny_sizes(hift: HiFTGenerator) -> None:
    cfg = hift.cfg
    assert (cfg.base_channels, cfg.f0_cond_channels) == (64, 64)  # the tiny edits
    assert cfg.upsample_rates == (8, 5, 3) and (cfg.istft_n_fft, cfg.istft_hop) == (16, 4)
    assert cfg.samples_per_frame == SAMPLES_PER_FRAME


def test_strict_load_and_generator_prefix(hift_state: dict[str, torch.Tensor], hift: HiFTGenerator) -> None:
    assert set(hift.state_dict()) == set(hift_state)  # no stft window or other extra entries
    prefixed = {f"generator.{k}": v for k, v in hift_state.items()}
    other = HiFTGenerator(hift.cfg)
    other.load_state_dict(normalize_hift_state_dict(prefixed), strict=True)
    for key, value in hift_state.items():
        assert torch.equal(other.state_dict()[key], value), key


def test_old_weight_norm_names_load(hift_state: dict[str, torch.Tensor], hift: HiFTGenerator) -> None:
    # Older torch saved weight norm as <m>.weight_g / <m>.weight_v (same shapes).
    old_names = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in hift_state.items()
    }
    assert any(k.endswith(".weight_g") for k in old_names)
    other = HiFTGenerator(hift.cfg)
    other.load_state_dict(normalize_hift_state_dict(old_names), strict=True)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in hift_state.items())


def test_stft_window_is_scipy_periodic_hann(hift: HiFTGenerator) -> None:
    expected = scipy.signal.get_window("hann", hift.cfg.istft_n_fft, fftbins=True).astype(np.float32)
    assert torch.equal(hift.stft_window, torch.from_numpy(expected))


@pytest.mark.parametrize("case", ["fp32_n10", "fp32_n5"])
def test_f0_matches_reference(hift: HiFTGenerator, load_ref, case: str) -> None:
    with torch.no_grad():
        f0 = hift.predict_f0(_ref(load_ref, case, "flow_mel"))
    assert _max_abs(f0, _ref(load_ref, case, "hift_f0")) < F0_ATOL_HZ


def _injected_draws(load_ref) -> tuple[torch.Tensor, torch.Tensor]:
    rand_ini = _ref(load_ref, "fp32_n10", "hift_sine_rand_ini").clone()
    rand_ini[:, 0] = 0.0  # the official code zeroes the fundamental's phase after saving the draw
    return rand_ini, _ref(load_ref, "fp32_n10", "hift_sine_noise")


def test_source_with_injected_draws(hift: HiFTGenerator, load_ref) -> None:
    f0 = _ref(load_ref, "fp32_n10", "hift_f0")
    # Frames within a hair of the voicing threshold could flip voicing under any f0 error; here f0 is
    # the reference itself, so voicing is identical by construction. Check the data has margin anyway.
    assert (f0 - VOICING_THRESHOLD_HZ).abs().min() > 1e-3
    with torch.no_grad():
        source = hift.m_source(f0, *_injected_draws(load_ref))
    assert _max_abs(source, _ref(load_ref, "fp32_n10", "hift_source")) < SOURCE_ATOL


def test_source_from_predicted_f0(hift: HiFTGenerator, load_ref) -> None:
    with torch.no_grad():
        f0 = hift.predict_f0(_ref(load_ref, "fp32_n10", "flow_mel"))
        source = hift.m_source(f0, *_injected_draws(load_ref))
    assert _max_abs(source, _ref(load_ref, "fp32_n10", "hift_source")) < CHAIN_SOURCE_ATOL


@pytest.mark.parametrize("case", ALL_CASES)
def test_decode_with_injected_source(hift: HiFTGenerator, load_ref, case: str) -> None:
    with torch.no_grad():
        wav = hift.decode(_ref(load_ref, case, "flow_mel"), _ref(load_ref, case, "hift_source"))
    assert _max_abs(wav, _ref(load_ref, case, "hift_wav")) < DECODE_ATOL


def test_folded_weight_norm_still_matches(hift: HiFTGenerator, load_ref) -> None:
    folded = HiFTGenerator(hift.cfg)
    folded.load_state_dict(hift.state_dict(), strict=True)
    folded.fold_weight_norm().eval()
    assert not any("parametrizations" in k for k in folded.state_dict())
    with torch.no_grad():
        wav = folded.decode(_ref(load_ref, "fp32_n10", "flow_mel"), _ref(load_ref, "fp32_n10", "hift_source"))
    assert _max_abs(wav, _ref(load_ref, "fp32_n10", "hift_wav")) < DECODE_ATOL


def test_forward_is_seeded(hift: HiFTGenerator, load_ref) -> None:
    mel = _ref(load_ref, "fp32_n10", "flow_mel")
    first = hift(mel, torch.Generator().manual_seed(7))
    again = hift(mel, torch.Generator().manual_seed(7))
    other = hift(mel, torch.Generator().manual_seed(8))
    assert first.shape == (1, mel.shape[2] * SAMPLES_PER_FRAME)
    assert first.dtype == torch.float32
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.abs().max() <= AUDIO_LIMIT and torch.isfinite(first).all()


def test_bad_input_raises(hift: HiFTGenerator) -> None:
    with pytest.raises(ValueError, match="float32"):
        hift(torch.zeros(1, 80, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="mel must be"):
        hift(torch.zeros(1, 40, 4))
    with pytest.raises(ValueError, match="source must be"):
        hift.decode(torch.zeros(1, 80, 4), torch.zeros(1, 1, 100))
