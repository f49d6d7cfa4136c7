"""Trained results are pulled, not retrained: DVC remotes (a shared folder, SSH) and whole
experiments shared through the git remote, as the README's "For a class or a team" shows.

One smoke pipeline run (the teacher's: the session's shared run), committed with its
`dvc.lock`; then `dvc push` to each remote, and a student's fresh `git clone` + `dvc pull` that
must need no training at all, and that refuses an object damaged in the remote (each remote is
added with `verify true`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, write_params
from deeplecture.data.cifar10 import CLASS_NAMES
from idx_factory import write_idx_folder
from project_repo import (
    SMOKE_SETTINGS,
    copy_project,
    run_command,
    shared_smoke_run,
    stages_run,
)
from sshd_server import SSHServer, sshd

pytestmark = pytest.mark.slow

# The pipeline's outputs that DVC caches (the rest is committed to git): what a remote carries.
CACHED = ("data/raw", "data/processed", "models")
MODEL = "models/cifar10/cnn74.keras"  # the cached model the damage tests corrupt in a remote


def _add_remote(repo: Path, name: str, url: str, *, default: bool = False) -> None:
    """`dvc remote add` and `verify true`, as the README's step 5 does: DVC then hashes every
    object it pulls from the remote and refuses one whose content does not match its name.
    DVC has no setting for all remotes at once, and `add -f` drops it: each add needs both."""
    run_command(["dvc", "remote", "add", "-f", *(["-d"] if default else []), name, url], repo)
    run_command(["dvc", "remote", "modify", name, "verify", "true"], repo)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The teacher's repository: the smoke pipeline run (the session's shared run, copied) and
    Fashion-MNIST's beside it, committed, with a bare git repository as its `origin` (the
    class's git host) and a shared folder as its default DVC remote."""
    repo = copy_project(
        shared_smoke_run(tmp_path_factory), tmp_path_factory.mktemp("teacher") / "repo"
    )
    storage = tmp_path_factory.mktemp("class-storage")
    # Both pipelines, as the README's first command runs them: Fashion-MNIST from a tiny copy.
    fashion = tmp_path_factory.mktemp("fashion-copy")
    checksums = write_idx_folder(fashion)
    write_params(
        repo,
        {
            **SMOKE_SETTINGS,
            "data.fashion_mnist.source": str(fashion),
            "data.fashion_mnist.checksum": checksums,
        },
    )
    run_command(["dvc", "repro", "fashion_mnist/dvc.yaml"], repo)
    run_command(["dvc", "repro"], repo)
    origin = tmp_path_factory.mktemp("origin") / "class.git"
    for command in (
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "smoke results"],
        ["git", "init", "-q", "--bare", str(origin)],
        ["git", "remote", "add", "origin", str(origin)],
    ):
        run_command(command, repo)
    _add_remote(repo, "shared", str(storage), default=True)
    for command in (
        ["git", "commit", "-qam", "the class's storage"],
        ["git", "push", "-q", "origin", "HEAD"],
    ):
        run_command(command, repo)
    return repo


def _digests(repo: Path) -> dict[str, str]:
    """sha256 of every file under the cached outputs, by path."""
    files = [path for out in CACHED for path in sorted((repo / out).rglob("*")) if path.is_file()]
    return {
        str(path.relative_to(repo)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files
    }


def _student_clone(teacher: Path, folder: Path) -> Path:
    origin = run_command(["git", "remote", "get-url", "origin"], teacher).strip()
    run_command(["git", "clone", "-q", origin, str(folder)], folder.parent)
    return folder


def _pulled_clone_needs_no_training(teacher: Path, clone: Path, env: dict[str, str]) -> None:
    assert not (clone / "models" / "cifar10" / "cnn74.keras").exists()  # git's files only
    run_command(["dvc", "pull"], clone, env)
    assert _digests(clone) == _digests(teacher)  # byte-identical outputs
    status = run_command(["dvc", "status"], clone, env)
    # Only the report is listed: it is always_changed (dvc.yaml: it also reads Fashion-MNIST's
    # metrics when they exist), and reruns in seconds; nothing that trains or evaluates.
    assert [line for line in status.splitlines() if line.strip()] == [
        "report:",
        "\talways changed",
    ], status
    again = run_command(["dvc", "repro", "--all-pipelines"], clone, env)
    assert stages_run(again) == ["report"]
    assert _digests(clone) == _digests(teacher)
    predicted = run_command(
        [str(Path(sys.executable).parent / "deeplecture-predict"),
         "models/cifar10/cnn74.keras", str(_sample_image(clone))],
        clone,
    )  # fmt: skip
    assert any(name in predicted for name in CLASS_NAMES), predicted


def _attempt(args: list[str], cwd: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command that may fail, with `run_command`'s PATH (this venv's tools first)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, **extra_env}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _damaged_copy(store: Path, teacher: Path, folder: Path) -> Path:
    """A copy of a pushed remote's folder in which 90 bytes of the model's object differ: same
    size, same mode, so nothing but hashing its content can tell (as disk rot would)."""
    shutil.copytree(store, folder)
    digest = hashlib.md5((teacher / MODEL).read_bytes()).hexdigest()  # DVC's object name
    obj = folder / "files" / "md5" / digest[:2] / digest[2:]
    mode = obj.stat().st_mode
    obj.chmod(mode | 0o200)  # DVC pushes objects read-only
    data = bytearray(obj.read_bytes())
    data[100:190] = bytes(byte ^ 0xFF for byte in data[100:190])
    obj.write_bytes(data)
    obj.chmod(mode)
    return folder


def _damaged_model_is_refused(teacher: Path, clone: Path, env: dict[str, str]) -> None:
    """The student's `dvc pull` from a remote with a damaged model fails naming the model,
    leaves no wrong file behind, brings every other output intact, and `dvc status` says so."""
    pulled = _attempt(["dvc", "pull"], clone, env)
    output = pulled.stdout + pulled.stderr
    assert pulled.returncode != 0, output
    assert MODEL in output, output
    assert not (clone / MODEL).exists()
    assert _digests(clone) == {
        path: digest for path, digest in _digests(teacher).items() if path != MODEL
    }
    status = run_command(["dvc", "status"], clone, env)
    not_in_cache = [line.split()[-1] for line in status.splitlines() if "not in cache:" in line]
    assert not_in_cache == [MODEL], status


def _sample_image(folder: Path) -> Path:
    with tarfile.open(PROJECT_ROOT / "data/sample/cifar10-sample.tar.gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.startswith("test/ship/"))
        path = folder / "ship.jpg"
        path.write_bytes(archive.extractfile(member).read())
    return path


def test_a_shared_folder_remote_hands_the_results_to_a_fresh_clone(
    teacher: Path, tmp_path: Path
) -> None:
    pushed = run_command(["dvc", "push", "--run-cache"], teacher)
    assert "pushed" in pushed

    clone = _student_clone(teacher, tmp_path / "student")
    _pulled_clone_needs_no_training(teacher, clone, {})


def test_a_damaged_object_in_a_shared_folder_remote_fails_the_pull(
    teacher: Path, tmp_path: Path
) -> None:
    run_command(["dvc", "push"], teacher)
    store = Path(run_command(["dvc", "config", "remote.shared.url"], teacher).strip())
    damaged = _damaged_copy(store, teacher, tmp_path / "damaged-storage")

    clone = _student_clone(teacher, tmp_path / "student")
    # The class's folder, mounted elsewhere: the committed `verify true` still applies.
    run_command(["dvc", "remote", "modify", "--local", "shared", "url", str(damaged)], clone)
    _damaged_model_is_refused(teacher, clone, {})


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory):
    with sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _use_key(repo: Path, remote: str, server: SSHServer) -> None:
    key = str(server.client_key)
    run_command(["dvc", "remote", "modify", "--local", remote, "keyfile", key], repo)


def _ssh_env(server: SSHServer) -> dict[str, str]:
    # The user's own ssh setup: a HOME whose known_hosts names the server's host key.
    return {"HOME": str(server.home)}


@pytest.fixture(scope="module")
def ssh_store(
    teacher: Path, ssh_server: SSHServer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The teacher's SSH remote, added (and committed) as the README says, with the results
    pushed to it; returns the server's folder that holds them."""
    store = tmp_path_factory.mktemp("ssh") / "ssh-storage"
    _add_remote(teacher, "ssh", ssh_server.url(store))
    # The key file is the user's own: --local keeps it out of the committed .dvc/config.
    _use_key(teacher, "ssh", ssh_server)
    assert str(ssh_server.client_key) not in (teacher / ".dvc" / "config").read_text()
    run_command(["git", "commit", "-qam", "ssh remote"], teacher)
    run_command(["git", "push", "-q", "origin", "HEAD"], teacher)
    run_command(["dvc", "push", "-r", "ssh", "--run-cache"], teacher, _ssh_env(ssh_server))
    return store


def _ssh_clone(teacher: Path, folder: Path, ssh_server: SSHServer) -> Path:
    """A student's clone that pulls from the committed SSH remote with their own key."""
    clone = _student_clone(teacher, folder)
    run_command(["dvc", "remote", "default", "--local", "ssh"], clone)
    _use_key(clone, "ssh", ssh_server)
    return clone


def test_an_ssh_remote_hands_the_results_to_a_fresh_clone(
    teacher: Path, tmp_path: Path, ssh_server: SSHServer, ssh_store: Path
) -> None:
    assert any(ssh_store.rglob("*")), "nothing arrived on the SSH server"
    clone = _ssh_clone(teacher, tmp_path / "student", ssh_server)
    _pulled_clone_needs_no_training(teacher, clone, _ssh_env(ssh_server))


def test_a_damaged_object_in_an_ssh_remote_fails_the_pull(
    teacher: Path, tmp_path: Path, ssh_server: SSHServer, ssh_store: Path
) -> None:
    damaged = _damaged_copy(ssh_store, teacher, tmp_path / "damaged-storage")
    clone = _ssh_clone(teacher, tmp_path / "student", ssh_server)
    url = ssh_server.url(damaged)  # the committed remote's `verify true` still applies
    run_command(["dvc", "remote", "modify", "--local", "ssh", "url", url], clone)
    _damaged_model_is_refused(teacher, clone, _ssh_env(ssh_server))


@pytest.mark.xfail(
    strict=True,
    reason="dvc-ssh 4.3 hands asyncssh known_hosts=None (sshfs' default), so a remote's host "
    "key is not checked; README 'For a class or a team' says so. Strict: when an update checks "
    "it, this test fails and the README's warning can go.",
)
def test_an_ssh_remote_with_an_unknown_host_key_is_refused(
    teacher: Path, tmp_path: Path, ssh_server: SSHServer
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # known_hosts names another key for the server's address: a man in the middle's view.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = Path(f"{other}.pub").read_text().split()[:2]
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{ssh_server.port} {kind} {key}\n")
    run_command(["dvc", "remote", "add", "-f", "suspect", ssh_server.url(tmp_path / "x")], teacher)
    _use_key(teacher, "suspect", ssh_server)
    pushed = subprocess.run(
        ["dvc", "push", "-r", "suspect"], cwd=teacher, capture_output=True, text=True,
        env={**os.environ, "HOME": str(home)}, check=False,
    )  # fmt: skip
    assert pushed.returncode != 0 and "host key" in (pushed.stdout + pushed.stderr).lower()


def test_an_experiment_travels_whole_through_the_git_remote(teacher: Path, tmp_path: Path) -> None:
    # A student's experiment: pushed with its code, params, metrics and (to the default DVC
    # remote) its model; pulled by a classmate, who applies it without training.
    run_command(["dvc", "exp", "run", "-n", "one-epoch", "-S", "train.cnn74.epochs=1"], teacher)
    run_command(["dvc", "exp", "push", "origin", "one-epoch"], teacher)

    clone = _student_clone(teacher, tmp_path / "classmate")
    run_command(["dvc", "exp", "pull", "origin", "one-epoch"], clone)
    shown = json.loads(run_command(["dvc", "exp", "show", "--json", "-A"], clone))
    names = [
        experiment["name"]
        for commit in shown
        for experiment in (commit.get("experiments") or [])
        if experiment.get("name")
    ]
    assert "one-epoch" in names
    run_command(["dvc", "exp", "apply", "one-epoch"], clone)
    assert json.loads((clone / "metrics/cifar10/cnn74.json").read_text())["epochs"] == 1
    assert (clone / "models/cifar10/cnn74.keras").is_file()
    assert stages_run(run_command(["dvc", "repro"], clone)) == ["report"]
