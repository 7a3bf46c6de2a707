"""Builds the epyard Python package with CMake against the torch of the running interpreter.

    pip install --no-build-isolation .

(--no-build-isolation: the extension must be compiled against the torch you will import; an
isolated build environment would not have it.) CMake options pass through EPYARD_CMAKE_ARGS."""
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("epyard: torch is not importable in the build environment; install torch, then "
                     "build with `pip install --no-build-isolation .`")
        src = os.path.dirname(os.path.abspath(__file__))
        build = os.path.abspath(self.build_temp)
        out = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        cfg = ["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DEPYARD_BUILD_TESTS=OFF",
               "-DEPYARD_WERROR=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
        cfg += shlex.split(os.environ.get("EPYARD_CMAKE_ARGS", ""))
        subprocess.check_call(cfg)
        subprocess.check_call(["cmake", "--build", build, "--target", "epyard_torch", "-j", str(os.cpu_count() or 2)])
        pkg = os.path.join(build, "python", "epyard")
        if not any(f.startswith("_C") for f in os.listdir(pkg) if os.path.isfile(os.path.join(pkg, f))):
            sys.exit("epyard: CMake did not build epyard._C (see its messages above: torch with CUDA, "
                     "the CUDA toolkit and NCCL are needed)")
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(pkg):
            self.copy_file(os.path.join(pkg, f), os.path.join(out, f))


setup(packages=[], ext_modules=[Extension("epyard._C", sources=[])], cmdclass={"build_ext": CMakeBuild})
