"""The pyramid's levels: the input split into levels, time-major; one level's mixer layers; the carry merge.

A level (``PyramidLevel``) takes its ``T_k`` own tokens, prepends the ``C`` tokens carried from the level
before (none for the first), runs ``layers_per_level`` mixer layers (``mixer_layer.py``) and a LayerNorm over
them, and compresses the result into the ``C`` tokens it carries to the next level (``CarryMerge``; none for
the last level, or with ``carry_tokens=0``, or without the cross-behaviour branch, the only one that reads
carried tokens). Tokens are time-major, ``T X B X F X D``, so that every token mixing, per-token MLP and
pooling is one matmul without a permute copy.
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from pyramid_mixer.ranking.towers.init_streams import init_stream
from pyramid_mixer.ranking.towers.mixer_layer import MixerLayer, MixerLayerConfig, masked_softmax, pool_tokens


class LevelsTimeMajor(torch.autograd.Function):
    """``tokens: B X S X F X D`` -> each level's tokens, ``T_k X B X F X D`` (time-major, contiguous), zero where
    ``mask: B X S`` is False whatever the slot held (NaN too). Its backward writes the gradient straight into
    the batch-major layout, zero at padded slots: one pass per level, where autograd's own backward of the
    same forward (mask, split, transpose) took three over the whole history (mask, concatenate, transpose).
    Apply as ``LevelsTimeMajor.apply(tokens, mask, level_tokens)``."""

    @staticmethod
    def forward(ctx, tokens: Tensor, mask: Tensor, sizes: List[int]) -> Tuple[Tensor, ...]:  # type: ignore[override]
        ctx.save_for_backward(mask)
        ctx.sizes = sizes
        mask_t = mask.t().contiguous()  # S X B: a transposed mask would give torch.where a non-contiguous output
        return tuple(torch.where(m[:, :, None, None], x.transpose(0, 1), 0.0).contiguous()
                     for x, m in zip(tokens.split(sizes, 1), mask_t.split(sizes)))

    @staticmethod
    def backward(ctx, *grads: Optional[Tensor]) -> Tuple[Optional[Tensor], None, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        like = next(g for g in grads if g is not None)
        grad = torch.empty(mask.shape + like.shape[2:], dtype=like.dtype, device=like.device)  # B X S X F X D
        weights = mask[:, :, None, None].to(like.dtype)
        for g, out, w in zip(grads, grad.split(ctx.sizes, 1), weights.split(ctx.sizes, 1)):
            if g is None:
                out.zero_()
            else:
                torch.mul(g.transpose(0, 1), w, out=out)  # B X T_k X F X D, written in place
        return grad, None, None


class CarryMerge(nn.Module):
    """Compresses a level's T tokens into C carry tokens by C masked softmax poolings over T.

    The score of token t for carry token c is ``w_c · flat(x_t) + p_{t,c}`` (content plus a learned positional
    prior, zero at start). Returns the carry tokens and their mask (True where the level had a real token).

    Args:
        num_tokens (int): T.
        num_features (int): F.
        dim (int): D.
        carry_tokens (int): C.
        device (Optional[torch.device]): where to allocate parameters.

    Shapes: ``x: T X B X F X D``, ``mask: T X B`` -> ``C X B X F X D``, ``C X B`` (time-major).
    """

    def __init__(
        self, num_tokens: int, num_features: int, dim: int, carry_tokens: int, device: Optional[torch.device] = None
    ) -> None:
        super().__init__()
        # no bias: a constant per carry token cancels in the softmax over T (it would get no gradient)
        self.score = nn.Linear(num_features * dim, carry_tokens, bias=False, device=device)
        self.position = nn.Parameter(torch.zeros(num_tokens, 1, carry_tokens, device=device))

    def forward(self, x: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        T, B, F, D = x.shape
        flat = x.view(T, B, F * D)  # T X B X (F·D)
        w = masked_softmax(self.score(flat) + self.position, mask[:, :, None], dim=0)  # T X B X C
        carry = pool_tokens(flat, w).transpose(0, 1)  # B X C X (F·D) -> C X B X (F·D)
        C = carry.size(0)
        return carry.reshape(C, B, F, D), mask.any(0, keepdim=True).expand(C, B)


class PyramidLevel(nn.Module):
    """Level ``k`` of the pyramid: its mixer layers over the carried and its own tokens, a LayerNorm, and the
    carry merge to level ``k + 1``.

    Args:
        index (int): k; names the random streams of its parts (``level{k}.layer{i}``, ``merge{k}``).
        layer (MixerLayerConfig): its mixer layers' config (``num_tokens``: carried + own tokens).
        layers (int): how many mixer layers.
        carry_tokens (int): tokens it carries to the next level; 0 for none (the last level).
        device (Optional[torch.device]): where to allocate parameters.

    Call with ``x: (C_in + T_k) X B X F X D`` (carried tokens first) and its mask ``(C_in + T_k) X B``; returns
    its own tokens ``T_k X B X F X D`` (the last ``T_k``, contiguous) and what it carries to the next level
    (``C X B X F X D`` and ``C X B``, or None).
    """

    def __init__(self, index: int, layer: MixerLayerConfig, layers: int, carry_tokens: int,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for i in range(layers):
            with init_stream(f"level{index}.layer{i}"):
                self.layers.append(MixerLayer(layer, device))
        self.norm = nn.LayerNorm((layer.num_features, layer.dim), device=device)
        self.merge: Optional[CarryMerge] = None
        if carry_tokens > 0:
            with init_stream(f"merge{index}"):
                self.merge = CarryMerge(layer.num_tokens, layer.num_features, layer.dim, carry_tokens, device)

    def forward(self, x: Tensor, mask: Tensor, own: int) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]:
        for layer in self.layers:
            x = layer(x, mask)
        x = self.norm(x)
        carry = self.merge(x, mask) if self.merge is not None else None
        return x[x.size(0) - own :], carry
