"""loom's distributed API from Python, in real processes.

Two worker processes (this file with --worker, torchrun-style environment) load
libloom_torch.so, join the job with torch.classes.loom.Communicator("gloo"), check an
all_reduce, all_gather and broadcast against closed forms, then train a plain torch model
for three SGD steps through torch.classes.loom.DataParallel, each rank on its half of the
batch. The parent computes the same three steps on the whole batch in one process: the
workers' parameters must equal it to 1e-6 and each other exactly.

Run by CTest with LOOM_TORCH_LIBRARY set to the library.
"""
import os
import sys
import tempfile
import unittest

import torch

from multi_process import make_data, make_model, run_workers

WORLD = 2
STEPS = 3


def worker(out_path):
    torch.ops.load_library(os.environ["LOOM_TORCH_LIBRARY"])
    comm = torch.classes.loom.Communicator("gloo", 60.0)
    rank, size = comm.rank(), comm.size()
    assert size == WORLD, size

    t = torch.full((5,), float(rank + 1))
    comm.all_reduce(t, "sum")
    assert torch.equal(t, torch.full((5,), float(sum(range(1, size + 1))))), t
    gathered = comm.all_gather(torch.arange(3, dtype=torch.float64) + 10 * rank)
    assert torch.equal(gathered, torch.stack([torch.arange(3, dtype=torch.float64) + 10 * r for r in range(size)]))
    b = torch.full((4,), float(rank))
    comm.broadcast(b, 1)
    assert torch.equal(b, torch.ones(4)), b
    assert comm.bytes_sent() > 0

    model = make_model()
    dp = torch.classes.loom.DataParallel(comm, list(model.parameters()), 0.0005, True)
    assert dp.buckets() >= 2, dp.buckets()  # tiny buckets: reductions overlap backward
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = make_data()
    rows = slice(rank * 4, rank * 4 + 4)
    for _ in range(STEPS):
        dp.zero_grad()
        dp.arm()
        loss = ((model(x[rows]) - y[rows]) ** 2).mean()
        loss.backward()
        dp.finish()
        optimizer.step()
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out_path)


class DistributedApiTest(unittest.TestCase):
    def test_two_ranks_match_one_process(self):
        with tempfile.TemporaryDirectory() as tmp:
            outputs = run_workers(__file__, WORLD, tmp)

            reference = make_model()
            optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
            x, y = make_data()
            for _ in range(STEPS):
                optimizer.zero_grad()
                ((reference(x) - y) ** 2).mean().backward()
                optimizer.step()
            results = [torch.load(path) for path in outputs]
            for name, expected in reference.state_dict().items():
                torch.testing.assert_close(results[0][name], expected, rtol=0, atol=1e-6, msg=name)
                self.assertTrue(torch.equal(results[0][name], results[1][name]), name)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        unittest.main()
