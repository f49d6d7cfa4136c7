"""Data and params faults, injected for real and met where a user meets them: the stages.

Every test runs `stages/download.py`, `stages/preprocess.py` or `stages/train.py` as a real
process (in a temporary folder holding its own params.yaml) and checks what a user sees: the
exit status, the message on stderr and the files left behind. URL sources come from a real
HTTP server on 127.0.0.1 (tests/http_server.py); crafted archives from tests/archive_factory.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from archive_factory import (
    BINARY_DIR,
    OUTSIDE_NAME,
    TEST_BATCH,
    TRAIN_BATCHES,
    encode_batch,
    encode_image,
    make_binary_archive,
    make_image_folder_archive,
    make_malicious_archive,
    make_python_format_archive,
    random_images,
    write_tar,
)
from conftest import PROJECT_ROOT, listing, sha256, write_params
from deeplecture.data.cifar10 import CLASS_NAMES
from deeplecture.params import load_params
from http_server import serve_directory
from stage_runner import FAIL_FAST_S, Stage, assert_refused, run_stage

NAME = "cifar10-tiny.tar.gz"  # not a known archive name: every test pins the hash it expects
ZEROS = "sha256:" + "0" * 64


# --- the folders of one test --------------------------------------------------------------


@dataclass
class Workspace:
    root: Path  # tmp_path: nothing may appear anywhere under it but what a test expects
    work: Path  # the stage's current directory, holding params.yaml
    served: Path  # files the HTTP server serves, and local sources
    outside: Path  # where crafted archives aim their escapes
    out: Path  # --out of the download stage

    def download(self, changes: dict[str, object], *, timed: bool = False) -> Stage:
        write_params(self.work, changes)
        return run_stage("download", self.work, "cifar10", "--out", self.out, timed=timed)

    def download_from(self, source: object, checksum: str) -> Stage:
        return self.download(
            {"data.cifar10.source": str(source), "data.cifar10.checksum": checksum}
        )


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    space = Workspace(
        tmp_path,
        tmp_path / "work",
        tmp_path / "served",
        tmp_path / "outside",
        tmp_path / "raw" / "cifar10.tar.gz",
    )
    for folder in (space.work, space.served, space.outside):
        folder.mkdir()
    return space


def assert_nothing_extracted(root: Path) -> None:
    """No archive member, escape marker or pickle side effect anywhere under `root`."""
    names = {p.name for p in root.rglob("*")}
    assert not names & {BINARY_DIR, "cifar-10-batches-py", OUTSIDE_NAME, "payload"}, names


def good_archive(folder: Path) -> Path:
    """A valid tiny binary-format archive (~75 kB, so a transfer spans many reads)."""
    make_binary_archive(folder / NAME, records_per_batch=4)
    return folder / NAME


# --- 1. a truncated archive or an HTML error page in place of the archive ------------------

BAD_BYTES: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda good: good[: len(good) // 2],
    "html-error-page": lambda good: b"<html><body><h1>502 Bad Gateway</h1></body></html>\n",
}


@pytest.mark.parametrize("in_cache", [False, True], ids=["served", "served-and-in-cache"])
@pytest.mark.parametrize("kind", BAD_BYTES)
def test_bad_archive_is_refused_removed_and_never_extracted(
    ws: Workspace, kind: str, in_cache: bool
) -> None:
    # The server has only the bad file; with in_cache it is also at --out before the stage runs.
    good = good_archive(ws.root)
    checksum = sha256(good)
    bad = BAD_BYTES[kind](good.read_bytes())
    (ws.served / NAME).write_bytes(bad)
    if in_cache:
        ws.out.parent.mkdir()
        ws.out.write_bytes(bad)
    with serve_directory(ws.served) as server:
        stage = ws.download_from(server.url(NAME), checksum)
        assert server.hits[NAME] == 1  # a hash mismatch is final: not retried
    assert_refused(
        stage, "checksum mismatch", server.url(NAME), f"expected {checksum}", str(ws.out)
    )
    if in_cache:
        assert f"{ws.out} exists but does not match {checksum}" in stage.stderr
    assert listing(ws.out.parent) == []  # neither the bad file nor a temp file beside it
    assert_nothing_extracted(ws.root)


@pytest.mark.parametrize("kind", BAD_BYTES)
def test_bad_archive_in_cache_is_removed_and_replaced_by_a_good_download(
    ws: Workspace, kind: str
) -> None:
    good = good_archive(ws.served)
    checksum = sha256(good)
    ws.out.parent.mkdir()
    ws.out.write_bytes(BAD_BYTES[kind](good.read_bytes()))
    with serve_directory(ws.served) as server:
        stage = ws.download_from(server.url(NAME), checksum)
    assert stage.returncode == 0, stage.stderr
    assert f"{ws.out} exists but does not match {checksum}" in stage.stderr
    assert ws.out.read_bytes() == good.read_bytes()
    assert listing(ws.out.parent) == [ws.out.name]
    assert_nothing_extracted(ws.root)


# --- 2. the connection drops midway -------------------------------------------------------


def test_dropped_connection_leaves_no_partial_file_and_a_rerun_completes(ws: Workspace) -> None:
    good = good_archive(ws.served)
    checksum, size = sha256(good), good.stat().st_size
    cut = size // 2
    with serve_directory(ws.served, truncate={NAME: cut}) as server:
        stage = ws.download_from(server.url(NAME), checksum)
        assert server.hits[NAME] == 4  # the stage's 3 retries, then it gives up
    assert_refused(stage, f"truncated: got {cut} of {size} bytes", server.url(NAME), checksum)
    assert listing(ws.out.parent) == []

    with serve_directory(ws.served) as healthy:
        rerun = ws.download_from(healthy.url(NAME), checksum)
    assert rerun.returncode == 0, rerun.stderr
    assert sha256(ws.out) == checksum
    assert listing(ws.out.parent) == [ws.out.name]


# --- 3. crafted archives given as the local source ----------------------------------------


def _hardlink_outside(path: Path, outside: Path) -> str:
    link = tarfile.TarInfo(f"{BINARY_DIR}/payload")
    link.type = tarfile.LNKTYPE
    link.linkname = str(outside / OUTSIDE_NAME)
    make_binary_archive(path, raw=[(link, b"")])
    return repr(link.name)


def _extra_member(path: Path, outside: Path) -> str:
    make_binary_archive(path, replace={f"{BINARY_DIR}/notes.txt": b"hello"})
    return repr(f"{BINARY_DIR}/notes.txt")


def _missing_member(path: Path, outside: Path) -> str:
    make_binary_archive(path, replace={TRAIN_BATCHES[2]: None})
    return TRAIN_BATCHES[2]


# kind -> writes the archive at `path`, returns the text the error must name
CRAFTED: dict[str, Callable[[Path, Path], str]] = {
    "dotdot-member": lambda p, o: repr(make_malicious_archive(p, "traversal", o)),
    "absolute-path": lambda p, o: repr(make_malicious_archive(p, "absolute", o)),
    "symlink-outside": lambda p, o: repr(make_malicious_archive(p, "symlink", o)),
    "hardlink-outside": _hardlink_outside,
    "hardlink-inside": lambda p, o: repr(make_malicious_archive(p, "hardlink", o)),
    "extra-member": _extra_member,
    "missing-member": _missing_member,
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_local_archive_is_refused_and_nothing_is_written(ws: Workspace, kind: str) -> None:
    source = ws.served / "crafted.tar.gz"
    named = CRAFTED[kind](source, ws.outside)
    original = source.read_bytes()
    stage = ws.download_from(source, sha256(source))  # the hash is right: the members are not
    assert_refused(stage, named, str(source))
    assert f"the archive was removed from {ws.out}" in stage.stderr
    assert not (ws.outside / OUTSIDE_NAME).exists()
    assert listing(ws.outside) == []
    assert not ws.out.exists() and listing(ws.out.parent) == []
    assert_nothing_extracted(ws.root)
    assert source.read_bytes() == original  # the user's file is left alone


def test_crafted_archive_that_is_its_own_source_is_refused_but_left_in_place(
    ws: Workspace,
) -> None:
    # `-S data.cifar10.source=data/raw/cifar10.tar.gz`: the output is the user's own file.
    ws.out.parent.mkdir()
    named = CRAFTED["dotdot-member"](ws.out, ws.outside)
    original = ws.out.read_bytes()
    stage = ws.download_from(ws.out, sha256(ws.out))
    assert_refused(stage, named, f"your file {ws.out} was left untouched")
    assert ws.out.read_bytes() == original
    assert listing(ws.out.parent) == [ws.out.name]
    assert_nothing_extracted(ws.root)


# --- 4. the pickled "python" archive ------------------------------------------------------


def test_python_pickle_archive_is_never_unpickled(ws: Workspace) -> None:
    marker = ws.root / "pwned"
    source = make_python_format_archive(ws.served / "cifar-10-python.tar.gz", marker)
    stage = ws.download_from(source, sha256(source))
    assert_refused(stage, "cifar-10-batches-py", "pickle")
    assert not ws.out.exists() and listing(ws.out.parent) == []
    # Handed straight to preprocess (bypassing download), it is refused there too.
    processed_dir = ws.root / "processed"
    direct = run_stage(
        "preprocess", ws.work, "cifar10", "--archive", source, "--out", processed_dir
    )
    assert_refused(direct, "cifar-10-batches-py", "pickle")
    assert not processed_dir.exists()
    assert not marker.exists()
    assert_nothing_extracted(ws.root)


# --- 5. well-formed archives with bad contents --------------------------------------------


def _wrong_length_batch(path: Path) -> None:
    make_binary_archive(path, replace={TRAIN_BATCHES[1]: bytes(2 * 3073 + 5)})


def _label_out_of_range(path: Path) -> None:
    images = random_images(np.random.default_rng(0), 4)
    make_binary_archive(path, replace={TEST_BATCH: encode_batch(images, [1, 2, 10, 3])})


def _image_31x32(path: Path) -> None:
    narrow = np.zeros((32, 31, 3), dtype=np.uint8)  # 31 wide, 32 high
    make_image_folder_archive(
        path, train_per_class=1, extra={"train/cat/odd.png": encode_image(narrow)}
    )


# kind -> (writer, the stage that refuses it, what the message must name)
BAD_CONTENT: dict[str, tuple[Callable[[Path], None], str, tuple[str, ...]]] = {
    "batch-of-wrong-length": (
        _wrong_length_batch,
        "preprocess",
        ("data_batch_2.bin", "6151 bytes"),
    ),
    "label-10": (_label_out_of_range, "preprocess", ("test_batch.bin", "record 2 has label 10")),
    "image-31x32": (_image_31x32, "preprocess", ("'train/cat/odd.png'", "31x32 pixels")),
}


@pytest.mark.parametrize("kind", BAD_CONTENT)
def test_bad_contents_are_refused_naming_the_member(ws: Workspace, kind: str) -> None:
    write, refusing_stage, named = BAD_CONTENT[kind]
    source = ws.served / "bad-content.tar.gz"
    write(source)
    stage = ws.download_from(source, sha256(source))
    if refusing_stage == "download":
        assert_refused(stage, *named)
        assert listing(ws.out.parent) == []
        return
    assert stage.returncode == 0, stage.stderr  # the member list is fine; the bytes are not
    processed_dir = ws.root / "processed"
    preprocess = run_stage(
        "preprocess", ws.work, "cifar10", "--archive", ws.out, "--out", processed_dir
    )
    assert_refused(preprocess, ws.out.name, *named)
    assert not processed_dir.exists()


# --- 6. an override (local path or mirror URL) with a wrong hash --------------------------


@pytest.mark.parametrize("via", ["local-path", "mirror-url"])
def test_override_with_a_wrong_hash_is_refused_like_a_bad_download(ws: Workspace, via: str) -> None:
    good = good_archive(ws.served)
    original = good.read_bytes()
    with serve_directory(ws.served) as server:
        source = str(good) if via == "local-path" else server.url(NAME)
        stage = ws.download_from(source, ZEROS)
    assert_refused(stage, "checksum mismatch", f"expected {ZEROS}", sha256(good), source)
    fate = f"Your file {good} was left untouched" if via == "local-path" else "bad file was removed"
    assert f"{fate}; nothing was written to {ws.out}" in stage.stderr
    assert not ws.out.exists() and listing(ws.out.parent) == []
    assert good.read_bytes() == original


# --- 7. params.yaml faults ----------------------------------------------------------------


def write_params_text(
    folder: Path, changes: dict[str, object], *, drop: str = "", raw: dict[str, str] | None = None
) -> Path:
    """`write_params`, then delete the dotted key `drop` and respell values verbatim.

    `raw` maps dotted keys to YAML text, for values whose spelling matters (`2.5e1`, `yes`)
    and that a YAML dumper would normalise.
    """
    path = write_params(folder, changes)
    if drop:
        yaml = YAML()  # round trip, as write_params
        document = yaml.load(path.read_text())
        *parents, last = drop.split(".")
        node = document
        for key in parents:
            node = node[key]
        del node[last]
        with path.open("w") as handle:
            yaml.dump(document, handle)
    lines = path.read_text().splitlines(keepends=True)
    for dotted, text in (raw or {}).items():
        # Walk down the blocks (two-space indents): each key is the first one at its depth
        # after its parent's line.
        index = 0
        for depth, key in enumerate(dotted.split(".")):
            index = next(
                i for i in range(index, len(lines)) if lines[i].startswith(f"{'  ' * depth}{key}:")
            )
        lines[index] = f"{'  ' * depth}{key}: {text}\n"
    path.write_text("".join(lines))
    return path


EPOCHS_NOT_INT = "train.cnn74.epochs: Input should be a valid integer"
# fault -> (write_params changes, dotted key to delete, values spelled verbatim, named in stderr)
PARAMS_FAULTS = {
    "unknown-key": ({"train.cnn74.epochz": 3}, "", None, "train.cnn74.epochz: unknown key"),
    "unknown-key-in-data": (
        {"data.cifar10.sauce": "x"},
        "",
        None,
        "data.cifar10.sauce: unknown key",
    ),
    "missing-key": ({}, "data.cifar10.checksum", None, "data.cifar10.checksum: missing key"),
    "string-for-number": ({"train.cnn74.epochs": "25"}, "", None, f"{EPOCHS_NOT_INT} (got '25')"),
    "float-for-int": ({}, "", {"train.cnn74.epochs": "2.5e1"}, f"{EPOCHS_NOT_INT} (got 25.0)"),
    "yes-for-bool": (
        {},
        "",
        {"train.cnn74.keep_best": "yes"},  # YAML 1.1 would say True; DVC and the loader say "yes"
        "train.cnn74.keep_best: Input should be a valid boolean (got 'yes')",
    ),
}


@pytest.mark.parametrize("fault", PARAMS_FAULTS)
def test_bad_params_fail_the_download_stage_before_any_work(ws: Workspace, fault: str) -> None:
    changes, drop, raw, named = PARAMS_FAULTS[fault]
    good = good_archive(ws.served)
    # A valid source, so that a stage that got past its params would write --out.
    changes = {"data.cifar10.source": str(good), "data.cifar10.checksum": sha256(good), **changes}
    write_params_text(ws.work, changes, drop=drop, raw=raw)
    stage = run_stage("download", ws.work, "cifar10", "--out", ws.out, timed=True)
    assert_refused(stage, named)
    assert not ws.out.parent.exists()
    assert listing(ws.work) == ["params.yaml"]
    assert stage.work_seconds < FAIL_FAST_S, f"{stage.work_seconds:.1f} s after imports"


@pytest.mark.slow
def test_bad_params_fail_the_train_stage_before_any_work(tmp_path: Path, tiny_data: Path) -> None:
    # One process for two faults (train.py imports TensorFlow, ~10 s on a busy CPU): the loader
    # reports every bad value at once, so each must be named. (An unknown key is refused first
    # and alone, before profiles resolve: test_params.py, and the download stage above.)
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    write_params_text(work, {"train.cnn74.epochs": "25"}, drop="train.cnn74.seed")
    stage = run_stage(
        "train", work, "cnn74", "--data", tiny_data,
        "--model", out / "cnn74.keras", "--record", out / "cnn74.train.json",
        "--history", out / "history.csv",
        timed=True,
    )  # fmt: skip
    assert_refused(stage, "train.cnn74.seed: missing key", f"{EPOCHS_NOT_INT} (got '25')")
    assert not out.exists()
    assert listing(work) == ["params.yaml"]  # no mlflow.db, no checkpoints/
    print(
        f"train stage refused bad params after {stage.seconds:.1f} s "
        f"({stage.import_seconds:.1f} s of imports, {stage.work_seconds:.2f} s of work)"
    )
    assert stage.work_seconds < FAIL_FAST_S, f"{stage.work_seconds:.1f} s after imports"


LR_SPELLINGS = {"cnn74": "1e-3", "cnn79": "1E-3", "cnn84": "1.0e-3", "cnn88": "+1e-3"}


def test_lr_in_exponent_notation_reads_as_dvc_reads_it(ws: Workspace) -> None:
    good = good_archive(ws.served)
    write_params_text(
        ws.work,
        {"data.cifar10.source": str(good), "data.cifar10.checksum": sha256(good)},
        raw={f"train.{v}.learning_rate": spelling for v, spelling in LR_SPELLINGS.items()},
    )
    text = (ws.work / "params.yaml").read_text()
    assert all(f"learning_rate: {s}\n" in text for s in LR_SPELLINGS.values()), text

    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=ws.work, check=True)
    import dvc.api

    shown = dvc.api.params_show(repo=str(ws.work))
    loaded = load_params(ws.work / "params.yaml")
    for variant in LR_SPELLINGS:
        dvc_value = shown["train"][variant]["learning_rate"]
        assert loaded.train[variant].learning_rate == dvc_value == 1e-3
        assert type(dvc_value) is float

    stage = run_stage("download", ws.work, "cifar10", "--out", ws.out)
    assert stage.returncode == 0, stage.stderr  # accepted by the stage as well
    assert sha256(ws.out) == sha256(good)


# --- archives built to exhaust memory ----------------------------------------------------


def _preprocess_peak(work: Path, archive: Path) -> tuple[Stage, float]:
    """Run the preprocess stage on `archive`; its result and its peak memory in MB."""
    stage_script = PROJECT_ROOT / "stages" / "preprocess.py"
    argv = ["preprocess.py", "cifar10", "--archive", str(archive), "--out", str(work / "out"),
            "--params", str(work / "params.yaml")]  # fmt: skip
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark over a fork
    # and exec into ru_maxrss, so a large pytest process would show as the stage's own peak.
    code = (
        "import atexit, re, runpy, sys\n"
        "atexit.register(lambda: print('peak_kb', re.search(r'VmHWM:\\s+(\\d+)', "
        "open('/proc/self/status').read()).group(1), file=sys.stderr))\n"
        f"sys.argv = {argv!r}\n"
        f"runpy.run_path({str(stage_script)!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=300
    )
    peak_kb = int(re.search(r"^peak_kb (\d+)$", done.stderr, re.M).group(1))
    stderr = re.sub(r"^peak_kb \d+\n", "", done.stderr, flags=re.M)
    return Stage(done.returncode, done.stdout, stderr, 0.0, 0.0), peak_kb / 1024


@pytest.mark.parametrize(
    ("size", "named"),
    [
        (1024 * 1024, "far too large for a 32x32 image"),  # over the cap: refused unread
        (60 * 1024, "not a JPEG or PNG file"),  # under it: refused at the first decode
    ],
)
def test_an_archive_of_zero_filled_images_is_refused_in_bounded_memory(
    tmp_path: Path, size: int, named: str
) -> None:
    """500 zero-filled "JPEGs" compress to almost nothing; reading them all before decoding
    would take 500 times their size in memory."""
    write_params(tmp_path, {})
    zeros = bytes(size)
    members = {
        f"{'train' if index < 450 else 'test'}/{CLASS_NAMES[index % 10]}/{index:04d}.jpg": zeros
        for index in range(500)
    }
    archive = write_tar(tmp_path / "zeros.tar.gz", members)
    stage, peak_mb = _preprocess_peak(tmp_path, archive)
    assert_refused(stage, named, "train/airplane/0000.jpg")
    assert "BytesIO" not in stage.stderr
    print(f"{len(members)} members of {size // 1024} KiB: refused at a peak of {peak_mb:.0f} MB")
    assert peak_mb < 50 + 200  # the interpreter and libraries, far from 500 x the member size
