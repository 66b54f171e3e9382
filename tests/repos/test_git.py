"""Repository sources are checked before git runs, and git runs without shell, hooks or prompts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from repos.git import GitError, git_command, git_run, source_parse


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
