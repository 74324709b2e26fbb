"""Build the C API's shared library (and, with --examples, the C and C++ examples) with the system compiler.

    python capi/build.py [--out build/capi] [--examples]

Run it with the Python of the environment the library should embed (a venv's python works: the library links
that Python's libpython, and a host then finds the SDK through CEPHALO_PYTHON=<that python>). Prints each command.
Linux and macOS (cc / c++); on Windows use CMake (capi/CMakeLists.txt; untested).
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def python_flags():
    """(compile flags, link flags) to embed this interpreter."""
    inc = sysconfig.get_paths()["include"]
    libdir = sysconfig.get_config_var("LIBDIR")
    ver = sysconfig.get_config_var("LDVERSION") or sysconfig.get_config_var("VERSION")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") and sys.platform != "darwin":
        raise SystemExit(f"{sys.executable} has no shared libpython (built without --enable-shared): "
                         f"use a Python with libpython{ver}.so to embed")
    return [f"-I{inc}"], [f"-L{libdir}", f"-lpython{ver}", f"-Wl,-rpath,{libdir}"]


def library_name() -> str:
    return "libcephalo.dylib" if sys.platform == "darwin" else "libcephalo.so"


def run(cmd) -> None:
    print(" ".join(shlex.quote(str(c)) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True)


def build(out: Path, examples: bool = False, cc: str = "cc", cxx: str = "c++") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cflags, ldflags = python_flags()
    lib = out / library_name()
    run([cc, "-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden", *cflags,
         HERE / "cephalo.c", "-o", lib, *ldflags, "-lpthread"])
    if examples:
        link = [f"-I{HERE}", f"-L{out}", "-lcephalo", f"-Wl,-rpath,{out.resolve()}", "-lpthread"]
        run([cc, "-O2", "-std=c11", "-Wall", ROOT / "examples" / "c" / "detect_pgm.c", "-o", out / "detect_pgm",
             *link])
        run([cxx, "-O2", "-std=c++17", "-Wall", ROOT / "examples" / "cpp" / "detect.cpp", "-o", out / "detect_cpp",
             *link])
    return lib


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "capi")
    ap.add_argument("--examples", action="store_true", help="also build examples/c and examples/cpp")
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cxx", default="c++")
    a = ap.parse_args(argv)
    lib = build(a.out, a.examples, a.cc, a.cxx)
    print(f"built {lib}; hosts set CEPHALO_PYTHON={sys.executable}")


if __name__ == "__main__":
    main()
