"""Builds the native int8 kernel library (native/src/*.c) and its Cython binding.

The C kernels are compiled as static libraries with their own strict flags (C99, warnings as
errors); the Cython module that binds them is compiled with the compiler's defaults, because
generated code is not ours to keep warning-free. No -march flag is passed to the library as a
whole: a microkernel file names its ISA in its suffix (native/src/ukernels/*/NAME-avx2.c, ...),
only that file gets the ISA's flags, and fn_cpu.c picks the kernels at run time, so one build
runs on any machine of the architecture.
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
# The flags of each ISA suffix, and the machines whose builds carry it (native/Makefile agrees).
ISA_FLAGS = {
    "avx2": (["-mavx2", "-mfma"], ("x86_64", "AMD64")),
    "avx512vnni": (["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni"],
                   ("x86_64", "AMD64")),
    "neondot": (["-march=armv8.2-a+dotprod"], ("aarch64", "arm64")),
}


def isa_of(source: str) -> str | None:
    stem = Path(source).stem
    return next((isa for isa in ISA_FLAGS if stem.endswith("-" + isa)), None)
KERNEL_HEADERS = sorted(str(p.relative_to(HERE)) for p in (HERE / "native" / "include").rglob("*.h"))
BINDING = HERE / "native" / "_native.pyx"
STRICT_CFLAGS = ["-std=c99", "-O3", "-Wall", "-Wextra", "-Werror", "-fPIC", "-D_POSIX_C_SOURCE=200809L"]

libraries = []
ext_modules = []
if BINDING.exists():
    from Cython.Build import cythonize

    import platform

    machine = platform.machine()
    groups: dict[str | None, list[str]] = {None: []}
    for src in KERNEL_SOURCES:
        isa = isa_of(src)
        if isa is None or machine in ISA_FLAGS[isa][1]:
            groups.setdefault(isa, []).append(src)
    # the portable library first: it calls into the ISA libraries, which a static link needs after it
    for isa, sources in groups.items():
        extra = ISA_FLAGS[isa][0] if isa else []
        defines = ["-DFN_HAVE_NEONDOT"] if "neondot" in groups else []
        libraries.append(
            (
                "fleetnode_kernels" + (f"_{isa}" if isa else ""),
                {
                    "sources": sources,
                    "include_dirs": ["native/include"],
                    "cflags": STRICT_CFLAGS + extra + defines,
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
