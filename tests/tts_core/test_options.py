"""SynthesisOptions: defaults are the official ones, every field is validated once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tts_core.options import SynthesisOptions, torch_dtype


def test_defaults_are_official():
    o = SynthesisOptions()
    assert (o.flow_steps, o.top_p, o.top_k, o.win_size, o.tau_r) == (10, 0.8, 25, 10, 0.1)
    assert (o.min_token_text_ratio, o.max_token_text_ratio, o.speed) == (2.0, 20.0, 1.0)


def test_frozen_and_replace_validates():
    o = SynthesisOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.flow_steps = 5  # type: ignore[misc]
    assert o.replace(flow_steps=5).flow_steps == 5
    with pytest.raises(ValueError, match="flow_steps"):
        o.replace(flow_steps=0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("flow_steps", 0),
        ("flow_steps", 51),
        ("flow_steps", 5.0),
        ("flow_steps", True),
        ("dtype", "fp16"),
        ("dtype", "float64"),
        ("seed", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", 0),
        ("win_size", 0),
        ("tau_r", 0.0),
        ("speed", 0.2),
        ("speed", 3.0),
        ("fixed_tokens", 0),
        ("max_token_text_ratio", 1.0),
    ],
)
def test_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field.split("_ratio")[0]):
        SynthesisOptions(**{field: value})


def test_dtype_mapping():
    assert torch_dtype("bfloat16") is torch.bfloat16
    assert SynthesisOptions(dtype="float16").torch_dtype is torch.float16
    assert SynthesisOptions(flow_steps=5, dtype="bfloat16").config.label == "bfloat16-n5"
