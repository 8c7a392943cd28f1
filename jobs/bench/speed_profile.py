"""Where a tower's step goes: ``torch.profiler``'s self time of each aten op, summed into kinds of work.

``profile_categories(step)`` runs ``step`` under the profiler (after one untimed call) and returns the time
per step of each kind: matmuls, layer norms, GELU, copies and concatenations, other elementwise work,
reductions and softmaxes, and the rest, forward and backward together (an op's backward is the same kind as
the op). The kinds answer the question a speed target that is missed raises: what the remaining time is.

Example::

    >>> w = torch.randn(64, 64, requires_grad=True)
    >>> prof = profile_categories(lambda: torch.nn.functional.gelu(torch.randn(32, 64) @ w).sum().backward())
    >>> set(prof["ms_per_step"]) == set(CATEGORIES) | {"other"} and prof["ms_per_step"]["matmul"] > 0
    True
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from torch.profiler import ProfilerActivity, profile

CATEGORIES: Dict[str, tuple] = {
    "matmul": ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "dot", "mv"),
    "layer norm": ("native_layer_norm", "native_layer_norm_backward", "layer_norm"),
    "gelu": ("gelu", "gelu_backward"),
    "copies and concatenation": ("copy_", "cat", "clone", "contiguous", "stack", "_to_copy", "index_select",
                                 "fill_", "zero_"),
    "elementwise": ("mul", "add", "add_", "sub", "div", "where", "lerp", "addcmul", "masked_fill", "masked_fill_",
                    "sigmoid", "sigmoid_backward", "mul_", "div_", "sub_", "neg", "threshold_backward", "relu",
                    "clamp", "clamp_min", "lerp_", "rsub", "exp", "tanh", "tanh_backward", "pow"),
    "reductions and softmax": ("sum", "mean", "_softmax", "_softmax_backward_data", "softmax", "amax", "max",
                               "any", "all"),
}


def _kind(op: str) -> str:
    name = op.removeprefix("aten::")
    return next((kind for kind, ops in CATEGORIES.items() if name in ops), "other")


def profile_categories(step: Callable[[], Any], device: Optional[torch.device] = None,
                       steps: int = 2) -> Dict[str, Any]:
    """Milliseconds per step of each kind of work (``CATEGORIES``, and ``other``), from the self time of the
    aten ops ``step`` runs, over ``steps`` profiled calls after one untimed call; on a GPU, the kernels' CUDA
    time instead. Also the ten ops with the most time, and the total."""
    cuda = device is not None and device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    step()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    per_kind = {kind: 0.0 for kind in [*CATEGORIES, "other"]}
    ops = []
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue  # autograd's wrappers and the profiler's own: their time is their ops'
        us = event.self_device_time_total if cuda else event.self_cpu_time_total
        per_kind[_kind(event.key)] += us / 1e3 / steps
        ops.append((event.key, us / 1e3 / steps))
    ops.sort(key=lambda kv: -kv[1])
    return {"ms_per_step": per_kind, "total_ms": sum(per_kind.values()), "clock": "cuda" if cuda else "cpu",
            "top_ops": [{"op": op, "ms": ms} for op, ms in ops[:10]]}
