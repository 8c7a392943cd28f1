"""The Pyramid Mixer tower as it ran before its speed rewrite, kept to test and time the rewrite against.

``reference_tower(tower)`` returns a copy of ``tower`` (same weights) whose rewritten parts run their former
code, kept here verbatim: the input's transpose and mask left to autograd, the mixer layer that masks its
norm with ``torch.where``, the cross-behaviour branch that multiplies its token mixing by the mask before the
residual add, the fusion gate whose weight broadcasts along D, and DIN's attention unit that concatenates
``[x, t * a]``. Everything else is shared with the tower itself; ``former_code(model)`` runs a built model's
tower the former way in place, within a ``with`` block. The tests check that both give the same
outputs and gradients for every ablation switch (``tests/jobs/test_tower_reference.py``), and
``bench-speed`` times the two alternately in one process (``jobs/bench/speed.py``).

Example::

    >>> from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer, PyramidMixerConfig
    >>> tower = PyramidMixer(PyramidMixerConfig(level_tokens=(4, 4), num_features=3, dim=8, out_dim=8))
    >>> tokens, mask, target = torch.randn(2, 8, 3, 8), torch.ones(2, 8, dtype=torch.bool), torch.randn(2, 2, 8)
    >>> torch.allclose(reference_tower(tower)(tokens, mask, target), tower(tokens, mask, target), atol=1e-6)
    True
"""

import contextlib
import copy
from typing import Dict, Iterator, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from pyramid_mixer.ranking.towers.mixer_layer import CrossBehaviorMixer, FusionGate, MixerLayer, masked_mean
from pyramid_mixer.ranking.towers.pyramid_mixer import PyramidMixer
from pyramid_mixer.ranking.towers.target_attention import TargetAttentionUnit


class _CrossBehavior(CrossBehaviorMixer):
    def forward(self, z: Tensor, h: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        T, B, F, D = z.shape
        u = torch.addmm(self.token_down.bias[:, None], self.token_down.weight, h.view(T, B * F * D))  # r X (B·F·D)
        u = torch.mm(self.token_up.weight, functional.gelu(u)).view(T, B, F, D)  # T X (B·F·D) -> T X B X F X D
        return self.channel(torch.addcmul(z, u, mask[:, :, None, None].to(z.dtype)))  # zero at padded tokens


class _Gate(FusionGate):
    def forward(self, cb: Tensor, cf: Tensor, mask: Tensor) -> Tensor:
        T, B, F, D = cb.shape
        summary = torch.cat([masked_mean(cb.view(T, B, F * D), mask), masked_mean(cf.view(T, B, F * D), mask)], 1)
        a = torch.sigmoid(self.proj(summary)).view(1, B, F, 1)  # B X 2·F·D -> B X F -> 1 X B X F X 1
        return torch.lerp(cf, cb, a)  # cf + a * (cb - cf)


class _Layer(MixerLayer):
    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        mask = mask.contiguous()  # a transposed mask would make torch.where's output non-contiguous
        h = torch.where(mask[:, :, None, None], self.norm(z), 0.0)  # T X B X F X D, padded tokens zero
        if self.cf is None:
            return self.cb(z, h, mask)
        if self.cb is None:
            return self.cf(z, h)
        if self.gate is None:
            return (self.cb(z, h, mask) + self.cf(z, h)).sub_(z)
        return self.gate(self.cb(z, h, mask), self.cf(z, h), mask)


class _Attention(TargetAttentionUnit):
    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        C, A = x.size(-1), t.size(-1)
        w_t, w_x, w_d, w_p = self.att_in.weight.split([A, C, A, A], 1)  # hidden X each part
        per_example = functional.linear(t, w_t + w_d, self.att_in.bias)  # ... X hidden: W_t t + W_d t + b1
        w_tok = torch.cat([w_x - functional.pad(w_d, (0, C - A)), w_p], 1)  # hidden X (C + A): W_x x - W_d a
        h = functional.linear(torch.cat([x, torch.mul(t, x[..., :A])], -1), w_tok)  # ... X hidden
        return self.att_out(functional.gelu(h + per_example)).squeeze(-1)


class _Pyramid(PyramidMixer):
    def _time_major(self, tokens: Tensor, mask: Tensor) -> Sequence[Tensor]:
        mask = mask.t().contiguous()  # S X B
        tokens = torch.where(mask[:, :, None, None], tokens.transpose(0, 1), 0.0)  # S X B X F X D, one pass
        return tokens.split(self.config.level_tokens)


_FORMER = {CrossBehaviorMixer: _CrossBehavior, FusionGate: _Gate, MixerLayer: _Layer,
           TargetAttentionUnit: _Attention, PyramidMixer: _Pyramid}


def reference_tower(tower: nn.Module) -> nn.Module:
    """A deep copy of ``tower`` (a ``PyramidMixer`` or any module holding its parts) whose mixer layers, fusion
    gates and attention units run the code they ran before the rewrite; same parameters, same names."""
    former = copy.deepcopy(tower)
    _swap(former, _FORMER)
    return former


@contextlib.contextmanager
def former_code(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s rewritten parts run their former code, in place: the same parameters and
    optimizer state, so one built model can be timed both ways, alternately."""
    swapped = _swap(model, _FORMER)
    try:
        yield
    finally:
        for module, cls in swapped:
            module.__class__ = cls


def _swap(model: nn.Module, classes: Dict[type, type]) -> List[Tuple[nn.Module, type]]:
    swapped = []
    for module in model.modules():
        if type(module) in classes:
            swapped.append((module, type(module)))
            module.__class__ = classes[type(module)]
    return swapped
