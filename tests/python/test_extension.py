"""torch.ops.loom.* from Python: libloom_torch.so loads, its RMSNorm ops match plain
torch for several shapes in float32 (rtol 1e-5) and float64 (rtol 1e-12), their
gradients pass torch.autograd.gradcheck in float64 for every input and both outputs
of the fused op, and bad shapes raise RuntimeError with loom's message.

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


if __name__ == "__main__":
    unittest.main()
