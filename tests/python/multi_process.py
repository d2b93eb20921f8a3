"""What the multi-process Python tests share: the small torch model and data they train, and
running this test file's worker mode as WORLD processes with torchrun's variables."""
import os
import socket
import subprocess
import sys
import time

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
    deadline = time.monotonic() + timeout
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=max(0.0, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
        # Name the ranks still running and show what every rank printed.
        hung = [rank for rank, proc in enumerate(procs) if proc.poll() is None]
        for proc in procs:
            proc.kill()
        logs = [proc.communicate()[0] for proc in procs]
        report = "\n".join(f"--- rank {rank} (exit {proc.returncode}):\n{logs[rank]}" for rank, proc in enumerate(procs))
        raise AssertionError(f"ranks {hung} still running after {timeout} s; killed them\n{report}") from None
    for rank, proc in enumerate(procs):
        if proc.returncode != 0:
            raise AssertionError(f"rank {rank} exited with {proc.returncode}:\n{logs[rank]}")
    return outputs
