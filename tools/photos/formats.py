"""The files the photos come in: Qt resource bundles, .deb packages, Debian copyright files."""

from __future__ import annotations

import fnmatch
import re
import struct
import subprocess
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

# --------------------------------------------------------------------------- Qt rcc


def read_rcc(data: bytes) -> dict[str, bytes]:
    """The files inside a Qt resource bundle (``.rcc``, formats 1 to 3), by path.

    Layout (qtbase ``rcc.cpp``): a 20-byte header ("qres", version, tree, data and
    names offsets, big-endian; version 3 adds a flags word), a tree of fixed-size nodes
    (name offset, flags, then a directory's child count and first child, or a file's
    locale and data offset; version 2+ adds a modification time), names as UTF-16BE with
    a length and hash, and data as a 4-byte length then bytes. Zlib-compressed files
    (flag 1) start with their uncompressed length; zstd ones (flag 4) are refused.
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource bundle (no 'qres' magic)")
    version, tree, blobs, names = struct.unpack_from(">IIII", data, 4)
    if version not in (1, 2, 3):
        raise ValueError(f"unsupported rcc format version {version}")
    node_size = 14 if version == 1 else 22
    files: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # length (2) and hash (4)
        return data[start:start + 2 * length].decode("utf-16-be")

    def walk(node: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise ValueError("rcc tree too deep (corrupt file?)")
        base = tree + node * node_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        path = prefix if node == 0 else f"{prefix}{name_at(name_offset)}"
        if flags & 0x02:  # directory
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, f"{path}/" if path else "", depth + 1)
            return
        (offset,) = struct.unpack_from(">I", data, base + 10)
        (size,) = struct.unpack_from(">I", data, blobs + offset)
        payload = data[blobs + offset + 4:blobs + offset + 4 + size]
        if flags & 0x04:
            raise ValueError(f"{path}: zstd-compressed rcc entries are not supported")
        if flags & 0x01:
            payload = zlib.decompress(payload[4:])
        files[path] = payload

    try:
        walk(0, "", 0)
    except (struct.error, UnicodeDecodeError, zlib.error) as error:
        raise ValueError(f"corrupt rcc file: {error}") from error
    return files


# --------------------------------------------------------------------------- .deb


def deb_package(deb: Path) -> tuple[str, str]:
    """(package, version) from a .deb's file name (``name_version_arch.deb``)."""
    name, version, *_ = Path(deb).name.split("_")
    return name, version.replace("%3a", ":")


def deb_members(deb: Path, globs: Iterable[str]) -> dict[str, bytes]:
    """The files of a .deb whose paths match ``globs`` (read with ``dpkg-deb``)."""
    globs = tuple(globs)
    found = {}
    process = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as tar:
            for member in tar:
                path = member.name.removeprefix("./")
                if member.isfile() and any(fnmatch.fnmatchcase(path, g) for g in globs):
                    found[path] = tar.extractfile(member).read()
        process.stdout.read()  # the tar stream's padding, so dpkg-deb ends cleanly
    finally:
        process.stdout.close()
        code = process.wait()
    if code:
        raise RuntimeError(f"dpkg-deb could not read {deb} (exit status {code})")
    return found


# --------------------------------------------------------------------------- licences


def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """(patterns, licence) for each ``Files:`` stanza of a machine-readable copyright file."""
    rules = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip()
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            licence = fields["License"].splitlines()[0].strip()
            rules.append((fields["Files"].split(), licence))
    return rules


def dep5_licence(rules: list[tuple[list[str], str]], path: str) -> str | None:
    """The licence of ``path`` (a source-tree path): the last matching stanza wins.

    For the WebP files GCompris converts its photos to, also tries the JPEG/PNG names
    its copyright file lists.
    """
    path = path.lstrip("/")
    names = [path]
    stem, dot, suffix = path.rpartition(".")
    if dot and suffix.lower() == "webp":
        names += [f"{stem}.{other}" for other in ("jpg", "jpeg", "png")]
    found = None
    for patterns, licence in rules:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names):
            found = licence
    return found
