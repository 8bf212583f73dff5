"""What a timing ran on: timings taken on different days may come from different CPUs (one machine had
AVX-512 and VNNI, another AVX2 alone), so every speed report names its CPU."""
from __future__ import annotations

import os
import platform

SIMD_LEVELS = ("avx512_vnni", "avx512f", "avx2", "asimd")  # the best one the CPU has is reported


def machine() -> dict:
    """{"cpu": model name, "cpus": count, "simd": best SIMD level, "load_average": (1, 5, 15 min)}"""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
    except OSError:
        pass
    simd = next((level for level in SIMD_LEVELS if level in flags), "unknown")
    return {"cpu": model, "cpus": os.cpu_count(), "simd": simd, "load_average": [round(x, 2) for x in os.getloadavg()]}


def describe(m: dict) -> str:
    return (f"{m['cpu']}, {m['cpus']} CPUs, best SIMD {m['simd']}; load average "
            f"{', '.join(f'{x:.1f}' for x in m['load_average'])}")
