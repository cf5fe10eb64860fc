"""Can this host run an image's binaries? Its own architecture, or another through binfmt_misc.

Owns the check made before a container of an image starts: an image for another platform is a
clear error (rather than an exec failing with ENOEXEC, or an arm image running a host binary
that happened to be found) unless the kernel has a binfmt_misc handler for that architecture's
ELF files (qemu-user-static, as Docker's and podman's multi-platform support use). Reads
``/proc/sys/fs/binfmt_misc`` (a parameter, so it can be tested against a fixture tree); changes
nothing.
"""

from __future__ import annotations

import os

from isolate._typing import TYPE_CHECKING
from isolate.errors import UnsupportedError
from isolate.image.reference import Platform, host_platform

if TYPE_CHECKING:
    from typing import Literal

__all__ = ["BINFMT_MISC", "check_runnable", "handler_for"]

BINFMT_MISC = "/proc/sys/fs/binfmt_misc"

# OCI architecture -> (ELF class, data encoding, e_machine).
_ELF: dict[str, tuple[int, int, int]] = {
    "amd64": (2, 1, 62), "386": (1, 1, 3), "arm64": (2, 1, 183), "arm": (1, 1, 40),
    "ppc64le": (2, 1, 21), "ppc64": (2, 2, 21), "s390x": (2, 2, 22), "riscv64": (2, 1, 243),
    "mips64le": (2, 1, 8), "mips64": (2, 2, 8), "mipsle": (1, 1, 8), "mips": (1, 2, 8),
    "loong64": (2, 1, 258),
}
# What a host's kernel runs without help: its own architecture, and 32-bit x86 on x86-64
# (IA32 emulation, on in every distribution's kernel).
_NATIVE_EXTRA = {"amd64": {"386"}}


def _elf_header(arch: str, e_type: int) -> bytes | None:
    """The first 20 bytes of an ELF file of ``arch`` (an executable or shared object)."""
    if arch not in _ELF:
        return None
    elf_class, data, machine = _ELF[arch]
    order: Literal["little", "big"] = "little" if data == 1 else "big"
    return (b"\x7fELF" + bytes([elf_class, data, 1]) + bytes(9)
            + e_type.to_bytes(2, order) + machine.to_bytes(2, order))


def _matches(entry: dict[str, str], header: bytes) -> bool:
    try:
        magic = bytes.fromhex(entry["magic"])
        mask = bytes.fromhex(entry.get("mask", "ff" * len(magic)))
        offset = int(entry.get("offset", "0"))
    except (KeyError, ValueError):
        return False  # an extension handler, or one we cannot read
    sample = header[offset : offset + len(magic)]
    if len(sample) < len(magic) or len(mask) < len(magic):
        return False
    return all((s & m) == (g & m) for s, m, g in zip(sample, mask, magic, strict=False))


def _entries(binfmt_dir: str) -> list[tuple[str, dict[str, str], bool]]:
    """(name, fields, enabled) of every registered handler."""
    out = []
    try:
        names = sorted(os.listdir(binfmt_dir))
    except OSError:
        return []  # not mounted (as in most containers): no handlers
    for name in names:
        if name in ("status", "register"):
            continue
        try:
            with open(os.path.join(binfmt_dir, name), encoding="ascii", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        fields = {}
        for line in lines[1:]:
            key, _, value = line.partition(" ")
            fields[key.rstrip(":")] = value.strip()
        out.append((name, fields, bool(lines) and lines[0].strip() == "enabled"))
    return out


def handler_for(arch: str, binfmt_dir: str = BINFMT_MISC) -> tuple[str, str] | None:
    """The enabled binfmt_misc handler that runs ``arch``'s ELF programs inside containers
    (it has the ``F`` flag, so its interpreter need not exist in the container's root):
    ``(name, interpreter)``, or None.

    Raises:
        UnsupportedError: a handler matches but lacks the ``F`` flag.
    """
    try:
        with open(os.path.join(binfmt_dir, "status"), encoding="ascii") as f:
            if f.read().strip() != "enabled":
                return None
    except OSError:
        return None
    headers = [h for h in (_elf_header(arch, 2), _elf_header(arch, 3)) if h is not None]
    for name, fields, enabled in _entries(binfmt_dir):
        if not enabled or not any(_matches(fields, h) for h in headers):
            continue
        interpreter = fields.get("interpreter", "?")
        if "F" not in fields.get("flags", ""):
            raise UnsupportedError(
                f"the binfmt_misc handler {name!r} for {arch} ({interpreter}) lacks the F "
                "flag, so its interpreter cannot be found inside a container: register it "
                "with F (qemu-user-static does)", missing=f"binfmt_misc F flag for {arch}")
        return name, interpreter
    return None


def check_runnable(platform: Platform, *, host: Platform | None = None,
                   binfmt_dir: str = BINFMT_MISC) -> None:
    """Refuse to run an image whose programs this host cannot execute.

    Fine: ``linux`` images of the host's architecture (any variant), 32-bit x86 on x86-64,
    and any architecture an enabled binfmt_misc handler with the ``F`` flag serves.

    Raises:
        UnsupportedError: another OS, or another architecture without such a handler (the
            message says which platform the image is for and how to run it).
    """
    host = host or host_platform()
    if platform.os != "linux":
        raise UnsupportedError(f"the image is for {platform}: only linux images run here",
                               missing=f"{platform.os} kernel")
    arch = platform.architecture
    if arch == host.architecture or arch in _NATIVE_EXTRA.get(host.architecture, ()):
        return
    if handler_for(arch, binfmt_dir) is not None:
        return
    raise UnsupportedError(
        f"the image is for {platform} but this host is {host}, and no binfmt_misc handler "
        f"runs {arch} programs (install qemu-user-static, or use an image for {host}: "
        f"pull or load it with --platform {host})", missing=f"binfmt_misc handler for {arch}")
