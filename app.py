"""A/B listening app for CosyVoice2: playground, blind listening test, results, ratings CSV.

    python app.py                           # iic/CosyVoice2-0.5B from ModelScope (demo model if offline)
    python app.py --model_dir /path/to/CosyVoice2-0.5B
    python app.py --demo --port 7860        # tiny random-weight model: not speech, runs anywhere

The pipeline is loaded once, before the UI serves. Ratings go to ``--ratings`` (default
``data/ratings.csv``, or ``/data/cosyvoice2-ab/ratings.csv`` on a Hugging Face Space with
persistent storage). The Results tab and the experimenter controls need ``--admin-password``
(or the environment variable ``AB_ADMIN_PASSWORD``); without one they are open to browsers on
this machine only, and a password for other machines is printed at start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL_ID = "iic/CosyVoice2-0.5B"  # ModelScope
SPACE_MODEL_ID = "FunAudioLLM/CosyVoice2-0.5B"  # the official Hugging Face Hub copy: a Space's default
SPACE_ENV = "SPACE_ID"  # set by Hugging Face Spaces
ADMIN_PASSWORD_ENV = "AB_ADMIN_PASSWORD"
SPACE_PERSISTENT_DIR = Path("/data")  # mounted by Hugging Face Spaces with persistent storage
SPACE_SUBDIR = "cosyvoice2-ab"
DEFAULT_PORT = 7860

log = logging.getLogger("app")


def default_data_dir() -> Path:
    """The Space's persistent storage when mounted and writable, else ``./data`` beside this file."""
    if SPACE_PERSISTENT_DIR.is_dir() and os.access(SPACE_PERSISTENT_DIR, os.W_OK):
        return SPACE_PERSISTENT_DIR / SPACE_SUBDIR
    return ROOT / "data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model_dir", type=Path, help="an official-layout CosyVoice2 model directory")
    source.add_argument(
        "--model_id",
        default=None,
        help=f"hub id (default {DEFAULT_MODEL_ID}; on a Hugging Face Space {SPACE_MODEL_ID}): ids owned by 'iic' are ModelScope's, any other "
        "owner/name is the Hugging Face Hub's (the official copy there: FunAudioLLM/CosyVoice2-0.5B); "
        "'hf:ID' or 'modelscope:ID' names the hub explicitly",
    )
    source.add_argument(
        "--demo", action="store_true", help="the built-in tiny random-weight model (not speech)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    # A Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0; locally the app stays on loopback.
    parser.add_argument(
        "--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to listen on"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)))
    parser.add_argument("--ratings", type=Path, default=None, help="ratings CSV (default DATA/ratings.csv)")
    parser.add_argument(
        "--data_dir", type=Path, default=None, help="clip bank and active plan (default ./data)"
    )
    parser.add_argument(
        "--admin-password",
        dest="admin_password",
        default=os.environ.get(ADMIN_PASSWORD_ENV),
        help=f"protects results and experimenter controls (or ${ADMIN_PASSWORD_ENV}); without it they "
        "are open to this machine only and a password for others is printed at start",
    )
    parser.add_argument(
        "--no-warmup",
        dest="no_warmup",
        action="store_true",
        help="on a GPU, skip compiling/capturing the fast paths at start (the first request pays instead)",
    )
    return parser


def load_model(args: argparse.Namespace):
    """The pipeline of the requested source; offline without an explicit source -> the demo model."""
    from tts_core import load_pipeline
    from tts_core.model.factory import demo_model_dir

    if args.demo:
        return load_pipeline(demo_model_dir(), device=args.device)
    if args.model_dir is not None:
        return load_pipeline(args.model_dir, device=args.device, require_frontend=True)
    model_id = args.model_id or (SPACE_MODEL_ID if os.environ.get(SPACE_ENV) else DEFAULT_MODEL_ID)
    try:
        return load_pipeline(model_id, device=args.device, require_frontend=True)
    except (ValueError, RuntimeError, OSError) as err:
        if args.model_id is not None:  # asked for explicitly: do not hide the failure
            raise
        log.warning("could not load %s (%s); falling back to the random-weight demo model", model_id, err)
        return load_pipeline(demo_model_dir(), device=args.device)


def warmup_configs(dtypes, plan_configs) -> list:
    """What the GPU warm-up prepares: every step count the UI offers by default (the playground's
    presets and the active plan's configurations) in every dtype the device runs, streamed too
    when one of them streams."""
    from abapp.synthesis import PRESETS
    from tts_core.config_id import ConfigId

    offered = (*PRESETS.values(), *plan_configs)
    steps = sorted({c.flow_steps for c in offered}, reverse=True)
    streaming = sorted({c.streaming for c in offered})  # chunk graphs only when a plan streams
    return [ConfigId(dtype, n, k) for dtype in dtypes for n in steps for k in streaming]


def warm_up(pipeline, data_dir: Path) -> None:
    """Pay graph capture and compilation before the UI serves, and say what it cost."""
    from abapp.blind_runner import ACTIVE_PLAN_NAME
    from eval.serving.trials import load_plan

    plan_file = data_dir / ACTIVE_PLAN_NAME
    try:
        plan_configs = load_plan(plan_file).rendered_configs if plan_file.is_file() else ()
    except (ValueError, OSError) as err:  # the blind runner ignores such a plan too, with a warning
        log.warning("warm-up: ignoring the saved plan %s (%s)", plan_file, err)
        plan_configs = ()
    configs = warmup_configs(pipeline.info.dtypes, plan_configs)
    log.info("warming up the GPU paths for %s (--no-warmup skips this)", ", ".join(c.label for c in configs))
    report = pipeline.warmup(configs, progress=lambda f, m: log.info("%3.0f%% %s", 100 * f, m))
    log.info("%s", report.summary())
    print(report.summary(), flush=True)


def build_ui(
    pipeline, store, data_dir: Path, admin_password: str | None = None, clock: Callable[[], float] = time.monotonic
):
    """``gr.Blocks`` of the app for a loaded pipeline and a :class:`eval.serving.ratings.RatingsStore`.

    Without ``admin_password`` the experimenter controls are open to this machine only and a
    password for other machines is generated and printed (abapp/access.py). ``clock`` (seconds)
    times how long each clip was played; tests pass a clock of their own.
    """
    from abapp.ui import build_blocks, make_context

    ctx = make_context(pipeline, store, data_dir, admin_password, clock=clock)
    notice = ctx.access.console_notice()
    if notice:
        log.warning("%s", notice)
        print(notice, flush=True)
    return build_blocks(ctx)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    args = build_parser().parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).resolve()
    ratings_path = (args.ratings or data_dir / "ratings.csv").resolve()

    from eval.serving.ratings import RatingsFileError, RatingsStore

    try:
        store = RatingsStore(ratings_path)
    except (RatingsFileError, OSError) as err:
        print(f"error: cannot use the ratings file: {err}", file=sys.stderr)
        return 2
    try:
        pipeline = load_model(args)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"error: cannot load the model: {err}", file=sys.stderr)
        return 2
    info = pipeline.info
    log.info("model %s (%s) on %s; ratings -> %s", info.model_id, info.model_hash, info.device, ratings_path)
    if info.random_weights:
        log.warning("random-weight demo model: the audio is not speech")
    if info.device.startswith("cuda") and not args.no_warmup:
        warm_up(pipeline, data_dir)

    from abapp.ui import CSS

    demo = build_ui(pipeline, store, data_dir, args.admin_password)
    demo.queue(default_concurrency_limit=8)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        css=CSS,
        allowed_paths=[str(ROOT / "assets" / "prompts")],  # the shipped prompt clips shown in the player
        show_error=False,
        footer_links=["api"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
