"""torchx components: the train and eval jobs on one process or many, on any torchx scheduler.

    torchx run -s local_cwd jobs/components.py:train -j 1x2 -- --config my.yaml --set train.epochs=2 run_dir=runs/x
    torchx run -s slurm      jobs/components.py:train -j 4x8 -h ... -- --config my.yaml
    torchx run -s kubernetes jobs/components.py:train -j 4x8 --image my-registry/pmx:1 -- --config my.yaml

Each wraps ``torchx.components.dist.ddp`` (torchrun under the hood) with this project's entry point, so the
same command moves from a laptop (``local_cwd``) to a cluster by changing the scheduler. Arguments after
``--`` go to the job (``--config``, ``--set``); torchx refuses a repeated option there, so give all overrides
after one ``--set``. Every rank reads its share of the data; rank 0 prints.

No ``from __future__ import annotations`` here: torchx reads the parameters' real types to parse its CLI.
"""


from typing import Dict, List, Optional

import torchx.specs as specs
from torchx.components import dist

DEFAULT_IMAGE = "ghcr.io/pytorch/torchx:0.7.0"


def _job(module: str, name: str, script_args: List[str], j: str, image: str, cpu: int, gpu: int, memMB: int,
         h: Optional[str], env: Optional[Dict[str, str]], max_retries: int, rdzv_port: int) -> specs.AppDef:
    if "x" not in j:
        raise ValueError(f"-j {j!r}: expected NNODESxNPROC_PER_NODE, e.g. 1x2")
    return dist.ddp(*script_args, m=module, name=name, image=image, cpu=cpu, gpu=gpu, memMB=memMB, j=j, h=h,
                    env=dict(env or {}), max_retries=max_retries, rdzv_port=rdzv_port)


def train(
    *script_args: str,
    j: str = "1x2",
    image: str = DEFAULT_IMAGE,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Trains a ranking model (``pmx-train``) on NNODES x NPROC_PER_NODE processes, then evaluates it.

    Args:
        script_args: arguments of pmx-train, e.g. --config my.yaml --set train.epochs=2
        j: NNODESxNPROC_PER_NODE, e.g. 1x2 (two processes on this host) or 4x8
        image: container image (kubernetes, aws_batch); local_cwd and slurm run the working directory
        cpu: CPUs per process's host resource request
        gpu: GPUs per node (one process per GPU: set j to 1x{gpu})
        memMB: memory per node in MB
        h: a named resource (e.g. aws_p4d.24xlarge) instead of cpu/gpu/memMB
        env: environment variables for every process
        max_retries: restarts on failure (training resumes from the newest checkpoint)
        rdzv_port: rendezvous port on the first node
    """
    return _job("pyramid_mixer.jobs.train", "pmx-train", list(script_args), j, image, cpu, gpu, memMB, h, env,
                max_retries, rdzv_port)


def evaluate(
    *script_args: str,
    j: str = "1x2",
    image: str = DEFAULT_IMAGE,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    max_retries: int = 0,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Evaluates the newest checkpoint (``pmx-eval``) on NNODES x NPROC_PER_NODE processes.

    Args:
        script_args: arguments of pmx-eval, e.g. --config my.yaml --checkpoint runs/x/checkpoints/epoch-2
        j: NNODESxNPROC_PER_NODE, e.g. 1x2
        image: container image (kubernetes, aws_batch); local_cwd and slurm run the working directory
        cpu: CPUs per process's host resource request
        gpu: GPUs per node
        memMB: memory per node in MB
        h: a named resource instead of cpu/gpu/memMB
        env: environment variables for every process
        max_retries: restarts on failure
        rdzv_port: rendezvous port on the first node
    """
    return _job("pyramid_mixer.jobs.eval", "pmx-eval", list(script_args), j, image, cpu, gpu, memMB, h, env,
                max_retries, rdzv_port)
