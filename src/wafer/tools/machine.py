"""What machine a run or a benchmark ran on: the CPU's model name (every timing names its
processor) and, for a run's record, the torch, CUDA and GPU versions and the git state."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ENV_PROBE = """
import json, os, platform, sys
info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
try:
    import torch
    info.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(),
                cuda=torch.version.cuda, threads=torch.get_num_threads())
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=torch.cuda.get_device_name(0),
                    device_count=torch.cuda.device_count(),
                    device_memory_gib=round(p.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version(), bf16=torch.cuda.is_bf16_supported())
    else:
        info["device_name"] = "cpu"
except Exception as exc:  # torch missing or broken: say so, do not fail the run
    info["torch_error"] = repr(exc)
print(json.dumps(info))
"""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def benchmark_header(script: str, argv: list[str] | None = None) -> dict[str, Any]:
    """What every benchmark's JSON starts with: its command (``python <script>`` and its
    arguments: ``argv`` when a ``main(argv)`` was called with them, else this process's), the
    processor (model name and torch's CPU capability), the thread count and the torch version,
    so that no timing is read without its machine."""
    import torch

    args = sys.argv[1:] if argv is None else argv
    return {
        "command": shlex.join(["python", script, *args]),
        "processor": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def environment(repo: Path) -> dict[str, Any]:
    """torch version, device name (CUDA's when present), CPU model and capability, git state."""
    probe = subprocess.run(
        [sys.executable, "-c", ENV_PROBE], capture_output=True, text=True, check=False
    )
    try:
        info = json.loads(probe.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        info = {"probe_error": probe.stderr.strip()[-500:]}
    info["cpu_model"] = cpu_model()
    info["uncommitted_changes"] = bool(git(repo, "status", "--porcelain"))
    return info


def git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""
