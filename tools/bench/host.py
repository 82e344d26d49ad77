"""The machine a benchmark ran on, as `cargo xtask bench` records it (memory-layers-benches'
`Host`): `bench --report` divides times only between files of the same host."""

import os
import subprocess
from pathlib import Path


def _cpuinfo():
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _number(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def detect(simd):
    """The host, with `simd` the SIMD level the measured library dispatches to."""
    info = _cpuinfo()
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "cpu": info.get("model name", os.uname().machine),
        "vendor": info.get("vendor_id", ""),
        "family": _number(info.get("cpu family")),
        "model": _number(info.get("model")),
        "stepping": _number(info.get("stepping")),
        "simd": simd,
        "cores": _number(info.get("cpu cores")),
        "threads": len(os.sched_getaffinity(0)),
        "memory_bytes": memory,
        "commit": commit,
    }
