"""Builds the native int8 kernel library (native/src/*.c) and its Cython binding.

The C kernels are compiled as a static library with their own strict flags (C99, warnings as
errors); the Cython module that binds them is compiled with the compiler's defaults, because
generated code is not ours to keep warning-free. No -march flag is passed: SIMD kernels opt in
per function and are chosen at load time by CPU features.
"""

from __future__ import annotations

from pathlib import Path

import numpy
from setuptools import Extension, setup

HERE = Path(__file__).parent
KERNEL_SOURCES = sorted(str(p.relative_to(HERE)) for p in (HERE / "native" / "src").rglob("*.c"))
BINDING = HERE / "native" / "_native.pyx"
STRICT_CFLAGS = ["-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-fPIC", "-D_POSIX_C_SOURCE=200809L"]

libraries = []
ext_modules = []
if BINDING.exists():
    from Cython.Build import cythonize

    if KERNEL_SOURCES:
        libraries.append(
            (
                "fleetnode_kernels",
                {
                    "sources": KERNEL_SOURCES,
                    "include_dirs": ["native/include"],
                    "cflags": STRICT_CFLAGS,
                },
            )
        )
    ext_modules = cythonize(
        [
            Extension(
                "agent.inference._native",
                sources=["native/_native.pyx"],
                include_dirs=["native/include", numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=["-O2"],
                libraries=["pthread"],
            )
        ],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )

setup(libraries=libraries, ext_modules=ext_modules)
