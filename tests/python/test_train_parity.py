"""loom-train against the same model trained in plain PyTorch (scripts/python/torch_llama.py).

Both start from the same weights (written by the PyTorch side as safetensors and passed to
loom-train with --init-from), read the same shard in the same sequential order, with gradient
accumulation (two micro-batches per step), the same AdamW, schedule and clipping, on one
thread each. Every step's loss must agree to 1e-5 relative and the final weights to 2e-5
absolute (float32 rounding differs between the fused kernels and the composite ops). The
shard is written by loom-data and read by the Python side with its own parser.

Run by CTest with LOOM_BUILD_DIR set to the build tree.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "python"))
import torch_llama  # noqa: E402

MODEL = dict(vocab_size=257, dim=32, layers=2, heads=4, kv_heads=2, ffn_dim=64, max_seq_len=64)
TRAIN = dict(seq_len=16, global_batch=8, micro_batch=4, steps=6, warmup_steps=2)
OPTIM = dict(lr=1e-2, min_lr=1e-3, weight_decay=0.1, grad_clip=1.0)


def cli_flags(values):
    flags = []
    for key, value in values.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


class TrainParityTest(unittest.TestCase):
    def test_losses_and_weights_match_pytorch(self):
        build = os.environ["LOOM_BUILD_DIR"]
        with tempfile.TemporaryDirectory() as tmp:
            texts = []
            for d in range(12):
                path = os.path.join(tmp, f"doc{d}.txt")
                with open(path, "w") as f:
                    f.write(" ".join(f"word{(d * 7 + i * 3) % 23}" for i in range(80)))
                texts.append(path)
            subprocess.run([os.path.join(build, "bin", "loom-data"), "--out-dir", tmp] + texts,
                           check=True, capture_output=True)
            shard = os.path.join(tmp, "train.bin")

            torch.manual_seed(0)
            args = torch_llama.parse_args(["--data", shard, "--threads", "1"] + cli_flags(MODEL) +
                                          cli_flags(TRAIN) + cli_flags(OPTIM))
            init = os.path.join(tmp, "init.safetensors")
            torch_llama.write_safetensors(init, dict(torch_llama.Llama(args).named_parameters()))

            reference_weights = os.path.join(tmp, "torch_final.safetensors")
            out = io.StringIO()
            with redirect_stdout(out):
                torch_llama.main(["--data", shard, "--threads", "1", "--init-from", init, "--save-to",
                                  reference_weights] + cli_flags(MODEL) + cli_flags(TRAIN) + cli_flags(OPTIM))
            reference = [json.loads(line)["loss"] for line in out.getvalue().splitlines() if '"loss"' in line]

            config = os.path.join(tmp, "job.pbtxt")
            with open(config, "w") as f:
                f.write("model {\n" + "".join(f"  {k}: {v}\n" for k, v in MODEL.items()) + "}\n")
                f.write(f'data {{\n  train_path: "{shard}"\n  seq_len: {TRAIN["seq_len"]}\n'
                        "  order: SEQUENTIAL\n}\n")
                f.write(f'train {{\n  steps: {TRAIN["steps"]}\n  global_batch: {TRAIN["global_batch"]}\n'
                        f'  micro_batch: {TRAIN["micro_batch"]}\n  threads: 1\n  out_dir: "{tmp}/loom"\n'
                        f'  grad_clip: {OPTIM["grad_clip"]}\n}}\n')
                f.write(f'optimizer {{\n  lr: {OPTIM["lr"]}\n  min_lr: {OPTIM["min_lr"]}\n'
                        f'  warmup_steps: {TRAIN["warmup_steps"]}\n  weight_decay: {OPTIM["weight_decay"]}\n}}\n')
                f.write("logging {\n  log_every: 1\n  peak_tflops: 1\n}\n")
            run = subprocess.run([os.path.join(build, "bin", "loom-train"), "--config", config,
                                  "--init-from", init], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            with open(os.path.join(tmp, "loom", "metrics.jsonl")) as f:
                losses = [json.loads(line)["loss"] for line in f if '"loss"' in line]

            self.assertEqual(len(losses), TRAIN["steps"])
            self.assertEqual(len(reference), TRAIN["steps"])
            for step, (ours, theirs) in enumerate(zip(losses, reference), start=1):
                self.assertAlmostEqual(ours, theirs, delta=1e-5 * abs(theirs), msg=f"step {step}")
            self.assertLess(losses[-1], losses[0])  # it trained

            ours = torch_llama.read_safetensors(os.path.join(tmp, "loom", "model.safetensors"))
            theirs = torch_llama.read_safetensors(reference_weights)
            self.assertEqual(sorted(ours), sorted(theirs))
            for name in theirs:
                torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=2e-5, msg=name)


if __name__ == "__main__":
    unittest.main()
