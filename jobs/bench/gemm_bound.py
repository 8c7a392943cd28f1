"""The tower's own matmuls, replayed alone: the ceiling that fusing away all its other work could reach.

A tower's GFLOP/s (FLOPs counted from its matmul shapes, as ``torch.utils.flop_counter`` does) is bounded by
how fast the machine runs *those* matmuls, whatever happens between them: norms, activations, masks and
copies only add time. ``record_matmuls`` notes every matmul (shapes, strides, dtype) that one step issues,
forward and backward; ``replay_seconds`` times them back to back on fresh tensors of the same layout.
``flops / replay_seconds`` against the machine's large-matmul peak says how much of that peak the tower's
shapes allow at all: skinny matmuls (a channel MLP along D = 16) run far below it.

Example::

    >>> w = torch.randn(8, 4, requires_grad=True)
    >>> calls = record_matmuls(lambda: (torch.randn(16, 8) @ w).sum().backward())
    >>> [c.op for c in calls], matmul_flops(calls)  # forward, and the weight's gradient
    (['mm', 'mm'], 2048)
    >>> replay_seconds(calls, repeats=3) > 0
    True
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_OPS = {
    torch.ops.aten.mm.default: "mm",
    torch.ops.aten.addmm.default: "addmm",
    torch.ops.aten.bmm.default: "bmm",
    torch.ops.aten.baddbmm.default: "baddbmm",
}
Layout = Tuple[Tuple[int, ...], Tuple[int, ...], torch.dtype]  # shape, stride, dtype


@dataclass(frozen=True)
class MatmulCall:
    op: str  # mm, addmm, bmm, baddbmm
    inputs: Tuple[Layout, ...]  # the tensor arguments, in order
    scalars: Tuple[Tuple[str, Any], ...]  # beta / alpha, where given
    device: str = "cpu"  # where the step ran it: the replay runs there too


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: List[MatmulCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in _OPS:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            layouts = tuple((tuple(a.shape), tuple(a.stride()), a.dtype) for a in tensors)
            device = str(tensors[-1].device)
            self.calls.append(MatmulCall(_OPS[func], layouts, tuple(sorted(kwargs.items())), device))
        return func(*args, **kwargs)


def record_matmuls(step: Callable[[], Any]) -> List[MatmulCall]:
    """Every matmul ``step()`` issues (forward and backward), in order."""
    with _Recorder() as rec:
        step()
    return rec.calls


def matmul_flops(calls: List[MatmulCall]) -> int:
    """FLOPs of ``calls`` (2 per multiply-add; the additions of ``addmm``'s input are not counted)."""
    total = 0
    for c in calls:
        a, b = c.inputs[-2][0], c.inputs[-1][0]  # the two factors are the last tensor arguments
        batch = a[0] if len(a) == 3 else 1
        total += 2 * batch * a[-2] * a[-1] * b[-1]
    return total


def _tensor(layout: Layout, device: str) -> torch.Tensor:
    shape, stride, dtype = layout
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 0
    return torch.randn(size, device=device).to(dtype).as_strided(shape, stride)


def replay_seconds(calls: List[MatmulCall], repeats: int = 5) -> float:
    """Median seconds of running ``calls`` back to back on fresh tensors with the recorded layouts."""
    ops = {"mm": torch.mm, "addmm": torch.addmm, "bmm": torch.bmm, "baddbmm": torch.baddbmm}
    work = [(ops[c.op], [_tensor(t, c.device) for t in c.inputs], dict(c.scalars)) for c in calls]
    cuda = any(c.device.startswith("cuda") for c in calls)

    def run() -> None:
        for fn, tensors, kw in work:
            fn(*tensors, **kw)
        if cuda:  # GPU work is asynchronous
            torch.cuda.synchronize()

    run()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
