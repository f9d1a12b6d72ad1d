"""Builds natbench's C++ CPU kernel (natbench/attention/csrc) against the installed torch.

The kernel is optional: without torch at build time, or if the compiler fails, natbench installs without it
and the `fused` attention backend reports why it cannot run.
"""

from setuptools import setup


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
    return {"build_ext": BuildExtension.with_options(use_ninja=False)}, [ext]


cmdclass, ext_modules = _extension()
setup(cmdclass=cmdclass, ext_modules=ext_modules)
