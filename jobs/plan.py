"""``plan``: print the embedding sharding plan for a config and a topology, without training.

    python -m pyramid_mixer.jobs.plan --world-size 2                               # this machine's CPUs
    python -m pyramid_mixer.jobs.plan --world-size 64 --local-world-size 8 --device cuda --hbm-gb 80

The topology need not be this machine: it is a dry run of TorchRec's planner (capacity planning). For each
table: the sharding type, compute kernel, the ranks holding it, shard sizes, the planner's storage and cost
estimates; then the totals per rank. ``--json`` prints the same as JSON for machines.
"""

from __future__ import annotations

import json
from typing import List, Optional

from pyramid_mixer.embeddings.planning import describe
from pyramid_mixer.embeddings.tables import pooling_factors
from pyramid_mixer.features.spec import resolve_spec
from pyramid_mixer.jobs.build import unsharded
from pyramid_mixer.jobs.cli import config_from, job_main, parser


@job_main
def main(argv: Optional[List[str]] = None) -> None:
    p = parser("pmx-plan", __doc__.strip().splitlines()[0],
               reads="the config's model and the feature spec's tables (no data, no training)",
               writes="the sharding plan as Markdown tables, to standard output only",
               epilog=__doc__)
    p.add_argument("--world-size", type=int, default=1, help="number of ranks (processes, one per device)")
    p.add_argument("--local-world-size", type=int, default=None,
                   help="ranks per host (default: all on one host)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="compute device of every rank")
    p.add_argument("--hbm-gb", type=float, default=None, help="device memory per rank in GiB (cuda)")
    p.add_argument("--batch-size", type=int, default=None, help="batch per rank (default: train.batch_size)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = p.parse_args(argv)
    if args.world_size < 1:
        p.error("--world-size must be >= 1")
    if args.local_world_size is not None and not 1 <= args.local_world_size <= args.world_size:
        p.error("--local-world-size must be between 1 and --world-size")
    if args.hbm_gb is not None and not args.hbm_gb > 0:
        p.error("--hbm-gb must be > 0 (GiB of device memory per rank)")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    config = config_from(args)
    spec = resolve_spec(config.data.spec)
    report = describe(
        unsharded(config, spec), config.model.sharding, world_size=args.world_size, compute_device=args.device,
        batch_size=args.batch_size or config.train.batch_size, local_world_size=args.local_world_size,
        hbm_gb=args.hbm_gb, pooling=pooling_factors(spec, config.model.effective_layout()),
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.table())


if __name__ == "__main__":
    main()
