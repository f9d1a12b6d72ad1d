"""Builds natbench's C++ CPU kernel (natbench/attention/csrc) against the installed torch.

The kernel is optional: without torch at build time, or if the compiler fails, natbench installs without it
and the `fused` attention backend reports why it cannot run.
"""

import re
from pathlib import Path

from setuptools import setup

# The instruction-set extensions of the CPU that compiled the kernel with -march=native: fused.py refuses to load
# it on a CPU that lacks one (a shared install on another node) instead of dying of SIGILL on import.
ISA_FILE = Path(__file__).parent / "natbench" / "attention" / "_na_cpu.isa"
ISA_FLAG = re.compile(r"^(sse|ssse|avx|fma|f16c|bmi|adx|amx|vaes|vpclmul|gfni|sha|movbe|popcnt|abm)")


def _record_isa() -> None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    flags = sorted(f for f in line.partition(":")[2].split() if ISA_FLAG.match(f))
    ISA_FILE.write_text(" ".join(flags) + "\n")


def _extension():
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        return {}, []
    ext = CppExtension(
        "natbench.attention._na_cpu",
        ["natbench/attention/csrc/na_cpu.cpp"],
        # Built where it runs (an editable install): native vector width; torch's own OpenMP runtime.
        extra_compile_args=["-O3", "-march=native", "-fopenmp"],
        extra_link_args=["-fopenmp"],
        optional=True,
    )
    _record_isa()
    return {"build_ext": BuildExtension.with_options(use_ninja=False)}, [ext]


cmdclass, ext_modules = _extension()
setup(cmdclass=cmdclass, ext_modules=ext_modules)
