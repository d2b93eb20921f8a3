"""loom's outer optimizers from Python (torch.classes.loom.OuterOptimizer), in real processes.

Two worker processes (this file with --worker, torchrun-style environment) are two replicas
of a plain torch model, each training on its own half of a batch, and run these scenarios,
recording the flat parameters after every inner step:
  diloco   AdamW inner, DiLoCo every 3 steps (Nesterov, fp16 pseudo-gradients), 6 steps.
  exact    SGD inner, DiLoCo every step with outer lr 1 and no momentum, 3 steps: this is
           data-parallel SGD on the averaged gradient.
  noloco   NoLoCo every 2 steps, 4 steps.
  co2      CO2 every 2 steps, 5 steps, then finish().
  resume   DiLoCo stopped after step 2 and rebuilt from state_dict(): the same run.
The parent compares the replicas with each other (byte-identical after every sync, different
between syncs) and with the same algorithms computed in plain PyTorch in one process.
Option errors are checked in the parent, a one-rank world.

Run by CTest with LOOM_TORCH_LIBRARY set to the library.
"""
import os
import sys
import tempfile
import unittest

import torch

from multi_process import make_data, make_model, run_workers

WORLD = 2


def half_of(rank):
    x, y = make_data()
    rows = slice(rank * 4, rank * 4 + 4)
    return x[rows], y[rows]


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def inner_step(model, optimizer, x, y):
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def load_library():
    torch.ops.load_library(os.environ["LOOM_TORCH_LIBRARY"])


# ---------------------------------------------------------------- workers


def run(comm, algorithm, options, steps, make_inner, finish=False):
    """Trains this rank's replica; returns the flat parameters after each step (and after finish())."""
    model = make_model()
    inner = make_inner(model)
    outer = torch.classes.loom.OuterOptimizer(comm, list(model.named_parameters()), algorithm, options, 7)
    x, y = half_of(comm.rank())
    trajectory = []
    for step in range(1, steps + 1):
        inner_step(model, inner, x, y)
        outer.step(step)
        trajectory.append(flat(model))
    state_keys = sorted(outer.state_dict().keys())
    if finish:
        outer.finish()
        trajectory.append(flat(model))
    return {"trajectory": trajectory, "stats": outer.stats(), "state_keys": state_keys}


def sgd(lr):
    return lambda model: torch.optim.SGD(model.parameters(), lr=lr)


def adamw(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-2)


def resume(comm):
    """DiLoCo every 2 steps for 4 steps, in one go and rebuilt after step 2 from state_dict(): same bytes."""
    options = {"sync_every": 2, "lr": 0.7, "momentum": 0.9}
    straight = run(comm, "diloco", options, 4, sgd(0.1))["trajectory"][-1]

    x, y = half_of(comm.rank())
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    outer = torch.classes.loom.OuterOptimizer(comm, list(model.named_parameters()), "diloco", options, 7)
    for step in (1, 2):
        inner_step(model, inner, x, y)
        outer.step(step)
    weights, state = flat(model), outer.state_dict()
    del outer, model, inner

    model = make_model()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(weights, model.parameters())
    inner = torch.optim.SGD(model.parameters(), lr=0.1)  # plain SGD: no inner state to carry over
    outer = torch.classes.loom.OuterOptimizer(comm, list(model.named_parameters()), "diloco", options, 7)
    outer.load_state_dict(state)
    for step in (3, 4):
        inner_step(model, inner, x, y)
        outer.step(step)
    return {"straight": straight, "resumed": flat(model)}


def worker(out_path):
    load_library()
    comm = torch.classes.loom.Communicator("gloo", 60.0)
    assert comm.size() == WORLD, comm.size()
    results = {
        "diloco": run(comm, "diloco", {"sync_every": 3, "lr": 0.7, "momentum": 0.9, "codec": "fp16"}, 6, adamw),
        "exact": run(comm, "diloco", {"sync_every": 1, "lr": 1.0, "momentum": 0.0}, 3, sgd(0.1)),
        "noloco": run(comm, "noloco", {"sync_every": 2, "group_size": 2}, 4, sgd(0.1)),
        "co2": run(comm, "co2", {"sync_every": 2, "momentum": 0.5}, 5, sgd(0.1), finish=True),
        "resume": resume(comm),
    }
    # The user's communicator still works after the optimizers' own traffic.
    t = torch.ones(3)
    comm.all_reduce(t, "sum")
    assert torch.equal(t, torch.full((3,), float(WORLD))), t
    torch.save(results, out_path)


# ---------------------------------------------------------------- references in one process


def reference_diloco(steps, sync_every, lr, momentum, make_inner, codec_half):
    """DiLoCo over WORLD replicas in plain PyTorch: Nesterov SGD on the averaged global - local."""
    models = [make_model() for _ in range(WORLD)]
    inners = [make_inner(m) for m in models]
    data = [half_of(r) for r in range(WORLD)]
    global_weights = flat(models[0])
    buffer = torch.zeros_like(global_weights)
    wire = (lambda t: t.half().float()) if codec_half else (lambda t: t)
    trajectory = []
    for step in range(1, steps + 1):
        for model, inner, (x, y) in zip(models, inners, data):
            inner_step(model, inner, x, y)
        if step % sync_every == 0:
            total = sum(wire(global_weights - flat(m)) for m in models)
            average = wire(total / WORLD)
            buffer = momentum * buffer + average
            global_weights = global_weights - lr * (average + momentum * buffer)
            for model in models:
                with torch.no_grad():
                    torch.nn.utils.vector_to_parameters(global_weights.clone(), model.parameters())
        trajectory.append([flat(m) for m in models])
    return trajectory


def reference_noloco(steps, sync_every, lr, momentum, consensus, make_inner):
    """NoLoCo over WORLD replicas in one group (noloco.h): m <- mu m + lr mean(theta - phi) + gamma (mean(phi) - phi)."""
    models = [make_model() for _ in range(WORLD)]
    inners = [make_inner(m) for m in models]
    data = [half_of(r) for r in range(WORLD)]
    phi = [flat(m) for m in models]
    buffers = [torch.zeros_like(p) for p in phi]
    trajectory = []
    for step in range(1, steps + 1):
        for model, inner, (x, y) in zip(models, inners, data):
            inner_step(model, inner, x, y)
        if step % sync_every == 0:
            mean_phi = sum(phi) / WORLD
            mean_delta = sum(flat(m) - p for m, p in zip(models, phi)) / WORLD
            for r, model in enumerate(models):
                buffers[r] = momentum * buffers[r] + lr * mean_delta + consensus * (mean_phi - phi[r])
                phi[r] = phi[r] + buffers[r]
                with torch.no_grad():
                    torch.nn.utils.vector_to_parameters(phi[r].clone(), model.parameters())
        trajectory.append([flat(m) for m in models])
    return trajectory


def reference_co2(steps, sync_every, lr, momentum, clip, make_inner):
    """CO2 (diloco.h, delayed): round r's average global - local is applied at the end of round r + 1."""
    models = [make_model() for _ in range(WORLD)]
    inners = [make_inner(m) for m in models]
    data = [half_of(r) for r in range(WORLD)]
    global_weights = flat(models[0])
    buffer = torch.zeros_like(global_weights)
    pending = None  # the average in flight

    def end_round(average):
        nonlocal buffer, global_weights
        if average is not None:
            buffer = (momentum * buffer + average).clamp(-clip, clip)
            global_weights = global_weights - lr * buffer
        for model in models:
            with torch.no_grad():
                torch.nn.utils.vector_to_parameters(global_weights.clone(), model.parameters())

    trajectory = []
    for step in range(1, steps + 1):
        for model, inner, (x, y) in zip(models, inners, data):
            inner_step(model, inner, x, y)
        if step % sync_every == 0:
            sent = sum(global_weights - flat(m) for m in models) / WORLD
            end_round(pending)
            pending = sent
        trajectory.append([flat(m) for m in models])
    end_round(pending)  # finish()
    trajectory.append([flat(m) for m in models])
    return trajectory


def reference_data_parallel_sgd(steps, lr):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = make_data()
    trajectory = []
    for _ in range(steps):
        inner_step(model, optimizer, x, y)
        trajectory.append(flat(model))
    return trajectory


# ---------------------------------------------------------------- tests


class OuterOptimizerTest(unittest.TestCase):
    results = None

    @classmethod
    def setUpClass(cls):
        with tempfile.TemporaryDirectory() as tmp:
            cls.results = [torch.load(path) for path in run_workers(__file__, WORLD, tmp)]

    def trajectories(self, scenario):
        return [r[scenario]["trajectory"] for r in self.results]

    def assert_agree_at(self, scenario, sync_steps, steps):
        first, second = self.trajectories(scenario)
        for step in range(1, steps + 1):
            same = torch.equal(first[step - 1], second[step - 1])
            if step in sync_steps:
                self.assertTrue(same, f"{scenario}: replicas differ after the sync at step {step}")
            else:
                self.assertFalse(same, f"{scenario}: replicas agree at step {step}, between syncs")

    def test_diloco_replicas_identical_after_each_sync(self):
        self.assert_agree_at("diloco", {3, 6}, 6)
        self.assertEqual(self.results[0]["diloco"]["stats"]["syncs"], 2)
        self.assertEqual(self.results[0]["diloco"]["state_keys"], ["outer.global", "outer.momentum"])

    def test_diloco_matches_plain_pytorch(self):
        expected = reference_diloco(6, 3, 0.7, 0.9, adamw, codec_half=True)
        for rank in range(WORLD):
            for step, got in enumerate(self.results[rank]["diloco"]["trajectory"], start=1):
                torch.testing.assert_close(got, expected[step - 1][rank], rtol=0, atol=1e-5,
                                           msg=f"rank {rank} step {step}")

    def test_outer_lr_1_without_momentum_is_data_parallel_sgd(self):
        expected = reference_data_parallel_sgd(3, 0.1)
        for rank in range(WORLD):
            for step, got in enumerate(self.results[rank]["exact"]["trajectory"], start=1):
                torch.testing.assert_close(got, expected[step - 1], rtol=0, atol=1e-6,
                                           msg=f"rank {rank} step {step}")
        self.assert_agree_at("exact", {1, 2, 3}, 3)

    def test_noloco_runs(self):
        # Two replicas form one group at every sync, so they agree after it and differ in between
        # (and the consensus pull, towards a mean they already share, is zero).
        self.assert_agree_at("noloco", {2, 4}, 4)
        first, _ = self.trajectories("noloco")
        self.assertTrue(all(torch.isfinite(t).all() for t in first))
        self.assertFalse(torch.equal(first[-1], flat(make_model())))
        expected = reference_noloco(4, 2, 0.7, 0.5, 0.7, sgd(0.1))  # NoLoCo's defaults
        for rank in range(WORLD):
            for step, got in enumerate(self.trajectories("noloco")[rank], start=1):
                torch.testing.assert_close(got, expected[step - 1][rank], rtol=0, atol=1e-6,
                                           msg=f"rank {rank} step {step}")
        self.assertEqual(self.results[0]["noloco"]["stats"]["syncs"], 2)

    def test_co2_runs_and_finish_applies_the_last_average(self):
        first, second = self.trajectories("co2")
        self.assertEqual(len(first), 6)  # five steps, then finish()
        self.assertTrue(all(torch.isfinite(t).all() for t in first + second))
        for index in (1, 3, 5):  # round ends (steps 2 and 4) and after finish()
            self.assertTrue(torch.equal(first[index], second[index]), f"co2: replicas differ at index {index}")
        self.assertFalse(torch.equal(first[4], second[4]), "co2: replicas agree at step 5, mid-round")
        self.assertFalse(torch.equal(first[3], first[5]), "co2: finish() changed nothing")
        expected = reference_co2(5, 2, 1.0, 0.5, 1.0, sgd(0.1))  # CO2's lr 1 and clip 1, momentum 0.5
        for rank in range(WORLD):
            for index, got in enumerate(self.trajectories("co2")[rank]):
                torch.testing.assert_close(got, expected[index][rank], rtol=0, atol=1e-6,
                                           msg=f"rank {rank} index {index}")
        # A round's average is in flight until the next round ends: the state holds it.
        self.assertIn("outer.pending", self.results[0]["co2"]["state_keys"])

    def test_resume_from_state_dict(self):
        for rank in range(WORLD):
            r = self.results[rank]["resume"]
            self.assertTrue(torch.equal(r["straight"], r["resumed"]), f"rank {rank}")


class OptionErrorsTest(unittest.TestCase):
    """Argument checks, in this process: a world of one rank."""

    @classmethod
    def setUpClass(cls):
        load_library()
        cls.comm = torch.classes.loom.Communicator("gloo", 60.0)

    def make(self, algorithm="diloco", options=None, params=None):
        model = make_model()
        params = list(model.named_parameters()) if params is None else params
        return torch.classes.loom.OuterOptimizer(self.comm, params, algorithm, options or {}, 0)

    def test_unknown_option_lists_the_valid_ones(self):
        with self.assertRaisesRegex(Exception, r'unknown option "sync_evry"; valid options are sync_every, lr, '):
            self.make(options={"sync_evry": 4})

    def test_bad_values_name_key_and_value(self):
        cases = [
            ({"sync_every": 2.5}, r"sync_every = 2\.5 \(float\) must be an int"),
            ({"sync_every": 0}, r"sync_every \(0\) must be >= 1"),
            ({"lr": float("inf")}, r"lr = inf \(float\) must be finite"),
            ({"momentum": 1.5}, r"momentum \(1\.5\) must be in \[0, 1\)"),
            ({"nesterov": 1}, r"nesterov = 1 \(int\) must be a bool"),
            ({"codec": "fp8"}, r'codec "fp8" must be one of fp32, fp16, bf16, uint8_minmax, uint8_lut'),
            ({"codec": 16}, r"codec = 16 \(int\) must be a string"),
        ]
        for options, pattern in cases:
            with self.subTest(options=options), self.assertRaisesRegex(Exception, pattern):
                self.make(options=options)

    def test_bad_algorithm_and_world(self):
        with self.assertRaisesRegex(Exception, r'algorithm "adamw" must be one of diloco, noloco, co2'):
            self.make(algorithm="adamw")
        with self.assertRaisesRegex(Exception, r"group_size \(2\) must divide the number of replicas \(1\)"):
            self.make(algorithm="noloco")

    def test_parameters_must_be_float32(self):
        with self.assertRaisesRegex(Exception, r"parameter w is Double"):
            self.make(params=[("w", torch.zeros(3, dtype=torch.float64, requires_grad=True))])

    def test_steps_must_be_consecutive(self):
        outer = self.make(options={"sync_every": 2})
        outer.step(1)
        with self.assertRaisesRegex(Exception, r"step\(3\): steps count from 1"):
            outer.step(3)

    def test_one_rank_diloco_updates_parameters_that_require_grad(self):
        # One replica: the average is its own pseudo-gradient, so outer lr 1 without momentum keeps the
        # inner step's result, written back in place into leaf tensors that require grad.
        model = make_model()
        inner = torch.optim.SGD(model.parameters(), lr=0.1)
        outer = torch.classes.loom.OuterOptimizer(self.comm, list(model.named_parameters()), "DiLoCo",
                                                  {"sync_every": 1, "lr": 1.0, "momentum": 0.0}, 0)
        x, y = make_data()
        inner_step(model, inner, x, y)
        before = flat(model)
        outer.step(1)
        torch.testing.assert_close(flat(model), before, rtol=0, atol=1e-7)
        self.assertTrue(all(p.requires_grad and p.is_leaf for p in model.parameters()))
        stats = outer.stats()
        self.assertEqual(stats["syncs"], 1)
        self.assertGreater(stats["state_bytes"], 0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        unittest.main()
