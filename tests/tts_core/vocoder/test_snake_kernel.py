"""The one-kernel Snake against the textbook formula x + sin^2(alpha x) / alpha (Triton's interpreter on a CPU)."""

from __future__ import annotations

import pytest
import torch

from tts_core.vocoder.hift import SNAKE_EPS, Snake

pytest.importorskip("triton", reason="Triton is not installed (it comes with requirements-test.txt)")

from tts_core.vocoder.snake_kernel import snake  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("shape", [(1, 3, 5), (2, 7, 333)])
def test_snake_kernel_matches_formula(shape):
    gen = torch.Generator().manual_seed(0)
    x = (4 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(DEVICE)
    alpha = (torch.rand(shape[1], generator=gen, dtype=torch.float64) + 0.1).to(DEVICE)
    want = x + torch.sin(alpha[None, :, None] * x) ** 2 / alpha[None, :, None]  # float64
    got = snake(x.float(), alpha.float(), SNAKE_EPS)
    assert got.shape == x.shape and got.dtype == torch.float32
    assert float((got.double() - want).abs().max()) < 1e-5


def test_snake_kernel_refuses_half_precision():
    with pytest.raises(ValueError, match="float32"):
        snake(torch.zeros(1, 2, 3, dtype=torch.float16), torch.ones(2, dtype=torch.float16), SNAKE_EPS)


@pytest.mark.requires_cuda
def test_hift_snake_in_inference_on_cuda_matches_torch_expression():
    act = Snake(16).cuda()
    with torch.no_grad():
        act.alpha.uniform_(0.2, 2.0)
    x = torch.randn(2, 16, 1000, device="cuda")
    with torch.inference_mode():
        fused = act(x)
    eager = act(x)  # grad mode: the torch expression
    assert float((fused - eager).abs().max()) < 1e-5
