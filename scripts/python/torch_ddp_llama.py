#!/usr/bin/python3
"""The loom reference model (torch_llama.py) trained data-parallel with PyTorch DDP over Gloo.

The PyTorch baseline of benchmarks/dp_throughput.py. Run one process per rank with
torchrun; each rank trains its share of every global batch the way loom-train does
(docs/data.md): step s reads global samples [s*B, (s+1)*B) as sequential windows, rank r
the B/W samples from s*B + r*B/W, in micro-batches of --micro-batch. Same model, AdamW,
schedule and clipping as torch_llama.py (imported from it). DDP averages gradients over
ranks, so each rank's loss is divided by its own token count: the average is then the
gradient of the global token-mean loss, loom's divisor.

    /usr/bin/python3 -m torch.distributed.run --standalone --nproc_per_node 2 \\
        scripts/python/torch_ddp_llama.py --data data/brown/train.bin --global-batch 32 --micro-batch 16 \\
        [--threads 1] [--bucket-cap-mb 25] [model/train flags of torch_llama.py]

Rank 0 prints one JSON object per step: {"step", "loss", "grad_norm", "step_ms", "tokens_per_s",
"exposed_comm_ms"}, then a summary object. exposed_comm_ms is the time backward() kept
running after the last parameter gradient was computed: DDP waits there for its bucket
all-reduces and copies the results back, so it is the communication compute did not hide.
"""
import argparse
import contextlib
import json
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_llama as ref  # noqa: E402  (the same model, schedule and data reader)


class LastGradClock:
    """Records when the last parameter gradient of a backward pass was computed."""

    def __init__(self, params):
        self.last = 0.0
        for p in params:
            p.register_hook(self._tick)

    def _tick(self, grad):
        self.last = time.perf_counter()
        return grad


def parse_args(argv):
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP bucket size (DDP's default: 25)")
    mine, rest = own.parse_known_args(argv)
    a = ref.parse_args(rest)
    a.bucket_cap_mb = mine.bucket_cap_mb
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if a.global_batch % world:
        sys.exit(f"--global-batch {a.global_batch} is not divisible by the world size {world}")
    per_rank = a.global_batch // world
    micro = min(a.micro_batch, per_rank)
    if per_rank % micro:
        sys.exit(f"{per_rank} samples per rank are not divisible by --micro-batch {micro}")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = ref.Llama(a)
    if a.init_from:
        model.load_state_dict(ref.read_safetensors(a.init_from), strict=True)
    clock = LastGradClock(model.parameters())
    # The RoPE tables are constant buffers: broadcasting them every forward (DDP's
    # default) would only add traffic loom does not have. Gradients as bucket views
    # save a copy per step (PyTorch's recommended setting for speed).
    ddp = DistributedDataParallel(model, bucket_cap_mb=a.bucket_cap_mb, broadcast_buffers=False,
                                  gradient_as_bucket_view=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    tokens = ref.read_shard(a.data)
    windows = (tokens.numel() - 1) // a.seq_len
    global_tokens = a.global_batch * a.seq_len
    rank_tokens = per_rank * a.seq_len
    for step in range(a.steps):
        start = time.perf_counter()
        lr = ref.learning_rate(a, step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros(1, dtype=torch.float64)
        exposed_ms = 0.0
        passes = per_rank // micro
        for m in range(passes):
            first = step * a.global_batch + rank * per_rank + m * micro
            batch = torch.stack([tokens[j * a.seq_len: j * a.seq_len + a.seq_len + 1]
                                 for j in ((first + i) % windows for i in range(micro))])
            last = m + 1 == passes
            with contextlib.nullcontext() if last else ddp.no_sync():
                logits = ddp(batch[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, a.vocab_size), batch[:, 1:].reshape(-1), reduction="sum")
                loss_sum += loss.item()
                (loss / rank_tokens).backward()
            if last:
                exposed_ms = 1e3 * (time.perf_counter() - clock.last)
        dist.all_reduce(loss_sum)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        step_ms = 1e3 * (time.perf_counter() - start)
        if rank == 0:
            print(json.dumps({"step": step + 1, "loss": loss_sum.item() / global_tokens, "grad_norm": float(norm),
                              "step_ms": step_ms, "tokens_per_s": global_tokens / (step_ms / 1e3),
                              "exposed_comm_ms": exposed_ms}), flush=True)
    if a.save_to and rank == 0:
        ref.write_safetensors(a.save_to, dict(model.named_parameters()))
    if rank == 0:
        print(json.dumps({"summary": True, "world": world, "threads": torch.get_num_threads(),
                          "bucket_cap_mb": a.bucket_cap_mb, "blas": ref.blas_libraries(),
                          "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
