"""Crafted and malformed archives are refused before anything is decoded or written."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from archive_factory import (
    BINARY_DIR,
    OUTSIDE_NAME,
    TRAIN_BATCHES,
    encode_image,
    make_binary_archive,
    make_image_folder_archive,
    make_malicious_archive,
    make_python_format_archive,
    malicious_pickle,
    random_images,
    write_tar,
)
from deeplecture.data.archive import ArchiveError, read_member, safe_members
from deeplecture.data.cifar10 import detect_format, read_cifar10_archive

MALICIOUS_KINDS = ["traversal", "absolute", "symlink", "hardlink", "device", "fifo"]


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, so a stray extraction would show up in it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.mark.parametrize("kind", MALICIOUS_KINDS)
def test_malicious_member_is_refused_and_nothing_is_written(kind, tmp_path, workdir):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = workdir / "evil.tar.gz"
    bad_name = make_malicious_archive(archive, kind, outside)

    with tarfile.open(archive) as tar, pytest.raises(ArchiveError) as caught:
        safe_members(tar, archive.name)
    assert repr(bad_name) in str(caught.value)
    assert archive.name in str(caught.value)

    with pytest.raises(ArchiveError, match="unsafe member"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)
    with pytest.raises(ArchiveError, match="unsafe member"):
        detect_format(archive)
    assert all_files(tmp_path) == ["outside", "work", "work/evil.tar.gz"]
    assert not (outside / OUTSIDE_NAME).exists()


def test_safe_members_returns_regular_files_and_skips_directories(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    folder = tarfile.TarInfo(BINARY_DIR)
    folder.type = tarfile.DIRTYPE
    make_binary_archive(archive, raw=[(folder, b"")])
    with tarfile.open(archive) as tar:
        members = safe_members(tar, archive.name)
        names = [m.name for m in members]
        assert BINARY_DIR not in names
        assert TRAIN_BATCHES[0] in names and len(names) == 8
        assert read_member(tar, members[1]) == read_member(tar, members[1])
        assert len(read_member(tar, tar.getmember(TRAIN_BATCHES[0]))) == 4 * 3073
        with pytest.raises(ArchiveError, match="not a regular file"):
            read_member(tar, tar.getmember(BINARY_DIR))


def test_python_format_archive_is_never_unpickled(tmp_path, workdir):
    marker = tmp_path / "pwned"
    archive = make_python_format_archive(workdir / "cifar-10-python.tar.gz", marker)
    for attempt in (detect_format, lambda p: read_cifar10_archive(p, shuffle_seed=0)):
        with pytest.raises(ArchiveError) as caught:
            attempt(archive)
        message = str(caught.value)
        assert "cifar-10-batches-py" in message and "pickle" in message
        assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in message
        assert "image-folder" in message
    assert not marker.exists()
    assert all_files(workdir) == ["cifar-10-python.tar.gz"]


def test_the_crafted_pickle_really_would_run_code(tmp_path):
    # The premise of the test above: loading this payload does create the marker.
    marker = tmp_path / "proof"
    pickle.loads(malicious_pickle(marker))
    assert marker.exists()


def test_unexpected_extra_member_in_binary_archive_is_named(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive, replace={f"{BINARY_DIR}/notes.txt": b"hello"})
    with pytest.raises(ArchiveError, match=rf"unexpected member '{BINARY_DIR}/notes.txt'"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_missing_batch_is_named(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive, replace={TRAIN_BATCHES[2]: None})
    with pytest.raises(ArchiveError, match="data_batch_3.bin"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_duplicate_member_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    duplicate = tarfile.TarInfo(TRAIN_BATCHES[0])
    duplicate.size = 3073
    make_binary_archive(archive, raw=[(duplicate, bytes(3073))])
    with pytest.raises(ArchiveError, match="duplicate member"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_not_a_tar_file_is_an_archive_error(tmp_path):
    page = tmp_path / "cifar-10-binary.tar.gz"
    page.write_text("<html>Service Unavailable</html>")
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        detect_format(page)


def test_truncated_gzip_is_an_archive_error(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_binary_archive(archive, records_per_batch=50)
    archive.write_bytes(archive.read_bytes()[: os.path.getsize(archive) // 2])
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_unrelated_archive_is_not_cifar10(tmp_path):
    archive = write_tar(tmp_path / "a.tar.gz", {"photos/holiday.png": b"x"})
    with pytest.raises(ArchiveError, match="not a CIFAR-10 archive"):
        detect_format(archive)


def png() -> bytes:
    return encode_image(random_images(np.random.default_rng(1), 1)[0])


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("train/unicorn/0001.png", "unknown class folder 'unicorn'"),
        ("validation/cat/0001.png", "not inside a train/<class>/"),
        ("train/cat/nested/0001.png", "not inside a train/<class>/"),
        ("train/0001.png", "not inside a train/<class>/"),
        ("train/cat/0001.gif", "not a .jpg, .jpeg or .png file"),
        ("train/cat/notes.txt", "not a .jpg, .jpeg or .png file"),
    ],
)
def test_image_folder_member_outside_the_layout_is_named(tmp_path, member, reason):
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(archive, train_per_class=1, extra={member: png()})
    with pytest.raises(ArchiveError) as caught:
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)
    assert f"unexpected member {member!r}" in str(caught.value)
    assert reason in str(caught.value)


def test_image_folder_missing_classes_are_named(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(
        archive, classes=("airplane", "bird", "cat", "deer", "dog", "frog", "horse", "ship")
    )
    with pytest.raises(ArchiveError, match="automobile, truck"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_image_folder_without_a_test_split_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_image_folder_archive(archive, test_per_class=0)
    with pytest.raises(ArchiveError, match="no images under test/"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_oversized_member_is_refused_before_reading(tmp_path):
    archive = tmp_path / "a.tar.gz"
    big = bytes(2 * 1024 * 1024)  # zeros compress to almost nothing
    make_image_folder_archive(archive, train_per_class=1, extra={"train/cat/huge.png": big})
    with pytest.raises(ArchiveError, match="huge.png.*too large"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_member_list_is_checked_before_any_decoding(tmp_path):
    # A bad image early in the archive and an unsafe member at the end: the layout check,
    # which covers every member, must fail first.
    archive = tmp_path / "a.tar.gz"
    members = {"train/airplane/0000.png": b"not an image"}
    link = tarfile.TarInfo("test/cat/link.png")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    write_tar(archive, members, raw=[(link, b"")])
    with pytest.raises(ArchiveError, match="symbolic link"):
        read_cifar10_archive(archive, shuffle_seed=0, progress=False)


def test_archives_are_read_without_touching_the_file_system(tmp_path, workdir):
    archive = workdir / "a.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"payload"
        info = tarfile.TarInfo("x/y.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(archive) as tar:
        (member,) = safe_members(tar, archive.name)
        assert read_member(tar, member) == b"payload"
    assert all_files(workdir) == ["a.tar"]
