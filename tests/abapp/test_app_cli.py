"""app.py start-up: ratings file checks, data folder choice, offline fallback to the demo model."""

from __future__ import annotations

from pathlib import Path

import pytest

import app


def test_foreign_ratings_file_stops_the_app_untouched(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "ratings.csv"
    foreign.write_bytes(b"id,score\n1,5\n")
    assert app.main(["--demo", "--ratings", str(foreign), "--data_dir", str(tmp_path)]) == 2
    assert "not a ratings log" in capsys.readouterr().err
    assert foreign.read_bytes() == b"id,score\n1,5\n"


def test_space_persistent_storage_is_used_when_present(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(app, "SPACE_PERSISTENT_DIR", tmp_path)
    assert app.default_data_dir() == tmp_path / app.SPACE_SUBDIR
    monkeypatch.setattr(app, "SPACE_PERSISTENT_DIR", tmp_path / "absent")
    assert app.default_data_dir() == app.ROOT / "data"


def test_offline_default_falls_back_to_demo_but_explicit_id_fails(monkeypatch) -> None:
    import tts_core
    import tts_core.model.factory

    calls = []

    def fake_load(source, **kwargs):
        calls.append(str(source))
        if "iic/" in str(source):
            raise RuntimeError("cannot download: the ModelScope hub is unreachable")
        return "demo-pipeline"

    monkeypatch.setattr(tts_core, "load_pipeline", fake_load)
    monkeypatch.setattr(tts_core.model.factory, "demo_model_dir", lambda: Path("/demo"))
    args = app.build_parser().parse_args([])
    assert app.load_model(args) == "demo-pipeline"
    assert calls == [app.DEFAULT_MODEL_ID, "/demo"]
    with pytest.raises(RuntimeError, match="unreachable"):
        app.load_model(app.build_parser().parse_args(["--model_id", "iic/CosyVoice2-0.5B"]))


def test_source_options_are_exclusive() -> None:
    with pytest.raises(SystemExit):
        app.build_parser().parse_args(["--demo", "--model_dir", "/x"])
