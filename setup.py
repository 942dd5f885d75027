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
from setuptools.command.build_ext import build_ext


class BuildExtWithKernels(build_ext):
    """`build_ext --inplace` alone must also build the kernel library it links against."""

    def run(self) -> None:
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()

HERE = Path(__file__).parent
KERNEL_SOURCES = sorted(str(p.relative_to(HERE)) for p in (HERE / "native" / "src").rglob("*.c"))
KERNEL_HEADERS = sorted(str(p.relative_to(HERE)) for p in (HERE / "native" / "include").rglob("*.h"))
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
                    "depends": KERNEL_HEADERS,
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
                libraries=["m", "pthread"],
                # relink whenever a kernel changes: the static library is not a tracked source
                depends=KERNEL_SOURCES + KERNEL_HEADERS,
            )
        ],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )

setup(libraries=libraries, ext_modules=ext_modules, cmdclass={"build_ext": BuildExtWithKernels})
