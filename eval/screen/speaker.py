"""Speaker similarity: cosine between the voice prompt's and the clip's speaker embeddings.

Two encoders, both on 16 kHz audio:

* :class:`CampplusEncoder`: the model directory's ``campplus.onnx``, the CAM++ x-vector network
  CosyVoice2 itself is conditioned on, fed through the project's own Kaldi fbank
  (:meth:`tts_core.frontend.speech_frontend.SpeechFrontend.speaker_embedding`). With a random-weight model it
  measures nothing, and says so.
* :class:`ResemblyzerEncoder`: the trained GE2E speaker encoder whose weights ship in the
  ``resemblyzer`` wheel (``pretrained.pt``; 3-layer LSTM over 40-bin mel frames, 1.6 s partials).
  NOTE: the package itself cannot be imported here: its ``webrtcvad`` dependency imports
  ``pkg_resources``, which setuptools >= 81 no longer has. So we load its weights
  (``torch.load(weights_only=True)``, strict) into the same network and run resemblyzer's
  documented ``embed_utterance`` steps ourselves; tests/test_screen_speaker.py checks the
  embeddings against the package's own code. Resemblyzer's WebRTC-VAD silence trimming is replaced
  by dropping pauses longer than ``MAX_PAUSE_S`` with the screen's energy rule.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from tts_core.frontend.audio import resample

from .options import SPEAKER_SAMPLE_RATE
from .results import MeasureInfo, Similarity

# --- resemblyzer's hyper-parameters (resemblyzer/hparams.py of 0.1.4)
RESEMBLYZER_N_MELS = 40
RESEMBLYZER_WINDOW = 400  # samples: 25 ms at 16 kHz
RESEMBLYZER_HOP = 160  # samples: 10 ms
RESEMBLYZER_HIDDEN = 256  # LSTM width and embedding size
RESEMBLYZER_LAYERS = 3
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
PARTIAL_RATE = 1.3  # partials per second (embed_utterance default)
PARTIAL_MIN_COVERAGE = 0.75  # a last partial needs this share of real frames to be kept
TARGET_DBFS = -30.0  # volume normalisation (raise only)
# --- our replacement of the VAD trimming
PAUSE_FRAME_S = 0.03  # resemblyzer's VAD window
PAUSE_BELOW_PEAK_DB = 40.0
MAX_PAUSE_S = 0.2  # longer pauses are cut to this (resemblyzer keeps ~6 VAD windows around speech)
MIN_SPEAKER_SECONDS = 0.5  # shorter clips carry too little voice for an embedding

CAMPPLUS_NAME = "sim_campplus"
RESEMBLYZER_NAME = "sim_resemblyzer"
RANDOM_WEIGHTS_CAVEAT = "random-weight model: its campplus.onnx is untrained, this cosine measures nothing"


class SpeakerEncoder(Protocol):
    info: MeasureInfo

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        """wav16k: (N,) float32 at 16 kHz. Returns a (D,) unit-norm float32 embedding."""
        ...


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(x))
    if not np.isfinite(norm) or norm == 0.0:
        raise RuntimeError("the speaker encoder returned a zero or non-finite embedding")
    return x / norm


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


class CampplusEncoder:
    """The CAM++ x-vector of a CosyVoice2 model directory (192-d, CPU)."""

    def __init__(self, campplus_path: Path, random_weights: bool) -> None:
        import torch

        from tts_core.frontend.speech_frontend import SpeechFrontend

        self._frontend = SpeechFrontend(None, campplus_path, torch.device("cpu"))
        self.info = MeasureInfo(
            CAMPPLUS_NAME,
            "cosine to the prompt, CAM++ x-vectors (the model's own campplus.onnx, Kaldi fbank)",
            model=f"{Path(campplus_path).name} from {Path(campplus_path).parent}",
            version=f"sha256 {file_digest(campplus_path)}",
            reason=RANDOM_WEIGHTS_CAVEAT if random_weights else "",
        )

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        return _unit(self._frontend.speaker_embedding(wav16k).numpy())


def resemblyzer_weights() -> Path:
    """Path of ``pretrained.pt`` inside the installed resemblyzer package (without importing it)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("resemblyzer is not installed (pip install resemblyzer==0.1.4)")
    path = Path(spec.origin).resolve().parent / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall resemblyzer")
    return path


def partial_slices(n_samples: int) -> list[slice]:
    """Mel-frame slices of the 1.6 s partial utterances of an n-sample clip (resemblyzer's rule)."""
    n_frames = int(np.ceil((n_samples + 1) / RESEMBLYZER_HOP))
    step = int(np.round((SPEAKER_SAMPLE_RATE / PARTIAL_RATE) / RESEMBLYZER_HOP))
    slices = [
        slice(i, i + PARTIAL_FRAMES) for i in range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)
    ]
    last = slices[-1]
    coverage = (n_samples - last.start * RESEMBLYZER_HOP) / (PARTIAL_FRAMES * RESEMBLYZER_HOP)
    if coverage < PARTIAL_MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices


def shorten_pauses(wav16k: np.ndarray) -> np.ndarray:
    """(M,) the clip with every pause (30 ms frames 40 dB under the loudest) cut to MAX_PAUSE_S."""
    n = int(PAUSE_FRAME_S * SPEAKER_SAMPLE_RATE)
    frames = wav16k[: wav16k.size // n * n].reshape(-1, n)
    if frames.shape[0] == 0:
        return wav16k
    level = 10 * np.log10(np.maximum(np.mean(frames.astype(np.float64) ** 2, axis=1), 1e-20))
    quiet = level < level.max() - PAUSE_BELOW_PEAK_DB
    keep = np.ones_like(quiet)
    max_run = int(round(MAX_PAUSE_S / PAUSE_FRAME_S))
    run = 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        keep[i] = run <= max_run
    return frames[keep].reshape(-1)


class ResemblyzerEncoder:
    """resemblyzer's trained GE2E encoder (256-d) on CPU, run by our own code (see module docstring)."""

    def __init__(self) -> None:
        import torch
        from torch import nn

        path = resemblyzer_weights()
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        # The GE2E loss' similarity scale/bias are training-only parameters.
        state = {k: v for k, v in checkpoint["model_state"].items() if not k.startswith("similarity_")}
        self._lstm = nn.LSTM(RESEMBLYZER_N_MELS, RESEMBLYZER_HIDDEN, RESEMBLYZER_LAYERS, batch_first=True)
        self._linear = nn.Linear(RESEMBLYZER_HIDDEN, RESEMBLYZER_HIDDEN)
        net = nn.ModuleDict({"lstm": self._lstm, "linear": self._linear})
        net.load_state_dict(state, strict=True)
        net.eval()
        self._torch = torch
        self.info = MeasureInfo(
            RESEMBLYZER_NAME,
            "cosine to the prompt, resemblyzer GE2E speaker encoder (trained weights from its wheel)",
            model=f"resemblyzer pretrained.pt (sha256 {file_digest(path)})",
            version=f"resemblyzer {metadata.version('resemblyzer')}",
        )

    def mel_partials(self, wav16k: np.ndarray) -> np.ndarray:
        """(P, 160, 40) float32 power-mel frames of the partial utterances of a preprocessed clip."""
        import librosa

        slices = partial_slices(wav16k.size)
        need = slices[-1].stop * RESEMBLYZER_HOP
        wav = np.pad(wav16k, (0, max(0, need - wav16k.size)))
        mel = (
            librosa.feature.melspectrogram(
                y=wav,
                sr=SPEAKER_SAMPLE_RATE,
                n_fft=RESEMBLYZER_WINDOW,
                hop_length=RESEMBLYZER_HOP,
                n_mels=RESEMBLYZER_N_MELS,
            )
            .astype(np.float32)
            .T
        )  # (T, 40)
        return np.stack([mel[s] for s in slices])

    def embed_preprocessed(self, wav16k: np.ndarray) -> np.ndarray:
        """(256,) unit embedding of a clip that is already volume-normalised and trimmed."""
        torch = self._torch
        with torch.inference_mode():
            _, (hidden, _) = self._lstm(torch.from_numpy(self.mel_partials(wav16k)))
            partial = torch.relu(self._linear(hidden[-1]))  # (P, 256)
            partial = partial / torch.norm(partial, dim=1, keepdim=True)
        return _unit(partial.mean(dim=0).numpy())

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav16k, dtype=np.float32)
        rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
        gain_db = TARGET_DBFS - 20 * np.log10(max(rms, 1e-10))
        if gain_db > 0:  # raise quiet clips only, as resemblyzer's normalize_volume(increase_only=True)
            wav = wav * np.float32(10 ** (gain_db / 20))
        return self.embed_preprocessed(shorten_pauses(wav))


@dataclass(frozen=True)
class SpeakerReference:
    """The voice prompt's embedding under each encoder (computed once per prompt)."""

    embeddings: tuple[tuple[str, np.ndarray], ...]  # (encoder name, (D,) unit embedding)
    failures: tuple[tuple[str, str], ...] = ()  # (encoder name, why the prompt could not be embedded)

    def get(self, name: str) -> np.ndarray | None:
        return next((e for n, e in self.embeddings if n == name), None)

    def failure(self, name: str) -> str:
        return next((why for n, why in self.failures if n == name), "")


def to_speaker_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """(M,) float32 16 kHz copy of (N,) audio."""
    return resample(np.asarray(audio, dtype=np.float32), sample_rate, SPEAKER_SAMPLE_RATE)


def make_reference(
    encoders: tuple[SpeakerEncoder, ...], audio: np.ndarray, sample_rate: int
) -> SpeakerReference:
    """Embed the voice prompt ((N,) float at ``sample_rate``) with every encoder."""
    wav16k = to_speaker_rate(audio, sample_rate)
    if wav16k.size < MIN_SPEAKER_SECONDS * SPEAKER_SAMPLE_RATE:
        why = f"the prompt is shorter than {MIN_SPEAKER_SECONDS} s"
        return SpeakerReference((), tuple((e.info.name, why) for e in encoders))
    ok, failed = [], []
    for encoder in encoders:
        try:
            ok.append((encoder.info.name, encoder.embed(wav16k)))
        except (RuntimeError, ValueError) as err:
            failed.append((encoder.info.name, f"the prompt could not be embedded: {err}"))
    return SpeakerReference(tuple(ok), tuple(failed))


def similarities(
    encoders: tuple[SpeakerEncoder, ...], wav16k: np.ndarray, reference: SpeakerReference | None
) -> tuple[Similarity, ...]:
    """Cosine of the clip (16 kHz, finite) to the reference under every encoder."""
    out = []
    for encoder in encoders:
        ref = None if reference is None else reference.get(encoder.info.name)
        if reference is None:
            out.append(Similarity(encoder.info.unavailable("no voice prompt given")))
        elif ref is None:
            out.append(Similarity(encoder.info.unavailable(reference.failure(encoder.info.name))))
        elif wav16k.size < MIN_SPEAKER_SECONDS * SPEAKER_SAMPLE_RATE:
            out.append(
                Similarity(encoder.info.unavailable(f"the clip is shorter than {MIN_SPEAKER_SECONDS} s"))
            )
        else:
            try:
                out.append(Similarity(encoder.info, float(np.dot(ref, encoder.embed(wav16k)))))
            except (RuntimeError, ValueError) as err:
                out.append(Similarity(encoder.info.unavailable(f"the clip could not be embedded: {err}")))
    return tuple(out)
