"""Finding, checking and reading an official CosyVoice2 model directory.

Layout (as released as ``iic/CosyVoice2-0.5B``)::

    cosyvoice2.yaml  llm.pt  flow.pt  hift.pt  campplus.onnx  speech_tokenizer_v2.onnx
    CosyVoice-BlankEN/config.json (+ vocab.json, merges.txt, tokenizer_config.json, model.safetensors)
    flow.decoder.estimator.fp32.onnx (optional)

``CosyVoice-BlankEN/model.safetensors`` (988 MB) is never read: llm.pt holds every LLM weight.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tts_core.model.yaml_config import YamlObject, read_yaml

log = logging.getLogger(__name__)

YAML_NAME = "cosyvoice2.yaml"
QWEN_DIR = "CosyVoice-BlankEN"
CORE_FILES = (YAML_NAME, "llm.pt", "flow.pt", "hift.pt", f"{QWEN_DIR}/config.json")
SPEECH_TOKENIZER = "speech_tokenizer_v2.onnx"
CAMPPLUS = "campplus.onnx"
ESTIMATOR_ONNX = "flow.decoder.estimator.fp32.onnx"
RANDOM_MODEL_META = "random_model_meta.json"  # written by random-weight model factories
# Class names the official yaml uses for CosyVoice2; other families use other classes.
EXPECTED_CLASSES = {"llm": "Qwen2LM", "flow": "CausalMaskedDiffWithXvec", "hift": "HiFTGenerator"}
OTHER_FAMILIES = {"cosyvoice.yaml": "CosyVoice (version 1)", "cosyvoice3.yaml": "CosyVoice3"}
HUB_CONNECT_TIMEOUT_S = 5.0
HUB_MODELSCOPE = "ModelScope"
HUB_HF = "Hugging Face"
MODELSCOPE_OWNERS = ("iic",)  # bare ids of these owners are ModelScope's; others the Hugging Face Hub's
# Files a download can skip: the Qwen safetensors are never read (llm.pt has the weights).
DOWNLOAD_IGNORE = [f"{QWEN_DIR}/model.safetensors"]


@dataclass(frozen=True)
class ModelDir:
    """Paths of one checked model directory (frontend files are None when absent)."""

    root: Path
    model_id: str  # the hub id it came from, or the directory name
    speech_tokenizer: Path | None
    campplus: Path | None
    tokenizer_dir: Path | None  # CosyVoice-BlankEN when it holds tokenizer files
    estimator_onnx: Path | None

    @property
    def yaml(self) -> Path:
        return self.root / YAML_NAME

    @property
    def qwen_config(self) -> Path:
        return self.root / QWEN_DIR / "config.json"

    def weights(self, name: str) -> Path:
        return self.root / f"{name}.pt"

    @property
    def random_weights(self) -> bool:
        """True for directories written by a random-weight factory (not speech)."""
        return (self.root / RANDOM_MODEL_META).is_file()

    def missing_frontend(self) -> list[str]:
        """Names of the frontend files this directory lacks."""
        missing = []
        if self.speech_tokenizer is None:
            missing.append(SPEECH_TOKENIZER)
        if self.campplus is None:
            missing.append(CAMPPLUS)
        if self.tokenizer_dir is None:
            missing.append(f"{QWEN_DIR}/ tokenizer files (vocab.json + merges.txt or tokenizer.json)")
        return missing


def _present(path: Path) -> Path | None:
    return path if path.is_file() and path.stat().st_size > 0 else None


def inspect_model_dir(root: Path, model_id: str | None = None) -> ModelDir:
    """Check that ``root`` is a CosyVoice2 directory; ValueError naming what is wrong otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"model directory {root} does not exist")
    if not (root / YAML_NAME).is_file():
        for name, family in OTHER_FAMILIES.items():
            if (root / name).is_file():
                raise ValueError(
                    f"{root} holds a {family} model ({name}); this tool runs CosyVoice2 only "
                    f"(e.g. iic/CosyVoice2-0.5B or a fine-tune of it)"
                )
    for rel in CORE_FILES:
        path = root / rel
        if not path.is_file():
            raise ValueError(
                f"{path} is missing: {root} is not a complete CosyVoice2 model directory "
                "(download it again, e.g. with --model_id iic/CosyVoice2-0.5B)"
            )
        if path.stat().st_size == 0:
            raise ValueError(f"{path} is empty (an interrupted download?); download the model again")
    qwen = root / QWEN_DIR
    has_tokenizer = (qwen / "tokenizer.json").is_file() or (
        (qwen / "vocab.json").is_file() and (qwen / "merges.txt").is_file()
    )
    return ModelDir(
        root=root,
        model_id=model_id or root.name,
        speech_tokenizer=_present(root / SPEECH_TOKENIZER),
        campplus=_present(root / CAMPPLUS),
        tokenizer_dir=qwen if has_tokenizer else None,
        estimator_onnx=_present(root / ESTIMATOR_ONNX),
    )


def read_model_yaml(md: ModelDir) -> dict[str, Any]:
    """The parsed yaml, after checking that it describes the CosyVoice2 classes."""
    data = read_yaml(md.yaml, overrides={"qwen_pretrain_path": str(md.root / QWEN_DIR)})
    for key, cls in EXPECTED_CLASSES.items():
        node = data.get(key)
        if not isinstance(node, YamlObject):
            raise ValueError(f"{md.yaml}: has no '{key}' model entry; not a CosyVoice2 yaml")
        if node.class_name != cls:
            raise ValueError(
                f"{md.yaml}: '{key}' is {node.class_name}, but CosyVoice2 uses {cls} "
                "(is this a CosyVoice 1 or 3 model?)"
            )
    return data


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` with a clear error naming a corrupt file."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip/EOF errors: all mean the file is not a usable checkpoint
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}); "
            "download the model again"
        ) from exc
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a state dict of tensors")
    return sd


def load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    """Strict load; mismatched keys or shapes name the file and the first offending keys."""
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        msg = str(exc).split("\n")
        detail = " ".join(line.strip() for line in msg[:4])
        raise ValueError(f"{path}: weights do not fit the architecture in the yaml ({detail[:600]})") from exc


def weights_digest(md: ModelDir) -> str:
    """Short identity of the weights: sha256 over the sizes and first/last MiB of each .pt file.

    Cheap enough to compute at every start for a 2 GB model; distinguishes fine-tunes.
    """
    h = hashlib.sha256()
    for name in ("llm", "flow", "hift"):
        path = md.weights(name)
        size = path.stat().st_size
        h.update(f"{name}:{size}".encode())
        with path.open("rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def looks_like_hub_id(source: str) -> bool:
    """``owner/name`` (optionally ``hf:``/``modelscope:`` first) with no path of that name on disk."""
    parts = _hub_and_id(source)[1].split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and not Path(source).exists()


def _hub_and_id(source: str) -> tuple[str, str]:
    """(hub, model id) of a hub source: ``hf:ID`` or ``modelscope:ID`` name the hub; a bare id goes
    to ModelScope when its owner is one of MODELSCOPE_OWNERS (``iic/CosyVoice2-0.5B``), else to the
    Hugging Face Hub (``FunAudioLLM/CosyVoice2-0.5B``, the official copy there)."""
    for prefix, hub in (("hf:", HUB_HF), ("modelscope:", HUB_MODELSCOPE)):
        if source.startswith(prefix):
            return hub, source[len(prefix) :]
    owner = source.split("/", 1)[0]
    return (HUB_MODELSCOPE if owner in MODELSCOPE_OWNERS else HUB_HF), source


def _reachable(endpoint: str, timeout: float) -> bool:
    """Can a TCP connection to ``endpoint`` (a URL) be opened within ``timeout`` seconds?"""
    host, _, port = endpoint.split("://")[-1].split("/")[0].partition(":")
    default_port = 80 if endpoint.startswith("http://") else 443
    try:
        with socket.create_connection((host, int(port or default_port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _modelscope_endpoint() -> str:
    from modelscope.hub.constants import DEFAULT_MODELSCOPE_DOMAIN

    return (
        os.environ.get("MODELSCOPE_ENDPOINT")
        or os.environ.get("MODELSCOPE_DOMAIN")
        or DEFAULT_MODELSCOPE_DOMAIN
    )


def _modelscope_snapshot(model_id: str, local_only: bool) -> Path:
    from modelscope import snapshot_download

    return Path(snapshot_download(model_id, local_files_only=local_only, ignore_file_pattern=DOWNLOAD_IGNORE))


def _hf_snapshot(model_id: str, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, local_files_only=local_only, ignore_patterns=DOWNLOAD_IGNORE))


def _hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def download_model(source: str) -> Path:
    """Local copy of a hub model (see :func:`_hub_and_id`), downloading it into that hub's usual
    cache when needed; the 988 MB Qwen safetensors (never read) is skipped.

    A cached copy is used without network. An unreachable hub fails within seconds with a
    message naming the id (the hub clients themselves would retry for minutes).
    """
    hub, model_id = _hub_and_id(source)
    package, snapshot, endpoint = (
        ("modelscope", _modelscope_snapshot, _modelscope_endpoint)
        if hub == HUB_MODELSCOPE
        else ("huggingface_hub", _hf_snapshot, _hf_endpoint)
    )
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise RuntimeError(
            f"downloading {model_id} needs the {package!r} package (pip install {package})"
        ) from exc
    try:
        cached = snapshot(model_id, True)
        inspect_model_dir(cached, model_id)
        return cached
    except Exception:  # not cached (or incomplete): fall through to a real download
        log.info("%s is not in the local %s cache", model_id, hub)
    offline = hub == HUB_HF and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if offline or not _reachable(endpoint(), HUB_CONNECT_TIMEOUT_S):
        why = "HF_HUB_OFFLINE is set" if offline else f"the {hub} hub is unreachable from this machine"
        raise RuntimeError(
            f"cannot download {model_id}: {why}. "
            "Pass --model_dir with a local copy, or --demo for the built-in random-weight model."
        )
    log.info("downloading %s from %s (about 5 GB the first time)", model_id, hub)
    try:
        return snapshot(model_id, False)
    except Exception as exc:
        raise RuntimeError(f"downloading {model_id} from {hub} failed: {exc}") from exc


def resolve_source(source: str | os.PathLike[str]) -> ModelDir:
    """A model directory path or a ModelScope id -> checked :class:`ModelDir`."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return inspect_model_dir(path)
    if looks_like_hub_id(text):
        return inspect_model_dir(download_model(text), model_id=_hub_and_id(text)[1])
    raise ValueError(
        f"{text!r} is neither a model directory nor a hub id like 'iic/CosyVoice2-0.5B' (ModelScope) "
        "or 'FunAudioLLM/CosyVoice2-0.5B' (Hugging Face)"
    )


def read_random_meta(md: ModelDir) -> dict[str, Any] | None:
    path = md.root / RANDOM_MODEL_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
