"""Monodepth2 networks: multi-scale depth decoder, pose decoder, and the two whole networks.

The module attribute layout reproduces the published Monodepth2 state_dict keys
(``decoder.{0..13}`` for depth, ``net.{0..3}`` for pose), see ``checkpoint.py``. This one definition is
used by training, ONNX export and every inference backend.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import pose_params_to_matrix
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

    Shapes: five encoder maps -> (axis_angle (B, 3), translation (B, 3)).
    """

    def __init__(self, num_ch_enc: Sequence[int], frames_to_predict: int = 2):
        super().__init__()
        self.frames_to_predict = frames_to_predict
        self.net = nn.ModuleList(
            [
                nn.Conv2d(num_ch_enc[-1], 256, 1),
                nn.Conv2d(256, 256, 3, 1, 1),
                nn.Conv2d(256, 256, 3, 1, 1),
                nn.Conv2d(256, 6 * frames_to_predict, 1),
            ]
        )

    def forward(self, features: List[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.net[0](features[-1]))
        x = F.relu(self.net[1](x))
        x = F.relu(self.net[2](x))
        x = self.net[3](x).mean(dim=(2, 3))
        x = 0.01 * x.view(-1, self.frames_to_predict, 6)
        return x[:, 0, :3], x[:, 0, 3:]


class DepthNet(nn.Module):
    """Encoder + depth decoder. Shapes: (B, 3, H, W) in [0, 1], H and W multiples of 32 -> {s: disp}."""

    def __init__(self, num_layers: int = 18):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, 1)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc)

    def forward(self, images: torch.Tensor, scales: Sequence[int] | None = None) -> Dict[int, torch.Tensor]:
        return self.decoder(self.encoder(images), scales)


class PoseNet(nn.Module):
    """Pose encoder over two stacked frames + pose decoder.

    ``forward(a, b)`` with frames in temporal order returns the raw parameters; ``transform(a, b)``
    returns ``T_b_a`` (points in a's camera frame -> b's), the Monodepth2 convention used for warping.

    Shapes: (B, 3, H, W), (B, 3, H, W) -> (B, 3), (B, 3).
    """

    def __init__(self, num_layers: int = 18):
        super().__init__()
        self.encoder = ResnetEncoder(num_layers, 2)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(torch.cat([frame_a, frame_b], 1)))

    def transform(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        axis_angle, translation = self(frame_a, frame_b)
        return pose_params_to_matrix(axis_angle, translation)
