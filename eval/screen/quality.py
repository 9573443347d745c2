"""Predicted MOS: DNSMOS P.835 (signal, background, overall) and P.808, from the ``speechmos`` wheel.

The ONNX models ship inside the ``speechmos`` package (Microsoft's DNS Challenge models, MIT), so
this runs offline. DNSMOS scores 9.01 s windows at 16 kHz with a 1 s hop and averages them.
NOTE: speechmos doubles a shorter clip until it passes 9.01 s and then scores every hop of the
result (a 4 s clip becomes 16 s: 7 windows of the same speech repeated); we repeat a short clip to
exactly one window instead, which scores the same content once at a seventh of the cost. It was trained on noisy and
enhanced real speech, so read it as "how clean does this sound", not as a TTS naturalness MOS.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from tts_core.frontend.audio import resample

from .options import DNSMOS_SAMPLE_RATE
from .results import MeasureInfo, QualityScore

DNSMOS_P835_FILE = "sig_bak_ovr.onnx"  # speechmos/dnsmos_models/: P.835 SIG, BAK, OVRL heads
DNSMOS_P808_FILE = "model_v8.onnx"  # speechmos/dnsmos_models/: P.808 overall MOS
DNSMOS_WINDOW_S = 9.01  # seconds per scored window (speechmos INPUT_LENGTH)
DNSMOS_ORT_THREADS = 2  # intra-op threads: the screen runs beside synthesis, leave it the other cores
MIN_DNSMOS_SECONDS = 0.25  # shorter clips are not scored (speechmos would tile a few samples 36 times)

DNSMOS_INFO = MeasureInfo(
    "dnsmos",
    "DNSMOS predicted MOS (1-5): P.835 signal / background / overall and P.808, 16 kHz",
    model=f"DNSMOS P.835 {DNSMOS_P835_FILE} + P.808 {DNSMOS_P808_FILE}",
)


class Dnsmos:
    """The two DNSMOS networks, loaded once. Not thread-safe (the screener serialises calls)."""

    def __init__(self) -> None:
        from speechmos import dnsmos as speechmos_dnsmos  # onnxruntime + librosa; loaded here only

        folder = Path(speechmos_dnsmos.__file__).resolve().parent / "dnsmos_models"
        p835, p808 = folder / DNSMOS_P835_FILE, folder / DNSMOS_P808_FILE
        missing = [p.name for p in (p835, p808) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"the speechmos package lacks {missing}: reinstall speechmos")
        import onnxruntime as ort

        # NOTE: speechmos' constructor opens its sessions without naming a provider, which a GPU
        # build of onnxruntime refuses (ORT >= 1.9); we open them ourselves on the CPU, where the
        # screen runs beside the GPU's synthesis, and keep speechmos' scoring code (__call__).
        options = ort.SessionOptions()
        options.intra_op_num_threads = DNSMOS_ORT_THREADS
        model = speechmos_dnsmos.DNSMOS.__new__(speechmos_dnsmos.DNSMOS)
        model.primary_model_path = str(p835)
        model.onnx_sess = ort.InferenceSession(str(p835), options, providers=["CPUExecutionProvider"])
        model.p808_onnx_sess = ort.InferenceSession(str(p808), options, providers=["CPUExecutionProvider"])
        self._model = model
        self.info = MeasureInfo(
            DNSMOS_INFO.name,
            DNSMOS_INFO.description,
            DNSMOS_INFO.model,
            f"speechmos {metadata.version('speechmos')}",
        )

    def score(self, audio: np.ndarray, sample_rate: int) -> QualityScore:
        """audio: (N,) finite float at ``sample_rate``; resampled to 16 kHz and limited to [-1, 1]."""
        if audio.size < MIN_DNSMOS_SECONDS * sample_rate:
            return QualityScore(self.info.unavailable(f"the clip is shorter than {MIN_DNSMOS_SECONDS} s"))
        wav16k = np.clip(resample(audio, sample_rate, DNSMOS_SAMPLE_RATE), -1.0, 1.0)
        window = int(np.ceil(DNSMOS_WINDOW_S * DNSMOS_SAMPLE_RATE))
        if wav16k.size < window:
            wav16k = np.resize(wav16k, window)  # repeats the clip cyclically up to one window
        out = self._model(wav16k.astype(np.float32), DNSMOS_SAMPLE_RATE, False)
        return QualityScore(
            self.info,
            ovrl=float(out["ovrl_mos"]),
            sig=float(out["sig_mos"]),
            bak=float(out["bak_mos"]),
            p808=float(out["p808_mos"]),
        )
