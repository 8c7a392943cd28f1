"""Training steps: TorchRec's ``TrainPipelineSparseDist`` or a plain loop, fed in lockstep across ranks.

Both expose ``progress(batches) -> (loss, row weights)`` (one step) and ``detach()`` (hand the plain model
back for eval and checkpoints); for the same batches they train the same model, bit for bit (tested).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Tuple, Union

import torch
from torch.optim import Optimizer
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from pyramid_mixer.embeddings.model_parallel import DistEnv
from pyramid_mixer.features.batch import RankingBatch
from pyramid_mixer.features.reader import ParquetReader
from pyramid_mixer.jobs.distributed import lockstep


def in_lockstep(batches: Iterable[RankingBatch], reader: ParquetReader, env: DistEnv) -> Iterator[RankingBatch]:
    """This rank's batches, in step with the other ranks: once its share is done, zero-weight fillers."""
    for batch, real in lockstep(batches, env, reader.sample_batch):
        yield batch if real else batch.zero_weight()


class PlainLoop:
    """One training step per ``progress`` call: forward, backward (the tables' fused optimizer steps inside
    it), dense optimizer step. The fallback where ``TrainPipelineSparseDist`` is not wanted."""

    def __init__(self, dmp: DistributedModelParallel, optimizer: Optimizer, device: torch.device) -> None:
        self.dmp, self.optimizer, self.device = dmp, optimizer, device

    def progress(self, batches: Iterator[RankingBatch]) -> Tuple[torch.Tensor, torch.Tensor]:
        """One step; returns the loss and the row weights of the batch it trained on."""
        loss, (_, _, _, weights) = self.dmp(next(batches).to(self.device))
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss.detach(), weights

    def detach(self) -> None:
        """Nothing to undo: the plain loop leaves the model as it is."""


class PipelineLoop:
    """TorchRec's ``TrainPipelineSparseDist``: the next batch's input distribution overlaps this batch's
    compute (with CUDA streams on GPUs; on CPU the same code path without overlap).

    The pipeline rewrites the model's sharded modules to take pre-distributed input; ``detach`` gives the
    plain model back (for eval and checkpoints) and the next ``progress`` attaches it again.
    """

    def __init__(self, dmp: DistributedModelParallel, optimizer: Optimizer, device: torch.device) -> None:
        self.pipeline = TrainPipelineSparseDist(dmp, optimizer, device, execute_all_batches=True)
        self.attached = True

    def progress(self, batches: Iterator[RankingBatch]) -> Tuple[torch.Tensor, torch.Tensor]:
        """One step (batches are read ahead); returns the loss and the row weights of the trained batch."""
        if not self.attached:
            self.pipeline.attach()
            self.attached = True
        loss, _, _, weights = self.pipeline.progress(batches)  # the model's output (see RankingTrain)
        return loss, weights

    def detach(self) -> None:
        if self.attached:
            self.pipeline.detach()
            self.attached = False


def make_stepper(
    pipeline: bool, dmp: DistributedModelParallel, optimizer: Optimizer, env: DistEnv
) -> Union["PipelineLoop", "PlainLoop"]:
    return (PipelineLoop if pipeline else PlainLoop)(dmp, optimizer, env.device)
