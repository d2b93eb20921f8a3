#!/usr/bin/python3
"""Elastic recovery: loom's in-place recovery against a restart from the last disk checkpoint.

One 4-rank job (configs/tiny.pbtxt's model, ZeRO-1, Brown data), run under loom-launch in
four ways per repetition:

  inplace      elastic.policy SHRINK: rank 2 is SIGKILLed from outside at a random point;
               the survivors rebuild the communicator, restore the lost shard from its
               buddy's in-memory snapshot and redo the step on 3 ranks.
  restart      elastic.policy NONE with --max-restarts 1 (torchrun's behaviour): the same
               kill makes the launcher stop every worker and start all 4 again, which
               resume from the last checkpoint (train.checkpoint_every) and recompute.
  elastic      elastic, no failure (for the snapshot overhead)
  plain        not elastic, no failure

For a kill at time t_k (this script's clock; metrics carry each step's commit time):
  mttr_s         t_k -> the first step committed after t_k
  progress_s     t_k -> the first commit of a step beyond the last one committed before t_k
                 (for the restart, this includes recomputing the steps since the checkpoint)
  steps_lost     steps committed before t_k that had to be computed again
The kill point is drawn from the repetition's seed: after step K (8..20) is in the metrics
file, plus a random fraction of a step. Snapshot overhead: median step_ms of `elastic`
over `plain` (steps after the warm-up), and the capture time on the training thread
(metrics snapshot_ms) as a share of the step. Prints one JSON object per run and a summary
with the medians over the repetitions.

    /usr/bin/python3 benchmarks/elastic_mttr.py [--build build] [--reps 3] [--steps 40]
        [--checkpoint-every 20] [--kinds inplace,restart,elastic,plain] [--out benchmarks/results/elastic_mttr.jsonl]
"""
import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 5


def metrics(out_dir):
    path = os.path.join(out_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return [], []
    steps, events = [], []
    with open(path) as f:
        for line in f:
            try:
                j = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            if "event" in j:
                events.append(j)
            elif "loss" in j:
                steps.append(j)
    return steps, events


def launch(args, out_dir, kind):
    sets = [
        "--set", f'train.out_dir="{out_dir}"',
        "--set", f"train.steps={args.steps}",
        "--set", "logging.log_every=1",
        "--set", "train.val_every=0",
        "--set", "data.val_path=\"\"",
        "--set", "parallel.zero1=true",
        "--set", f"train.checkpoint_every={args.checkpoint_every}",
    ]
    if kind in ("inplace", "elastic"):
        sets += ["--set", "elastic.policy=SHRINK", "--set", "elastic.min_ranks=2"]
    cmd = [os.path.join(ROOT, args.build, "bin", "loom-launch"), "--nproc-per-node", "4", "--grace-period", "5"]
    if kind == "restart":
        cmd += ["--max-restarts", "1"]
    cmd += ["--", os.path.join(ROOT, args.build, "bin", "loom-train"), "--config", os.path.join(ROOT, "configs", "tiny.pbtxt")]
    log = open(os.path.join(out_dir + ".log"), "w")
    return subprocess.Popen(cmd + sets, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), out_dir + ".log"


def worker_pid(log_path, rank, deadline):
    pattern = re.compile(r"rank %d \(pid (\d+)\)" % rank)
    while time.time() < deadline:
        with open(log_path) as f:
            m = pattern.search(f.read())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError("no pid for rank %d in %s" % (rank, log_path))


def run_with_kill(args, kind, seed, work):
    rng = random.Random(seed)
    kill_after = rng.randint(8, 20)
    fraction = rng.random()
    out_dir = os.path.join(work, f"{kind}_{seed}")
    proc, log_path = launch(args, out_dir, kind)
    deadline = time.time() + 600
    pid = worker_pid(log_path, 2, deadline)
    while time.time() < deadline:
        steps, _ = metrics(out_dir)
        if steps and steps[-1]["step"] >= kill_after:
            break
        time.sleep(0.005)
    time.sleep(fraction * steps[-1]["step_ms"] / 1000.0)
    before, _ = metrics(out_dir)
    t_kill = time.time()
    os.kill(pid, signal.SIGKILL)
    code = proc.wait(timeout=900)
    last_before = max(s["step"] for s in before)
    steps, events = metrics(out_dir)
    after = [s for s in steps if s["time"] > t_kill]
    first = min(after, key=lambda s: s["time"])
    beyond = min((s for s in after if s["step"] > last_before), key=lambda s: s["time"])
    restored = first["step"] - 1
    result = {
        "kind": kind, "seed": seed, "exit_code": code, "killed_after_step": last_before,
        "restored_step": restored, "steps_lost": last_before - restored,
        "mttr_s": first["time"] - t_kill, "progress_s": beyond["time"] - t_kill,
        "final_step": steps[-1]["step"], "world_after": steps[-1]["world"],
    }
    if events:
        result["rebuild_ms"] = events[0]["rebuild_ms"]
        result["restore_ms"] = events[0]["restore_ms"]
    return result


def run_clean(args, kind, seed, work):
    out_dir = os.path.join(work, f"{kind}_{seed}")
    proc, _ = launch(args, out_dir, kind)
    code = proc.wait(timeout=900)
    steps, _ = metrics(out_dir)
    timed = [s for s in steps if s["step"] > WARMUP]
    result = {"kind": kind, "seed": seed, "exit_code": code,
              "step_ms": statistics.median(s["step_ms"] for s in timed)}
    if kind == "elastic":
        result["snapshot_ms"] = statistics.median(s["snapshot_ms"] for s in timed)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--kinds", default="inplace,restart,elastic,plain",
                        help="which runs each repetition makes (comma-separated subset)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "elastic_mttr.jsonl"))
    args = parser.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="loom-mttr-") as work, open(args.out, "a") as out:
        for rep in range(args.reps):
            seed = 1000 + rep
            kinds = args.kinds.split(",")
            kinds = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]  # rotate the order between repetitions
            for kind in kinds:
                r = run_with_kill(args, kind, seed, work) if kind in ("inplace", "restart") else \
                    run_clean(args, kind, seed, work)
                results.append(r)
                print(json.dumps(r), flush=True)
                out.write(json.dumps(r) + "\n")

        def med(kind, key):
            values = [r[key] for r in results if r["kind"] == kind and key in r]
            return statistics.median(values) if values else None

        summary = {
            "summary": "elastic_mttr", "reps": args.reps, "steps": args.steps,
            "checkpoint_every": args.checkpoint_every,
            "inplace_mttr_s": med("inplace", "mttr_s"), "restart_mttr_s": med("restart", "mttr_s"),
            "inplace_progress_s": med("inplace", "progress_s"), "restart_progress_s": med("restart", "progress_s"),
            "inplace_steps_lost": med("inplace", "steps_lost"), "restart_steps_lost": med("restart", "steps_lost"),
            "inplace_rebuild_ms": med("inplace", "rebuild_ms"), "inplace_restore_ms": med("inplace", "restore_ms"),
            "elastic_step_ms": med("elastic", "step_ms"), "plain_step_ms": med("plain", "step_ms"),
            "snapshot_capture_ms": med("elastic", "snapshot_ms"),
        }
        if summary["inplace_mttr_s"] and summary["restart_mttr_s"]:
            summary["mttr_speedup"] = summary["restart_mttr_s"] / summary["inplace_mttr_s"]
            summary["progress_speedup"] = summary["restart_progress_s"] / summary["inplace_progress_s"]
        if summary["elastic_step_ms"] and summary["plain_step_ms"]:
            summary["snapshot_overhead_pct"] = 100.0 * (summary["elastic_step_ms"] / summary["plain_step_ms"] - 1.0)
            summary["capture_share_pct"] = 100.0 * summary["snapshot_capture_ms"] / summary["elastic_step_ms"]
        print(json.dumps(summary), flush=True)
        out.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
