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
import socket
import subprocess
import sys
import tempfile
import unittest

import torch

WORLD = 2
STEPS = 3


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def make_data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 8, generator=generator), torch.randn(8, 1, generator=generator)


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DistributedApiTest(unittest.TestCase):
    def test_two_ranks_match_one_process(self):
        with tempfile.TemporaryDirectory() as tmp:
            port = str(free_port())
            procs = []
            for rank in range(WORLD):
                env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                           LOCAL_WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                           OMP_NUM_THREADS="1")
                procs.append(subprocess.Popen([sys.executable, __file__, "--worker", os.path.join(tmp, f"{rank}.pt")],
                                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            for rank, proc in enumerate(procs):
                output, _ = proc.communicate(timeout=120)
                self.assertEqual(proc.returncode, 0, f"rank {rank}:\n{output}")

            reference = make_model()
            optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
            x, y = make_data()
            for _ in range(STEPS):
                optimizer.zero_grad()
                ((reference(x) - y) ** 2).mean().backward()
                optimizer.step()
            results = [torch.load(os.path.join(tmp, f"{rank}.pt")) for rank in range(WORLD)]
            for name, expected in reference.state_dict().items():
                torch.testing.assert_close(results[0][name], expected, rtol=0, atol=1e-6, msg=name)
                self.assertTrue(torch.equal(results[0][name], results[1][name]), name)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        unittest.main()
