#!/usr/bin/python3
"""Weak- and strong-scaling sweeps of loom-train over the world this harness runs in.

The harness is a driver: for every world size of the sweep it starts one training run
with loom-launch, reads the run's metrics.jsonl and writes one JSON line per run, then
one summary per sweep mode. Run it once per node.

  weak    fixed per-rank batch (--per-rank-batch): global batch = per-rank batch * world;
          E(N) = tokens_per_s(N) / ((N / N0) * tokens_per_s(N0))
  strong  fixed global batch (--global-batch): each rank computes global / world samples;
          S(N) = T(N0) / T(N) (median step times), E(N) = S(N) / (N / N0)
N0 is the smallest world of the sweep (1 on one node). Per run: tokens/s (global tokens /
median step time, rank 0's clock), median step_ms, comm_ms, exposed_comm_ms and mfu of the
steps after --warmup, from loom's metrics (train/metrics.h; MFU needs logging.peak_tflops
on GPUs, it measures a CPU GEMM otherwise).

One node (world sizes = --nproc-per-node values):
    /usr/bin/python3 benchmarks/scaling.py --config configs/tiny.pbtxt --nproc-per-node 1,2 [--steps 20]

Several nodes: the same command once on every node, started by srun (one task per node) or
as the program of `loom-launch --nnodes M --nproc-per-node 1`. The node rank and count come
from --node-rank / --nnodes, else SLURM_NODEID / SLURM_NNODES, else the launcher's GROUP_RANK
and WORLD_SIZE; the endpoint from --rdzv-endpoint, else MASTER_ADDR:MASTER_PORT+1. The world
of a run is nodes * nproc-per-node, for every node count in --node-counts (nodes whose rank
is not below the count sit that run out) and every --nproc-per-node value. Run i meets at
the endpoint's port + i, so those ports must be free on the first node. Only the first node
has rank 0, so only it writes results (see benchmarks/slurm/scaling.sbatch):
    scaling.py --config job.pbtxt --nproc-per-node 8 --node-counts 1,2,4 --rdzv-endpoint head:29500 \\
        --set parallel.backend=NCCL --set logging.peak_tflops=989
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a launcher around this harness set for *it*; the runs it starts get their own.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT",
                      "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE",
                      "TORCHELASTIC_ERROR_FILE", "OMP_NUM_THREADS")


def int_list(text):
    return [int(v) for v in text.split(",") if v]


def placement_from_environment(a, p):
    """Fills in --nnodes, --node-rank and --rdzv-endpoint from Slurm or an enclosing launcher."""
    e = os.environ
    if int(e.get("LOCAL_WORLD_SIZE", "1")) > 1:
        p.error(f"started {e['LOCAL_WORLD_SIZE']} times on this node: run one harness per node (--nproc-per-node 1)")
    if a.nnodes is None:
        a.nnodes = int(e.get("SLURM_NNODES", e.get("WORLD_SIZE", "1")))
    if a.node_rank is None:
        a.node_rank = int(e.get("SLURM_NODEID", e.get("GROUP_RANK", "0")))
    if a.rdzv_endpoint is None:
        a.rdzv_endpoint = f"{e['MASTER_ADDR']}:{int(e['MASTER_PORT']) + 1}" if "MASTER_PORT" in e else ""


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], help="loom-train override section.field=value (repeatable)")
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--mode", default="weak,strong", help="weak, strong or both")
    p.add_argument("--nproc-per-node", default=None,
                   help="comma-separated ranks per node (default: powers of two up to this node's cores)")
    p.add_argument("--node-counts", default=None, help="comma-separated node counts (default: all nodes)")
    p.add_argument("--nnodes", type=int, default=None, help="nodes of the job (default: from the environment)")
    p.add_argument("--node-rank", type=int, default=None, help="this node's rank (default: from the environment)")
    p.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT on the first node (needed with several nodes)")
    p.add_argument("--rdzv-timeout", type=int, default=3600, help="seconds a node waits for the others per run")
    p.add_argument("--per-rank-batch", type=int, default=16, help="weak scaling: sequences per rank per step")
    p.add_argument("--global-batch", type=int, default=0,
                   help="strong scaling: sequences per step (default: per-rank batch * largest world)")
    p.add_argument("--micro-batch", type=int, default=0, help="sequences per forward/backward (default: config's)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="leading steps excluded")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/scaling.jsonl"))
    a = p.parse_args()
    placement_from_environment(a, p)
    cores = os.cpu_count()
    a.nproc_per_node = int_list(a.nproc_per_node) if a.nproc_per_node else \
        [1 << i for i in range(cores.bit_length()) if 1 << i <= cores]
    a.node_counts = int_list(a.node_counts) if a.node_counts else [a.nnodes]
    a.mode = [m for m in a.mode.split(",") if m]
    if any(m not in ("weak", "strong") for m in a.mode):
        p.error(f"--mode {','.join(a.mode)}: choose weak, strong or weak,strong")
    if max(a.node_counts) > a.nnodes:
        p.error(f"--node-counts {a.node_counts} asks for more than the {a.nnodes} node(s) of the job")
    if a.nnodes > 1 and not a.rdzv_endpoint:
        p.error(f"{a.nnodes} nodes need --rdzv-endpoint HOST:PORT on the first node")
    if a.steps <= a.warmup:
        p.error(f"--steps ({a.steps}) must exceed --warmup ({a.warmup})")
    worlds = [m * k for m in a.node_counts for k in a.nproc_per_node]
    if not a.global_batch:
        a.global_batch = a.per_rank_batch * max(worlds)
    bad = [w for w in worlds if a.global_batch % w]
    if "strong" in a.mode and bad:
        p.error(f"--global-batch {a.global_batch} is not divisible by world size(s) {bad}")
    return a


def launch_command(a, run_index, nodes, nproc, out_dir, global_batch):
    cmd = [os.path.join(a.build, "bin", "loom-launch"), "--nproc-per-node", str(nproc)]
    if a.nnodes > 1:
        host, port = a.rdzv_endpoint.rsplit(":", 1)
        cmd += ["--nnodes", str(nodes), "--node-rank", str(a.node_rank), "--rdzv-endpoint",
                f"{host}:{int(port) + run_index}", "--rdzv-id", f"scaling-{run_index}",
                "--rdzv-timeout", str(a.rdzv_timeout)]
    cmd += ["--", os.path.join(a.build, "bin", "loom-train"), "--config", os.path.abspath(a.config)]
    sets = [f"train.global_batch={global_batch}", f'train.out_dir="{out_dir}"', "train.checkpoint_every=0",
            "train.resume=false", "train.steps=" + str(a.steps), "logging.log_every=1", 'data.val_path=""']
    if a.micro_batch:
        sets.append(f"train.micro_batch={a.micro_batch}")
    for s in sets + a.set:
        cmd += ["--set", s]
    return cmd


def run_metrics(metrics_path, warmup):
    with open(metrics_path) as f:
        steps = [json.loads(line) for line in f if '"step_ms"' in line][warmup:]
    return {k: statistics.median(s[k] for s in steps) for k in ("step_ms", "comm_ms", "exposed_comm_ms", "mfu")}


def summarize(mode, runs, seq_len):
    base = min(runs, key=lambda r: r["world"])
    points = []
    for r in sorted(runs, key=lambda r: r["world"]):
        ideal = r["world"] / base["world"]
        point = dict(world=r["world"], tokens_per_s=r["tokens_per_s"], step_ms=r["step_ms"])
        if mode == "weak":
            point["efficiency"] = r["tokens_per_s"] / (ideal * base["tokens_per_s"])
        else:
            point["speedup"] = base["step_ms"] / r["step_ms"]
            point["efficiency"] = point["speedup"] / ideal
        points.append(point)
    return dict(bench="scaling", summary=True, mode=mode, base_world=base["world"], seq_len=seq_len, points=points)


def main():
    a = parse_args()
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    lead = a.node_rank == 0
    if lead:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    runs = {m: [] for m in a.mode}
    run_index = 0
    with tempfile.TemporaryDirectory() as scratch, open(a.out, "a") if lead else contextlib.nullcontext() as out:
        for mode in a.mode:
            for nodes in a.node_counts:
                for nproc in a.nproc_per_node:
                    world = nodes * nproc
                    global_batch = a.per_rank_batch * world if mode == "weak" else a.global_batch
                    index, run_index = run_index, run_index + 1
                    if a.node_rank >= nodes:
                        continue  # this node sits the run out
                    out_dir = os.path.join(scratch, f"{mode}_{index}")
                    cmd = launch_command(a, index, nodes, nproc, out_dir, global_batch)
                    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          errors="replace")
                    if proc.returncode != 0:
                        sys.exit(f"run {index} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")
                    if not lead:
                        continue
                    with open(os.path.join(out_dir, "config.pbtxt")) as f:
                        seq_len = next(int(line.split(":")[1]) for line in f if line.strip().startswith("seq_len:"))
                    m = run_metrics(os.path.join(out_dir, "metrics.jsonl"), a.warmup)
                    row = dict(bench="scaling", mode=mode, world=world, nodes=nodes, nproc_per_node=nproc,
                               global_batch=global_batch, per_rank_batch=global_batch // world, seq_len=seq_len,
                               tokens_per_s=global_batch * seq_len / (m["step_ms"] / 1e3), step_ms=m["step_ms"],
                               comm_ms=m["comm_ms"], exposed_comm_ms=m["exposed_comm_ms"], mfu=m["mfu"],
                               oversubscribed=nproc > os.cpu_count(), steps=a.steps, warmup=a.warmup,
                               config=a.config, overrides=a.set, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
                    runs[mode].append(row)
                    print(json.dumps(row), flush=True)
                    out.write(json.dumps(row) + "\n")
        if lead:
            for mode, mode_runs in runs.items():
                summary = summarize(mode, mode_runs, mode_runs[0]["seq_len"])
                print(json.dumps(summary), flush=True)
                out.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
