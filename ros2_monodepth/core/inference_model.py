"""Deployment wrappers around the networks: camera bytes in, depth / pose out.

These modules are what every backend runs and what ONNX export traces, so preprocessing (uint8 HWC ->
float NCHW, channel order, resize to the network size, normalisation inside the encoder) and
postprocessing (disparity -> depth, 6 pose parameters -> 4x4) are one piece of code everywhere.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import disp_to_depth, pose_params_to_matrix
from .networks import DepthNet, PoseNet
from .subpixel import HEAD_OUTPUT_CHANNELS, full_resolution_disparity, subpixel_weights


def image_u8_to_network_input(image: torch.Tensor, network_size: Tuple[int, int], bgr: bool) -> torch.Tensor:
    """Camera image(s) -> network input.

    The uint8 input is cast to float before any other operation: TensorRT takes uint8 only as a network input or
    output, never as an intermediate tensor. (ONNX Runtime ran the earlier uint8-first form no faster: depth and
    pose graphs, fp32 and int8, within 0.5 ms of each other at 640x192, README Performance.)

    Shapes: (H, W, 3k) or (B, H, W, 3k) uint8, k images stacked along channels -> (B, 3k, h, w) float in
    [0, 1], each image in RGB order.
    """
    x = image.float()
    x = x if x.dim() == 4 else x.unsqueeze(0)
    x = x.permute(0, 3, 1, 2) * (1.0 / 255.0)
    if bgr:
        b, c, h, w = x.shape
        x = x.reshape(b, c // 3, 3, h, w).flip(2).reshape(b, c, h, w)
    if tuple(x.shape[-2:]) != tuple(network_size):
        x = F.interpolate(x, size=network_size, mode="bilinear", align_corners=False)
    return x


DEPTH_OUTPUT_SCALES = (0, 1)


def check_output_scale(scale: object) -> int:
    """The depth head a deployment runs: 0 (full resolution, Monodepth2's) or 1 (half resolution, upsampled).

    >>> check_output_scale(1)
    1
    >>> check_output_scale(2)
    Traceback (most recent call last):
    ...
    ValueError: depth_output_scale must be 0 (the full-resolution disparity head) or 1 (the half-resolution one, upsampled), got 2
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in DEPTH_OUTPUT_SCALES:
        raise ValueError("depth_output_scale must be 0 (the full-resolution disparity head) or 1 (the half-resolution "
                         f"one, upsampled), got {scale!r}")
    return scale


class DepthInference(nn.Module):
    """uint8 camera image -> depth in the network's units (before any metric scale).

    Shapes: (H, W, 3) uint8 -> (h_out, w_out) float32, where (h_out, w_out) is ``output_size`` or the
    network size. ``dtype`` is the networks' (float16 for the fp16 graphs strongly typed TensorRT builds): the
    input conversion and resize run in float32 before it, disparity -> depth in float32 after it.

    ``subpixel_head`` runs the decoder's full-resolution stage in the equal half-resolution form of
    ``subpixel.py`` (exported graphs use it; the PyTorch backend keeps the reference form).

    ``with_features`` (the shared pose model) returns ``(depth, features)``: the encoder's last map as well,
    (1, 512, h/32, w/32) float32, which the pose decoder takes for this frame and, cached, for the next one.

    ``output_scale`` 1 takes the decoder's half-resolution disparity head instead of the full-resolution one and
    upsamples it bilinearly to the network size: the decoder's last stage (its costliest per MAC on a CPU) is not
    run at all, and the output keeps its size. Training scores every scale's disparity upsampled to full
    resolution (Monodepth2's multi-scale loss), so this head is trained for exactly that use.
    """

    def __init__(self, net: DepthNet, network_size: Tuple[int, int], min_depth: float, max_depth: float,
                 bgr: bool = False, output_size: Optional[Tuple[int, int]] = None, subpixel_head: bool = False,
                 dtype: torch.dtype = torch.float32, with_features: bool = False, output_scale: int = 0):
        super().__init__()
        self.net = net
        self.output_scale = check_output_scale(output_scale)
        # exported graphs (subpixel_head): the half-resolution head's one output channel computed as HEAD_OUTPUT_CHANNELS
        # (the rest zero weights) and sliced, for ONNX Runtime's int8 kernel (1 channel: 1.3 ms at 640x192)
        self.wide_head = subpixel_head and self.output_scale > 0
        if self.wide_head:
            head = net.decoder.dispconv(self.output_scale).conv
            weight = torch.zeros((HEAD_OUTPUT_CHANNELS,) + tuple(head.weight.shape[1:]), dtype=head.weight.dtype)
            bias = torch.zeros(HEAD_OUTPUT_CHANNELS, dtype=head.weight.dtype)
            assert head.bias is not None     # Conv3x3's convolution has a bias
            with torch.no_grad():
                weight[:1] = head.weight
                bias[:1] = head.bias
            self.register_buffer("head_w", weight)
            self.register_buffer("head_b", bias)
        subpixel_head = subpixel_head and self.output_scale == 0   # the rewrite is of the full-resolution stage
        self.with_features = with_features
        self.dtype = dtype
        self.network_size = (int(network_size[0]), int(network_size[1]))
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.bgr = bgr
        self.output_size = output_size
        self.subpixel_head = subpixel_head
        if subpixel_head:
            # the rearranged weights, computed once: a traced graph holds them as constants (valid for the decoder's
            # weights at construction: a wrapper is built per export)
            for name, w in zip(("sp_w1", "sp_b1", "sp_w2", "sp_b2"), subpixel_weights(net.decoder)):
                self.register_buffer(name, w)

    def forward(self, image: torch.Tensor) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        x = image_u8_to_network_input(image, self.network_size, self.bgr).to(self.dtype)
        features = self.net.encoder(x)
        if self.output_scale:
            decoder = self.net.decoder
            y = features[-1]
            for level in range(4, self.output_scale - 1, -1):
                y = decoder.level(y, level, features)
            if self.wide_head:
                y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), self.get_buffer("head_w"), self.get_buffer("head_b"))
                disp = torch.sigmoid(y[:, :1])
            else:
                disp = torch.sigmoid(decoder.dispconv(self.output_scale)(y))
            disp = F.interpolate(disp, size=self.network_size, mode="bilinear", align_corners=False)
        elif self.subpixel_head:
            weights = [self.get_buffer(name) for name in ("sp_w1", "sp_b1", "sp_w2", "sp_b2")]
            disp = full_resolution_disparity(self.net.decoder, features, weights)
        else:
            disp = self.net.decoder(features, scales=(0,))[0]
        if self.output_size is not None and tuple(self.output_size) != self.network_size:
            # Interpolate disparity, not depth: it is what the network predicts smoothly.
            disp = F.interpolate(disp, size=self.output_size, mode="bilinear", align_corners=False)
        _, depth = disp_to_depth(disp.float(), self.min_depth, self.max_depth)
        if self.with_features:
            return depth[0, 0], features[-1].float()
        return depth[0, 0]


class PoseInference(nn.Module):
    """Two uint8 camera images (earlier, later) -> ``T_a_b``: pose of the later camera in the earlier's frame.

    Shapes: (H, W, 3) uint8, (H, W, 3) uint8 -> (4, 4) float32.
    """

    def __init__(self, net: PoseNet, network_size: Tuple[int, int], bgr: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.network_size = (int(network_size[0]), int(network_size[1]))
        self.bgr = bgr

    def forward(self, earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        # Each frame is cast to float first (TensorRT: no uint8 intermediate tensors), then the two are stacked in
        # the order PoseNet stacks them; every step after is per channel.
        pair = image_u8_to_network_input(torch.cat([earlier.float(), later.float()], dim=-1), self.network_size, self.bgr)
        pair = pair.to(self.dtype)
        axis_angle, translation = self.net.stacked(pair)   # with the network's own input shrink, if any
        # The network predicts T_b_a (a's points into b); the camera motion is its inverse.
        return pose_params_to_matrix(axis_angle.float(), translation.float(), invert=True)[0]


class PoseFromFeatures(nn.Module):
    """The shared pose model at run time: the depth encoder's last maps of two frames (earlier, later; what
    ``DepthInference(with_features=True)`` returned for each) -> ``T_a_b``, as ``PoseInference`` gives it.

    Shapes: (1, C, h, w) float32, (1, C, h, w) float32 -> (4, 4) float32.
    """

    def __init__(self, net: PoseNet, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not net.shared:
            raise ValueError("PoseFromFeatures runs the shared pose model; this pose network has its own encoder")
        self.net = net
        self.dtype = dtype

    def forward(self, earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        axis_angle, translation = self.net.from_features(earlier.to(self.dtype), later.to(self.dtype))
        return pose_params_to_matrix(axis_angle.float(), translation.float(), invert=True)[0]
