"""fetch() against a real HTTP server on 127.0.0.1 and against local files."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import listing, sha256
from deeplecture.data.download import ChecksumMismatch, DownloadError, fetch, file_checksum
from deeplecture.data.sources import KNOWN_ARCHIVES, ChecksumError, resolve_checksum
from http_server import closed_port_url, serve_directory, silent_server

NAME = "cifar-10-binary.tar.gz"
# Over two 1 MiB chunks, so streaming, hashing and truncation cross chunk boundaries.
SIZE = 2 * 1024 * 1024 + 12345


@pytest.fixture()
def payload() -> bytes:
    return np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


@pytest.fixture()
def served(tmp_path: Path, payload: bytes) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    (root / NAME).write_bytes(payload)
    return root


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    return tmp_path / "raw"


def test_download_places_verified_file_and_nothing_else(served, out, payload):
    with serve_directory(served) as server:
        result = fetch(server.url(NAME), out / NAME, sha256(payload), progress=False)
    assert result == out / NAME
    assert result.read_bytes() == payload
    assert listing(out) == [NAME]


def test_md5_checksum_is_accepted(served, out, payload):
    md5 = f"md5:{hashlib.md5(payload).hexdigest()}"
    with serve_directory(served) as server:
        fetch(server.url(NAME), out / NAME, md5, progress=False)
    assert file_checksum(out / NAME, "md5") == md5.split(":")[1]


def test_verified_file_at_destination_is_not_downloaded_again(served, out, payload):
    with serve_directory(served) as server:
        fetch(server.url(NAME), out / NAME, sha256(payload), progress=False)
        fetch(server.url(NAME), out / NAME, sha256(payload), progress=False)
        assert server.hits[NAME] == 1


def test_checksum_mismatch_keeps_nothing_and_is_not_retried(served, out, payload):
    expected = sha256(b"some other release")
    with serve_directory(served) as server, pytest.raises(ChecksumMismatch) as caught:
        fetch(server.url(NAME), out / NAME, expected, retries=3, progress=False)
    message = str(caught.value)
    assert expected in message
    assert sha256(payload) in message  # the actual hash, to pin deliberately if intended
    assert NAME in message and "removed" in message
    assert server.hits[NAME] == 1
    assert listing(out) == []


def test_html_error_page_left_at_destination_is_replaced(served, out, payload, caplog):
    out.mkdir()
    (out / NAME).write_text("<html><body>502 Bad Gateway</body></html>")
    with serve_directory(served) as server, caplog.at_level(logging.WARNING):
        fetch(server.url(NAME), out / NAME, sha256(payload), progress=False)
    assert (out / NAME).read_bytes() == payload
    assert listing(out) == [NAME]
    assert "does not match" in caplog.text


def test_truncated_transfer_fails_after_retries_then_a_rerun_completes(served, out, payload):
    cut = 1024 * 1024 + 7
    with serve_directory(served, truncate={NAME: cut}) as server:
        with pytest.raises(DownloadError) as caught:
            fetch(server.url(NAME), out / NAME, sha256(payload), retries=2, progress=False)
        assert server.hits[NAME] == 3
    assert f"truncated: got {cut} of {SIZE} bytes from {server.url(NAME)}" in str(caught.value)
    assert listing(out) == []

    with serve_directory(served) as healthy:
        fetch(healthy.url(NAME), out / NAME, sha256(payload), progress=False)
    assert (out / NAME).read_bytes() == payload
    assert listing(out) == [NAME]


def test_unreachable_host_names_url_and_local_copy_hint(out, payload):
    url = closed_port_url(NAME)
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch(url, out / NAME, sha256(payload), timeout=2, retries=1, progress=False)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert url in message
    assert sha256(payload) in message
    assert f"dvc exp run -S data.cifar10.source=/path/to/{NAME}" in message
    assert listing(out) == []


def test_hint_uses_the_given_params_key(out):
    with pytest.raises(DownloadError, match=r"-S data\.fmnist\.source="):
        fetch(
            closed_port_url("x.gz"),
            out / "x.gz",
            sha256(b""),
            params_key="data.fmnist",
            timeout=2,
            retries=0,
            progress=False,
        )


def test_silent_server_times_out(out):
    started = time.monotonic()
    with silent_server() as base, pytest.raises(DownloadError, match="timed out"):
        fetch(f"{base}/{NAME}", out / NAME, sha256(b""), timeout=0.3, retries=0, progress=False)
    assert time.monotonic() - started < 3
    assert listing(out) == []


def test_404_is_reported_and_not_retried(served, out):
    with serve_directory(served) as server, pytest.raises(DownloadError) as caught:
        fetch(server.url("missing.tar.gz"), out / NAME, sha256(b""), retries=3, progress=False)
    assert "404" in str(caught.value) and server.url("missing.tar.gz") in str(caught.value)
    assert server.hits["missing.tar.gz"] == 1
    assert listing(out) == []


def test_server_error_is_reported_with_status_and_url(served, out, payload):
    with serve_directory(served, status={NAME: 500}) as server:
        with pytest.raises(DownloadError) as caught:
            fetch(server.url(NAME), out / NAME, sha256(payload), retries=1, progress=False)
        assert server.hits[NAME] == 2  # a 5xx may be transient, so it is retried
    assert "500" in str(caught.value) and server.url(NAME) in str(caught.value)
    assert listing(out) == []


def test_relative_local_path_and_file_url_are_copied_and_verified(
    served, out, payload, monkeypatch
):
    monkeypatch.chdir(served.parent)
    fetch(f"served/{NAME}", out / "a" / NAME, sha256(payload), progress=False)
    fetch((served / NAME).as_uri(), out / "b" / NAME, sha256(payload), progress=False)
    assert (out / "a" / NAME).read_bytes() == payload
    assert (out / "b" / NAME).read_bytes() == payload
    assert listing(out / "a") == [NAME] and listing(out / "b") == [NAME]


def test_local_copy_with_wrong_hash_is_refused(served, out, payload):
    with pytest.raises(ChecksumMismatch) as caught:
        fetch(str(served / NAME), out / NAME, sha256(b"expected"), progress=False)
    assert sha256(b"expected") in str(caught.value)
    assert listing(out) == []
    assert (served / NAME).read_bytes() == payload  # the user's copy is untouched


def test_missing_local_file_is_named(tmp_path, out):
    missing = tmp_path / "nowhere" / NAME
    with pytest.raises(DownloadError, match=str(missing)):
        fetch(str(missing), out / NAME, sha256(b""), progress=False)
    assert listing(out) == []


def test_source_that_is_the_destination_is_verified_in_place(served, payload):
    path = served / NAME
    assert fetch(str(path), path, sha256(payload), progress=False) == path
    with pytest.raises(ChecksumMismatch):
        fetch(str(path), path, sha256(b"other"), progress=False)
    assert path.read_bytes() == payload


def test_resolve_checksum_auto_uses_the_pinned_hash():
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    assert resolve_checksum(url, "auto") == "md5:c32a1d4ab5d03f1284b67883e8d87530"
    assert (
        resolve_checksum("/data/cifar10-jpeg.tar.gz", "auto")
        == KNOWN_ARCHIVES["cifar10-jpeg.tar.gz"]
    )


def test_resolve_checksum_auto_for_an_unknown_name_asks_for_a_hash():
    with pytest.raises(ChecksumError) as caught:
        resolve_checksum("https://example.org/my-cifar.tar.gz", "auto")
    assert "my-cifar.tar.gz" in str(caught.value)
    assert "-S data.cifar10.checksum=sha256:" in str(caught.value)
    with pytest.raises(ChecksumError, match=r"-S data\.fmnist\.checksum="):
        resolve_checksum("x.gz", "auto", params_key="data.fmnist")


def test_resolve_checksum_normalises_an_explicit_hash():
    digest = "AB" * 32
    assert resolve_checksum("x", f"SHA256:{digest}") == f"sha256:{digest.lower()}"


@pytest.mark.parametrize("bad", ["md5:xyz", "sha1:" + "a" * 40, "sha256:" + "a" * 63, "a" * 64, ""])
def test_resolve_checksum_rejects_malformed_values(bad):
    with pytest.raises(ValueError) as caught:
        resolve_checksum("x", bad)
    assert repr(bad) in str(caught.value)


def test_file_checksum_matches_hashlib(tmp_path, payload):
    path = tmp_path / "f"
    path.write_bytes(payload)
    assert file_checksum(path, "sha256") == hashlib.sha256(payload).hexdigest()
    assert file_checksum(path, "md5") == hashlib.md5(payload).hexdigest()
