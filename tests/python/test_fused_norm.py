"""torch.ops.loom.fused_allreduce_add_rms_norm and token_shard from Python, in real processes.

Two and then four worker processes (this file with --worker) join one job over gloo. Every
rank builds every rank's partial sums x_k, the residual and the weight from one seed, runs
both paths for float32 and bfloat16 and 1, 7 and 33 tokens, and checks them against a
float64 reference, (sum_k x_k + residual) then RMSNorm times the weight: float32 to 1e-5,
bfloat16 to atol 1e-2 / rtol 1.6e-2. In the reduce_scatter path the residual in and out is
this rank's token_shard, and the parent checks that `out` is the same bytes on every rank.
The op is forward-only: its outputs have no grad_fn even when x requires grad.

Run by CTest with LOOM_TORCH_LIBRARY set to the library.
"""
import os
import sys
import tempfile
import unittest

import torch

from multi_process import run_workers

HIDDEN = 64
EPS = 1e-5
TOKENS = (1, 7, 33)
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 1.6e-2)}  # (atol, rtol)


def inputs(world, tokens, dtype):
    gen = torch.Generator().manual_seed(1000 * world + tokens)
    xs = [torch.randn(tokens, HIDDEN, generator=gen).to(dtype) for _ in range(world)]
    residual = torch.randn(tokens, HIDDEN, generator=gen).to(dtype)
    weight = (1 + 0.1 * torch.randn(HIDDEN, generator=gen)).to(dtype)
    return xs, residual, weight


def reference(xs, residual, weight):
    residual_out = sum(x.double() for x in xs) + residual.double()
    out = residual_out * torch.rsqrt(residual_out.pow(2).mean(-1, keepdim=True) + EPS) * weight.double()
    return out, residual_out


def check(got, want, dtype, label):
    assert got.dtype == dtype and got.grad_fn is None and not got.requires_grad, (label, got)
    atol, rtol = TOLERANCES[dtype]
    torch.testing.assert_close(got.double(), want, atol=atol, rtol=rtol, msg=label)


def worker(out_path):
    torch.ops.load_library(os.environ["LOOM_TORCH_LIBRARY"])
    group = torch.classes.loom.Communicator("gloo", 60.0)
    world, rank = group.size(), group.rank()
    op = torch.ops.loom.fused_allreduce_add_rms_norm
    scattered_outs = {}
    for dtype in TOLERANCES:
        for tokens in TOKENS:
            xs, residual, weight = inputs(world, tokens, dtype)
            want_out, want_residual = reference(xs, residual, weight)
            x = xs[rank].clone().requires_grad_()
            label = f"rank {rank} of {world} {dtype} tokens {tokens}"

            out, residual_out = op(x, residual, weight, EPS, group, "all_reduce")
            check(out, want_out, dtype, f"{label} all_reduce out")
            check(residual_out, want_residual, dtype, f"{label} all_reduce residual")

            shard = torch.ops.loom.token_shard(residual, world, rank)
            out, shard_out = op(x, shard, weight, EPS, group, "reduce_scatter")
            check(out, want_out, dtype, f"{label} reduce_scatter out")
            check(shard_out, torch.ops.loom.token_shard(want_residual, world, rank), dtype,
                  f"{label} reduce_scatter residual")
            scattered_outs[f"{dtype} tokens {tokens}"] = out
    try:
        op(xs[rank], residual, weight, EPS, group, "allreduce")
        raise AssertionError("an unknown path was accepted")
    except ValueError as e:
        assert 'fused_allreduce_add_rms_norm: path "allreduce" must be one of all_reduce, reduce_scatter' in str(e), e
    torch.save(scattered_outs, out_path)


class FusedNormOpTest(unittest.TestCase):
    def check_world(self, world):
        with tempfile.TemporaryDirectory() as tmp:
            results = [torch.load(path) for path in run_workers(__file__, world, tmp)]
        self.assertEqual(len(results[0]), len(TOLERANCES) * len(TOKENS))
        for key, out in results[0].items():
            for rank in range(1, world):
                other = results[rank][key]
                self.assertTrue(torch.equal(out.view(torch.uint8), other.view(torch.uint8)), f"{key} rank {rank}")

    def test_two_ranks(self):
        self.check_world(2)

    def test_four_ranks(self):
        self.check_world(4)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        unittest.main()
