"""wafer.tools.machine: every benchmark's record names its processor and command."""

import shlex
import sys

import torch

from wafer.tools.machine import benchmark_header, cpu_model


def test_benchmark_header_names_the_machine_and_the_command(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["serving.py", "--workdir", "a dir", "--views", "4"])
    h = benchmark_header("benchmarks/serving.py")
    assert shlex.split(h["command"]) == [
        "python",
        "benchmarks/serving.py",
        "--workdir",
        "a dir",
        "--views",
        "4",
    ]
    assert h["processor"] == cpu_model() and h["processor"]
    assert h["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert h["threads"] == torch.get_num_threads() and h["torch"] == torch.__version__
