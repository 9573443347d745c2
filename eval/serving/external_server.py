"""Make a folder of external clips (eval/serving/external.py) from a running CosyVoice2 server.

    # the official FastAPI server (runtime/python/fastapi/server.py of FunAudioLLM/CosyVoice),
    # started e.g. with: python server.py --port 50000 --model_dir iic/CosyVoice2-0.5B
    python -m eval.serving.external_server assets/plans/example.json \\
        --server http://127.0.0.1:50000 --label server-fp16-n10 --out clips/server-fp16-n10
    python -m eval.serving.external clips/server-fp16-n10          # validate and summarise

For every (text, prompt) stimulus of the plan, the text and the voice prompt (its wav and
transcript from assets/prompts/manifest.json) are posted to the server's ``/inference_zero_shot``
(form fields ``tts_text``, ``prompt_text``, file ``prompt_wav``; the cross-lingual endpoint when a
prompt has no transcript). The server streams raw 16-bit mono PCM at the model's rate (24 kHz for
CosyVoice2); the clip is written as ``LABEL/TEXT.PROMPT.wav`` and the manifest records the latency
(time to the first audio byte) and the RTF (wall time of the whole request / audio duration) as
measured from here, network included.

Then add the folder to a plan: ``"external": {"folder": "clips/server-fp16-n10"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from eval.serving.conditions import check_external_label
from eval.serving.external import ExternalClipsError, summary_lines, validate_folder
from eval.serving.external_manifest import MANIFEST_NAME
from eval.serving.trials import PromptAsset, load_plan, load_prompts, load_texts

ZERO_SHOT = "/inference_zero_shot"
CROSS_LINGUAL = "/inference_cross_lingual"
SERVER_SAMPLE_RATE = 24_000  # Hz: CosyVoice2's output rate (the server sends no header)
CHUNK_BYTES = 4_096
DEFAULT_TIMEOUT_S = 300.0
EXIT_FAILED = 2


@dataclass(frozen=True)
class ServedClip:
    audio: np.ndarray  # (N,) float32
    latency_s: float  # request sent -> first audio byte
    total_s: float  # request sent -> last byte


def _multipart(fields: dict[str, str], wav: Path) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="prompt_wav"; filename="{wav.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + wav.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def synthesise(server: str, text: str, prompt: PromptAsset, timeout_s: float = DEFAULT_TIMEOUT_S) -> ServedClip:
    """One request to the server; the streamed PCM as float32 with its timings."""
    fields = {"tts_text": text}
    if prompt.transcript:
        fields["prompt_text"] = prompt.transcript
    body, content_type = _multipart(fields, prompt.path)
    endpoint = ZERO_SHOT if prompt.transcript else CROSS_LINGUAL
    request = urllib.request.Request(server.rstrip("/") + endpoint, data=body, headers={"Content-Type": content_type})
    start = time.perf_counter()
    latency = None
    chunks = []
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        while chunk := response.read(CHUNK_BYTES):
            latency = time.perf_counter() - start if latency is None else latency
            chunks.append(chunk)
    total = time.perf_counter() - start
    pcm = b"".join(chunks)
    if len(pcm) < 2 or len(pcm) % 2:
        raise RuntimeError(f"the server sent {len(pcm)} bytes for {text!r}, not 16-bit PCM")
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return ServedClip(audio, float(latency), float(total))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plan", type=Path, help="test plan whose texts and prompts to render")
    parser.add_argument("--server", default="http://127.0.0.1:50000", help="the CosyVoice2 server's base URL")
    parser.add_argument("--label", required=True, help="configuration label of these clips, e.g. server-fp16-n10")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (manifest.json and the clips)")
    parser.add_argument("--system", default="", help="what made the clips, for the manifest")
    parser.add_argument("--sample-rate", dest="sample_rate", type=int, default=SERVER_SAMPLE_RATE)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    texts, prompts = load_texts(), load_prompts()
    try:
        label = check_external_label(args.label)
        plan = load_plan(args.plan)
        stimuli = plan.stimuli(texts, prompts)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    entries = []
    for text_id, prompt_id in stimuli:
        try:
            clip = synthesise(args.server, texts[text_id].text, prompts[prompt_id], args.timeout)
        except (OSError, RuntimeError) as err:
            print(f"error: {text_id} / {prompt_id}: {err}", file=sys.stderr)
            return EXIT_FAILED
        file = Path(label) / f"{text_id}.{prompt_id}.wav"
        (args.out / file).parent.mkdir(parents=True, exist_ok=True)
        sf.write(args.out / file, clip.audio, args.sample_rate, subtype="PCM_16")
        seconds = clip.audio.size / args.sample_rate
        entries.append(
            {"config": label, "text_id": text_id, "prompt_id": prompt_id, "file": str(file),
             "rtf": round(clip.total_s / seconds, 4), "latency_s": round(clip.latency_s, 4)}
        )  # fmt: skip
        print(f"{text_id} / {prompt_id}: {seconds:.2f} s, latency {clip.latency_s:.3f} s", flush=True)
    system = args.system or f"CosyVoice2 server at {args.server}"
    (args.out / MANIFEST_NAME).write_text(json.dumps({"system": system, "clips": entries}, indent=1) + "\n")
    try:
        print("\n".join(summary_lines(validate_folder(args.out, texts, prompts))))
    except ExternalClipsError as err:
        print(f"error: the folder does not validate: {err}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
