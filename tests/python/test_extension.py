"""torch.ops.loom.* from Python: libloom_torch.so loads, its RMSNorm, RoPE, causal
softmax and SwiGLU ops match plain torch for several shapes in float32 (rtol 1e-5) and
float64 (rtol 1e-12), their gradients pass torch.autograd.gradcheck in float64 for
every differentiable input (and both outputs of the fused norm), and bad shapes raise
RuntimeError with loom's message.

Run by CTest (tests/python/CMakeLists.txt) with LOOM_TORCH_LIBRARY set to the library.
"""
import os
import unittest

import torch

EPS = 1e-5
SHAPES = [(1,), (7, 1), (5, 33), (2, 3, 64), (4, 2, 3, 129)]
RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def reference_rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(positions, head_dim):
    """model/rope.cpp's tables: angles in float64, stored as float32."""
    inv_freq = 10000.0 ** (torch.arange(0, head_dim // 2, dtype=torch.float64) * (-2.0 / head_dim))
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def reference_rope(x, cos, sin, start_pos):
    """model/rope.cpp's unflatten/select/stack chain."""
    seq, pairs = x.shape[1], x.shape[3] // 2
    c = cos[start_pos:start_pos + seq].view(1, seq, 1, pairs).to(x.dtype)
    s = sin[start_pos:start_pos + seq].view(1, seq, 1, pairs).to(x.dtype)
    even, odd = x.unflatten(-1, (pairs, 2)).unbind(-1)
    return torch.stack([even * c - odd * s, even * s + odd * c], -1).flatten(-2)


def reference_causal_softmax(scores, scale):
    """model/attention.cpp's chain: scale, -inf above the causal diagonal, softmax."""
    q_len, k_len = scores.shape[-2:]
    allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
    mask = torch.zeros(q_len, k_len, dtype=scores.dtype).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores * scale + mask, -1)


def setUpModule():
    path = os.environ.get("LOOM_TORCH_LIBRARY")
    if not path:
        raise RuntimeError("set LOOM_TORCH_LIBRARY to the path of libloom_torch.so")
    torch.ops.load_library(path)


class ExtensionTest(unittest.TestCase):
    def assert_close(self, actual, expected, rtol):
        # Values are products (x * r * w): relative error only, no absolute slack.
        torch.testing.assert_close(actual, expected.to(actual.dtype), rtol=rtol, atol=0)

    def test_rms_norm_matches_plain_torch(self):
        torch.manual_seed(0)
        for dtype, rtol in RTOL.items():
            for shape in SHAPES:
                with self.subTest(dtype=dtype, shape=shape):
                    x = torch.randn(shape, dtype=dtype)
                    w = 1 + 0.5 * torch.randn(shape[-1], dtype=dtype)
                    expected = reference_rms_norm(x.double(), w.double(), EPS)
                    self.assert_close(torch.ops.loom.rms_norm(x, w, EPS), expected, rtol)
                    # eps defaults to 1e-5 in the schema.
                    self.assert_close(torch.ops.loom.rms_norm(x, w), expected, rtol)

    def test_fused_add_rms_norm_matches_plain_torch(self):
        torch.manual_seed(1)
        for dtype, rtol in RTOL.items():
            for shape in SHAPES:
                with self.subTest(dtype=dtype, shape=shape):
                    x = torch.randn(shape, dtype=dtype)
                    residual = torch.randn(shape, dtype=dtype)
                    w = 1 + 0.5 * torch.randn(shape[-1], dtype=dtype)
                    out, residual_out = torch.ops.loom.fused_add_rms_norm(x, residual, w, EPS)
                    expected_sum = x.double() + residual.double()
                    self.assert_close(residual_out, expected_sum, rtol)
                    self.assert_close(out, reference_rms_norm(expected_sum, w.double(), EPS), rtol)

    def test_rms_norm_gradcheck(self):
        torch.manual_seed(2)
        for shape in [(3, 7), (2, 2, 5)]:
            with self.subTest(shape=shape):
                x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
                w = torch.randn(shape[-1], dtype=torch.float64, requires_grad=True)
                self.assertTrue(torch.autograd.gradcheck(
                    lambda a, b: torch.ops.loom.rms_norm(a, b, EPS), (x, w)))

    def test_fused_add_rms_norm_gradcheck(self):
        torch.manual_seed(3)
        for shape in [(3, 7), (2, 2, 5)]:
            with self.subTest(shape=shape):
                inputs = (torch.randn(shape, dtype=torch.float64, requires_grad=True),
                          torch.randn(shape, dtype=torch.float64, requires_grad=True),
                          torch.randn(shape[-1], dtype=torch.float64, requires_grad=True))
                # gradcheck differentiates both outputs, each against every input.
                self.assertTrue(torch.autograd.gradcheck(
                    lambda a, r, b: torch.ops.loom.fused_add_rms_norm(a, r, b, EPS), inputs))

    def test_shape_error_is_runtime_error_with_message(self):
        x = torch.randn(4, 128)
        with self.assertRaisesRegex(
                RuntimeError, "loom::rms_norm: weight has 64 elements but x's last dim is 128"):
            torch.ops.loom.rms_norm(x, torch.ones(64), EPS)
        with self.assertRaisesRegex(
                RuntimeError, r"loom::fused_add_rms_norm: residual has shape \[4, 127\] "
                              r"but x has shape \[4, 128\]"):
            torch.ops.loom.fused_add_rms_norm(x, torch.randn(4, 127), torch.ones(128), EPS)

    def test_rope_matches_plain_torch(self):
        torch.manual_seed(4)
        cos, sin = rope_tables(32, 34)
        for dtype, rtol in RTOL.items():
            for shape, start_pos in [((1, 1, 1, 34), 0), ((2, 5, 3, 34), 7)]:
                with self.subTest(dtype=dtype, shape=shape, start_pos=start_pos):
                    x = torch.randn(shape, dtype=dtype)
                    expected = reference_rope(x.double(), cos, sin, start_pos)
                    # Each output sums two products that may cancel: atol rtol * max|x|.
                    torch.testing.assert_close(torch.ops.loom.rope(x, cos, sin, start_pos),
                                               expected.to(dtype), rtol=rtol,
                                               atol=rtol * x.abs().max().item())
        x = torch.randn(2, 3, 2, 34)
        self.assertTrue(torch.equal(torch.ops.loom.rope(x, cos, sin), torch.ops.loom.rope(x, cos, sin, 0)))

    def test_causal_softmax_matches_plain_torch(self):
        torch.manual_seed(5)
        for dtype, rtol in RTOL.items():
            for shape in [(1, 1), (3, 5, 5), (2, 7, 40), (2, 2, 4, 9)]:
                with self.subTest(dtype=dtype, shape=shape):
                    scores = 3 * torch.randn(shape, dtype=dtype)
                    probs = torch.ops.loom.causal_softmax(scores, 0.25)
                    self.assert_close(probs, reference_causal_softmax(scores.double(), 0.25), rtol)
                    q_len, k_len = shape[-2:]
                    masked = ~torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
                    self.assertTrue(bool((probs[..., masked] == 0).all()))

    def test_swiglu_matches_plain_torch(self):
        torch.manual_seed(6)
        for dtype, rtol in RTOL.items():
            for shape in SHAPES:
                with self.subTest(dtype=dtype, shape=shape):
                    gate = 3 * torch.randn(shape, dtype=dtype)
                    up = torch.randn(shape, dtype=dtype)
                    expected = torch.nn.functional.silu(gate.double()) * up.double()
                    self.assert_close(torch.ops.loom.swiglu(gate, up), expected, rtol)

    def test_rope_gradcheck(self):
        torch.manual_seed(7)
        cos, sin = (t.double() for t in rope_tables(12, 6))
        # Contiguous, and a strided view of a larger buffer (read in place by the kernel).
        base = torch.randn(2, 3, 4, 12, dtype=torch.float64)
        for x in [torch.randn(2, 4, 3, 6, dtype=torch.float64), base[..., 3:9].transpose(1, 2)]:
            with self.subTest(contiguous=x.is_contiguous()):
                x = x.detach().requires_grad_()
                self.assertTrue(torch.autograd.gradcheck(
                    lambda a: torch.ops.loom.rope(a, cos, sin, 5), (x,)))

    def test_causal_softmax_gradcheck(self):
        torch.manual_seed(8)
        for shape in [(2, 4, 4), (3, 3, 7)]:
            with self.subTest(shape=shape):
                scores = torch.randn(shape, dtype=torch.float64, requires_grad=True)
                self.assertTrue(torch.autograd.gradcheck(
                    lambda s: torch.ops.loom.causal_softmax(s, 0.7), (scores,)))

    def test_swiglu_gradcheck(self):
        torch.manual_seed(9)
        for shape in [(3, 7), (2, 2, 5)]:
            with self.subTest(shape=shape):
                inputs = (3 * torch.randn(shape, dtype=torch.float64),
                          torch.randn(shape, dtype=torch.float64))
                self.assertTrue(torch.autograd.gradcheck(
                    torch.ops.loom.swiglu, tuple(t.requires_grad_() for t in inputs)))

    def test_model_op_errors_are_runtime_errors_with_message(self):
        cos, sin = rope_tables(8, 8)
        with self.assertRaisesRegex(RuntimeError, r"loom::rope: positions \[4, 10\) exceed the tables' 8 rows"):
            torch.ops.loom.rope(torch.randn(1, 6, 2, 8), cos, sin, 4)
        with self.assertRaisesRegex(RuntimeError, r"loom::causal_softmax: scores has q_len 5 > k_len 3"):
            torch.ops.loom.causal_softmax(torch.randn(2, 5, 3), 1.0)
        with self.assertRaisesRegex(RuntimeError,
                                    r"loom::swiglu: up has shape \[4, 5\] but gate has shape \[4, 6\]"):
            torch.ops.loom.swiglu(torch.randn(4, 6), torch.randn(4, 5))


if __name__ == "__main__":
    unittest.main()
