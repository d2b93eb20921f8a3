"""What the multi-process Python tests share: the small torch model and data they train, and
running this test file's worker mode as WORLD processes with torchrun's variables."""
import os
import socket
import subprocess
import sys

import torch


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def make_data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 8, generator=generator), torch.randn(8, 1, generator=generator)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(script, world, out_dir, timeout=120):
    """Runs `script --worker <out_dir>/<rank>.pt` as ranks 0..world-1 of one job; raises
    AssertionError with a rank's output when it fails. Returns the output files in rank order."""
    port = str(free_port())
    outputs = [os.path.join(out_dir, f"{rank}.pt") for rank in range(world)]
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, script, "--worker", outputs[rank]], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    for rank, proc in enumerate(procs):
        if proc.returncode != 0:
            raise AssertionError(f"rank {rank} exited with {proc.returncode}:\n{logs[rank]}")
    return outputs
