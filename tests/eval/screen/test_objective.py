"""Objective distances against textbook truths: zero for identical input, exact gain in dB, F0 offsets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.screen import objective

SR = 24_000


def _noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal(int(SR * seconds))


def _sine(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return 0.5 * np.sin(2 * np.pi * freq * t)


def test_identical_inputs_give_zero():
    x = _noise()
    mel = np.random.default_rng(1).standard_normal((80, 50))
    d = objective.compare(x, x.copy(), SR, mel_a=mel, mel_b=mel.copy())
    assert d.mel_l1 == 0.0
    assert d.lsd_db == 0.0
    assert d.mcd_db == 0.0


def test_mel_l1_is_mean_absolute_difference():
    a = np.zeros((80, 10))
    b = np.zeros((80, 10))
    b[:40] = 2.0  # half of the cells differ by 2 -> mean |diff| = 1
    assert objective.mel_l1(a, b) == pytest.approx(1.0)
    assert objective.mel_l1(a[None], b[None]) == pytest.approx(1.0)  # (1, n_mels, T) accepted
    with pytest.raises(ValueError, match="mel shapes differ"):
        objective.mel_l1(a, b[:, :9])


@pytest.mark.parametrize("gain", [2.0, 0.5, 10.0])
def test_gain_change_gives_exact_lsd(gain):
    x = _noise()
    # Every bin's power scales by gain^2, so every frame's RMS log difference is |20 log10 gain| dB.
    assert objective.log_spectral_distance(x, gain * x, SR) == pytest.approx(
        abs(20 * math.log10(gain)), rel=1e-9
    )


def test_mcd_ignores_gain_and_is_symmetric_and_positive():
    x, y = _noise(seed=0), _noise(seed=1)
    # A gain only moves c0, which MCD leaves out.
    assert objective.mel_cepstral_distortion(x, 2.0 * x, SR) == pytest.approx(0.0, abs=1e-9)
    d_xy = objective.mel_cepstral_distortion(x, y, SR)
    d_yx = objective.mel_cepstral_distortion(y, x, SR)
    assert d_xy > 0
    assert d_xy == pytest.approx(d_yx, rel=1e-12)
    # A spectrally different signal (a sine) is much farther from noise than another noise draw.
    assert objective.mel_cepstral_distortion(x, _sine(200.0), SR) > 2 * d_xy


def test_mcd_constant_is_the_standard_one():
    assert pytest.approx(10 / np.log(10) * np.sqrt(2)) == objective.MCD_CONSTANT


def test_f0_rmse_of_200_vs_220_hz_sines_is_20_hz():
    assert objective.f0_rmse(_sine(200.0), _sine(220.0), SR) == pytest.approx(20.0, abs=1.0)
    assert objective.f0_rmse(_sine(200.0), _sine(200.0), SR) == pytest.approx(0.0, abs=1e-6)
    d = objective.compare(_sine(200.0), _sine(220.0), SR)
    assert d.f0_frames > 40  # 50 frames per second, nearly all voiced in both
    assert d.f0_rmse_hz == pytest.approx(20.0, abs=1.0)


def test_f0_rmse_none_without_voiced_frames():
    silence = np.zeros(SR)
    assert objective.f0_rmse(silence, silence, SR) is None
    assert objective.compare(silence, silence, SR).f0_frames == 0


def test_bad_input_is_refused_clearly():
    x = _noise()
    with pytest.raises(ValueError, match="differ in length"):
        objective.log_spectral_distance(x, x[: SR // 2], SR)
    with pytest.raises(ValueError, match="mono"):
        objective.log_spectral_distance(np.stack([x, x]), np.stack([x, x]), SR)
    with pytest.raises(ValueError, match="NaN"):
        objective.log_spectral_distance(x, np.full_like(x, np.nan), SR)
    with pytest.raises(ValueError, match="sample rate"):
        objective.log_spectral_distance(x, x, 0)
    with pytest.raises(ValueError, match="shorter than one analysis frame"):
        objective.log_spectral_distance(x[:100], x[:100], SR)


def test_small_length_difference_is_trimmed():
    x = _noise()
    assert objective.log_spectral_distance(x, x[:-10], SR) == pytest.approx(0.0, abs=1e-9)


def test_optional_metrics_are_none_without_packages():
    x = _noise()
    d = objective.compare(x, 0.5 * x, SR)
    assert d.mel_l1 is None
    if not objective.optional_metric_available("pesq"):
        assert d.pesq is None
    if not objective.optional_metric_available("pystoi"):
        assert d.stoi is None
    assert set(d.to_dict()) == {"mel_l1", "lsd_db", "mcd_db", "f0_rmse_hz", "f0_frames", "pesq", "stoi"}


def test_pesq_and_stoi_when_installed():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    x = _sine(200.0, 3.0) + _noise(3.0)
    assert objective.pesq_wb(x, x, SR) > 4.0
    assert objective.stoi(x, x, SR) == pytest.approx(1.0, abs=1e-3)
