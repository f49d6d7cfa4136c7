"""Safe reading of tar archives: members are checked and streamed, never extracted to disk."""

from __future__ import annotations

import tarfile

# Passed to tarfile.data_filter only as a reference point for its path checks; nothing is written.
_FILTER_DEST = "/nonexistent-dest"


class ArchiveError(ValueError):
    """The archive is unsafe, unreadable or not laid out as expected."""


def safe_members(tar: tarfile.TarFile, archive_name: str) -> list[tarfile.TarInfo]:
    """Check every member of `tar` and return the regular files, in archive order.

    Absolute paths, '..' components, links, devices and FIFOs raise ArchiveError naming the
    archive and the member; directories are allowed and skipped.
    """
    files = []
    for member in tar.getmembers():
        _check_member(member, archive_name)
        if member.isfile():
            files.append(member)
    return files


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """Return the full contents of the regular-file `member` of `tar`."""
    # Checked first: extractfile would follow a link member to another member's data.
    handle = tar.extractfile(member) if member.isfile() else None
    if handle is None:
        raise ArchiveError(f"member {member.name!r} is not a regular file")
    with handle:
        data = handle.read()
    if len(data) != member.size:
        raise ArchiveError(
            f"member {member.name!r} is truncated: {len(data)} of {member.size} bytes"
        )
    return data


def _check_member(member: tarfile.TarInfo, archive_name: str) -> None:
    def refuse(reason: str) -> ArchiveError:
        return ArchiveError(f"unsafe member {member.name!r} in {archive_name}: {reason}")

    # Backslashes count as separators too: the archive may be unpacked on Windows by someone.
    parts = member.name.replace("\\", "/").split("/")
    if member.name.startswith(("/", "\\")):
        raise refuse("absolute path")
    if ".." in parts:
        raise refuse("'..' path component")
    if member.issym():
        raise refuse(f"symbolic link to {member.linkname!r}")
    if member.islnk():
        raise refuse(f"hard link to {member.linkname!r}")
    if member.ischr() or member.isblk() or member.isfifo():
        raise refuse("device or FIFO")
    if not (member.isfile() or member.isdir()):
        raise refuse(f"unsupported member type {member.type!r}")
    try:
        # The standard library's own extraction policy, as a second opinion on the checks above.
        tarfile.data_filter(member, _FILTER_DEST)
    except tarfile.FilterError as err:
        raise refuse(str(err)) from err
