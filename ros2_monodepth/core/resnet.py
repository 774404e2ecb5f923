"""ResNet-18/34/50 encoders in the torchvision module layout (so torchvision-format and Monodepth2 weights
load by key), and the Monodepth2 ``ResnetEncoder`` wrapper that normalises its input and returns the five
feature maps the depth and pose decoders consume.

Written from the ResNet paper (He et al. 2016); the attribute names match the published state_dict keys.
"""

from __future__ import annotations

from typing import List, Sequence, Type, Union

import torch
from torch import nn

# Monodepth2 normalises images in [0, 1] with one mean and std for all channels.
IMAGE_MEAN = 0.45
IMAGE_STD = 0.225


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (stride on the 3x3, as torchvision), 1x1 expand by 4 (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]

RESNET_SPECS: dict[int, tuple[Block, Sequence[int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk with torchvision's attribute names (conv1, bn1, layer1..4, fc).

    ``fc`` is kept so that ImageNet/Monodepth2 files load key for key; it is never run.
    """

    def __init__(self, num_layers: int = 18, in_channels: int = 3):
        super().__init__()
        if num_layers not in RESNET_SPECS:
            raise ValueError(f"num_layers must be one of {sorted(RESNET_SPECS)}, got {num_layers}")
        block, counts = RESNET_SPECS[num_layers]
        self.block_expansion = block.expansion
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._in = 64
        self.layer1 = self._make_layer(block, 64, counts[0], 1)
        self.layer2 = self._make_layer(block, 128, counts[1], 2)
        self.layer3 = self._make_layer(block, 256, counts[2], 2)
        self.layer4 = self._make_layer(block, 512, counts[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: Block, channels: int, count: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in != channels * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._in, channels * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(channels * block.expansion),
            )
        layers: List[nn.Module] = [block(self._in, channels, stride, downsample)]
        self._in = channels * block.expansion
        layers += [block(self._in, channels) for _ in range(1, count)]
        return nn.Sequential(*layers)


class ResnetEncoder(nn.Module):
    """Monodepth2 encoder: ``encoder`` is the ResNet, input images in [0, 1].

    Args:
        num_layers: 18, 34 or 50.
        num_input_images: 1 for the depth encoder, 2 for the pose encoder (frames stacked on channels).

    Shapes:
        forward: (B, 3*num_input_images, H, W) -> five maps with ``num_ch_enc`` channels at
        H/2, H/4, H/8, H/16, H/32.
    """

    def __init__(self, num_layers: int = 18, num_input_images: int = 1):
        super().__init__()
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.encoder = ResNet(num_layers, in_channels=3 * num_input_images)
        e = self.encoder.block_expansion
        self.num_ch_enc = [64, 64 * e, 128 * e, 256 * e, 512 * e]

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        x = (images - IMAGE_MEAN) / IMAGE_STD
        enc = self.encoder
        f0 = enc.relu(enc.bn1(enc.conv1(x)))
        f1 = enc.layer1(enc.maxpool(f0))
        f2 = enc.layer2(f1)
        f3 = enc.layer3(f2)
        f4 = enc.layer4(f3)
        return [f0, f1, f2, f3, f4]
