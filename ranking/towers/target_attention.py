"""DIN's attention unit: how much a history token matters for the candidate, from the pair itself.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction" (KDD 2018): the score of token ``x``
for candidate ``t`` is ``w2 · gelu(W1 [t, x, t - a, t * a] + b1) + b2``, with ``a`` the token's first
``Ft`` features (the ones taken from the candidate's tables, so that the difference and the product compare
like with like). Used by the DIN baseline and by the Pyramid Mixer's target-aware readout; both weight the
tokens by these scores **without a softmax**, so that how many behaviours match the candidate reaches the
output as intensity, not only which ones.

The unit never builds the concatenation: the candidate-only terms are one matmul per example, and the token
terms two matmuls, one over ``x`` (the ``-a`` term folded into its weights) and one accumulated into it
(``addmm``) over ``t * x`` with ``t`` zero-padded to the token's width.

Example::

    >>> unit = TargetAttentionUnit(token_width=12, target_width=8, hidden=16)
    >>> x, t = torch.randn(2, 5, 12), torch.randn(2, 8)  # B X S X C tokens, B X A candidate
    >>> unit(x, t[:, None]).shape  # the candidate broadcast over the tokens
    torch.Size([2, 5])
"""

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional


class TargetAttentionUnit(nn.Module):
    """Scores tokens against a candidate with DIN's attention MLP (see the module).

    Args:
        token_width (int): C, the flattened token (F·D).
        target_width (int): A, the flattened candidate (Ft·D); the token's first A channels are compared with it.
        hidden (int): width of the attention MLP.
        device (Optional[torch.device]): where to allocate parameters.

    Call with ``x: ... X C`` (tokens) and ``t: ... X A`` (the candidate, broadcastable to x's leading dims);
    returns the scores, ``x.shape[:-1]``.
    """

    def __init__(self, token_width: int, target_width: int, hidden: int, device: Optional[torch.device] = None) -> None:
        super().__init__()
        if target_width > token_width:
            raise ValueError(f"target_width={target_width} > token_width={token_width}: the candidate is compared "
                             "with the token's first target_width channels")
        # columns ordered as DIN's input [target, token, target - token, target * token]
        self.att_in = nn.Linear(target_width + token_width + 2 * target_width, hidden, device=device)
        self.att_out = nn.Linear(hidden, 1, device=device)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        C, A = x.size(-1), t.size(-1)
        w_t, w_x, w_d, w_p = self.att_in.weight.split([A, C, A, A], 1)  # hidden X each part
        lead = torch.broadcast_shapes(x.shape[:-1], t.shape[:-1])
        x = x.expand(*lead, C)
        per_example = functional.linear(t, w_t + w_d, self.att_in.bias)  # ... X hidden: W_t t + W_d t + b1
        h = torch.mm(x.reshape(-1, C), (w_x - functional.pad(w_d, (0, C - A))).t())  # N X hidden: W_x x - W_d a
        # + W_p (t * a), with t zero-padded to C channels: slicing a = x[..., :A] would cost a zero-filled
        # full-width gradient in the backward, more than the matmul's extra C - A rows
        tx = torch.mul(functional.pad(t, (0, C - A)), x).reshape(-1, C)
        h = torch.addmm(h, tx, functional.pad(w_p, (0, C - A)).t()).view(*lead, -1)
        scores = torch.addmm(self.att_out.bias, functional.gelu(h + per_example).view(-1, h.size(-1)),
                             self.att_out.weight.t())
        return scores.view(lead)
