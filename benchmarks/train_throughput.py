#!/usr/bin/python3
"""Single-rank training throughput: loom-train against the same model in PyTorch eager.

Both run configs/tiny.pbtxt's model, batch and sequence length on the same token shard,
in the same sample order (sequential), with the same number of intra-op threads, one after
the other, several repetitions rotating which goes first. Warm-up steps are excluded; each
run's throughput is global tokens / median step time.

PyTorch runs twice per repetition: as users start it (`torch`: libgomp's default wait
policy) and with OMP_WAIT_POLICY=PASSIVE (`torch_passive`), the thread environment
loom-train sets for itself (runtime/core/thread_env.h). Prints one JSON object per
repetition and a summary with the median loom/PyTorch ratio against each, peak RSS and
the BLAS library each process loaded.

    /usr/bin/python3 benchmarks/train_throughput.py [--build build] [--data data/brown/train.bin]
        [--reps 5] [--steps 30] [--warmup 5] [--threads 2] [--out benchmarks/results/train_throughput.jsonl]
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
TINY = dict(vocab_size=257, dim=128, layers=4, heads=4, kv_heads=2, ffn_dim=384, max_seq_len=1024,
            seq_len=128, global_batch=16, micro_batch=16)


def run_child(cmd, env):
    """Runs cmd, returns (stdout+stderr text, peak RSS bytes of that child alone)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark child failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n{text}")
    return text, usage.ru_maxrss * 1024


def loom_run(args, env, out_dir):
    sets = {"train.steps": args.steps, "train.threads": args.threads, "train.out_dir": f'"{out_dir}"',
            "train.checkpoint_every": 0, "train.resume": "false", "data.train_path": f'"{args.data}"',
            "data.val_path": '""', "data.order": "SEQUENTIAL", "logging.log_every": 1}
    cmd = [os.path.join(args.build, "bin", "loom-train"), "--config", os.path.join(ROOT, "configs/tiny.pbtxt")]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    text, rss = run_child(cmd, env)
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f if '"step_ms"' in line]
    blas = next((line.split("BLAS ", 1)[1].strip() for line in text.splitlines() if "BLAS " in line), "?")
    return [s["step_ms"] for s in steps], rss, blas


def torch_run(args, env, passive):
    if passive:
        env = dict(env, OMP_WAIT_POLICY="PASSIVE")
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "scripts/python/torch_llama.py"), "--data", args.data,
           "--steps", str(args.steps), "--threads", str(args.threads)]
    for key, value in TINY.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    text, rss = run_child(cmd, env)
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    summary = next(r for r in records if r.get("summary"))
    return [r["step_ms"] for r in records if "step_ms" in r], rss, ",".join(summary["blas"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--data", default=os.path.join(ROOT, "data/brown/train.bin"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="leading steps excluded from each run")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/train_throughput.jsonl"))
    args = p.parse_args()
    args.data = os.path.abspath(args.data)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "LOOM_SET_OMP_WAIT_POLICY")}
    env["OMP_NUM_THREADS"] = str(args.threads)
    tokens_per_step = TINY["global_batch"] * TINY["seq_len"]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    kinds = ["loom", "torch", "torch_passive"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(args.reps):
            result = {}
            for which in kinds[rep % 3:] + kinds[:rep % 3]:
                if which == "loom":
                    times, rss, blas = loom_run(args, env, os.path.join(scratch, f"loom{rep}"))
                else:
                    times, rss, blas = torch_run(args, env, passive=which == "torch_passive")
                median_ms = statistics.median(times[args.warmup:])
                result[which] = dict(median_step_ms=median_ms, tokens_per_s=tokens_per_step / (median_ms / 1e3),
                                     peak_rss_mib=rss / 2**20, blas=blas)
            row = dict(bench="train_throughput", rep=rep, config="configs/tiny.pbtxt", threads=args.threads,
                       steps=args.steps, warmup=args.warmup, **result,
                       ratio_loom_over_torch=result["loom"]["tokens_per_s"] / result["torch"]["tokens_per_s"],
                       ratio_loom_over_torch_passive=result["loom"]["tokens_per_s"]
                       / result["torch_passive"]["tokens_per_s"],
                       time=time.strftime("%Y-%m-%dT%H:%M:%S"))
            rows.append(row)
            print(json.dumps(row), flush=True)

    def median_of(key, field=None):
        return statistics.median(r[key][field] if field else r[key] for r in rows)

    summary = dict(bench="train_throughput", summary=True, reps=args.reps, threads=args.threads,
                   median_ratio_loom_over_torch=median_of("ratio_loom_over_torch"),
                   median_ratio_loom_over_torch_passive=median_of("ratio_loom_over_torch_passive"),
                   ratios=[r["ratio_loom_over_torch"] for r in rows],
                   ratios_passive=[r["ratio_loom_over_torch_passive"] for r in rows],
                   **{f"{k}_tokens_per_s": median_of(k, "tokens_per_s") for k in kinds},
                   **{f"{k}_peak_rss_mib": max(r[k]["peak_rss_mib"] for r in rows) for k in kinds},
                   loom_blas=rows[-1]["loom"]["blas"], torch_blas=rows[-1]["torch"]["blas"])
    print(json.dumps(summary), flush=True)
    with open(args.out, "a") as f:
        for row in rows + [summary]:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
