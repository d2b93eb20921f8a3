"""torch.ops.loom.ring_attention from Python, in real processes.

Four worker processes (this file with --worker) join one job, split it into two
context-parallel groups of two ranks ([0, 1] and [2, 3], torch.classes.loom.Communicator.split)
and run causal grouped-query ring attention over a different sequence in each group, each rank
holding its zigzag share (chunks r and 3 - r of 4; the length needs padding). Each worker
checks its output and dQ/dK/dV against plain torch attention over the whole sequence,
restricted to its tokens, to 1e-5 (float32).

Run by CTest with LOOM_TORCH_LIBRARY set to the library.
"""
import math
import os
import sys
import tempfile
import unittest

import torch

from multi_process import run_workers

WORLD = 4
CP = 2
LENGTH = 29  # not a multiple of 2 * CP: the last chunk is padded
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16


def zigzag_indices(length, ranks, rank):
    chunk = -(-length // (2 * ranks))
    return [c * chunk + i for c in (rank, 2 * ranks - 1 - rank) for i in range(chunk)]


def reference(q, k, v):
    group = q.shape[2] // k.shape[2]
    qh, kh, vh = q.transpose(1, 2), k.repeat_interleave(group, 2).transpose(1, 2), v.repeat_interleave(group, 2).transpose(1, 2)
    scores = qh @ kh.transpose(2, 3) / math.sqrt(q.shape[3])
    mask = torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).tril()
    return (torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ vh).transpose(1, 2)


def take(x, indices, length):
    rows = [x[:, i] if i < length else torch.zeros_like(x[:, 0]) for i in indices]
    return torch.stack(rows, 1)


def worker(out_path):
    torch.ops.load_library(os.environ["LOOM_TORCH_LIBRARY"])
    world = torch.classes.loom.Communicator("gloo", 60.0)
    rank = world.rank()
    group_index = rank // CP
    group = world.split([group_index * CP + r for r in range(CP)])
    assert group.size() == CP and group.rank() == rank % CP

    gen = torch.Generator().manual_seed(100 + group_index)
    q = torch.randn(2, LENGTH, HEADS, HEAD_DIM, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, LENGTH, KV_HEADS, HEAD_DIM, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, LENGTH, KV_HEADS, HEAD_DIM, generator=gen, dtype=torch.float64, requires_grad=True)
    dout = torch.randn(2, LENGTH, HEADS, HEAD_DIM, generator=gen, dtype=torch.float64)
    expected = reference(q, k, v)
    expected.backward(dout)

    share = zigzag_indices(LENGTH, CP, group.rank())
    positions = torch.tensor(share, dtype=torch.int64)
    documents = torch.where(positions < LENGTH, 0, -1)
    lq, lk, lv = (take(t.detach(), share, LENGTH).float().requires_grad_() for t in (q, k, v))
    out = torch.ops.loom.ring_attention(lq, lk, lv, positions, documents, group, True, 0.0)
    out.backward(take(dout, share, LENGTH).float())

    rows = [i for i, p in enumerate(share) if p < LENGTH]
    real = [p for p in share if p < LENGTH]
    for name, got, want in (("out", out.detach(), expected.detach()), ("dq", lq.grad, q.grad),
                            ("dk", lk.grad, k.grad), ("dv", lv.grad, v.grad)):
        torch.testing.assert_close(got[:, rows].double(), want[:, real], rtol=0, atol=1e-5,
                                   msg=f"rank {rank} {name}")
    torch.save({"rank": rank, "tokens": len(real)}, out_path)


class RingAttentionOpTest(unittest.TestCase):
    def test_two_groups_of_two_match_single_device_attention(self):
        with tempfile.TemporaryDirectory() as tmp:
            outputs = run_workers(__file__, WORLD, tmp)
            tokens = [torch.load(path)["tokens"] for path in outputs]
            # Each group's two shares hold every real token of its sequence once.
            self.assertEqual(tokens[0] + tokens[1], LENGTH)
            self.assertEqual(tokens[2] + tokens[3], LENGTH)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        unittest.main()
