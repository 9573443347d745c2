"""The run environment shared by the measurement commands (eval.performance.bench, eval.performance.soak, eval.screen.score_plan).

* :func:`add_model_args` / :func:`model_source`: the ``--model_dir DIR | --demo`` and ``--device``
  arguments and the model directory they name;
* :func:`rss_mb` and :class:`MemoryProbe`: resident and peak memory of this process (or of a CUDA
  device);
* :func:`environment_info`: everything a reader needs to rerun and compare a measurement (date,
  command, device, card, driver, CUDA/cuDNN/torch/Python versions, CPU, git commit).

Nothing heavy is imported at module level: torch only inside the functions that need it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MB = 1024**2
EXIT_BAD_INPUT = 2  # exit code of the commands for bad arguments or input


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model_dir DIR | --demo, plus --device and --backend (passed through to load_pipeline)."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model_dir", help="official-layout model directory (or a ModelScope id)")
    group.add_argument("--demo", action="store_true", help="the tiny random-weight demo model (not speech)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA when available)")


def model_source(args: argparse.Namespace) -> str:
    """The model directory the arguments name (the demo model is written to the cache once)."""
    if args.demo:
        from tts_core.model.factory import demo_model_dir

        return str(demo_model_dir())
    return str(args.model_dir)


def _rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        # statm's second field is the resident set in pages (Linux).
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def rss_mb() -> float:
    """Current resident set size of this process in MiB (psutil if installed, else /proc/self/statm)."""
    return _rss_bytes() / MB


class MemoryProbe:
    """Peak memory of a stretch of work: CUDA max_memory_allocated, or the process's peak RSS on CPU.

    NOTE: on CPU the peak RSS can only be reset on Linux (writing 5 to /proc/self/clear_refs resets
    VmHWM); elsewhere the lifetime peak (ru_maxrss) is reported and ``kind`` says so.
    """

    def __init__(self, cuda_index: int | None) -> None:
        self.cuda_index = cuda_index
        self.kind = "cuda max_memory_allocated" if cuda_index is not None else "process peak RSS"
        self.resident_mb = 0.0

    def reset(self) -> None:
        """Start a new stretch; ``resident_mb`` is what is held at its start (weights, caches)."""
        if self.cuda_index is not None:
            import torch

            torch.cuda.synchronize(self.cuda_index)
            torch.cuda.reset_peak_memory_stats(self.cuda_index)
            self.resident_mb = torch.cuda.memory_allocated(self.cuda_index) / MB
            return
        self.resident_mb = rss_mb()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.kind = "process peak RSS (VmHWM, reset per configuration)"
        except OSError:
            self.kind = "process peak RSS (lifetime ru_maxrss: could not be reset)"

    def peak_mb(self) -> float:
        if self.cuda_index is not None:
            import torch

            torch.cuda.synchronize(self.cuda_index)
            return torch.cuda.max_memory_allocated(self.cuda_index) / MB
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024 / MB
        except OSError:
            pass
        # ru_maxrss is KiB on Linux, bytes on macOS.
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MB


def cuda_index(device_label: str) -> int | None:
    """Index N of a PipelineInfo device label ``cuda:N (name)``; None for the CPU."""
    head = device_label.split()[0]
    return int(head.split(":")[1]) if head.startswith("cuda:") else None


def _command_output(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=cwd, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(device_label: str, module: str, argv: Sequence[str]) -> dict:
    """Everything a reader needs to rerun and compare a measurement."""
    import torch

    index = cuda_index(device_label)
    driver = _command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", module, *argv]),
        "device": device_label,
        "card": torch.cuda.get_device_name(index) if index is not None else None,
        "driver_version": driver.splitlines()[0] if driver else None,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _command_output(["git", "rev-parse", "HEAD"], cwd=ROOT),
    }
