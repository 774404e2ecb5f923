"""The depth decoder's full-resolution stage rewritten to run at half resolution, for deployment graphs.

Owns the exact identities (same function, same weights, different arrangement) and the function that applies
them to a ``DepthDecoder``. Level 0 of the decoder upsamples a half-resolution map (nearest, x2) and then runs
two reflection-padded 3x3 convolutions at full resolution: up-convolution (0, 1) with ELU and the sigmoid
disparity head. Both are rewritten as half-resolution 3x3 convolutions on edge-padded input with four times
the output channels, one per sub-pixel phase, and a pixel shuffle puts the phases back in place:

- ``conv3x3(reflect_pad(upsample2(x)))  == pixel_shuffle(conv3x3'(edge_pad(x)))``: a reflected row of the
  upsampled map is a copy of the nearest low-resolution row, and each output phase sees at most 2 distinct
  low-resolution rows (and columns), so its 3x3 taps sum into a sparser 3x3 kernel (``_UPSAMPLED_TAPS``).
- ``conv3x3(reflect_pad(pixel_shuffle(z))) == pixel_shuffle(conv3x3''(edge_pad(z)))``: reflecting the
  shuffled map at its border reads the same phase of the edge row, which is what edge-padding ``z`` gives;
  each tap of the original kernel moves to one (low-resolution offset, input phase) (``_SHUFFLED_TAPS``).

The full-resolution Resize and both full-resolution Pads disappear, and the convolutions become wider at a
quarter of the pixels, which int8 and fp32 GEMM kernels run faster (README, Performance: 7.5 % of the int8
depth graph on the CPU, with the 16-channel head). Training keeps the reference form; only exported graphs use this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .networks import DepthDecoder

# _UPSAMPLED_TAPS[a, t, k] = 1 where tap t (-1, 0, +1) of a 3x3 kernel over upsample2(x), for output phase a,
# reads low-resolution offset k - 1.
_UPSAMPLED_TAPS = torch.tensor([[[1., 0., 0.], [0., 1., 0.], [0., 1., 0.]],
                                [[0., 1., 0.], [0., 1., 0.], [0., 0., 1.]]])
# _SHUFFLED_TAPS[a, t, k, p] = 1 where tap t of a 3x3 kernel over pixel_shuffle(z), for output phase a, reads
# low-resolution offset k - 1 in input phase p.
_SHUFFLED_TAPS = torch.zeros(2, 3, 3, 2)
for _a, _row in enumerate(([(0, 1), (1, 0), (1, 1)], [(1, 0), (1, 1), (2, 0)])):
    for _t, (_k, _p) in enumerate(_row):
        _SHUFFLED_TAPS[_a, _t, _k, _p] = 1.0
# The head's 4 phase outputs are computed as 16 channels (12 of them zero weights) and sliced: onnxruntime's
# int8 convolution runs output channels in blocks of 16 on x86, and at 64x96x320 in the 4-channel head took
# 4.4 ms where the 16-channel one took 1.5 ms (fp32: 3.1 and 3.0 ms). The slice costs nothing measurable.
HEAD_OUTPUT_CHANNELS = 16


def upsampled_conv_weights(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the half-resolution convolution equal to a 3x3 convolution over a nearest-x2-upsampled map.

    Shapes: (O, C, 3, 3), (O,) -> (4 O, C, 3, 3), (4 O,); output channel 4 o + 2 a + b is phase (a, b) of o.
    """
    taps = _UPSAMPLED_TAPS.to(weight)
    w = torch.einsum("ask,ocst,btl->oabckl", taps, weight, taps)  # s, t: row, column tap
    return w.reshape(weight.shape[0] * 4, weight.shape[1], 3, 3), bias.repeat_interleave(4)


def shuffled_conv_weights(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the half-resolution convolution equal to a 3x3 convolution over ``pixel_shuffle(z, 2)``.

    Shapes: (O, C, 3, 3), (O,) -> (4 O, 4 C, 3, 3), (4 O,); input channel 4 c + 2 p + q is phase (p, q) of c.
    """
    taps = _SHUFFLED_TAPS.to(weight)
    w = torch.einsum("askp,ocst,btlq->oabcpqkl", taps, weight, taps)
    o, c = weight.shape[:2]
    return w.reshape(o * 4, c * 4, 3, 3), bias.repeat_interleave(4)


def _edge_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)


def subpixel_weights(decoder: "DepthDecoder") -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rearranged weights of the sub-pixel stage: (w1, b1) for up-convolution (0, 1), (w2, b2) for the scale-0 head
    padded to ``HEAD_OUTPUT_CHANNELS`` output channels. Computed once (no gradient) so that a traced graph holds them
    as constants, not as einsums over the decoder's weights.

    Shapes: -> (4 C1, C0, 3, 3), (4 C1,), (16, 4 C1, 3, 3), (16,).
    """
    conv1, head = decoder.upconv(0, 1).conv.conv, decoder.dispconv(0).conv
    assert conv1.bias is not None and head.bias is not None
    with torch.no_grad():
        w1, b1 = upsampled_conv_weights(conv1.weight, conv1.bias)
        w2, b2 = shuffled_conv_weights(head.weight, head.bias)
        # Zero output channels up to HEAD_OUTPUT_CHANNELS, dropped again right after: see its comment.
        pad = HEAD_OUTPUT_CHANNELS - w2.shape[0]
        w2 = torch.cat([w2, w2.new_zeros((pad,) + tuple(w2.shape[1:]))])
        b2 = torch.cat([b2, b2.new_zeros(pad)])
    return w1, b1, w2, b2


def full_resolution_disparity(decoder: "DepthDecoder", features: List[torch.Tensor],
                              weights: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """Scale-0 disparity of ``decoder`` (a ``networks.DepthDecoder``) from the encoder's ``features``: levels
    4..1 as in the reference form, then level 0 and the scale-0 head in the sub-pixel form, with ``weights`` from
    ``subpixel_weights`` (computed here when None).

    Equal to ``decoder(features, scales=(0,))[0]`` to float rounding.
    Shapes: five encoder maps (the first at H / 2, W / 2) -> (B, 1, H, W).
    """
    w1, b1, w2, b2 = subpixel_weights(decoder) if weights is None else weights
    x = features[-1]
    for i in range(4, 0, -1):
        x = decoder.level(x, i, features)
    z = decoder.upconv(0, 0)(x)  # runs at half resolution in both forms
    z = F.elu(_edge_conv(z, w1, b1))
    return F.pixel_shuffle(torch.sigmoid(_edge_conv(z, w2, b2)[:, :4]), 2)
