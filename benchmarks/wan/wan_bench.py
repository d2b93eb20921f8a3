#!/usr/bin/python3
"""Low-communication training over an emulated WAN: sync DP, DiLoCo, streaming DiLoCo, NoLoCo, CO2.

Every rank runs in its own network namespace ("site"); the sites reach each other only
through veth links shaped with tc tbf at --rate in both directions (benchmarks/wan/netns.sh,
which this script runs to create and to remove them). One `loom-launch` per site, node rank
i in namespace loomwan<i>, rank 0's site hosts the rendezvous store at 10.77.0.1; Gloo is
pinned to the shaped interface (LOOM_GLOO_IFNAME=wan0), so every byte of every collective
crosses the WAN. Each variant is a list of `--set` overrides on top of one common job (same
model, data order, global batch, learning-rate schedule and token budget), so variants
differ only in how replicas communicate.

Per variant it records wall-clock, tokens/s, bytes per rank (loom's counters and the bytes
on each site's interface), the validation loss at fixed token counts with the wall-clock
time it was reached, and exposed communication as a share of step time. It appends JSON
lines to --out (one per variant, one link check, one summary with the issue's three targets)
and draws validation loss against wall-clock time to --plot.

    sudo /usr/bin/python3 benchmarks/wan/wan_bench.py [--rate 50mbit] [--nodes 4] [--steps 600]
        [--variants sync_dp,diloco,streaming_diloco,noloco,co2] [--sync-every 50] [--global-batch 16]
        [--set section.field=value ...] [--variant-set VARIANT:section.field=value ...] [--skip-invalid]
        [--log-every 1] [--link-check-only] [--keep-net] [--build build] [--config configs/tiny.pbtxt]
        [--out benchmarks/results/wan.jsonl] [--plot benchmarks/results/wan.png]
        [--runs-dir benchmarks/results/wan_runs]

See docs/benchmarks.md ("WAN: low-communication training").
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NETNS = os.path.join(HERE, "netns.sh")
LINKCHECK = os.path.join(HERE, "linkcheck.py")
PREFIX = "loomwan"
SUBNET = "10.77.0"
IFNAME = "wan0"

# The variants: name -> overrides on top of the common job. {H} is --sync-every.
# sync_dp sets nothing: outer.algorithm NONE (the default) is synchronous data parallelism.
VARIANTS = {
    "sync_dp": [],
    # DiLoCo: H inner steps, then the fp16 pseudo-gradient all-reduce and Nesterov outer step.
    "diloco": ["outer.algorithm=DILOCO", "outer.sync_every={H}", "outer.codec=FP16"],
    # Streaming DiLoCo: 2 fragments (halves of the parameters, cut at parameter boundaries), one synced every H/2
    # steps, its all-reduce overlapping tau=2 inner steps (tau < H/P; alpha 0, torchft's default).
    "streaming_diloco": ["outer.algorithm=DILOCO", "outer.sync_every={H}", "outer.codec=FP16",
                         "outer.fragments=2", "outer.fragment_delay=2"],
    # NoLoCo: no all-reduce; every H steps each replica averages with one peer (groups of 2).
    "noloco": ["outer.algorithm=NOLOCO", "outer.sync_every={H}", "outer.codec=FP16", "outer.group_size=2"],
    # CO2: the outer all-reduce of round k overlaps round k+1's inner steps (one round stale),
    # outer momentum clipped at 1.
    "co2": ["outer.algorithm=CO2", "outer.sync_every={H}", "outer.codec=FP16", "outer.clip=1.0"],
}

TARGET_SPEEDUP = 5.0        # DiLoCo tokens/s >= 5x sync DP
TARGET_VAL_REL = 0.03       # DiLoCo validation loss at equal tokens within 3% of sync DP
TARGET_CO2_EXPOSED = 5.0    # CO2 exposed communication <= 5% of step time


class Aborted(Exception):
    pass


def die(message):
    print(f"wan_bench: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def log(message):
    print(f"wan_bench: {message}", file=sys.stderr, flush=True)


def preflight(args):
    if os.geteuid() != 0:
        die("needs root: it creates network namespaces, veth links and tc qdiscs (run it with sudo)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            die(f"'{tool}' not found: install iproute2 (apt-get install iproute2)")
    for binary in ("loom-launch", "loom-train"):
        path = os.path.join(args.build, "bin", binary)
        if not os.access(path, os.X_OK):
            die(f"{path} not found: build it (cmake --build build --target loom-launch loom-train) or pass --build")
    for path in (args.config, args.train_data, args.val_data):
        if not os.path.exists(path):
            die(f"{path} not found (the Brown shards come from ./scripts/prepare_data.sh)")


def netns(*argv):
    subprocess.run([NETNS, *argv], check=True)


def site(i):
    return f"{PREFIX}{i}"


def address(i):
    return f"{SUBNET}.{i + 1}"


def wire_counters(nodes):
    """Bytes sent and received on each site's shaped interface (all traffic: TCP/IP headers included)."""
    out = []
    for i in range(nodes):
        values = {}
        for key in ("tx_bytes", "rx_bytes"):
            text = subprocess.run(["ip", "netns", "exec", site(i), "cat", f"/sys/class/net/{IFNAME}/statistics/{key}"],
                                  check=True, stdout=subprocess.PIPE, text=True).stdout
            values[key] = int(text)
        out.append(values)
    return out


def link_check(args):
    """Shaped TCP goodput from site 0 to the last site (linkcheck.py)."""
    last = args.nodes - 1
    proc = subprocess.run([sys.executable, LINKCHECK, "pair", "--from", site(0), "--to-ns", site(last),
                           "--to", address(last), "--port", "5201", "--seconds", str(args.link_check_seconds)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"link check failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    rate_mbit = parse_rate_mbit(args.rate)
    result["configured_mbit_s"] = rate_mbit
    result["goodput_over_rate"] = result["goodput_mbit_s"] / rate_mbit if rate_mbit else None
    return result


def parse_rate_mbit(rate):
    """tc's rate units (bit, kbit, mbit, gbit, bps=bytes/s ...) in Mbit/s; None when unknown."""
    units = {"gbit": 1e3, "mbit": 1.0, "kbit": 1e-3, "bit": 1e-6, "gbps": 8e3, "mbps": 8.0, "kbps": 8e-3, "bps": 8e-6}
    text = rate.lower()
    for unit, factor in units.items():
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * factor
            except ValueError:
                return None
    return None


class Job:
    """One variant: a loom-launch per site, started together, watched, stopped on every path out."""

    def __init__(self, args, name, overrides, port, run_dir):
        self.args, self.name, self.overrides, self.port, self.run_dir = args, name, overrides, port, run_dir
        self.procs = []
        self.logs = []

    def command(self, node):
        a = self.args
        cmd = ["ip", "netns", "exec", site(node), os.path.join(a.build, "bin", "loom-launch"),
               "--nnodes", str(a.nodes), "--node-rank", str(node), "--nproc-per-node", "1",
               "--rdzv-endpoint", f"{address(0)}:{self.port}", "--rdzv-id", f"wan-{self.name}-{self.port}",
               "--rdzv-timeout", "120", "--grace-period", "5", "--monitor-interval", "1", "--",
               os.path.join(a.build, "bin", "loom-train"), "--config", a.config]
        for o in self.overrides:
            cmd += ["--set", o]
        return cmd

    def start(self, env):
        for node in range(self.args.nodes):
            logf = open(os.path.join(self.run_dir, f"node{node}.log"), "w")
            self.logs.append(logf)
            self.procs.append(subprocess.Popen(self.command(node), cwd=ROOT, env=env, stdout=logf,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def poll(self):
        return [p.poll() for p in self.procs]

    def stop(self):
        """SIGTERM to each launcher (it stops its workers), then SIGKILL whatever is left in the sites."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        kill_site_processes(self.args.nodes)
        for f in self.logs:
            f.close()


def kill_site_processes(nodes):
    """Workers re-parented away from a killed launcher: every process left in our namespaces is ours."""
    for i in range(nodes):
        proc = subprocess.run(["ip", "netns", "pids", site(i)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
        for pid in proc.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def shown_path(path):
    """Relative to the repository when inside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def job_overrides(args, out_dir, overrides):
    """The common job, then --set, then the variant's own overrides (the last --set of a field wins)."""
    common = {"train.steps": args.steps, "train.global_batch": args.global_batch, "train.threads": 1,
              "train.out_dir": f'"{out_dir}"', "train.checkpoint_every": 0, "train.resume": "false",
              "train.val_every": args.val_every, "train.val_batches": args.val_batches,
              "data.train_path": f'"{args.train_data}"', "data.val_path": f'"{args.val_data}"',
              "logging.log_every": args.log_every, "parallel.backend": "GLOO"}
    return [f"{k}={v}" for k, v in common.items()] + args.set + overrides


def check_configs(args, variants, scratch):
    """Each variant's config, validated by loom-train itself before any network is built: with
    train.steps=0 appended, a valid config fails with exactly that one error and writes nothing.
    Returns {variant: error text} for the invalid ones. The torchrun variables give it the job's
    world size (rules such as NoLoCo's group_size depend on it); it exits before joining anyone."""
    invalid = {}
    expected = "train.steps (0) must be >= 1"
    for name, overrides in variants.items():
        cmd = [os.path.join(args.build, "bin", "loom-train"), "--config", args.config]
        for o in job_overrides(args, os.path.join(scratch, "check"), overrides) + ["train.steps=0"]:
            cmd += ["--set", o]
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE", RANK="0", LOCAL_RANK="0",
                                       WORLD_SIZE=str(args.nodes), LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT="1"),
                              timeout=120)
        errors = [line for line in proc.stdout.splitlines()
                  if line.strip() and "bad input: fix it" not in line and expected not in line]
        if proc.returncode != 2 or errors or expected not in proc.stdout:
            invalid[name] = "\n".join(errors) or proc.stdout[-2000:]
    return invalid


def run_variant(args, name, overrides, port, scratch, env):
    """Trains one variant; returns its JSON record."""
    out_dir = os.path.join(scratch, name)
    run_dir = os.path.join(args.runs_dir, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(out_dir)
    os.makedirs(run_dir)
    full = job_overrides(args, out_dir, overrides)
    job = Job(args, name, full, port, run_dir)
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    wire_before = wire_counters(args.nodes)
    lines = []  # (monotonic time observed, record)
    buf = ""
    offset = 0
    t_launch = time.monotonic()
    job.start(env)
    log(f"{name}: started {args.nodes} launchers ({' '.join(overrides) or 'sync DP'})")
    exit_codes = None
    try:
        last_report = t_launch
        failed_at = None
        while True:
            codes = job.poll()
            if os.path.exists(metrics_path):
                with open(metrics_path) as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                now = time.monotonic()
                buf += chunk
                *complete, buf = buf.split("\n")
                for line in complete:
                    if line.strip():
                        lines.append((now, json.loads(line)))
            if all(c is not None for c in codes):
                exit_codes = codes
                break
            if failed_at is None and any(c is not None and c != 0 for c in codes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > 30:
                # A node failed; its launcher told the others through the store, which had 30 s to stop.
                break
            now = time.monotonic()
            if now - t_launch > args.variant_timeout:
                log(f"{name}: still running after --variant-timeout {args.variant_timeout} s; stopping it")
                break
            if now - last_report > 30 and lines:
                step = next((r["step"] for _, r in reversed(lines) if "step_ms" in r), 0)
                log(f"{name}: step {step}/{args.steps}, {now - t_launch:.0f} s")
                last_report = now
            time.sleep(0.02)
    finally:
        t_end = time.monotonic()
        job.stop()
        for f in os.listdir(out_dir):
            if f.endswith(".jsonl") or f.endswith(".pbtxt"):
                shutil.copy(os.path.join(out_dir, f), run_dir)
        with open(os.path.join(run_dir, "timeline.jsonl"), "w") as f:  # when each metrics line appeared
            for t, r in lines:
                f.write(json.dumps(dict(t_s=t - t_launch, step=r.get("step"), step_ms=r.get("step_ms"),
                                        val=("val_loss" in r))) + "\n")
        shutil.rmtree(out_dir, ignore_errors=True)
    wire_after = wire_counters(args.nodes)
    exit_codes = exit_codes or job.poll()
    record = dict(bench="wan", variant=name, overrides=overrides, nodes=args.nodes, rate=args.rate,
                  steps=args.steps, global_batch=args.global_batch, sync_every=args.sync_every,
                  log_every=args.log_every, exit_codes=exit_codes,
                  wall_s=t_end - t_launch, run_dir=shown_path(run_dir))
    if any(c != 0 for c in exit_codes):
        record["error"] = f"a launcher exited with {exit_codes}; node 0's log ends:\n" + tail(
            os.path.join(run_dir, "node0.log"))
        log(f"{name}: FAILED {exit_codes}; logs in {run_dir}")
    record.update(summarize(args, lines, t_launch, wire_before, wire_after))
    return record


def last_step(steps):
    return steps[-1][1]["step"]


def summarize(args, lines, t_launch, wire_before, wire_after):
    steps = [(t, r) for t, r in lines if "step_ms" in r]
    vals = [(t, r) for t, r in lines if "val_loss" in r]
    if not steps:
        return {}
    seq_len = args.seq_len
    tokens_per_step = args.global_batch * seq_len
    # t0: training starts when the step-0 validation line appears (start-up, rendezvous and the
    # GEMM peak measurement are before it); without one, at the first step's start.
    step0 = next((t for t, r in vals if r["step"] == 0), None)
    t0 = step0 if step0 is not None else steps[0][0] - steps[0][1]["step_ms"] / 1e3
    t_last = steps[-1][0]
    tokens = steps[-1][1]["tokens"]
    train_wall = t_last - t0
    step_ms = [r["step_ms"] for _, r in steps]
    sum_step_s = sum(step_ms) / 1e3
    all_logged = [r["step"] for _, r in steps] == list(range(1, last_step(steps) + 1))
    exposed = sum(r["exposed_comm_ms"] for _, r in steps)
    comm = sum(r["comm_ms"] for _, r in steps)
    last = steps[-1][1]
    median_ms = statistics.median(step_ms)
    excess = sum(max(0.0, ms - median_ms) for ms in step_ms)
    wire = [{"tx_bytes": a["tx_bytes"] - b["tx_bytes"], "rx_bytes": a["rx_bytes"] - b["rx_bytes"]}
            for a, b in zip(wire_after, wire_before)]
    val_curve = [dict(step=r["step"], tokens=r["step"] * tokens_per_step, wall_s=max(0.0, t - t0),
                      val_loss=r["val_loss"]) for t, r in vals]
    return dict(
        seq_len=seq_len, tokens=tokens, steps_done=last["step"], world=last["world"],
        startup_s=t0 - t_launch, train_wall_s=train_wall,
        # Training throughput: tokens over the trainer's step times (forward, backward, every
        # collective of the step, inner and outer optimizer), which needs every step logged; else
        # over the wall-clock, which also holds validation and the scalar reductions between steps.
        tokens_per_s=tokens / sum_step_s if all_logged else tokens / train_wall,
        tokens_per_s_basis="steps" if all_logged else "wall",
        tokens_per_s_wall=tokens / train_wall if train_wall > 0 else None,
        logged_steps=len(steps), tokens_per_s_logged_steps=len(steps) * tokens_per_step / sum_step_s,
        median_tokens_per_s=tokens_per_step / (median_ms / 1e3),
        median_step_ms=median_ms, mean_step_ms=statistics.mean(step_ms), max_step_ms=max(step_ms),
        sum_step_s=sum_step_s, comm_ms_total=comm, exposed_comm_ms_total=exposed,
        exposed_comm_pct=100.0 * exposed / sum(step_ms), median_exposed_comm_ms=statistics.median(
            r["exposed_comm_ms"] for _, r in steps),
        step_excess_pct=100.0 * excess / sum(step_ms),
        bytes_tx_per_rank=last["bytes_tx"], bytes_rx_per_rank=last["bytes_rx"],
        bytes_tx_per_rank_per_step=last["bytes_tx"] / last["step"],
        wire_bytes=wire, wire_tx_bytes_mean=statistics.mean(w["tx_bytes"] for w in wire),
        wire_rx_bytes_mean=statistics.mean(w["rx_bytes"] for w in wire),
        final_loss=last["loss"], val=val_curve, final_val_loss=val_curve[-1]["val_loss"] if val_curve else None,
        cores=os.cpu_count(), threads_per_rank=1, oversubscribed=args.nodes > (os.cpu_count() or 1),
        loadavg_1m=os.getloadavg()[0])


def summary_record(args, records, link):
    by = {r["variant"]: r for r in records if "tokens_per_s" in r and "error" not in r}
    out = dict(bench="wan", summary=True, nodes=args.nodes, rate=args.rate, steps=args.steps,
               global_batch=args.global_batch, sync_every=args.sync_every,
               link_goodput_mbit_s=link.get("goodput_mbit_s") if link else None,
               variants_ok=sorted(by), variants_failed=sorted(r["variant"] for r in records if "error" in r))
    # Validation loss at equal tokens: every step where every successful variant validated.
    common = None
    for r in by.values():
        steps = {v["tokens"] for v in r["val"]}
        common = steps if common is None else common & steps
    out["val_loss_at_tokens"] = [
        dict(tokens=t, **{name: next(v["val_loss"] for v in r["val"] if v["tokens"] == t) for name, r in by.items()})
        for t in sorted(common or [])]
    out["tokens_per_s"] = {name: r["tokens_per_s"] for name, r in by.items()}
    out["tokens_per_s_wall"] = {name: r["tokens_per_s_wall"] for name, r in by.items()}
    out["train_wall_s"] = {name: r["train_wall_s"] for name, r in by.items()}
    out["exposed_comm_pct"] = {name: r["exposed_comm_pct"] for name, r in by.items()}
    out["bytes_tx_per_rank"] = {name: r["bytes_tx_per_rank"] for name, r in by.items()}
    targets = {}
    sync, diloco, co2 = by.get("sync_dp"), by.get("diloco"), by.get("co2")
    if sync and diloco:
        speedup = diloco["tokens_per_s"] / sync["tokens_per_s"]
        targets["diloco_speedup"] = dict(value=speedup, target=f">= {TARGET_SPEEDUP}", ok=speedup >= TARGET_SPEEDUP,
                                         basis=diloco["tokens_per_s_basis"],
                                         wall_based=diloco["tokens_per_s_wall"] / sync["tokens_per_s_wall"])
        if diloco["final_val_loss"] is not None and sync["final_val_loss"] is not None and (
                diloco["tokens"] == sync["tokens"]):
            rel = (diloco["final_val_loss"] - sync["final_val_loss"]) / sync["final_val_loss"]
            targets["diloco_val_loss_rel"] = dict(value=rel, tokens=sync["tokens"], target=f"<= {TARGET_VAL_REL}",
                                                  ok=rel <= TARGET_VAL_REL)
    if co2:
        pct = co2["exposed_comm_pct"]
        targets["co2_exposed_comm_pct"] = dict(value=pct, target=f"<= {TARGET_CO2_EXPOSED}",
                                               ok=pct <= TARGET_CO2_EXPOSED)
    out["targets"] = targets
    names = ("diloco_speedup", "diloco_val_loss_rel", "co2_exposed_comm_pct")
    out["all_targets_met"] = all(targets.get(n, {}).get("ok") for n in names) if all(n in targets for n in names) \
        else None
    out["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return out


def plot(args, records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log(f"matplotlib is missing, no plot ({path}): run scripts/install_bench_deps.sh")
        return False
    if not any(r.get("val") for r in records):
        return False
    fig, (ax_t, ax_k) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in records:
        if not r.get("val"):
            continue
        label = f"{r['variant']} ({r['tokens_per_s']:.0f} tok/s)"
        ax_t.plot([v["wall_s"] for v in r["val"]], [v["val_loss"] for v in r["val"]], marker="o", ms=3, label=label)
        ax_k.plot([v["tokens"] / 1e6 for v in r["val"]], [v["val_loss"] for v in r["val"]], marker="o", ms=3,
                  label=r["variant"])
    ax_t.set_xlabel("wall-clock time since training start (s)")
    ax_k.set_xlabel("tokens (M)")
    for ax in (ax_t, ax_k):
        ax.set_ylabel("validation loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"loom WAN benchmark: {args.nodes} sites, {args.rate} tbf links, global batch "
                 f"{args.global_batch}x{args.seq_len}, {args.steps} steps, H={args.sync_every}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def seq_len_of(config):
    """data.seq_len from the config text (128 if absent), for tokens per step."""
    seq = 128
    section = None
    with open(config) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line.endswith("{"):
                section = line[:-1].strip()
            elif line == "}":
                section = None
            elif section == "data" and line.startswith("seq_len:"):
                seq = int(line.split(":", 1)[1])
    return seq


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--config", default=os.path.join(ROOT, "configs/tiny.pbtxt"))
    p.add_argument("--train-data", default=os.path.join(ROOT, "data/brown/train.bin"))
    p.add_argument("--val-data", default=os.path.join(ROOT, "data/brown/val.bin"))
    p.add_argument("--nodes", type=int, default=4, help="sites = ranks (one rank per namespace)")
    p.add_argument("--rate", default="50mbit", help="tbf rate of every link, each direction (tc units)")
    p.add_argument("--burst", default="32kb", help="tbf burst (tc units; kb = KiB)")
    p.add_argument("--latency", default="50ms", help="tbf latency: the longest a packet may queue")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=600, help="optimizer steps of every variant (the token budget)")
    p.add_argument("--global-batch", type=int, default=16, help="sequences per step over all ranks")
    p.add_argument("--sync-every", type=int, default=50, help="H of the low-communication variants")
    p.add_argument("--val-every", type=int, default=None, help="steps between validations (default: --sync-every)")
    p.add_argument("--val-batches", type=int, default=8)
    p.add_argument("--log-every", type=int, default=1,
                   help="logging.log_every: 1 gives every step's times; with an outer optimizer each logged step "
                        "also costs two scalar all-reduces (the loss and the stop flag)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override for every variant (repeatable)")
    p.add_argument("--variant-set", action="append", default=[], metavar="VARIANT:SECTION.FIELD=VALUE",
                   help="extra override for one variant (repeatable); an unknown variant name adds a new variant")
    p.add_argument("--port", type=int, default=29610, help="rendezvous port of the first variant (+1 per variant)")
    p.add_argument("--variant-timeout", type=float, default=3600, help="seconds before a variant is stopped")
    p.add_argument("--link-check-seconds", type=float, default=3)
    p.add_argument("--skip-invalid", action="store_true",
                   help="run the variants whose config loom-train accepts, skip the others (default: stop)")
    p.add_argument("--link-check-only", action="store_true", help="build the WAN, measure one link, tear it down")
    p.add_argument("--keep-net", action="store_true", help="leave the namespaces up at the end (netns.sh down)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/wan.jsonl"))
    p.add_argument("--plot", default=os.path.join(ROOT, "benchmarks/results/wan.png"))
    p.add_argument("--runs-dir", default=os.path.join(ROOT, "benchmarks/results/wan_runs"),
                   help="per variant: metrics.jsonl, config.pbtxt and each launcher's log")
    args = p.parse_args()
    for attr in ("build", "config", "train_data", "val_data", "out", "plot", "runs_dir"):
        setattr(args, attr, os.path.abspath(getattr(args, attr)))
    args.val_every = args.val_every or args.sync_every
    args.seq_len = seq_len_of(args.config)
    if args.nodes < 2:
        die("--nodes must be at least 2")
    if args.global_batch % args.nodes:
        die(f"--global-batch ({args.global_batch}) must be a multiple of --nodes ({args.nodes})")
    variants = {}
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            die(f"unknown variant '{name}'; known: {', '.join(VARIANTS)} (add one with --variant-set NAME:...)")
        variants[name] = [o.replace("{H}", str(args.sync_every)) for o in VARIANTS[name]]
    for item in args.variant_set:
        name, sep, override = item.partition(":")
        if not sep or "=" not in override:
            die(f"--variant-set wants VARIANT:section.field=value, got '{item}'")
        variants.setdefault(name, []).append(override)
    preflight(args)
    with tempfile.TemporaryDirectory(prefix="loomwancheck") as scratch:
        invalid = {} if args.link_check_only else check_configs(args, variants, scratch)
    if invalid:
        detail = "\n".join(f"  {name}: {text}" for name, text in invalid.items())
        if not args.skip_invalid:
            hint = ("the outer optimizer settings need a loom-train whose config has the outer {...} section; "
                    if 'section "outer"' in detail else "")
            die(f"loom-train rejects the config of variant(s) {', '.join(invalid)}:\n{detail}\n"
                f"({hint}run fewer --variants, or pass --skip-invalid to run the others)")
        log(f"skipping variant(s) {', '.join(invalid)} (--skip-invalid):\n{detail}")
        variants = {k: v for k, v in variants.items() if k not in invalid}
        if not variants:
            die("no variant left to run")

    # Tear the network down on every way out: normal return, exceptions, SIGINT/SIGTERM/SIGHUP.
    def on_signal(signum, _frame):
        raise Aborted(f"received signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def teardown():
        if not args.keep_net:
            kill_site_processes(args.nodes)
            subprocess.run([NETNS, "down"], check=False)

    atexit.register(teardown)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    os.makedirs(args.runs_dir, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "TORCHELASTIC_", "LOOM_GLOO", "GLOO_"))}
    env.update(LOOM_GLOO_IFNAME=IFNAME, OMP_NUM_THREADS="1")
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    records = []
    link = None
    try:
        with open(args.out, "a") as out, tempfile.TemporaryDirectory(prefix="loomwan") as scratch:
            def emit(record):
                record.setdefault("started", started)
                print(json.dumps(record), flush=True)
                out.write(json.dumps(record) + "\n")
                out.flush()

            netns("up", str(args.nodes), args.rate, args.burst, args.latency)
            link = link_check(args)
            emit(dict(bench="wan", link_check=True, nodes=args.nodes, rate=args.rate, burst=args.burst,
                      latency=args.latency, **link))
            if args.link_check_only:
                return 0
            for index, (name, overrides) in enumerate(variants.items()):
                record = run_variant(args, name, overrides, args.port + index, scratch, env)
                records.append(record)
                emit(record)
            emit(summary_record(args, records, link))
        if plot(args, records, args.plot):
            log(f"plot: {args.plot}")
    except Aborted as e:
        log(f"stopped: {e}")
        return 130
    finally:
        teardown()
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
