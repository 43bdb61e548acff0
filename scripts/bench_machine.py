"""What the benchmark scripts print about the machine they ran on (shared by them)."""

from __future__ import annotations

import os
from pathlib import Path


def _unescape_mount_field(field: str) -> str:
    """/proc/mounts writes a space in a path as \\040 (and tab, newline, backslash likewise)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_of(path: Path) -> str:
    """The type, device and options of the mount holding ``path``, from /proc/mounts."""
    target = os.path.realpath(path)
    best: tuple[str, str, str, str] | None = None
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                device, mount, fstype, options = line.split()[:4]
                mount = _unescape_mount_field(mount)
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and (best is None or len(mount) >= len(best[1])):
                    best = (device, mount, fstype, options)
    except OSError:
        return "unknown (no /proc/mounts)"
    if best is None:
        return "unknown"
    device, mount, fstype, options = best
    return f"{fstype} on {device}, mounted at {mount} ({options})"
