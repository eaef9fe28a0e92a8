"""The compilers and the emulator the firmware export drives (I/O: subprocesses).

Host builds use the system C compiler (``cc``/``gcc``) with ``-std=c99 -Wall -Wextra -Werror
-pedantic``; Cortex-M4 builds use Debian's ``arm-none-eabi-gcc`` (hard float, FPv4-SP) with the
start-up code and linker script of ``c/m4`` (the Arm MPS2 AN386 memory map); they run under
``qemu-system-arm -M mps2-an386`` with semihosting and ``-icount shift=0`` (one instruction per
virtual nanosecond: repeatable counts). On Debian: ``apt-get install --no-install-recommends
gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgebert.errors import ToolchainError

HOST_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2")
M4_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
             "-mfpu=fpv4-sp-d16", "-ffunction-sections", "-fdata-sections")
M4_LDFLAGS = ("-Wl,--gc-sections",)
QEMU_ARGS = ("-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
             "-semihosting-config", "enable=on,target=native", "-icount", "shift=0")
INSTALL_HINT = ("apt-get install --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi "
                "qemu-system-arm")


def tool(name: str) -> str:
    """The path of a tool on PATH, or ToolchainError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        hint = INSTALL_HINT if ("arm" in name or "qemu" in name) else "install a C compiler (gcc)"
        raise ToolchainError(f"{name}: expected on PATH for the firmware build, found none ({hint})")
    return path


def host_cc() -> str:
    return shutil.which(os.environ.get("CC", "")) or shutil.which("cc") or tool("gcc")


def have_m4_tools() -> bool:
    return all(shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"))


def _run(cmd: list[str], cwd: Path, what: str, timeout: float = 120.0) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what}: expected to finish within {timeout:.0f} s, found it still running") from None
    except OSError as exc:
        raise ToolchainError(f"{what}: expected to run {cmd[0]}, found: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in detail if "error" in line.lower()]
        first = next((line for line in errors if not line.startswith("collect2")), errors[0] if errors else
                     (detail[0] if detail else ""))
        raise ToolchainError(f"{what}: expected exit code 0, found {done.returncode}: {first[:300]}")
    return done.stdout


def host_library(src: Path, sources: list[str], out: Path) -> Path:
    """A shared library of ``sources`` (in ``src``) for the host, warnings as errors."""
    out = Path(out).resolve()  # the compiler runs in ``src``: a relative output path would land elsewhere
    _run([host_cc(), *HOST_CFLAGS, "-shared", "-fPIC", "-o", str(out), *sources, "-lm"], Path(src).resolve(),
         "host C build")
    return out


def m4_object(src: Path, source: str, out: str) -> Path:
    _run([tool("arm-none-eabi-gcc"), *M4_CFLAGS, "-fstack-usage", "-c", "-o", out, source], src, "Cortex-M4 build")
    return src / out


def m4_image(src: Path, sources: list[str], out: str, defines: tuple[str, ...] = (), semihosting: bool = False) -> Path:
    """A Cortex-M4 ELF of ``sources`` plus ``startup.c`` and ``link.ld`` (which must be in ``src``)."""
    specs = ["--specs=rdimon.specs"] if semihosting else ["--specs=nosys.specs", "-nostartfiles"]
    flags = [*M4_CFLAGS, *M4_LDFLAGS, *specs, "-T", "link.ld", *(f"-D{d}" for d in defines)]
    if semihosting:
        flags.append("-DEB_SEMIHOSTING")
    _run([tool("arm-none-eabi-gcc"), *flags, "-o", out, "startup.c", *sources, "-lm"], src, "Cortex-M4 build")
    return src / out


@dataclass(frozen=True)
class Sections:
    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


def size(path: Path) -> Sections:
    """``arm-none-eabi-size`` (Berkeley format) of an ELF or object file."""
    path = Path(path).resolve()
    out = _run([tool("arm-none-eabi-size"), "-B", str(path)], path.parent, "arm-none-eabi-size")
    fields = out.strip().splitlines()[-1].split()
    try:
        return Sections(int(fields[0]), int(fields[1]), int(fields[2]))
    except (IndexError, ValueError):
        raise ToolchainError(f"arm-none-eabi-size: expected text/data/bss figures, found {out[:200]!r}") from None


def qemu(elf: Path, timeout: float = 120.0) -> str:
    """What the image prints over semihosting under ``qemu-system-arm -M mps2-an386``."""
    elf = Path(elf).resolve()
    return _run([tool("qemu-system-arm"), *QEMU_ARGS, "-kernel", str(elf)], elf.parent, "QEMU Cortex-M4 run", timeout)


__all__ = ["HOST_CFLAGS", "INSTALL_HINT", "M4_CFLAGS", "Sections", "have_m4_tools", "host_cc", "host_library",
           "m4_image", "m4_object", "qemu", "size", "tool"]
