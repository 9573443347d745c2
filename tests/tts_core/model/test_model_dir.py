"""Loading errors: every broken model directory gives one clear message naming the file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tts_core import load_pipeline
from tts_core.config_id import ConfigId
from tts_core.model import model_dir
from tts_core.model.factory import write_random_model


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    return write_random_model(tmp_path_factory.mktemp("m") / "model", "tiny", seed=1)


@pytest.fixture
def copy_dir(good_dir, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(good_dir, dst)
    return dst


def test_good_dir_loads_strict(good_dir):
    pipe = load_pipeline(good_dir, device="cpu", require_frontend=True)
    assert pipe.info.random_weights and pipe.info.missing_frontend == ()
    assert set(pipe.info.dtypes) >= {"float32", "bfloat16"}


@pytest.mark.parametrize(
    "name", ["llm.pt", "flow.pt", "hift.pt", "cosyvoice2.yaml", "CosyVoice-BlankEN/config.json"]
)
def test_missing_core_file(copy_dir, name):
    (copy_dir / name).unlink()
    with pytest.raises(ValueError, match=name.split("/")[-1]):
        load_pipeline(copy_dir, device="cpu")


@pytest.mark.parametrize("name", ["llm.pt", "flow.pt", "hift.pt"])
def test_corrupt_weights(copy_dir, name):
    data = (copy_dir / name).read_bytes()
    (copy_dir / name).write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=name):
        load_pipeline(copy_dir, device="cpu")


def test_corrupt_onnx_named(copy_dir):
    (copy_dir / "campplus.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ValueError, match="campplus.onnx"):
        load_pipeline(copy_dir, device="cpu")


def test_missing_frontend_with_require(copy_dir):
    (copy_dir / "speech_tokenizer_v2.onnx").unlink()
    with pytest.raises(ValueError, match="speech_tokenizer_v2.onnx"):
        load_pipeline(copy_dir, device="cpu", require_frontend=True)


def test_weights_that_do_not_fit_the_yaml(copy_dir):
    yaml = copy_dir / "cosyvoice2.yaml"
    yaml.write_text(yaml.read_text().replace("base_channels: 64", "base_channels: 32"))
    with pytest.raises(ValueError, match="hift.pt"):
        load_pipeline(copy_dir, device="cpu")


@pytest.mark.parametrize("name, family", [("cosyvoice3.yaml", "CosyVoice3"), ("cosyvoice.yaml", "version 1")])
def test_other_model_family(copy_dir, name, family):
    (copy_dir / "cosyvoice2.yaml").rename(copy_dir / name)
    with pytest.raises(ValueError, match=family):
        load_pipeline(copy_dir, device="cpu")


def test_yaml_with_other_classes(copy_dir):
    yaml = copy_dir / "cosyvoice2.yaml"
    yaml.write_text(yaml.read_text().replace("llm.llm.Qwen2LM", "llm.llm.CosyVoice3LM"))
    with pytest.raises(ValueError, match="CosyVoice3LM"):
        load_pipeline(copy_dir, device="cpu")


def test_not_yaml(copy_dir):
    (copy_dir / "cosyvoice2.yaml").write_text("llm: [unclosed\n  - : :")
    with pytest.raises(ValueError, match="cosyvoice2.yaml"):
        load_pipeline(copy_dir, device="cpu")


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="iic/NoSuchModel"):
        load_pipeline("iic/NoSuchModel", device="cpu")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("source", "hub", "model_id"),
    [
        ("iic/CosyVoice2-0.5B", "ModelScope", "iic/CosyVoice2-0.5B"),
        ("FunAudioLLM/CosyVoice2-0.5B", "Hugging Face", "FunAudioLLM/CosyVoice2-0.5B"),
        ("modelscope:someone/tuned", "ModelScope", "someone/tuned"),
        ("hf:iic/CosyVoice2-0.5B", "Hugging Face", "iic/CosyVoice2-0.5B"),
    ],
)
def test_hub_is_told_by_prefix_or_owner(source, hub, model_id):
    assert model_dir._hub_and_id(source) == (hub, model_id)
    assert model_dir.looks_like_hub_id(source)


def test_unreachable_hugging_face_hub_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="FunAudioLLM/NoSuchModel.*unreachable"):
        load_pipeline("FunAudioLLM/NoSuchModel", device="cpu")
    assert time.monotonic() - start < 30
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set"):
        load_pipeline("FunAudioLLM/NoSuchModel", device="cpu")


def test_nonsense_source():
    with pytest.raises(ValueError, match="neither a model directory"):
        load_pipeline("/no/such/dir/anywhere", device="cpu")


def test_unknown_device(good_dir):
    with pytest.raises(ValueError, match="device"):
        load_pipeline(good_dir, device="tpu")


@pytest.mark.parametrize(
    "backend, reason", [("torch-cudagraph", "CUDA"), ("tensorrt", "TensorRT"), ("fast", "one of")]
)
def test_backend_that_cannot_run_is_refused(good_dir, backend, reason):
    with pytest.raises(ValueError, match=reason):
        load_pipeline(good_dir, device="cpu", backend=backend)


@pytest.mark.parametrize("llm_backend", ["cuda-graph", "cuda-graph-compiled", "cuda-graph-triton"])
def test_llm_backend_needs_cuda(good_dir, llm_backend):
    with pytest.raises(ValueError, match="CUDA"):
        load_pipeline(good_dir, device="cpu", llm_backend=llm_backend)
    with pytest.raises(ValueError, match="one of"):
        load_pipeline(good_dir, device="cpu", llm_backend="fastest")


def test_info_names_what_runs_and_warmup(good_dir):
    pipe = load_pipeline(good_dir, device="cpu")
    assert (pipe.info.backend, pipe.info.llm_backend) == ("torch", "eager")
    report = pipe.warmup([ConfigId("float32", 2), ConfigId("bfloat16", 2)], max_tokens=64)
    assert report.device_memory_mb == 0 and report.seconds > 0
    # On a CPU nothing is captured; the dtype copy is the one piece of one-time work it reports.
    assert [w.what.split()[0] for w in report.work] == ["bfloat16"]
