"""The random-weight factory writes the official layout at the official sizes."""

from __future__ import annotations

import torch

from tts_core.model.factory import build_networks, write_configs

# Parameter counts of the released CosyVoice2-0.5B checkpoints (llm.pt / flow.pt / hift.pt), as
# counted on the official files (shared/cosyvoice2-facts.md §2; the LLM's tied head counted once).
RELEASED = {"llm": (295, 505_803_812), "flow": (1121, 112_549_360), "hift": (328, 20_821_295)}


def test_full_size_matches_released_checkpoints(tmp_path):
    write_configs(tmp_path, "full")
    with torch.device("meta"):  # shapes only: no 2.6 GB of memory
        networks = dict(zip(("llm", "flow", "hift"), build_networks(tmp_path)))
    for name, module in networks.items():
        sd = module.state_dict()
        unique = {id(p): p.numel() for p in module.parameters()}
        assert (len(sd), sum(unique.values())) == RELEASED[name], name


def test_tiny_matches_reference_key_set(reference_dir, tmp_path):
    write_configs(tmp_path, "tiny")
    with torch.device("meta"):
        networks = dict(zip(("llm", "flow", "hift"), build_networks(tmp_path)))
    for name, module in networks.items():
        ref = torch.load(reference_dir / "tiny" / "model" / f"{name}.pt", weights_only=True, mmap=True)
        ours = module.state_dict()
        assert set(ours) == set(ref), name
        assert all(ours[k].shape == ref[k].shape for k in ref), name
