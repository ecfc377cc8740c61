"""Build GROMACS with the mdi_mlmm MDI module, reproducibly, into a cache.

``mdi-mlmm gromacs build`` (see :func:`build`):

1. obtains GROMACS source -- by default Debian's source package for 2022.5
   (``apt-get source --download-only gromacs``; needs a ``deb-src`` apt entry),
   or a user-given source tree / tarball;
2. extracts it to ``<root>/src/gromacs-<version>`` and hooks our module in
   (:mod:`mdi_mlmm.hosts.gromacs.inject`);
3. configures with CMake (thread-MPI, OpenMP, AVX2 SIMD when the CPU has it, no GPU,
   FFTW3 from the system, ccache when available) in ``<root>/build/<version>-<opts>``,
   a build tree that is reused across module changes so only changed files recompile;
4. builds with make (progress condensed to percentage lines; full log kept) and installs
   into ``<root>/<version>-<key>``, where *key* hashes the GROMACS source, our module
   sources, the build options, the MDI library and the compiler. Same inputs: the cached
   install is reused in seconds.

``<root>`` is ``$MDI_MLMM_CACHE/gromacs`` (default ``~/.cache/mdi_mlmm/gromacs``) or
``--cache-dir``. ``<root>/current`` points at the last successful build; its
``bin/gmx`` is what :func:`gmx_path` (``mdi-mlmm gromacs path``) returns.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ... import processes
from ...errors import BuildError, UserInputError
from . import inject as _inject

log = logging.getLogger(__name__)

DEFAULT_VERSION = "2022.5"
SUPPORTED_SERIES = "2022"
STAMP = "mdi_mlmm_build.json"
#: installs kept in the cache (most recent first); older ones are removed after a build
KEEP_INSTALLS = 3


# ----------------------------------------------------------------------------- locations
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory holding sources, build trees, ccache and installs."""
    if cache_dir:
        return Path(cache_dir).expanduser().resolve()
    base = os.environ.get("MDI_MLMM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mdi_mlmm")
    return Path(base).expanduser().resolve() / "gromacs"


def gmx_path(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """``gmx`` of the current cached build, or ``None``."""
    gmx = cache_root(cache_dir) / "current" / "bin" / "gmx"
    return gmx.resolve() if gmx.is_file() and os.access(gmx, os.X_OK) else None


def require_gmx(cache_dir: str | os.PathLike | None = None) -> Path:
    """Like :func:`gmx_path` but raises :class:`HostError` with the fix when absent."""
    from ...errors import HostError

    gmx = gmx_path(cache_dir)
    if gmx is None:
        raise HostError(f"no MDI-enabled GROMACS build in {cache_root(cache_dir)}; run `mdi-mlmm gromacs build` first")
    return gmx


def mdi_package_dir() -> Path:
    """Directory of the pymdi ``mdi`` package (mdi.h and libmdi.so live there)."""
    try:
        import mdi  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise BuildError("pymdi is not installed (pip install pymdi)") from exc
    d = Path(mdi.__file__).resolve().parent
    if not (d / "mdi.h").is_file() or not any((d / n).is_file() for n in ("libmdi.so.1", "libmdi.so")):
        raise BuildError(f"pymdi at {d} ships no mdi.h/libmdi.so; reinstall pymdi>=1.4")
    return d


def _staged_mdi(root: Path, pkg_dir: Path) -> Path:
    """A copy of pymdi's ``mdi.h`` and ``libmdi.so*`` in the cache, named by their hash.

    The build options (and so the build-tree key) then name a stable directory instead of the
    virtual environment the build was started from: a fresh venv (a new clone, CI) reuses the
    cached build, and the build never points into a venv that may be deleted.
    """
    files = sorted(p for p in pkg_dir.iterdir() if p.name == "mdi.h" or p.name.startswith("libmdi.so"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(_sha256_file(f).encode())
    dest = root / "mdi" / h.hexdigest()[:12]
    if not dest.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".mdi-", dir=root))
        for f in files:
            shutil.copy2(f, tmp / f.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            tmp.rename(dest)
        except OSError:  # another build staged it first
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ----------------------------------------------------------------------------- helpers
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tool_version(cmd: list[str]) -> str:
    try:
        out = processes.run(cmd, capture_output=True, text=True).stdout
        return out.splitlines()[0].strip() if out else "?"
    except OSError:
        return "absent"


def detect_simd() -> str:
    """GROMACS SIMD level for this CPU: AVX2_256 when the CPU has avx2 (and fma)."""
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        flags = set()
    if {"avx2", "fma"} <= flags:
        return "AVX2_256"
    if "avx" in flags:
        return "AVX_256"
    if "sse4_1" in flags:
        return "SSE4.1"
    return "None"


def source_version(tree: Path) -> str:
    m = re.search(r"project\(\s*Gromacs\s+VERSION\s+([0-9.]+)", (tree / "CMakeLists.txt").read_text())
    if not m:
        raise BuildError(f"cannot read the GROMACS version from {tree}/CMakeLists.txt")
    return m.group(1)


@contextmanager
def _locked(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another build holds %s/.lock; waiting", root)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# ----------------------------------------------------------------------------- source
def _debian_source(root: Path, progress: Callable[[str], None]) -> Path:
    """The Debian ``gromacs`` source package's pristine upstream tarball (downloaded once)."""
    dl = root / "downloads"
    have = sorted(dl.glob("gromacs_*.orig.tar.gz")) if dl.is_dir() else []
    if have:
        return have[-1]
    if shutil.which("apt-get") is None:
        raise BuildError("no GROMACS source given and apt-get is unavailable; pass --source DIR_OR_TARBALL")
    dl.mkdir(parents=True, exist_ok=True)
    progress("downloading the Debian gromacs source package (apt-get source --download-only gromacs)")
    r = processes.run(["apt-get", "source", "--download-only", "gromacs"], cwd=dl, capture_output=True, text=True)
    have = sorted(dl.glob("gromacs_*.orig.tar.gz"))
    if r.returncode != 0 or not have:
        raise BuildError(
            "could not fetch the Debian gromacs source package:\n" + (r.stderr or r.stdout).strip()[-1500:]
            + "\nAdd a deb-src entry, e.g. /etc/apt/sources.list.d/debian-src.sources with\n"
            "  Types: deb-src\n  URIs: http://deb.debian.org/debian\n  Suites: bookworm bookworm-updates\n"
            "  Components: main\n  Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            "then `apt-get update`, or pass --source DIR_OR_TARBALL.")
    return have[-1]


def _identify_source(source: str | os.PathLike | None, root: Path, progress) -> tuple[Path, str]:
    """(path, source id); path is a tarball or a directory."""
    if source is None:
        tarball = _debian_source(root, progress)
        return tarball, "tar:" + _sha256_file(tarball)
    p = Path(source).expanduser().resolve()
    if p.is_dir():
        if not (p / "src" / "gromacs").is_dir():
            raise UserInputError(f"--source {p}: not a GROMACS source tree (no src/gromacs)")
        return p, f"dir:{p}:{source_version(p)}"
    if p.is_file() and re.search(r"\.(tar\.gz|tgz|tar\.bz2|tar\.xz|tar)$", p.name):
        return p, "tar:" + _sha256_file(p)
    raise UserInputError(f"--source {source}: neither a GROMACS source directory nor a .tar.gz/.tar.xz tarball")


def _extract(path: Path, dest: Path) -> None:
    """Put the GROMACS tree at ``path`` (dir or tarball) into ``dest``."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        if path.is_dir():
            shutil.copytree(path, tmp / "tree", symlinks=True)
            top = tmp / "tree"
        else:
            with tarfile.open(path) as tf:
                kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(tmp, **kw)
            tops = [d for d in tmp.iterdir() if d.is_dir()]
            if len(tops) != 1 or not (tops[0] / "CMakeLists.txt").is_file():
                raise BuildError(f"{path}: expected one top-level GROMACS directory in the tarball")
            top = tops[0]
        if dest.exists():
            shutil.rmtree(dest)
        top.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_source(source, root: Path, progress) -> tuple[Path, str, str]:
    """Extract (if needed) and inject. Returns (tree, version, source id)."""
    path, source_id = _identify_source(source, root, progress)
    src_dir = root / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    # version: from the directory, or from the tarball name / contents after extraction
    m = re.search(r"gromacs[_-]([0-9]{4}(?:\.[0-9]+)?)", path.name)
    version_guess = source_version(path) if path.is_dir() else (m.group(1) if m else "unknown")
    tree = src_dir / f"gromacs-{version_guess}"
    id_file = tree / ".mdi_mlmm_source"
    if not (id_file.is_file() and id_file.read_text().strip() == source_id):
        progress(f"unpacking GROMACS source {path.name} -> {tree}")
        _extract(path, tree)
        id_file.write_text(source_id + "\n")
    version = source_version(tree)
    if not version.startswith(SUPPORTED_SERIES):
        raise BuildError(f"GROMACS {version}: the MDI module supports GROMACS {SUPPORTED_SERIES}.x only")
    changed = _inject.inject(tree)
    if changed:
        progress(f"hooked the MDI module into the source tree ({len(changed)} files changed)")
    return tree, version, source_id


# ----------------------------------------------------------------------------- configure/build
def cmake_options(mdi_dir: Path, simd: str, use_ccache: bool) -> list[str]:
    opts = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGMX_GPU=OFF",
        "-DGMX_MPI=OFF",
        "-DGMX_THREAD_MPI=ON",
        "-DGMX_OPENMP=ON",
        f"-DGMX_SIMD={simd}",
        "-DGMX_BUILD_OWN_FFTW=OFF",
        "-DGMX_FFT_LIBRARY=fftw3",
        # Debian's gromacs package pulls in a partial OpenMPI that trips FindMPI
        "-DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON",
        "-DBUILD_TESTING=OFF",
        "-DGMX_BUILD_HELP=OFF",
        "-DGMX_INSTALL_LEGACY_API=OFF",
        "-DGMX_INSTALL_NBLIB_API=OFF",
        "-DGMXAPI=OFF",
        "-DGMX_PYTHON_PACKAGE=OFF",
        "-DGMX_HWLOC=OFF",
        "-DREGRESSIONTEST_DOWNLOAD=OFF",
        f"-DMDI_MLMM_MDI_DIR={mdi_dir}",
    ]
    if use_ccache:
        opts += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    return opts


def _ccache_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CCACHE_DIR", str(root / "ccache"))
    env.setdefault("CCACHE_BASEDIR", str(root))  # relative paths: hits across build trees
    env.setdefault("CCACHE_NOHASHDIR", "true")
    env.setdefault("CCACHE_MAXSIZE", "5G")
    # NB: do not touch LANG/LC_*: ccache hashes them, a change would miss every cached object
    return env


_PCT = re.compile(r"^\[\s*(\d+)%\]")


def _run_logged(cmd: list[str], cwd: Path, logfile: Path, env: dict, progress, what: str,
                condense_percent: bool = False) -> None:
    t0 = time.monotonic()
    last_pct, last_t = -1, 0.0
    tail: list[str] = []
    with open(logfile, "w") as lf:
        lf.write("$ " + " ".join(cmd) + "\n")
        proc = processes.start(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            lf.write(line)
            lf.flush()
            tail.append(line.rstrip())
            del tail[:-40]
            if condense_percent:
                m = _PCT.match(line)
                if m:
                    pct = int(m.group(1))
                    now = time.monotonic()
                    if pct >= last_pct + 5 or (pct > last_pct and now - last_t > 30):
                        progress(f"{what} {pct:3d}%  ({now - t0:5.0f} s)")
                        last_pct, last_t = pct, now
        rc = proc.wait()
        processes.forget(proc)
    if rc != 0:
        errs = [ln for ln in tail if "error" in ln.lower()] or tail
        raise BuildError(f"{what} failed (exit {rc}); last lines:\n  " + "\n  ".join(errs[-25:])
                         + f"\nfull log: {logfile}")


@dataclass
class BuildResult:
    gmx: Path
    prefix: Path
    cached: bool
    seconds: float
    key: str
    version: str


def build(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
          jobs: int | None = None, force: bool = False,
          progress: Callable[[str], None] | None = None) -> BuildResult:
    """Build (or reuse) GROMACS + MDI module; returns where ``gmx`` is."""
    t0 = time.monotonic()
    progress = progress or (lambda msg: print(f"[gromacs build] {msg}", file=sys.stderr, flush=True))
    root = cache_root(cache_dir)
    jobs = jobs or os.cpu_count() or 1
    with _locked(root):
        tree, version, source_id = prepare_source(source, root, progress)
        mdi_dir = _staged_mdi(root, mdi_package_dir())
        libmdi = next(mdi_dir / n for n in ("libmdi.so.1", "libmdi.so") if (mdi_dir / n).is_file())
        use_ccache = shutil.which("ccache") is not None
        simd = detect_simd()
        opts = cmake_options(mdi_dir, simd, use_ccache)
        compiler = _tool_version(["c++", "--version"])
        cmake_v = _tool_version(["cmake", "--version"])
        opt_key = hashlib.sha256(json.dumps([source_id, version, opts, compiler, cmake_v]).encode()).hexdigest()
        key = hashlib.sha256(
            json.dumps([opt_key, _inject.module_hash(), _sha256_file(libmdi)]).encode()).hexdigest()[:12]
        prefix = root / f"{version}-{key}"
        current = root / "current"

        stamp = prefix / STAMP
        if not force and stamp.is_file() and (prefix / "bin" / "gmx").is_file():
            _point_current(current, prefix)
            dt = time.monotonic() - t0
            progress(f"cached build {prefix.name} is up to date ({dt:.1f} s)")
            return BuildResult(prefix / "bin" / "gmx", prefix, True, dt, key, version)

        bdir = root / "build" / f"{version}-{opt_key[:12]}"
        bdir.mkdir(parents=True, exist_ok=True)
        env = _ccache_env(root)
        opts_file = bdir / "mdi_mlmm_cmake_options.json"
        configured = (bdir / "CMakeCache.txt").is_file() and opts_file.is_file() \
            and json.loads(opts_file.read_text()) == opts
        if not configured:
            if (bdir / "CMakeCache.txt").is_file():
                shutil.rmtree(bdir)
                bdir.mkdir(parents=True)
            progress(f"configuring GROMACS {version} (SIMD {simd}, {'ccache' if use_ccache else 'no ccache'})")
            _run_logged(["cmake", "-S", str(tree), "-B", str(bdir), f"-DCMAKE_INSTALL_PREFIX={root / 'unused-prefix'}",
                         *opts], bdir, bdir / "configure.log", env, progress, "configure")
            opts_file.write_text(json.dumps(opts, indent=1))
        progress(f"building with make -j{jobs} (log: {bdir / 'build.log'})")
        _run_logged(["make", f"-j{jobs}"], bdir, bdir / "build.log", env, progress, "build",
                    condense_percent=True)

        tmp_prefix = root / f".{prefix.name}.tmp"
        if tmp_prefix.exists():
            shutil.rmtree(tmp_prefix)
        _run_logged(["cmake", "--install", str(bdir), "--prefix", str(tmp_prefix)], bdir, bdir / "install.log",
                    env, progress, "install")
        gmx = tmp_prefix / "bin" / "gmx"
        r = processes.run([str(gmx), "--version"], capture_output=True, text=True)
        if r.returncode != 0 or version not in r.stdout:
            raise BuildError(f"the installed gmx does not run:\n{r.stdout[-800:]}{r.stderr[-800:]}")
        info = {
            "gromacs_version": version, "key": key, "source": source_id, "simd": simd,
            "cmake_options": opts, "compiler": compiler, "cmake": cmake_v,
            "module_hash": _inject.module_hash(), "mdi_library": str(libmdi),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S"), "build_dir": str(bdir),
            "build_seconds": round(time.monotonic() - t0, 1),
        }
        (tmp_prefix / STAMP).write_text(json.dumps(info, indent=1) + "\n")
        if prefix.exists():
            shutil.rmtree(prefix)
        tmp_prefix.rename(prefix)
        _point_current(current, prefix)
        _prune_installs(root, keep=KEEP_INSTALLS, protect=prefix)
        dt = time.monotonic() - t0
        progress(f"installed {prefix} in {dt:.0f} s")
        return BuildResult(prefix / "bin" / "gmx", prefix, False, dt, key, version)


def _prune_installs(root: Path, keep: int, protect: Path) -> None:
    installs = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (p / STAMP).is_file()),
                      key=lambda p: (p / STAMP).stat().st_mtime, reverse=True)
    for old in installs[keep:]:
        if old != protect:
            shutil.rmtree(old, ignore_errors=True)


def _point_current(current: Path, prefix: Path) -> None:
    tmp = current.with_name(".current.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(prefix.name)
    tmp.replace(current)


def build_info(cache_dir=None) -> dict | None:
    """The stamp of the current build (what it was built from), or None."""
    stamp = cache_root(cache_dir) / "current" / STAMP
    return json.loads(stamp.read_text()) if stamp.is_file() else None
