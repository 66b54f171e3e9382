"""Repository sources are checked before git runs, and git runs without shell, hooks or prompts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from repos.git import GitError, git_command, git_run, remote_config, source_parse


@pytest.fixture
def roots(tmp_path: Path, settings) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    settings.APM_REPO_ROOTS = [str(root)]
    settings.APM_WORKSPACE = str(tmp_path / "workspace")
    return root


def make_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("--upload-pack=touch {marker}", "cannot start with '-'"),
        ("ext::sh -c touch% {marker}", "Transport helpers"),
        ("file://{root}/repo", "Only https:// URLs"),
        ("http://git.example.com/team/repo.git", "Only https:// URLs"),
        ("git://git.example.com/team/repo.git", "Only https:// URLs"),
        ("ssh://git@git.example.com/team/repo.git", "Only https:// URLs"),
        ("https://user:secret@git.example.com/team/repo.git", "cannot carry credentials"),
        ("https://token@git.example.com/team/repo.git", "cannot carry credentials"),
        ("git.example.com:team/repo.git", "scp-style"),
        ("/etc", "not under an allowed repository root"),
        ("{root}/../outside", "not under an allowed repository root"),
        ("{root}/escape", "not under an allowed repository root"),
        ("{root}/missing", "does not exist"),
        ("{root}/plain", "not a git repository"),
        ("relative/path", "absolute path"),
        ("", "Give a repository URL or path"),
        ("https://git.example.com/repo\n--upload-pack=x", "control characters"),
        # Host forms two resolvers read differently are refused before anything is resolved.
        ("https://[fe80::1%25eth0]/team/repo.git", "cannot contain '%'"),
        ("https://git.example.com./team/repo.git", "without its trailing dot"),
        ("https://bücher.example/team/repo.git", "in its ASCII form"),
        ("https://git..example.com/team/repo.git", "is not a valid host name"),
        ("https://git_example.com:443@/team/repo.git", "cannot carry credentials"),
        ("https://017700000001/team/repo.git", "in its usual dotted form"),
        ("https://127.0.0.01/team/repo.git", "in its usual dotted form"),
    ],
)
def test_unsafe_sources_are_refused_before_git_runs(roots: Path, tmp_path: Path, source: str, reason: str):
    marker = tmp_path / "ran"
    outside = make_repo(tmp_path / "outside")
    (roots / "escape").symlink_to(outside)  # a symlink inside the root pointing out of it
    (roots / "plain").mkdir()

    with pytest.raises(ValidationError) as excinfo:
        source_parse(source.format(marker=marker, root=roots))

    assert reason in excinfo.value.message_dict["source"][0]
    assert not marker.exists()


def test_https_urls_and_repositories_under_a_root_are_accepted(roots: Path):
    repo = make_repo(roots / "project")
    bare = roots / "mirror.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)

    assert source_parse("https://git.example.com/team/repo.git").kind == "remote"
    assert source_parse(str(repo)).location == str(repo / ".git")
    assert source_parse(str(bare)).location == str(bare)


def test_ssh_is_accepted_only_when_enabled(roots: Path, settings):
    settings.APM_ALLOW_SSH = True

    assert source_parse("ssh://git@git.example.com/team/repo.git").kind == "remote"
    assert "protocol.ssh.allow=always" in git_command("fetch")


def test_git_never_runs_hooks_of_an_ingested_repository(roots: Path, tmp_path: Path):
    repo = make_repo(roots / "hooked")
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)

    git_run("branch", "through-apm", git_dir=str(repo / ".git"))
    assert not marker.exists()

    # The same operation through plain git does run the hook: the check above is not vacuous.
    subprocess.run(["git", "-C", str(repo), "branch", "plain"], check=True)
    assert marker.exists()


def test_git_failures_carry_gits_reason(roots: Path):
    repo = make_repo(roots / "empty")

    with pytest.raises(GitError, match=r"git log failed: .*does not have any commits"):
        git_run("log", git_dir=str(repo / ".git"))


def test_an_ssh_user_name_cannot_be_an_option(roots: Path, settings):
    settings.APM_ALLOW_SSH = True

    with pytest.raises(ValidationError) as excinfo:
        source_parse("ssh://-oProxyCommand=touch%20x@git.example.com/team/repo.git")

    assert "not a valid ssh user name" in excinfo.value.message_dict["source"][0]


def _resolving(monkeypatch, *addresses: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("repos.git.host_addresses", lambda host, port: list(addresses))


def test_git_is_given_every_address_checked_for_an_https_host(roots: Path, monkeypatch):
    _resolving(monkeypatch, "140.82.112.3", "2606:50c0:8000::153")

    assert remote_config("https://Git.Example.com/team/repo.git") == [
        "http.curloptResolve=git.example.com:443:140.82.112.3,[2606:50c0:8000::153]"
    ]
    assert remote_config("https://git.example.com:8443/team/repo.git") == [
        "http.curloptResolve=git.example.com:8443:140.82.112.3,[2606:50c0:8000::153]"
    ]


def test_an_address_in_the_url_needs_no_pinning(roots: Path):
    assert remote_config("https://140.82.112.3/team/repo.git") == []
    assert remote_config("https://[2606:50c0:8000::153]/team/repo.git") == []


def test_ssh_is_pinned_to_the_first_address_checked(roots: Path, settings, monkeypatch):
    settings.APM_ALLOW_SSH = True
    _resolving(monkeypatch, "140.82.112.3", "140.82.112.4")

    assert remote_config("ssh://git@git.example.com/team/repo.git") == [
        "core.sshCommand=ssh -o BatchMode=yes -o HostName=140.82.112.3 -o HostKeyAlias=git.example.com"
    ]
    # Later -c entries win: the pinned command replaces the default one on git's command line.
    command = git_command("fetch", config=remote_config("ssh://git@git.example.com/team/repo.git"))
    assert command.index("core.sshCommand=ssh -o BatchMode=yes") < command.index(
        "core.sshCommand=ssh -o BatchMode=yes -o HostName=140.82.112.3 -o HostKeyAlias=git.example.com"
    )


def test_a_remote_whose_scheme_was_disallowed_since_is_not_fetched(roots: Path, settings, monkeypatch):
    _resolving(monkeypatch, "140.82.112.3")

    with pytest.raises(ValidationError) as excinfo:
        git_run(
            "ls-remote",
            "--",
            "ssh://git@git.example.com/team/repo.git",
            remote="ssh://git@git.example.com/team/repo.git",
        )

    assert "Only https:// URLs" in excinfo.value.message_dict["source"][0]


def test_any_internal_address_refuses_the_host(roots: Path, monkeypatch, settings):
    _resolving(monkeypatch, "140.82.112.3", "fd00::1")

    with pytest.raises(ValidationError) as excinfo:
        remote_config("https://git.example.com/team/repo.git")
    settings.APM_GIT_ALLOWED_NETWORKS = ["fd00::/8"]

    assert "resolves to a private address" in excinfo.value.message_dict["source"][0]
    assert "fd00::1" not in excinfo.value.message_dict["source"][0]
    assert remote_config("https://git.example.com/team/repo.git") == [
        "http.curloptResolve=git.example.com:443:140.82.112.3,[fd00::1]"
    ]
