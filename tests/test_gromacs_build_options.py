"""The MDI GROMACS build leaves out what mdrun and grompp never use (a shorter cold build, issue 11)
and keeps what makes mdrun fast: SIMD kernels, -O3, mixed precision, FFTW."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mdi_mlmm.hosts.gromacs import build

CI = bool(os.environ.get("CI"))
LIBS = (Path("/l/libblas.so.3"), Path("/l/liblapack.so.3"))


def test_options_leave_out_what_mdrun_never_uses():
    opts = build.cmake_options(Path("/mdi"), "AVX2_256", False, LIBS)
    assert {"-DGMX_USE_TNG=OFF", "-DGMX_BLAS_USER=/l/libblas.so.3",
            "-DGMX_LAPACK_USER=/l/liblapack.so.3"} <= set(opts)
    assert {"-DCMAKE_BUILD_TYPE=Release", "-DGMX_SIMD=AVX2_256", "-DGMX_FFT_LIBRARY=fftw3"} <= set(opts)
    # no system BLAS/LAPACK: GROMACS's built-in ones, as before
    assert not [o for o in build.cmake_options(Path("/mdi"), "AVX2_256", False, None) if "_USER=" in o]


def test_system_blas_lapack_are_found_as_a_pair():
    found = build.system_blas_lapack()
    if found is not None:
        blas, lapack = found
        assert blas.name == "libblas.so.3" and lapack.name == "liblapack.so.3" and blas.parent == lapack.parent
        assert blas.exists() and lapack.exists()


@pytest.mark.gromacs_build
@pytest.mark.skipif(build.gmx_path() is None and not CI, reason="no MDI-enabled GROMACS build")
def test_the_cached_build_keeps_simd_release_flags_and_fftw():
    gmx = build.gmx_path()
    assert gmx is not None, "CI is set but there is no MDI-enabled GROMACS build"
    out = subprocess.run([str(gmx), "--version"], capture_output=True, text=True, timeout=60).stdout
    field = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in out.splitlines() if ":" in ln}
    info = build.build_info() or {}
    assert field["SIMD instructions"] == info.get("simd", build.detect_simd())
    assert field["Precision"] == "mixed" and field["CPU FFT library"].startswith("fftw-3")
    assert "-O3" in field["C++ compiler flags"].split()
    if "-DGMX_USE_TNG=OFF" in info.get("cmake_options", []):    # a build made with these options
        assert field["TNG support"] == "disabled"
        ldd = subprocess.run(["ldd", str(gmx)], capture_output=True, text=True).stdout
        libgromacs = next((ln.split("=>")[1].split()[0] for ln in ldd.splitlines() if "libgromacs" in ln), None)
        deps = subprocess.run(["ldd", libgromacs or str(gmx)], capture_output=True, text=True).stdout
        assert "liblapack.so.3" in deps and "libblas.so.3" in deps
