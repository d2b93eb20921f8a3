#!/usr/bin/python3
"""HDP against a static dp x cp mesh, and against pure data parallelism (docs/benchmarks.md "HDP").

4 workers under loom-launch (benchmarks/hdp/hdp_bench.cpp), the same model and the same
document stream (train/data/document_sampler.h: lognormal lengths cut from the Brown shard)
per comparison, the modes interleaved over the repetitions:

  long-tail mix   hdp vs static (a dp x cp mesh sized for the longest document)
                  median --median tokens, sigma --sigma, up to --max-tokens, capacity --capacity
  heavy-tail mix  the same with sigma --heavy-sigma: most tokens in documents longer than C
  short mix       hdp vs dp (every document fits one rank: lengths up to the capacity)

Reported per mode: median tokens/s over the repetitions (each repetition's own median over its
timed steps), the measured imbalance of the ranks' compute time (max/mean), the planner's
estimated imbalance, and the bytes all ranks sent per step; then the ratios. JSON lines to
stdout and --out.

    /usr/bin/python3 benchmarks/hdp_bench.py [--build build] [--reps 3] [--steps 4]
        [--median 256] [--sigma 1.0] [--heavy-sigma 1.5] [--max-tokens 4096] [--capacity 1024]
        [--tokens-per-step 16384]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_mode(args, mode, mix):
    cmd = [os.path.join(ROOT, args.build, "bin", "loom-launch"), "--nproc-per-node", "4", "--",
           os.path.join(ROOT, args.build, "bin", "hdp_bench"), "--mode", mode,
           "--data", os.path.join(ROOT, "data", "brown", "train.bin"),
           "--steps", str(args.steps), "--warmup", "1", "--capacity", str(args.capacity),
           "--tokens-per-step", str(args.tokens_per_step), "--seed", str(args.seed)]
    cmd += mix
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{out.stdout}\n{out.stderr}")
    for line in out.stdout.splitlines():
        start = line.find('{"')
        if start >= 0 and '"summary"' in line:
            return json.loads(line[start:])
    raise RuntimeError(f"{mode}: no summary line in\n{out.stdout}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--median", type=float, default=256)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--heavy-sigma", type=float, default=1.5)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--capacity", type=int, default=1024)
    parser.add_argument("--tokens-per-step", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "hdp_bench.jsonl"))
    args = parser.parse_args()
    if not os.path.exists(os.path.join(ROOT, "data", "brown", "train.bin")):
        subprocess.run([os.path.join(ROOT, "scripts", "prepare_data.sh")], cwd=ROOT, check=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    long_tail = ["--median", str(args.median), "--sigma", str(args.sigma), "--max-tokens", str(args.max_tokens)]
    heavy_tail = ["--median", str(args.median), "--sigma", str(args.heavy_sigma), "--max-tokens", str(args.max_tokens)]
    short = ["--median", str(args.median), "--sigma", str(args.sigma), "--max-tokens", str(args.capacity)]
    comparisons = [("long_tail", long_tail, ["hdp", "static"]), ("heavy_tail", heavy_tail, ["hdp", "static"]),
                   ("short", short, ["hdp", "dp"])]
    results = []
    with open(args.out, "a") as out:
        for rep in range(args.reps):
            for name, mix, modes in comparisons:
                for mode in modes[rep % 2:] + modes[:rep % 2]:  # alternate the order between repetitions
                    r = run_mode(args, mode, mix)
                    r.update({"mix": name, "rep": rep})
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    out.write(json.dumps(r) + "\n")

        def med(mix, mode, key):
            return statistics.median(r[key] for r in results if r["mix"] == mix and r["mode"] == mode)

        summary = {"summary": "hdp_bench", "reps": args.reps, "steps": args.steps, "median": args.median,
                   "sigma": args.sigma, "heavy_sigma": args.heavy_sigma, "max_tokens": args.max_tokens, "capacity": args.capacity,
                   "tokens_per_step": args.tokens_per_step}
        for mix, _, modes in comparisons:
            for mode in modes:
                for key in ("tokens_per_s", "busy_imbalance", "planned_imbalance", "bytes_sent_per_step"):
                    summary[f"{mix}_{mode}_{key}"] = med(mix, mode, key)
        summary["hdp_over_static"] = summary["long_tail_hdp_tokens_per_s"] / summary["long_tail_static_tokens_per_s"]
        summary["heavy_hdp_over_static"] = (summary["heavy_tail_hdp_tokens_per_s"] /
                                            summary["heavy_tail_static_tokens_per_s"])
        summary["hdp_over_dp"] = summary["short_hdp_tokens_per_s"] / summary["short_dp_tokens_per_s"]
        summary["bytes_static_over_hdp"] = (summary["long_tail_static_bytes_sent_per_step"] /
                                            summary["long_tail_hdp_bytes_sent_per_step"])
        print(json.dumps(summary), flush=True)
        out.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
