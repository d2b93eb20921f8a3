#!/usr/bin/python3
"""Tensor parallelism on the CPU: loom-train with parallel.tp 2, token splitting on and off.

Both runs train the same model on the same data under loom-launch with 2 ranks forming one
tensor-parallel pair (parallel.tp 2, sequence parallel), one after the other, several
repetitions rotating which goes first. Warm-up steps are excluded. Per run:

    tokens_per_s     global tokens / median step time
    comm_ms          median per step of the time the pair's communication jobs ran (the
                     CommStream: reduce-scatter, add+RMSNorm, all-gather and their backward)
    exposed_comm_ms  median per step of the time compute waited for them; exposed_forward_ms and
                     exposed_backward_ms the tensor-parallel part of it in the forward and backward passes
    exposed_pct      exposed_comm_ms / step_ms, in %

`split` runs micro-batches of >= parallel.token_split_min_tokens tokens as two halves whose
communication overlaps the other half's compute (TokenWeave's schedule); `unsplit` sets it
to 0; `tp1` is the baseline on the same cores: one rank, no tensor parallelism, two intra-op
threads. Prints one JSON object per run and a summary with the medians, the split/unsplit
throughput ratio and split/tp1.

`--mesh ring`: 4 ranks as two tensor-parallel pairs in one context-parallel group (document mode,
context.mode STATIC, capacity 1024): every step's two 2048-token documents each span both pairs,
so attention is ring attention and each rank holds 1024 tokens of a row; `split` runs those rows
as token halves (the second halves go round the ring again), `unsplit` whole. No tp1 baseline.

    /usr/bin/python3 benchmarks/tp_bench.py [--build build] [--data data/brown/train.bin]
        [--mesh tp|ring] [--reps 3] [--steps 12] [--warmup 3] [--out benchmarks/results/tp_bench.jsonl]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = dict(vocab_size=257, dim=256, layers=4, heads=8, kv_heads=4, ffn_dim=768, max_seq_len=256)


def run(args, mode, out_dir):
    tp = 1 if mode == "tp1" else 2
    ranks = 4 if args.mesh == "ring" else tp
    sets = {"train.steps": args.steps, "train.threads": 3 - tp, "train.out_dir": f'"{out_dir}"',
            "train.checkpoint_every": 0, "train.resume": "false", "train.global_batch": 16, "train.micro_batch": 16,
            "data.train_path": f'"{args.data}"', "data.val_path": '""', "data.seq_len": 256,
            "data.order": "SEQUENTIAL", "logging.log_every": 1, "logging.peak_tflops": 1,
            "parallel.tp": tp, "parallel.sequence_parallel": "true",
            "parallel.token_split_min_tokens": 1024 if mode == "split" else 0}
    sets.update({f"model.{k}": v for k, v in MODEL.items()})
    if args.mesh == "ring":
        sets.update({"train.threads": 1, "model.max_seq_len": 2048, "context.mode": "STATIC", "context.cp": 2,
                     "context.capacity": 1024, "context.tokens_per_step": 4096, "context.median_tokens": 2048,
                     "context.sigma": 0, "context.min_tokens": 16, "context.max_tokens": 2048})
    cmd = [os.path.join(args.build, "bin", "loom-launch"), "--nproc-per-node", str(ranks), "--",
           os.path.join(args.build, "bin", "loom-train"), "--config", os.path.join(ROOT, "configs/tiny.pbtxt")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"loom-train failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f if '"step_ms"' in line][args.warmup:]
    step_ms = statistics.median(s["step_ms"] for s in steps)
    tokens = steps[0]["tokens"] // (args.warmup + 1)
    comm = statistics.median(s["comm_ms"] for s in steps)
    exposed = statistics.median(s["exposed_comm_ms"] for s in steps)
    forward = statistics.median(s.get("tp_exposed_forward_ms", 0) for s in steps)
    backward = statistics.median(s.get("tp_exposed_ms", 0) - s.get("tp_exposed_forward_ms", 0) for s in steps)
    return {"bench": "tp", "mesh": args.mesh, "mode": mode, "tp": tp, "ranks": ranks, "tokens_per_step": tokens,
            "step_ms": round(step_ms, 2), "tokens_per_s": round(tokens / step_ms * 1e3, 1), "comm_ms": round(comm, 2),
            "exposed_comm_ms": round(exposed, 2), "exposed_forward_ms": round(forward, 2),
            "exposed_backward_ms": round(backward, 2), "exposed_pct": round(100 * exposed / step_ms, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--data", default=os.path.join(ROOT, "data/brown/train.bin"))
    parser.add_argument("--mesh", choices=["tp", "ring"], default="tp")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/tp_bench.jsonl"))
    args = parser.parse_args()
    if not os.path.exists(args.data):
        sys.exit(f"{args.data} is missing: run scripts/prepare_data.sh first")
    modes = ["split", "unsplit"] if args.mesh == "ring" else ["split", "unsplit", "tp1"]
    results = {mode: [] for mode in modes}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]
            for mode in order:
                r = run(args, mode, os.path.join(tmp, f"{rep}_{mode}"))
                r["rep"] = rep
                results[r["mode"]].append(r)
                lines.append(json.dumps(r))
                print(lines[-1], flush=True)
    summary = {"bench": "tp_summary", "mesh": args.mesh, "reps": args.reps}
    for mode, runs in results.items():
        for key in ("tokens_per_s", "exposed_pct", "comm_ms", "exposed_comm_ms", "exposed_forward_ms",
                    "exposed_backward_ms"):
            summary[f"{mode}_{key}"] = statistics.median(r[key] for r in runs)
    summary["split_over_unsplit"] = round(summary["split_tokens_per_s"] / summary["unsplit_tokens_per_s"], 3)
    if "tp1" in results:
        summary["split_over_tp1"] = round(summary["split_tokens_per_s"] / summary["tp1_tokens_per_s"], 3)
    lines.append(json.dumps(summary))
    print(lines[-1])
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
