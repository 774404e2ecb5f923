"""Monodepth2 networks: multi-scale depth decoder, pose decoder, and the two whole networks.

The module attribute layout reproduces the published Monodepth2 state_dict keys
(``decoder.{0..13}`` for depth, ``net.{0..3}`` for pose), see ``checkpoint.py``. This one definition is
used by training, ONNX export and every inference backend.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import pose_params_to_matrix
from .model_contract import POSE_DOWNSCALES, POSE_MODELS
from .resnet import ResnetEncoder

DECODER_CHANNELS = (16, 32, 64, 128, 256)
SCALES = (0, 1, 2, 3)


class Conv3x3(nn.Module):
    """Reflection-padded 3x3 convolution (``conv`` holds the weights)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 followed by ELU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


class DepthDecoder(nn.Module):
    """U-Net style decoder with sigmoid disparity heads at scales 0..3.

    ``decoder`` holds the ten up-convolutions in the order (4,0), (4,1), (3,0), ..., (0,1), then the
    disparity heads for scales 0..3 (indices 10..13): the published state_dict keys. Code reaches them by
    name, as Monodepth2's ``("upconv", i, j)`` and ``("dispconv", s)`` keys do: ``upconv(i, j)``, ``dispconv(s)``.

    Shapes: five encoder maps -> {scale s: (B, 1, H / 2**s, W / 2**s)} for s in ``scales``.
    """

    def __init__(self, num_ch_enc: Sequence[int], scales: Sequence[int] = SCALES):
        super().__init__()
        self.scales = tuple(scales)
        self.num_ch_enc = list(num_ch_enc)
        dec = DECODER_CHANNELS
        layers: List[nn.Module] = []
        for i in range(4, -1, -1):
            in0 = self.num_ch_enc[-1] if i == 4 else dec[i + 1]
            layers.append(ConvBlock(in0, dec[i]))
            in1 = dec[i] + (self.num_ch_enc[i - 1] if i > 0 else 0)
            layers.append(ConvBlock(in1, dec[i]))
        for s in range(4):
            layers.append(Conv3x3(dec[s], 1))
        self.decoder = nn.ModuleList(layers)

    def forward(self, features: List[torch.Tensor], scales: Sequence[int] | None = None) -> Dict[int, torch.Tensor]:
        wanted = self.scales if scales is None else tuple(scales)
        out: Dict[int, torch.Tensor] = {}
        x = features[-1]
        for i in range(4, -1, -1):
            x = self.level(x, i, features)
            if i in wanted:
                out[i] = torch.sigmoid(self.dispconv(i)(x))
        return out

    def upconv(self, i: int, j: int) -> ConvBlock:
        """Up-convolution (i, j): level ``i`` in 4..0; ``j`` 0 runs before the x2 upsampling, 1 after the skip join."""
        if i not in range(5) or j not in (0, 1):
            raise IndexError(f"upconv ({i}, {j}) does not exist: i in 0..4, j in 0..1")
        block = self.decoder[2 * (4 - i) + j]
        assert isinstance(block, ConvBlock)
        return block

    def dispconv(self, scale: int) -> Conv3x3:
        """The disparity head of ``scale`` (0..3): a 3x3 convolution to one channel, sigmoid applied by the caller."""
        if scale not in range(4):
            raise IndexError(f"dispconv {scale} does not exist: scales 0..3")
        head = self.decoder[10 + scale]
        assert isinstance(head, Conv3x3)
        return head

    def level(self, x: torch.Tensor, i: int, features: List[torch.Tensor]) -> torch.Tensor:
        """Level ``i`` (4..0): up-convolution (i, 0), nearest x2 upsampling, skip connection, up-convolution (i, 1).

        Shapes: (B, C, H, W) -> (B, DECODER_CHANNELS[i], 2H, 2W).
        """
        x = self.upconv(i, 0)(x)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if i > 0:
            x = torch.cat([x, features[i - 1]], 1)
        return self.upconv(i, 1)(x)


class PoseDecoder(nn.Module):
    """Pose decoder: 1x1 squeeze to 256, two 3x3 + ReLU, 1x1 to 12, spatial mean, x0.01.

    Predicts for two frames (12 channels) as the published models do; the first 6 (axis-angle,
    translation) are the pair's relative motion.

    ``num_input_features`` is 1 for the separate pose encoder (one map of the stacked pair) and 2 for the shared
    model (Monodepth2's ``--pose_model_type shared``): the depth encoder's last map of each frame, squeezed by the
    same 1x1 convolution, joined along channels (so ``net.1`` takes 512 channels).

    ``translation_gain`` (a power of two, 1 in every saved file) multiplies the translation during training only:
    Monodepth2's x0.01 output makes a translation that starts near 1 cm grow by about Adam's step per step, so
    velocity supervision on a robot moving a metre a frame would need ten times the steps of one moving 10 cm.
    ``folded_state_dict`` writes the gain into the last layer's translation rows, which gives the same function with
    gain 1 in the published layout (exactly: a power of two only moves the floating-point exponent);
    ``load_folded_state_dict`` takes such a file back.

    Shapes: five encoder maps -> (axis_angle (B, 3), translation (B, 3)).

    >>> dec = PoseDecoder((64, 64, 128, 256, 512), translation_gain=8.0)
    >>> feats = [torch.rand(1, 512, 2, 4)]
    >>> plain = PoseDecoder((64, 64, 128, 256, 512))
    >>> plain.load_state_dict(dec.folded_state_dict())
    <All keys matched successfully>
    >>> bool(torch.equal(dec(feats)[1], plain(feats)[1])), bool(torch.equal(dec(feats)[0], plain(feats)[0]))
    (True, True)
    >>> again = PoseDecoder((64, 64, 128, 256, 512), translation_gain=8.0)
    >>> again.load_folded_state_dict(plain.state_dict())
    >>> bool(torch.equal(again.net[3].weight, dec.net[3].weight))
    True
    """

    def __init__(self, num_ch_enc: Sequence[int], frames_to_predict: int = 2, translation_gain: float = 1.0,
                 num_input_features: int = 1):
        super().__init__()
        if num_input_features not in (1, 2):
            raise ValueError(f"num_input_features {num_input_features!r}: 1 (separate pose encoder) or 2 (shared)")
        self.frames_to_predict = frames_to_predict
        self.num_input_features = num_input_features
        self.translation_gain = check_translation_gain(translation_gain)
        self.net = nn.ModuleList(
            [
                nn.Conv2d(num_ch_enc[-1], 256, 1),
                nn.Conv2d(256 * num_input_features, 256, 3, 1, 1),
                nn.Conv2d(256, 256, 3, 1, 1),
                nn.Conv2d(256, 6 * frames_to_predict, 1),
            ]
        )

    def forward(self, features: List[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The separate model's input: the pose encoder's maps of the stacked pair (the last one is used)."""
        return self.from_last_maps([features[-1]])

    def from_last_maps(self, maps: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_input_features`` last encoder maps (B, C, h, w), in temporal order -> (axis_angle, translation)."""
        if len(maps) != self.num_input_features:
            raise ValueError(f"pose decoder takes {self.num_input_features} map(s), got {len(maps)}")
        squeezed = [F.relu(self.net[0](m)) for m in maps]
        x = squeezed[0] if len(squeezed) == 1 else torch.cat(squeezed, 1)
        x = F.relu(self.net[1](x))
        x = F.relu(self.net[2](x))
        x = self.net[3](x).mean(dim=(2, 3))
        x = 0.01 * x.view(-1, self.frames_to_predict, 6)
        if self.translation_gain != 1.0:
            return x[:, 0, :3], x[:, 0, 3:] * self.translation_gain
        return x[:, 0, :3], x[:, 0, 3:]

    def _translation_rows(self) -> torch.Tensor:
        """Boolean mask over the last layer's output channels: the translation ones of every predicted frame."""
        rows = torch.zeros(6 * self.frames_to_predict, dtype=torch.bool)
        for f in range(self.frames_to_predict):
            rows[6 * f + 3: 6 * f + 6] = True
        return rows

    def folded_state_dict(self) -> Dict[str, torch.Tensor]:
        """``state_dict()`` with the translation gain folded into the last layer: the published layout, gain 1."""
        state = {k: v.detach().clone() for k, v in self.state_dict().items()}
        if self.translation_gain != 1.0:
            rows = self._translation_rows()
            state["net.3.weight"][rows] *= self.translation_gain
            state["net.3.bias"][rows] *= self.translation_gain
        return state

    def load_folded_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Load a published-layout state (gain 1) into this decoder, keeping its gain and the function."""
        state = {k: v.detach().clone() for k, v in state.items()}
        if self.translation_gain != 1.0:
            rows = self._translation_rows()
            state["net.3.weight"][rows] /= self.translation_gain
            state["net.3.bias"][rows] /= self.translation_gain
        self.load_state_dict(state)


def check_translation_gain(gain: float) -> float:
    """``gain`` as a float when it is a positive power of two (folding it into weights is then exact), else ValueError.

    >>> check_translation_gain(8), check_translation_gain(0.5)
    (8.0, 0.5)
    >>> check_translation_gain(10)
    Traceback (most recent call last):
    ...
    ValueError: translation gain 10 is not a positive power of two
    """
    value = float(gain)
    if not (value > 0 and math.isfinite(value) and math.frexp(value)[0] == 0.5):
        raise ValueError(f"translation gain {gain:g} is not a positive power of two")
    return value


class DepthNet(nn.Module):
    """Encoder + depth decoder. Shapes: (B, 3, H, W) in [0, 1], H and W multiples of 32 -> {s: disp}."""

    def __init__(self, num_layers: int = 18):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, 1)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc)

    def forward(self, images: torch.Tensor, scales: Sequence[int] | None = None) -> Dict[int, torch.Tensor]:
        return self.decoder(self.encoder(images), scales)


class PoseNet(nn.Module):
    """Pose encoder over two stacked frames + pose decoder, or (``shared_encoder`` given) the decoder alone on the
    depth encoder's features of each frame: the model contract's ``pose_model`` 'separate' or 'shared'.

    ``forward(a, b)`` with frames in temporal order returns the raw parameters; ``transform(a, b)``
    returns ``T_b_a`` (points in a's camera frame -> b's), the Monodepth2 convention used for warping.

    ``input_downscale`` (1, 2 or 4; the model contract's ``pose_downscale``) shrinks the stacked pair by a k x k
    mean before the encoder: the pose network then costs about 1/k^2 of its full-size cost, with the same weight
    shapes (the encoder is convolutional and the decoder averages over the image). Training, export and every
    backend run the shrink as part of this network.

    With ``shared_encoder`` (the depth network's encoder) the pose network owns only its decoder: ``parameters()``
    and ``state_dict()`` hold the decoder's (the encoder is the depth network's, trained and saved there), and a
    frame's pose costs one encoder pass that depth has already made (``from_features``). ``encoder`` is then that
    shared encoder.

    Shapes: (B, 3, H, W), (B, 3, H, W) -> (B, 3), (B, 3); H and W multiples of ``input_downscale``.

    >>> net = PoseNet(18, input_downscale=2).eval()
    >>> a, b = torch.rand(1, 3, 64, 192), torch.rand(1, 3, 64, 192)
    >>> with torch.no_grad():
    ...     shrunk = net.stacked(torch.cat([a, b], 1))
    ...     same = net.decoder(net.encoder(F.avg_pool2d(torch.cat([a, b], 1), 2)))
    >>> bool(torch.equal(shrunk[1], same[1])), tuple(net(a, b)[1].shape)
    (True, (1, 3))
    >>> depth = DepthNet(18).eval()
    >>> shared = PoseNet(18, shared_encoder=depth.encoder).eval()
    >>> shared.shared, sum(p.numel() for p in shared.parameters()) < 2_000_000
    (True, True)
    >>> with torch.no_grad():
    ...     direct = shared(a, b)[1]
    ...     cached = shared.from_features(depth.encoder(a)[-1], depth.encoder(b)[-1])[1]
    >>> bool(torch.allclose(direct, cached, atol=1e-6))
    True
    """

    def __init__(self, num_layers: int = 18, translation_gain: float = 1.0, input_downscale: int = 1,
                 shared_encoder: Optional[ResnetEncoder] = None):
        super().__init__()
        if input_downscale not in POSE_DOWNSCALES:
            raise ValueError(f"pose input downscale {input_downscale!r}: expected one of {POSE_DOWNSCALES}")
        if shared_encoder is not None and input_downscale != 1:
            raise ValueError("the shared pose model reuses the depth encoder's features: pose_downscale must be 1")
        self.input_downscale = int(input_downscale)
        self.shared = shared_encoder is not None
        if shared_encoder is not None:
            # kept outside the module tree (not a submodule): its weights belong to the depth network, so that the
            # optimiser, state_dict and checkpoints see them once
            object.__setattr__(self, "encoder", shared_encoder)
            self.decoder = PoseDecoder(shared_encoder.num_ch_enc, translation_gain=translation_gain, num_input_features=2)
        else:
            self.encoder = ResnetEncoder(num_layers, 2)
            self.decoder = PoseDecoder(self.encoder.num_ch_enc, translation_gain=translation_gain)

    @property
    def pose_model(self) -> str:
        """The model contract's name of this form: 'separate' or 'shared'."""
        return POSE_MODELS[1] if self.shared else POSE_MODELS[0]

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shared:
            last = self.encoder(torch.cat([frame_a, frame_b]))[-1]
            return self.from_features(*last.chunk(2))
        return self.stacked(torch.cat([frame_a, frame_b], 1))

    def stacked(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw parameters from the two frames already stacked along channels: (B, 6, H, W) -> (B, 3), (B, 3)."""
        if self.shared:
            return self(pair[:, :3], pair[:, 3:])
        if self.input_downscale > 1:
            pair = F.avg_pool2d(pair, self.input_downscale)
        return self.decoder(self.encoder(pair))

    def from_features(self, last_a: torch.Tensor, last_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shared model: the raw parameters from the depth encoder's last maps of the two frames (B, 512, H/32, W/32)."""
        if not self.shared:
            raise ValueError("from_features is the shared pose model's; this one has its own encoder")
        return self.decoder.from_last_maps([last_a, last_b])

    def transform(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        axis_angle, translation = self(frame_a, frame_b)
        return pose_params_to_matrix(axis_angle, translation)

    def load_weights_of(self, other: "PoseNet") -> None:
        """Take ``other``'s weights and function, keeping this network's translation gain (``PoseDecoder``). A shared
        model takes the decoder only (its encoder is the depth network's, loaded with it)."""
        if other.shared != self.shared:
            raise ValueError(f"cannot take the weights of a '{other.pose_model}' pose model into a '{self.pose_model}' one "
                             "(the decoders differ in shape): train with the same --pose-model")
        if not self.shared:
            self.encoder.load_state_dict(other.encoder.state_dict())
        self.decoder.load_folded_state_dict(other.decoder.folded_state_dict())
