#!/usr/bin/python3
"""The loom model and training loop written in plain PyTorch eager mode.

It is the independent reference loom is checked against (tests/python/test_train_parity.py
compares per-step losses) and the baseline of benchmarks/train_throughput.py. It follows
docs/model.md and docs/data.md: same parameter names and shapes, same RMSNorm, RoPE, GQA
attention and SwiGLU, same sequential sample windows, same AdamW, schedule and clipping,
gradient divisor = global token count. Standard library + torch only.

    /usr/bin/python3 scripts/python/torch_llama.py --data data/brown/train.bin --steps 20 \
        [--init-from w.safetensors] [--threads 2] [model/train flags, see --help]

Prints one JSON object per step: {"step", "loss", "step_ms"}; then a summary object.
"""
import argparse
import json
import math
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

SHARD_MAGIC, SHARD_VERSION, HEADER_INTS = 20240520, 1, 256


def read_shard(path):
    """llm.c token shard: 256 int32 header (magic, version, count), then uint16 tokens."""
    with open(path, "rb") as f:
        header = struct.unpack("<256i", f.read(4 * HEADER_INTS))
        if header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
            raise ValueError(f"{path}: not a loom/llm.c token shard")
        raw = f.read(2 * header[2])
    tokens = torch.frombuffer(bytearray(raw), dtype=torch.int16).to(torch.int64) & 0xFFFF
    return tokens


DTYPES = {"F32": (torch.float32, 4), "F64": (torch.float64, 8), "I64": (torch.int64, 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, size = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype) if end > begin else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().to(torch.float32)
        blob = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


class RMSNorm(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, max_seq_len, theta):
    inv_freq = theta ** (torch.arange(0, head_dim // 2, dtype=torch.float64) * (-2.0 / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin):
    """x: [B, T, H, hd]; rotates consecutive pairs (x[2i], x[2i+1])."""
    t = x.shape[1]
    cos = cos[:t].view(1, t, 1, -1)
    sin = sin[:t].view(1, t, 1, -1)
    pairs = x.unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), -1).flatten(-2)


class Attention(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = a.heads, a.kv_heads, a.dim // a.heads
        self.wq = torch.nn.Linear(a.dim, a.dim, bias=False)
        self.wk = torch.nn.Linear(a.dim, self.kv_heads * self.head_dim, bias=False)
        self.wv = torch.nn.Linear(a.dim, self.kv_heads * self.head_dim, bias=False)
        self.wo = torch.nn.Linear(a.dim, a.dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = apply_rope(self.wq(x).view(b, t, self.heads, self.head_dim), cos, sin).transpose(1, 2)
        k = apply_rope(self.wk(x).view(b, t, self.kv_heads, self.head_dim), cos, sin).transpose(1, 2)
        v = self.wv(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        mask = torch.full((t, t), float("-inf")).triu(1)
        out = torch.softmax(scores + mask, dim=-1) @ v
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class Mlp(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.w1 = torch.nn.Linear(a.dim, a.ffn_dim, bias=False)
        self.w2 = torch.nn.Linear(a.ffn_dim, a.dim, bias=False)
        self.w3 = torch.nn.Linear(a.dim, a.ffn_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.attn_norm = RMSNorm(a.dim, a.norm_eps)
        self.attn = Attention(a)
        self.mlp_norm = RMSNorm(a.dim, a.norm_eps)
        self.mlp = Mlp(a)

    def forward(self, x, cos, sin):
        h = x + self.attn(self.attn_norm(x), cos, sin)
        return h + self.mlp(self.mlp_norm(h))


class Llama(torch.nn.Module):
    def __init__(self, a):
        super().__init__()
        self.tok_emb = torch.nn.Embedding(a.vocab_size, a.dim)
        self.blocks = torch.nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.dim, a.norm_eps)
        self.head = torch.nn.Linear(a.dim, a.vocab_size, bias=False)
        cos, sin = rope_tables(a.dim // a.heads, a.max_seq_len, a.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, tokens):
        x = self.tok_emb(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(self.norm(x))


def learning_rate(a, step):
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    progress = min(max((step - a.warmup_steps) / max(1, a.steps - a.warmup_steps), 0.0), 1.0)
    return a.min_lr + (a.lr - a.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--init-from", default="")
    p.add_argument("--save-to", default="", help="write the final weights as safetensors")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1234)
    for name, default in [("vocab-size", 257), ("dim", 128), ("layers", 4), ("heads", 4), ("kv-heads", 2),
                          ("ffn-dim", 384), ("max-seq-len", 1024), ("seq-len", 128), ("steps", 20),
                          ("global-batch", 16), ("micro-batch", 16), ("warmup-steps", 30)]:
        p.add_argument("--" + name, type=int, default=default)
    for name, default in [("norm-eps", 1e-5), ("rope-theta", 10000.0), ("lr", 3e-3), ("min-lr", 3e-4),
                          ("beta1", 0.9), ("beta2", 0.95), ("eps", 1e-8), ("weight-decay", 0.1),
                          ("grad-clip", 1.0)]:
        p.add_argument("--" + name, type=float, default=default)
    return p.parse_args(argv)


def blas_libraries():
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]})


def main(argv=None):
    a = parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = Llama(a)
    if a.init_from:
        weights = read_safetensors(a.init_from)
        model.load_state_dict(weights, strict=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    tokens = read_shard(a.data)
    windows = (tokens.numel() - 1) // a.seq_len
    global_tokens = a.global_batch * a.seq_len
    for step in range(a.steps):
        start = time.perf_counter()
        lr = learning_rate(a, step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for m in range(a.global_batch // a.micro_batch):
            first = step * a.global_batch + m * a.micro_batch
            idx = [(first + i) % windows for i in range(a.micro_batch)]
            batch = torch.stack([tokens[j * a.seq_len: j * a.seq_len + a.seq_len + 1] for j in idx])
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, a.vocab_size), batch[:, 1:].reshape(-1), reduction="sum")
            loss_sum += loss.item()
            (loss / global_tokens).backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        step_ms = 1e3 * (time.perf_counter() - start)
        print(json.dumps({"step": step + 1, "loss": loss_sum / global_tokens, "grad_norm": float(norm),
                          "step_ms": step_ms, "tokens_per_s": global_tokens / (step_ms / 1e3)}), flush=True)
    if a.save_to:
        write_safetensors(a.save_to, dict(model.named_parameters()))
    print(json.dumps({"summary": True, "threads": torch.get_num_threads(), "blas": blas_libraries(),
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
