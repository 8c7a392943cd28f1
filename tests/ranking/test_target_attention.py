"""DIN's attention unit: the fast form equals the literal concatenation, in either layout."""

import pytest
import torch
from torch.nn import functional

from pyramid_mixer.ranking.towers.target_attention import TargetAttentionUnit


def test_scores_equal_the_mlp_on_the_literal_concatenation_batch_or_time_major() -> None:
    torch.manual_seed(0)
    unit = TargetAttentionUnit(token_width=12, target_width=8, hidden=16)
    x, t = torch.randn(3, 5, 12), torch.randn(3, 8)  # B X S X C, B X A
    a, tt = x[..., :8], t[:, None].expand(3, 5, 8)
    expected = unit.att_out(functional.gelu(unit.att_in(torch.cat([tt, x, tt - a, tt * a], -1)))).squeeze(-1)
    torch.testing.assert_close(unit(x, t[:, None]), expected)  # batch-major, the candidate broadcast over S
    torch.testing.assert_close(unit(x.transpose(0, 1), t[None]), expected.t())  # time-major (the Pyramid Mixer)


def test_a_candidate_wider_than_the_token_is_refused() -> None:
    with pytest.raises(ValueError, match="first target_width channels"):
        TargetAttentionUnit(token_width=8, target_width=12, hidden=4)
