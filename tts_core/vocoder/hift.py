"""HiFT vocoder of CosyVoice2: mel (B, 80, T) at 50 Hz -> 24 kHz waveform (B, T * 480).

Neural source filter + iSTFTNet ("HiFTNet"). An f0 predictor turns the mel into a pitch track, the
harmonic source (:mod:`tts_core.vocoder.source`) turns the pitch into an excitation signal, and a
HiFi-GAN style upsampler, fed at every stage with the STFT of that excitation, predicts the
magnitude and phase of a short (16-point) STFT that is inverted into the waveform.

Parameter names and shapes follow the official ``hift.pt`` so it loads with ``strict=True``;
sizes come from the ``hift`` node of the model directory's yaml (:meth:`HiFTConfig.from_yaml`).
Always float32: the official pipeline never casts HiFT, whatever the LLM/flow dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from tts_core.model.yaml_config import YamlObject
from tts_core.vocoder.source import HarmonicSource

F0_PREDICTOR_LAYERS = 5  # conv + ELU pairs of ConvRNNF0Predictor (fixed in the official class)
F0_PREDICTOR_KERNEL = 3
PRE_POST_KERNEL = 7  # conv_pre / conv_post kernel (fixed in the official class)
POST_LRELU_SLOPE = 0.01  # the official final leaky_relu uses torch's default slope, not lrelu_slope
MAX_MAGNITUDE = 1e2  # iSTFT magnitudes are clipped here
SNAKE_EPS = 1e-9  # keeps 1/alpha finite
UNSUPPORTED_SAMPLE_RATE = 22_050  # the official code switches to the older SineGen (CosyVoice 1) here

# hift yaml keys that map one to one onto HiFTConfig fields of the same name.
_YAML_FIELDS = (
    "in_channels",
    "base_channels",
    "nb_harmonics",
    "sampling_rate",
    "nsf_alpha",
    "nsf_sigma",
    "nsf_voiced_threshold",
    "upsample_rates",
    "upsample_kernel_sizes",
    "resblock_kernel_sizes",
    "resblock_dilation_sizes",
    "source_resblock_kernel_sizes",
    "source_resblock_dilation_sizes",
    "lrelu_slope",
    "audio_limit",
)


def _int_tuple(values: object) -> tuple[int, ...]:
    return tuple(int(v) for v in values)  # type: ignore[union-attr]


@dataclass(frozen=True)
class HiFTConfig:
    """Sizes of the HiFT generator; the defaults are those of the released CosyVoice2-0.5B."""

    in_channels: int = 80  # mel bins
    base_channels: int = 512  # width after conv_pre; halved by every upsampling stage
    nb_harmonics: int = 8  # overtones above f0 (nb_harmonics + 1 sines)
    sampling_rate: int = 24_000  # Hz
    nsf_alpha: float = 0.1  # sine amplitude of the excitation
    nsf_sigma: float = 0.003  # additive noise std in voiced samples
    nsf_voiced_threshold: float = 10.0  # Hz; f0 at or below it counts as unvoiced
    upsample_rates: tuple[int, ...] = (8, 5, 3)  # ConvTranspose1d strides
    upsample_kernel_sizes: tuple[int, ...] = (16, 11, 7)
    istft_n_fft: int = 16  # also the window length (periodic Hann)
    istft_hop: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)  # parallel resblocks per stage (averaged)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 7, 11)  # one per stage
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1  # before every upsampling layer
    audio_limit: float = 0.99  # output clamp
    f0_in_channels: int = 80  # f0 predictor input (mel bins)
    f0_cond_channels: int = 512  # f0 predictor width

    def __post_init__(self) -> None:
        stages = len(self.upsample_rates)
        if stages == 0 or len(self.upsample_kernel_sizes) != stages:
            raise ValueError("upsample_rates and upsample_kernel_sizes must be non-empty and of equal length")
        if (
            len(self.source_resblock_kernel_sizes) != stages
            or len(self.source_resblock_dilation_sizes) != stages
        ):
            raise ValueError("need one source resblock kernel size and dilation list per upsampling stage")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have equal length")
        if self.base_channels % 2**stages:
            raise ValueError(f"base_channels {self.base_channels} must be divisible by 2**{stages}")
        if self.sampling_rate == UNSUPPORTED_SAMPLE_RATE:
            raise ValueError("sampling_rate 22050 selects the CosyVoice 1 SineGen, which is not implemented")
        if self.istft_n_fft % 2:
            raise ValueError(f"istft_n_fft must be even, got {self.istft_n_fft}")

    @property
    def num_sines(self) -> int:
        return self.nb_harmonics + 1

    @property
    def samples_per_frame(self) -> int:
        """Output samples per mel frame (480 for CosyVoice2)."""
        return math.prod(self.upsample_rates) * self.istft_hop

    @classmethod
    def from_yaml(cls, node: YamlObject) -> HiFTConfig:
        """Config from ``read_yaml(path)['hift']`` (a ``!new:...HiFTGenerator`` node); every key is required."""
        if not isinstance(node, YamlObject) or node.class_name != "HiFTGenerator":
            found = node.target if isinstance(node, YamlObject) else type(node).__name__
            raise ValueError(f"expected a HiFTGenerator yaml node (CosyVoice2), got {found}")
        expected = set(_YAML_FIELDS) | {"istft_params", "f0_predictor"}
        missing, unknown = expected - set(node.kwargs), set(node.kwargs) - expected
        if missing or unknown:
            raise ValueError(
                f"hift yaml node: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
            )
        f0_node = node["f0_predictor"]
        if not isinstance(f0_node, YamlObject) or f0_node.class_name != "ConvRNNF0Predictor":
            raise ValueError(f"hift f0_predictor must be a ConvRNNF0Predictor node, got {f0_node!r}")
        if not {"in_channels", "cond_channels"} <= set(f0_node.kwargs):
            raise ValueError("hift f0_predictor node needs in_channels and cond_channels")
        if int(f0_node.get("num_class", 1)) != 1:
            raise ValueError("hift f0_predictor num_class must be 1 (one f0 value per frame)")
        values = {field: node[field] for field in _YAML_FIELDS}
        for field, value in values.items():
            if field.endswith("dilation_sizes"):
                values[field] = tuple(_int_tuple(d) for d in value)
            elif isinstance(value, (list, tuple)):
                values[field] = _int_tuple(value)
            elif field.startswith(("nsf_", "lrelu", "audio")):
                values[field] = float(value)
            else:
                values[field] = int(value)
        istft = node["istft_params"]
        return cls(
            **values,
            istft_n_fft=int(istft["n_fft"]),
            istft_hop=int(istft["hop_len"]),
            f0_in_channels=int(f0_node["in_channels"]),
            f0_cond_channels=int(f0_node["cond_channels"]),
        )


_GENERATOR_PREFIX = "generator."  # hifigan (GAN training) checkpoints nest the generator under this
_OLD_WEIGHT_NORM = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def normalize_hift_state_dict(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``sd`` with the key names :class:`HiFTGenerator` loads strictly.

    Strips a leading ``generator.`` and renames old-style weight norm ``<m>.weight_g`` / ``<m>.weight_v``
    to ``<m>.parametrizations.weight.original0`` / ``original1`` (g and v have the same shapes in both).
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        name = key.removeprefix(_GENERATOR_PREFIX)
        module, _, leaf = name.rpartition(".")
        if leaf in _OLD_WEIGHT_NORM:
            name = f"{module}.{_OLD_WEIGHT_NORM[leaf]}" if module else _OLD_WEIGHT_NORM[leaf]
        if name in out:
            raise ValueError(f"state dict has two entries for {name!r} after normalising key names")
        out[name] = value
    return out


def _same_padding(kernel: int, dilation: int = 1) -> int:
    return dilation * (kernel - 1) // 2


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha per channel, alpha on a linear scale; (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda and x.dtype == torch.float32 and not torch.is_grad_enabled():
            fused = _fused_snake()
            if fused is not None:
                return fused(x, self.alpha, SNAKE_EPS)
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)


@cache
def _fused_snake():
    """The one-kernel Snake of :mod:`tts_core.vocoder.snake_kernel` (inference on CUDA), None without Triton."""
    try:
        from tts_core.vocoder.snake_kernel import snake
    except ImportError:
        return None
    return snake


class ResBlock(nn.Module):
    """Residual stack: per dilation d, x += conv(snake(conv_d(snake(x)))); (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()

        def conv(dilation: int) -> nn.Module:
            return weight_norm(
                nn.Conv1d(
                    channels, channels, kernel, dilation=dilation, padding=_same_padding(kernel, dilation)
                )
            )

        self.convs1 = nn.ModuleList(conv(d) for d in dilations)
        self.convs2 = nn.ModuleList(conv(1) for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for act1, conv1, act2, conv2 in zip(self.activations1, self.convs1, self.activations2, self.convs2):
            x = conv2(act2(conv1(act1(x)))) + x
        return x


class F0Predictor(nn.Module):
    """mel (B, C_in, T) -> f0 (B, T) Hz: 5 x (weight-norm Conv1d k3 + ELU), Linear(C -> 1), |.|."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(F0_PREDICTOR_LAYERS):
            width_in = in_channels if i == 0 else channels
            conv = nn.Conv1d(width_in, channels, F0_PREDICTOR_KERNEL, padding=F0_PREDICTOR_KERNEL // 2)
            layers += [weight_norm(conv), nn.ELU()]
        self.condnet = nn.Sequential(*layers)  # checkpoint keys condnet.{0,2,4,6,8}
        self.classifier = nn.Linear(channels, 1)

    def forward(self, mel: Tensor) -> Tensor:
        return self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1).abs()


class HiFTGenerator(nn.Module):
    """The CosyVoice2 vocoder. Load ``hift.pt`` with ``load_state_dict(normalize_hift_state_dict(sd))``."""

    def __init__(self, cfg: HiFTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.f0_predictor = F0Predictor(cfg.f0_in_channels, cfg.f0_cond_channels)
        self.m_source = HarmonicSource(
            num_sines=cfg.num_sines,
            sample_rate=cfg.sampling_rate,
            samples_per_frame=cfg.samples_per_frame,
            sine_amp=cfg.nsf_alpha,
            noise_std=cfg.nsf_sigma,
            voiced_threshold=cfg.nsf_voiced_threshold,
        )
        pad = PRE_POST_KERNEL // 2
        self.conv_pre = weight_norm(
            nn.Conv1d(cfg.in_channels, cfg.base_channels, PRE_POST_KERNEL, padding=pad)
        )
        widths = [cfg.base_channels // 2**i for i in range(len(cfg.upsample_rates) + 1)]
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(widths[i], widths[i + 1], k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes))
        )
        # The source STFT (hop istft_hop) is brought to each stage's rate by strided convs: stage i
        # needs the product of the upsampling rates after it (15, 3, 1 for CosyVoice2).
        spec_channels = cfg.istft_n_fft + 2  # real and imaginary parts of n_fft // 2 + 1 bins
        self.source_downs = nn.ModuleList()
        for i in range(len(cfg.upsample_rates)):
            stride = math.prod(cfg.upsample_rates[i + 1 :])
            if stride == 1:
                self.source_downs.append(nn.Conv1d(spec_channels, widths[i + 1], 1))
            else:
                self.source_downs.append(
                    nn.Conv1d(spec_channels, widths[i + 1], 2 * stride, stride, padding=stride // 2)
                )
        self.source_resblocks = nn.ModuleList(
            ResBlock(widths[i + 1], k, d)
            for i, (k, d) in enumerate(
                zip(cfg.source_resblock_kernel_sizes, cfg.source_resblock_dilation_sizes)
            )
        )
        # Flat list, stage-major: resblocks[stage * len(kernels) + j] (the checkpoint's numbering).
        self.resblocks = nn.ModuleList(
            ResBlock(widths[i + 1], k, d)
            for i in range(len(cfg.upsample_rates))
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes)
        )
        self.conv_post = weight_norm(nn.Conv1d(widths[-1], spec_channels, PRE_POST_KERNEL, padding=pad))
        # Periodic Hann, computed in float64 then rounded (as scipy's window cast to float32);
        # not persistent because hift.pt has no entry for it.
        window = torch.hann_window(cfg.istft_n_fft, periodic=True, dtype=torch.float64).to(torch.float32)
        self.register_buffer("stft_window", window, persistent=False)

    def fold_weight_norm(self) -> HiFTGenerator:
        """Replace every weight-norm parametrization by its plain weight (faster inference, same output).

        Call after loading; afterwards the state dict has ``<m>.weight`` keys instead of hift.pt's.
        """
        for module in list(self.modules()):
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        return self

    def _check_mel(self, mel: Tensor) -> None:
        if mel.ndim != 3 or mel.shape[1] != self.cfg.in_channels:
            raise ValueError(f"mel must be (B, {self.cfg.in_channels}, T), got {tuple(mel.shape)}")
        if mel.dtype != torch.float32:
            raise ValueError(f"mel must be float32 (HiFT always runs in float32), got {mel.dtype}")

    def predict_f0(self, mel: Tensor) -> Tensor:
        """(B, 80, T) mel -> (B, T) f0 in Hz (0 or near 0 = unvoiced)."""
        self._check_mel(mel)
        return self.f0_predictor(mel)

    def excitation(self, f0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, T) Hz -> source (B, 1, T * 480), random phases and noise drawn from ``generator``.

        ``generator`` must be on f0's device (None: torch's global generator); same seed, same source.
        """
        initial_phase, noise = self.m_source.draw(f0, generator)
        return self.m_source(f0, initial_phase, noise)

    def _stft(self, signal: Tensor) -> Tensor:
        """(B, L) -> (B, n_fft + 2, L // hop + 1): real parts then imaginary parts."""
        n_fft = self.cfg.istft_n_fft
        spec = torch.stft(
            signal,
            n_fft,
            self.cfg.istft_hop,
            n_fft,
            window=self.stft_window,
            center=True,
            return_complex=True,
        )
        return torch.cat([spec.real, spec.imag], dim=1)

    def _istft(self, log_magnitude: Tensor, phase_logit: Tensor) -> Tensor:
        """(B, n_fft/2 + 1, F) twice -> (B, hop * (F - 1)) waveform."""
        magnitude = torch.exp(log_magnitude).clamp(max=MAX_MAGNITUDE)
        # NOTE: the official phase is sin(conv output) and then goes through cos/sin again; keep it.
        phase = torch.sin(phase_logit)
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        n_fft = self.cfg.istft_n_fft
        return torch.istft(spec, n_fft, self.cfg.istft_hop, n_fft, window=self.stft_window, center=True)

    def decode(self, mel: Tensor, source: Tensor) -> Tensor:
        """(B, 80, T) mel + (B, 1, T * 480) excitation -> (B, T * 480) waveform in [-audio_limit, audio_limit]."""
        self._check_mel(mel)
        expected = (mel.shape[0], 1, mel.shape[2] * self.cfg.samples_per_frame)
        if tuple(source.shape) != expected:
            raise ValueError(f"source must be {expected} for this mel, got {tuple(source.shape)}")
        source_spec = self._stft(source.squeeze(1))
        x = self.conv_pre(mel)
        num_kernels = len(self.cfg.resblock_kernel_sizes)
        last = len(self.ups) - 1
        for i, (up, down, source_block) in enumerate(zip(self.ups, self.source_downs, self.source_resblocks)):
            x = up(F.leaky_relu(x, self.cfg.lrelu_slope))
            if i == last:
                # One sample on the left so the length matches the source STFT's L // hop + 1 frames.
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + source_block(down(source_spec))
            blocks = self.resblocks[i * num_kernels : (i + 1) * num_kernels]
            # Summed in order, then divided (not a mean), as the official stage does.
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / num_kernels
        x = self.conv_post(F.leaky_relu(x, POST_LRELU_SLOPE))
        bins = self.cfg.istft_n_fft // 2 + 1
        wav = self._istft(x[:, :bins], x[:, bins:])
        return wav.clamp(-self.cfg.audio_limit, self.cfg.audio_limit)

    @torch.inference_mode()
    def forward(self, mel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Full inference: mel (B, 80, T) float32 -> waveform (B, T * 480); randomness from ``generator``."""
        f0 = self.predict_f0(mel)
        return self.decode(mel, self.excitation(f0, generator))
