#!/usr/bin/python3
"""Data-parallel training throughput: loom against PyTorch DDP (Gloo) for 1, 2 and 4 ranks.

Both train configs/tiny.pbtxt's model with the same per-rank batch (16 sequences x 128
tokens, so the global batch is 16 N), the same Brown token shard read as sequential
windows (rank r takes its share of every step, as loom's loader does), the same AdamW,
schedule and clipping, loss divided by the global token count. Every rank gets
max(1, cores / N) intra-op threads (OMP_NUM_THREADS, train.threads, torch.set_num_threads).

  loom       loom-launch --nproc-per-node N -- loom-train --config configs/tiny.pbtxt --set ...
             (loom-launch gives its workers OMP_WAIT_POLICY=PASSIVE, see runtime/core/thread_env.h)
  ddp        torchrun --standalone --nproc_per_node N scripts/python/torch_ddp_llama.py ...
             (as users start it: libgomp's default wait policy)
  ddp_passive  the same with OMP_WAIT_POLICY=PASSIVE, loom's thread environment

Each repetition runs every N, and within it the three kinds in an order rotated by the
repetition. Warm-up steps are excluded; a run's throughput is global tokens / median step
time (rank 0's clock). Prints one JSON object per run and one summary per N: median
tokens/s of each kind over the repetitions, the median loom/DDP ratios, exposed
communication per step (loom: metrics.jsonl exposed_comm_ms; DDP: time backward() ran
after the last parameter gradient, see torch_ddp_llama.py), and weak-scaling efficiency
E(N) = tokens_per_s(N) / (N * tokens_per_s(1)). The ranks of one run share this machine's
cores, so with C cores E(N) cannot exceed about 1/N here (E(N) * N, `same_cores_efficiency`,
is the fraction of the one-rank throughput kept), and N > C is oversubscribed.

    /usr/bin/python3 benchmarks/dp_throughput.py [--build build] [--data data/brown/train.bin]
        [--ranks 1,2,4] [--reps 3] [--steps 20] [--warmup 5] [--out benchmarks/results/dp_throughput.jsonl]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(vocab_size=257, dim=128, layers=4, heads=4, kv_heads=2, ffn_dim=384, max_seq_len=1024, seq_len=128)
PER_RANK_BATCH = 16
KINDS = ["loom", "ddp", "ddp_passive"]

# torch.distributed.run as `python -m torch.distributed.run`, with one fix: Debian's
# torch 1.13 on Python 3.11 cannot parse its own default `--redirects 0` (iterating an
# IntFlag no longer yields the zero member, so Std.from_str("0") returns None and the
# agent crashes in to_map). The fix only replaces that None with the member itself.
TORCHRUN = """
import sys
from torch.distributed.elastic.multiprocessing import api
_from_str = api.Std.from_str.__func__
def _from_str_fixed(cls, value):
    std = _from_str(cls, value)
    return cls(int(value)) if std is None else std
api.Std.from_str = classmethod(_from_str_fixed)
from torch.distributed.run import main
sys.exit(main())
"""


def run_child(cmd, env):
    """Runs cmd; returns its stdout and stderr text; exits with both when it fails."""
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    if proc.returncode != 0:
        sys.exit(f"benchmark child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")
    return proc.stdout


def json_lines(text):
    """JSON objects printed by rank 0, with or without a launcher's "[rank 0]: " prefix."""
    records = []
    for line in text.splitlines():
        if line.startswith("[rank"):
            line = line.split(": ", 1)[-1]
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def loom_run(args, ranks, threads, env, out_dir):
    sets = {"train.steps": args.steps, "train.threads": threads, "train.global_batch": PER_RANK_BATCH * ranks,
            "train.micro_batch": PER_RANK_BATCH, "train.out_dir": f'"{out_dir}"', "train.checkpoint_every": 0,
            "train.resume": "false", "data.train_path": f'"{args.data}"', "data.val_path": '""',
            "data.order": "SEQUENTIAL", "logging.log_every": 1, "parallel.backend": "GLOO"}
    cmd = [os.path.join(args.build, "bin", "loom-launch"), "--nproc-per-node", str(ranks), "--",
           os.path.join(args.build, "bin", "loom-train"), "--config", os.path.join(ROOT, "configs/tiny.pbtxt")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    run_child(cmd, env)
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f if '"step_ms"' in line]
    return {k: [s[k] for s in steps] for k in ("step_ms", "exposed_comm_ms", "comm_ms", "mfu")}


def ddp_run(args, ranks, threads, env, passive):
    env = dict(env, OMP_WAIT_POLICY="PASSIVE") if passive else env
    cmd = ["/usr/bin/python3", "-c", TORCHRUN, "--standalone", "--nproc_per_node", str(ranks),
           os.path.join(ROOT, "scripts/python/torch_ddp_llama.py"), "--data", args.data, "--steps", str(args.steps),
           "--threads", str(threads), "--global-batch", str(PER_RANK_BATCH * ranks),
           "--micro-batch", str(PER_RANK_BATCH)]
    for key, value in TINY.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    steps = [r for r in json_lines(run_child(cmd, env)) if "step_ms" in r]
    return {k: [s[k] for s in steps] for k in ("step_ms", "exposed_comm_ms")}


def summarize_run(series, warmup, tokens_per_step):
    kept = {k: v[warmup:] for k, v in series.items()}
    median_ms = statistics.median(kept["step_ms"])
    out = dict(median_step_ms=median_ms, tokens_per_s=tokens_per_step / (median_ms / 1e3),
               median_exposed_comm_ms=statistics.median(kept["exposed_comm_ms"]))
    if "comm_ms" in kept:
        out.update(median_comm_ms=statistics.median(kept["comm_ms"]), median_mfu=statistics.median(kept["mfu"]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--data", default=os.path.join(ROOT, "data/brown/train.bin"))
    p.add_argument("--ranks", default="1,2,4", help="comma-separated world sizes")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5, help="leading steps excluded from each run")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/dp_throughput.jsonl"))
    args = p.parse_args()
    args.data = os.path.abspath(args.data)
    if args.steps <= args.warmup:
        sys.exit(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
    world_sizes = [int(n) for n in args.ranks.split(",")]
    cores = os.cpu_count()
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "LOOM_SET_OMP_WAIT_POLICY")}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    rows = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    with tempfile.TemporaryDirectory() as scratch, open(args.out, "a") as out:
        def emit(record):
            print(json.dumps(record), flush=True)
            out.write(json.dumps(record) + "\n")

        for rep in range(args.reps):
            for ranks in world_sizes:
                threads = max(1, cores // ranks)
                env = dict(base_env, OMP_NUM_THREADS=str(threads))
                tokens_per_step = PER_RANK_BATCH * ranks * TINY["seq_len"]
                for kind in KINDS[rep % 3:] + KINDS[:rep % 3]:
                    if kind == "loom":
                        series = loom_run(args, ranks, threads, env, os.path.join(scratch, f"loom_{rep}_{ranks}"))
                    else:
                        series = ddp_run(args, ranks, threads, env, passive=kind == "ddp_passive")
                    row = dict(bench="dp_throughput", rep=rep, kind=kind, ranks=ranks, threads_per_rank=threads,
                               cores=cores, oversubscribed=ranks * threads > cores, per_rank_batch=PER_RANK_BATCH,
                               global_batch=PER_RANK_BATCH * ranks, seq_len=TINY["seq_len"], steps=args.steps,
                               warmup=args.warmup, **summarize_run(series, args.warmup, tokens_per_step),
                               loadavg_1m=os.getloadavg()[0], time=time.strftime("%Y-%m-%dT%H:%M:%S"))
                    rows.append(row)
                    emit(row)

        def median_of(kind, ranks, key):
            return statistics.median(r[key] for r in rows if r["kind"] == kind and r["ranks"] == ranks)

        def ratios(ranks, other):
            by_rep = {}
            for r in rows:
                if r["ranks"] == ranks:
                    by_rep.setdefault(r["rep"], {})[r["kind"]] = r["tokens_per_s"]
            return [v["loom"] / v[other] for v in by_rep.values()]

        base = world_sizes[0]
        for ranks in world_sizes:
            tps = {kind: median_of(kind, ranks, "tokens_per_s") for kind in KINDS}
            threads = max(1, cores // ranks)
            summary = dict(bench="dp_throughput", summary=True, ranks=ranks, threads_per_rank=threads, cores=cores,
                           reps=args.reps, started=started,
                           **{f"{kind}_tokens_per_s": tps[kind] for kind in KINDS},
                           ratio_loom_over_ddp=statistics.median(ratios(ranks, "ddp")),
                           ratio_loom_over_ddp_passive=statistics.median(ratios(ranks, "ddp_passive")),
                           ratios_loom_over_ddp=ratios(ranks, "ddp"),
                           ratios_loom_over_ddp_passive=ratios(ranks, "ddp_passive"),
                           loom_exposed_comm_ms=median_of("loom", ranks, "median_exposed_comm_ms"),
                           loom_comm_ms=median_of("loom", ranks, "median_comm_ms"),
                           ddp_exposed_comm_ms=median_of("ddp", ranks, "median_exposed_comm_ms"),
                           ddp_passive_exposed_comm_ms=median_of("ddp_passive", ranks, "median_exposed_comm_ms"),
                           loom_mfu=median_of("loom", ranks, "median_mfu"))
            for kind in KINDS:
                tps_base = median_of(kind, base, "tokens_per_s")
                efficiency = (tps[kind] / (ranks / base * tps_base))
                summary[f"{kind}_weak_scaling_efficiency"] = efficiency
                summary[f"{kind}_same_cores_efficiency"] = efficiency * ranks / base
            if ranks * threads > cores:
                summary["note"] = (f"oversubscribed: {ranks} ranks x {threads} thread(s) on {cores} cores; "
                                   "timings include the kernel's time slicing")
            elif ranks > 1:
                summary["note"] = (f"{ranks} ranks share {cores} cores with the 1-rank run, so E(N) <= ~1/N here; "
                                   "same_cores_efficiency = N * E(N) is the throughput kept")
            emit(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
