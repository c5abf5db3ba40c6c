"""Which kind of processor this is. TensorFlow and XLA choose their kernels by it, so a commit
trains the same bytes on one kind of processor and other bytes on another (README "Which
machine"): the train stage and `digits bench` name it."""

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The x86 instruction sets that change which kernels multiply, as the kernels' vendors name them.
KERNEL_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX512-BF16",
    "amx_bf16": "AMX",
}
# Two processors of one name and instruction sets can still differ in their caches and kernels.
MODEL_FIELDS = {"cpu family": "family", "model": "model"}


def describe_processor(cpuinfo: str) -> str:
    """The first processor of /proc/cpuinfo's text as one line, e.g. ``AMD EPYC (family 26,
    model 2; AVX2, AVX-512, AVX512-BF16)``; '' when the text names no processor."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            if fields:
                break  # a blank line ends the first processor's block
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name", "")
    if not name:
        return ""
    flags = set(fields.get("flags", "").split())
    features = [label for flag, label in KERNEL_FEATURES.items() if flag in flags]
    model = [f"{label} {fields[key]}" for key, label in MODEL_FIELDS.items() if key in fields]
    details = "; ".join(part for part in (", ".join(model), ", ".join(features)) if part)
    return f"{name} ({details})" if details else name


def this_processor() -> str:
    """This machine's processor as `describe_processor` names it, and how many cores this process
    may use; Python's platform name of it where /proc/cpuinfo is missing (not Linux)."""
    try:
        described = describe_processor(CPUINFO.read_text())
    except OSError:
        described = ""
    name = described or platform.processor() or platform.machine() or "unknown processor"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {cores} cores"
