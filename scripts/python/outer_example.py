#!/usr/bin/python3
"""A plain torch.nn model trained by two (or more) replicas that sync through loom's outer optimizer.

Every rank is one replica: it takes AdamW steps on its own shard of a synthetic regression
problem, and every --sync-every steps torch.classes.loom.OuterOptimizer makes the replicas
agree (DiLoCo: one Nesterov step on the averaged pseudo-gradient; NoLoCo and CO2 likewise,
docs/config.md's outer section). Between syncs the replicas drift apart, so their losses differ; after the
last sync the replicas hold the same weights (DiLoCo, CO2). CO2 applies each average one
round late; on this problem it wants a gentler outer step than its default lr (--lr 0.5).

    build/bin/loom-launch --nproc-per-node 2 -- /usr/bin/python3 scripts/python/outer_example.py \\
        [--algorithm diloco|noloco|co2] [--sync-every 10] [--steps 60] [--lr 0.7] [--momentum 0.9] [--codec fp16]

`mpirun -np 2 /usr/bin/python3 scripts/python/outer_example.py` works too, as does any launcher that
sets torchrun's variables (docs/distributed.md). The library comes from $LOOM_TORCH_LIBRARY, else
build/lib/libloom_torch.so.
Each rank prints "rank r step s loss x" (its last batch's) at every sync, then its loss on all
the data before and after training.
"""
import argparse
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default="diloco", choices=["diloco", "noloco", "co2"])
    parser.add_argument("--sync-every", type=int, default=10, help="inner steps between syncs (H)")
    parser.add_argument("--steps", type=int, default=60, help="inner steps")
    parser.add_argument("--lr", type=float, default=0, help="outer learning rate; 0: the algorithm's default")
    parser.add_argument("--momentum", type=float, default=-1, help="outer momentum; -1: the algorithm's default")
    parser.add_argument("--codec", default="fp32", help="fp32, fp16, bf16, uint8_minmax or uint8_lut")
    parser.add_argument("--backend", default="gloo")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.ops.load_library(os.environ.get("LOOM_TORCH_LIBRARY", os.path.join(ROOT, "build/lib/libloom_torch.so")))
    comm = torch.classes.loom.Communicator(args.backend, 600.0)  # joins the job from the launcher's variables
    rank, world = comm.rank(), comm.size()

    # One synthetic problem; rank r trains on every world-th sample, starting at r.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 16, generator=generator)
    y = torch.sin(x @ torch.randn(16, 1, generator=generator) / 4)
    x_local, y_local = x[rank::world], y[rank::world]

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    for p in model.parameters():  # replicas must start from the same weights
        comm.broadcast(p.data, 0)
    with torch.no_grad():
        initial = torch.nn.functional.mse_loss(model(x), y).item()
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    # Every rank builds it at the same point: it splits a communicator of its own off `comm`.
    outer = torch.classes.loom.OuterOptimizer(comm, list(model.named_parameters()), args.algorithm,
                                              {"sync_every": args.sync_every, "lr": args.lr, "momentum": args.momentum, "codec": args.codec}, seed=0)

    batch = 32
    for step in range(1, args.steps + 1):
        rows = torch.randint(0, x_local.shape[0], (batch,), generator=generator)
        loss = torch.nn.functional.mse_loss(model(x_local[rows]), y_local[rows])
        loss.backward()
        inner.step()
        inner.zero_grad()
        outer.step(step)  # a sync every sync_every steps: parameters change in place
        if step % args.sync_every == 0:
            print(f"rank {rank} step {step} loss {loss.item():.5f}", flush=True)
    outer.finish()  # applies an average still in flight (CO2)

    with torch.no_grad():
        final = torch.nn.functional.mse_loss(model(x), y).item()
    stats = outer.stats()
    print(f"rank {rank} loss on all data {initial:.5f} -> {final:.5f}; {int(stats['syncs'])} syncs, "
          f"{stats['comm_ms']:.1f} ms exchanging", flush=True)


if __name__ == "__main__":
    main()
