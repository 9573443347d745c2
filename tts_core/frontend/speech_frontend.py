"""The speech side of the CosyVoice2 frontend: prompt audio -> speech tokens, x-vector and prompt mel.

Runs the released ONNX models (``speech_tokenizer_v2.onnx``, ``campplus.onnx``) with onnxruntime on
features from :mod:`tts_core.frontend.features`, the way ``cosyvoice/cli/frontend.py`` does:

* speech tokens: 16 kHz -> whisper 128-bin log-mel (1, 128, T) + length (1,) int32 -> ~25 Hz tokens
* speaker embedding: 16 kHz -> Kaldi fbank minus its time mean (1, T, 80) -> 192-d x-vector
* prompt mel: 24 kHz -> Matcha mel (T, 80) at 50 Hz

The tiny stand-ins from :mod:`tts_core.model.tiny_onnx` go through the same code.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from tts_core.constants import (
    MAX_PROMPT_SECONDS,
    SAMPLE_RATE,
    SPEAKER_EMBEDDING_DIM,
    SPEECH_TOKEN_SIZE,
    TOKENIZER_SAMPLE_RATE,
)
from tts_core.frontend.audio import check_prompt_audio, resample
from tts_core.frontend.features import campplus_input, prompt_mel_80, whisper_log_mel_128
from tts_core.frontend.prompt import PromptFeatures

log = logging.getLogger(__name__)

SPEECH_TOKENIZER_FILE = "speech_tokenizer_v2.onnx"
CAMPPLUS_FILE = "campplus.onnx"
ORT_INTRA_OP_THREADS = 1  # as the official frontend; the models are small and run once per prompt
# Inputs by position (the official code never uses the names): element type and rank of each.
_TOKENIZER_INPUTS = (("tensor(float)", 3), ("tensor(int32)", 1))
_CAMPPLUS_INPUTS = (("tensor(float)", 3),)


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = ORT_INTRA_OP_THREADS
    return options


def _providers(device: torch.device) -> list:
    """CUDA EP on a CUDA device when this onnxruntime build has it, else CPU."""
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _open_session(path: Path, role: str, providers: list, expected_inputs: tuple) -> ort.InferenceSession:
    """Load one ONNX model; ValueError naming the file when it is corrupt or not the expected model."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: download the full model directory again")
    try:
        session = ort.InferenceSession(str(path), sess_options=_session_options(), providers=providers)
    except Exception as error:  # onnxruntime raises its own pybind exception types (InvalidProtobuf, Fail...)
        raise ValueError(
            f"{path} could not be loaded by onnxruntime ({type(error).__name__}: {str(error)[:200]}). "
            "The file is probably corrupt or truncated: download the model directory again."
        ) from error
    # NOTE: a rank is compared only where the file declares a shape; the released files are exported
    # with shapes, but a missing one must not make us refuse a file the official code would run.
    found = [(i.type, len(i.shape) if i.shape else None) for i in session.get_inputs()]
    matches = len(found) == len(expected_inputs) and all(
        f_type == e_type and f_rank in (None, e_rank)
        for (f_type, f_rank), (e_type, e_rank) in zip(found, expected_inputs)
    )
    if not matches:
        raise ValueError(
            f"{path} has inputs {found} (type, rank) but {list(expected_inputs)} were expected: "
            f"it is not the {role} of a CosyVoice2 model directory."
        )
    return session


class SpeechFrontend:
    """Speech tokenizer + speaker model + prompt mel for voice prompts.

    speech_tokenizer_path / campplus_path: the ONNX files, or None when not available (the methods
    that need them then raise RuntimeError). device: where torch runs the rest of the pipeline; the
    speech tokenizer runs on the CUDA execution provider when that device is CUDA and onnxruntime has
    CUDA support; campplus always runs on CPU, as in the official frontend. Outputs are CPU tensors.
    """

    def __init__(self, speech_tokenizer_path: Path | None, campplus_path: Path | None, device: torch.device):
        self.device = torch.device(device)
        self.speech_tokenizer_path = None if speech_tokenizer_path is None else Path(speech_tokenizer_path)
        self.campplus_path = None if campplus_path is None else Path(campplus_path)
        self._tokenizer: ort.InferenceSession | None = None
        self._campplus: ort.InferenceSession | None = None
        if self.speech_tokenizer_path is not None:
            self._tokenizer = _open_session(
                self.speech_tokenizer_path, SPEECH_TOKENIZER_FILE, _providers(self.device), _TOKENIZER_INPUTS
            )
            log.info(
                "speech tokenizer %s on %s", self.speech_tokenizer_path, self._tokenizer.get_providers()[0]
            )
        if self.campplus_path is not None:
            self._campplus = _open_session(
                self.campplus_path, CAMPPLUS_FILE, ["CPUExecutionProvider"], _CAMPPLUS_INPUTS
            )

    @property
    def tokenizer_provider(self) -> str | None:
        """The execution provider the speech tokenizer actually runs on (None when not loaded)."""
        return None if self._tokenizer is None else self._tokenizer.get_providers()[0]

    def _require(self, session: ort.InferenceSession | None, filename: str) -> ort.InferenceSession:
        if session is None:
            raise RuntimeError(
                f"{filename} is not available: this frontend was built without it, so voice prompts "
                "cannot be encoded. Put the file in the model directory (download the full model)."
            )
        return session

    def speech_tokens(self, wav16k: np.ndarray) -> torch.Tensor:
        """wav16k: (N,) float32 at 16 kHz, at most 30 s. Returns (L,) int64 speech tokens, L ~ N / 640."""
        session = self._require(self._tokenizer, SPEECH_TOKENIZER_FILE)
        if np.asarray(wav16k).shape[-1] > MAX_PROMPT_SECONDS * TOKENIZER_SAMPLE_RATE:
            raise ValueError(f"the speech tokenizer takes at most {MAX_PROMPT_SECONDS:g} s of audio")
        feats = whisper_log_mel_128(torch.as_tensor(wav16k, dtype=torch.float32))  # (128, T)
        feats_np = feats.unsqueeze(0).numpy()
        lengths = np.array([feats_np.shape[2]], dtype=np.int32)
        inputs = session.get_inputs()
        raw = session.run(None, {inputs[0].name: feats_np, inputs[1].name: lengths})[0]
        tokens = torch.from_numpy(np.asarray(raw).reshape(-1).astype(np.int64))
        if tokens.numel() == 0 or int(tokens.min()) < 0 or int(tokens.max()) >= SPEECH_TOKEN_SIZE:
            raise RuntimeError(
                f"{self.speech_tokenizer_path} returned {tokens.numel()} tokens outside [0, {SPEECH_TOKEN_SIZE}): "
                "it is not a CosyVoice2 speech tokenizer"
            )
        return tokens

    def speaker_embedding(self, wav16k: np.ndarray) -> torch.Tensor:
        """wav16k: (N,) float32 at 16 kHz. Returns the (192,) float32 campplus x-vector."""
        session = self._require(self._campplus, CAMPPLUS_FILE)
        feats = (
            campplus_input(torch.as_tensor(wav16k, dtype=torch.float32)).unsqueeze(0).numpy()
        )  # (1, T, 80)
        raw = session.run(None, {session.get_inputs()[0].name: feats})[0]
        embedding = torch.from_numpy(np.asarray(raw, dtype=np.float32).reshape(-1).copy())
        if embedding.numel() != SPEAKER_EMBEDDING_DIM or not torch.isfinite(embedding).all():
            raise RuntimeError(
                f"{self.campplus_path} returned {embedding.numel()} values (finite: "
                f"{bool(torch.isfinite(embedding).all())}); a {SPEAKER_EMBEDDING_DIM}-d x-vector was expected"
            )
        return embedding

    def prompt_features(
        self,
        audio: np.ndarray,
        sample_rate: int,
        text_tokens: Sequence[int] | None,
        transcript: str | None,
    ) -> PromptFeatures:
        """Everything the model needs from a voice prompt.

        audio: (N,) float32 mono in [-1, 1] at ``sample_rate`` (see :func:`tts_core.frontend.audio.load_audio`).
        text_tokens: Qwen2 ids of the transcript, or None/empty for cross-lingual prompts.
        Checks the audio (ValueError with a user-facing message), resamples it to 16 kHz (tokens,
        x-vector) and 24 kHz (mel); PromptFeatures then cuts tokens and mel to a common length.
        """
        check_prompt_audio(audio, sample_rate)
        wav16k = resample(audio, sample_rate, TOKENIZER_SAMPLE_RATE)
        wav24k = resample(audio, sample_rate, SAMPLE_RATE)
        tokens = self.speech_tokens(wav16k)
        embedding = self.speaker_embedding(wav16k)
        mel = prompt_mel_80(torch.from_numpy(wav24k))  # (T, 80)
        # NOTE: an explicit int64 tensor: np.asarray([]) would be float64 and read as non-integer ids.
        text = torch.tensor(list(text_tokens) if text_tokens is not None else [], dtype=torch.long)
        return PromptFeatures.from_arrays(text, tokens, mel, embedding, transcript)
