"""Safe use of the git command line.

Every git process APM starts goes through ``git_command``/``git_run``: an argument list (never a
shell), a scrubbed environment (no prompts, no system or user configuration), hooks, submodules and
every transport but the allowed ones switched off, and a timeout. Repository sources given by users
are checked by ``source_parse`` before git ever sees them, and are passed after ``--``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from apm.network import addresses_refusal, host_addresses, networks_parse

GIT_TIMEOUT_SECONDS = 600

# Configuration forced on every invocation (``git -c``), whatever the repository's own config says.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",  # never run a hook shipped inside an ingested repository
    "core.fsmonitor=false",  # a repository's config must not name a program for git to run
    "core.sshCommand=ssh -o BatchMode=yes",
    "credential.helper=",
    "submodule.recurse=false",
    "fetch.recurseSubmodules=false",
    "protocol.allow=never",  # every transport is refused unless allowed below
    "protocol.https.allow=always",
    "protocol.file.allow=always",  # local sources, already confined to APM_REPO_ROOTS
    "safe.directory=*",  # local sources may belong to another user; they are only read
    "uploadpack.allowFilter=false",
    # A remote's host is checked before every fetch (remote_host_check); a redirect would send git to
    # a host nobody checked, inside the network perhaps. A moved repository is registered again.
    "http.followRedirects=false",
)


class GitError(Exception):
    """git failed; ``str()`` is a one-line reason fit for an ``IngestionRun`` error."""


@dataclass(frozen=True)
class RepositorySource:
    """A checked repository source: a remote URL, or a real path under one of ``APM_REPO_ROOTS``."""

    kind: str  # "remote" or "local", as Repository.Kind
    location: str


def _git_env() -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(Path(settings.APM_WORKSPACE)),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": ":".join(_allowed_protocols()),
    }
    return env


def _allowed_protocols() -> list[str]:
    protocols = ["https", "file"]
    if settings.APM_ALLOW_SSH:
        protocols.append("ssh")
    return protocols


def git_command(*args: str, git_dir: str | None = None) -> list[str]:
    """The argument list for ``git <args>`` with APM's forced configuration."""
    command = ["git"]
    for entry in _SAFE_CONFIG:
        command += ["-c", entry]
    if "ssh" in _allowed_protocols():
        command += ["-c", "protocol.ssh.allow=always"]
    if settings.APM_GIT_CA_BUNDLE:
        command += ["-c", f"http.sslCAInfo={settings.APM_GIT_CA_BUNDLE}"]
    if git_dir is not None:
        command += ["--git-dir", git_dir]
    return [*command, *args]


def git_run(*args: str, git_dir: str | None = None, timeout: float = GIT_TIMEOUT_SECONDS) -> str:
    """Run git and return its standard output; raise ``GitError`` with git's own reason on failure."""
    try:
        completed = subprocess.run(  # noqa: S603 (an argument list built by git_command, no shell)
            git_command(*args, git_dir=git_dir),
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} took longer than {timeout:.0f} s") from exc
    if completed.returncode != 0:
        reason = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {reason[-1] if reason else f'exit {completed.returncode}'}")
    return completed.stdout.decode("utf-8", "surrogateescape")


def git_popen(*args: str, git_dir: str | None = None, stdin: bool = False) -> subprocess.Popen[bytes]:
    """Start git with its standard output as a byte stream (for ``log``, ``ls-tree``, ``cat-file``)."""
    return subprocess.Popen(  # noqa: S603 (an argument list built by git_command, no shell)
        git_command(*args, git_dir=git_dir),
        env=_git_env(),
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _refuse(message: str) -> ValidationError:
    return ValidationError({"source": [message]}, code="invalid_source")


def source_parse(source: str) -> RepositorySource:
    """Check a user-supplied repository source and say what it is.

    Accepted: ``https://host/path`` (and ``ssh://`` when ``APM_ALLOW_SSH``), without embedded
    credentials; or an existing local git repository whose real path (symlinks resolved) lies under
    one of ``APM_REPO_ROOTS``. Everything else is refused with a ``ValidationError`` on ``source``
    before any git process is started.
    """
    source = source.strip()
    if not source:
        raise _refuse("Give a repository URL or path.")
    if source.startswith("-"):
        raise _refuse("A repository source cannot start with '-'.")
    if any(ord(char) < 32 for char in source):
        raise _refuse("A repository source cannot contain control characters.")
    if "::" in source.split("/", 1)[0]:
        raise _refuse("Transport helpers (such as ext::) are not allowed.")
    if "://" in source:
        return _remote_parse(source)
    if ":" in source.split("/", 1)[0] and not source.startswith("/"):
        raise _refuse("scp-style sources (host:path) are not allowed; use an https:// URL.")
    return _local_parse(source)


def _remote_parse(source: str) -> RepositorySource:
    try:
        parts = urlsplit(source)
        parts.port  # noqa: B018 (parses the port, raising on a malformed one)
    except ValueError as exc:
        raise _refuse("This is not a valid URL.") from exc
    allowed = ["https"] + (["ssh"] if settings.APM_ALLOW_SSH else [])
    if parts.scheme not in allowed:
        raise _refuse(f"Only {' and '.join(f'{scheme}://' for scheme in allowed)} URLs are allowed.")
    if parts.password is not None or (parts.username is not None and parts.scheme == "https"):
        raise _refuse("A repository URL cannot carry credentials.")
    if not parts.hostname or not parts.path.strip("/"):
        raise _refuse("A repository URL needs a host and a path.")
    return RepositorySource(kind="remote", location=source)


def _local_parse(source: str) -> RepositorySource:
    path = Path(source)
    if not path.is_absolute():
        raise _refuse("A local repository must be given by its absolute path.")
    real = Path(os.path.realpath(path))
    roots = [Path(os.path.realpath(root)) for root in settings.APM_REPO_ROOTS]
    if not any(real == root or root in real.parents for root in roots):
        raise _refuse(f"{source} is not under an allowed repository root (APM_REPO_ROOTS).")
    if not real.exists():
        raise _refuse(f"{source} does not exist.")
    if not real.is_dir():
        raise _refuse(f"{source} is not a directory.")
    try:
        git_dir = git_run("rev-parse", "--absolute-git-dir", git_dir=_git_dir_of(real), timeout=30).strip()
    except GitError as exc:
        raise _refuse(f"{source} is not a git repository.") from exc
    return RepositorySource(kind="local", location=git_dir)


def _git_dir_of(path: Path) -> str:
    dot_git = path / ".git"
    return str(dot_git if dot_git.is_dir() else path)


def remote_host_check(location: str) -> None:
    """Refuse a remote whose host resolves to an internal address, with a ``ValidationError`` on source.

    Called at registration and before every clone or fetch (DNS answers change). A name that does not
    resolve now is let through: git reports it when it fetches. Operators open internal networks (an
    on-premises git server) with ``APM_GIT_ALLOWED_NETWORKS``. git resolves the name again itself, so a
    DNS answer changed between this check and git's connection is not caught; deployments that must
    exclude that route git through an egress proxy.
    """
    parts = urlsplit(location)
    host = parts.hostname or ""
    try:
        addresses = host_addresses(host, parts.port or (22 if parts.scheme == "ssh" else 443))
    except (OSError, UnicodeError):
        return
    allowed = networks_parse(settings.APM_GIT_ALLOWED_NETWORKS, setting="APM_GIT_ALLOWED_NETWORKS")
    refusal = addresses_refusal(host, addresses, allowed=allowed)
    if refusal is not None:
        raise _refuse(
            f"{refusal}; repositories are fetched from public hosts only (operators may allow networks "
            "with APM_GIT_ALLOWED_NETWORKS)."
        )
