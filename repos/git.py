"""Safe use of the git command line.

Every git process APM starts goes through ``git_command``/``git_run``: an argument list (never a
shell), a scrubbed environment (no prompts, no system or user configuration), hooks, submodules and
every transport but the allowed ones switched off, and a timeout. Repository sources given by users
are checked by ``source_parse`` before git ever sees them, and are passed after ``--``.

A remote's host is resolved and checked right before git connects, and git is handed the addresses
that passed (``remote=`` of ``git_run``/``git_popen``), so it cannot resolve the name to another one.
A local source is confined to ``APM_REPO_ROOTS`` with everything git would read through it: its real
git directory, its common directory and its object stores, alternates included.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError

from apm.network import address_first_internal, host_addresses, networks_parse

logger = structlog.get_logger(__name__)

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


def git_command(*args: str, git_dir: str | None = None, config: Sequence[str] = ()) -> list[str]:
    """The argument list for ``git <args>`` with APM's forced configuration, then ``config`` entries."""
    command = ["git"]
    for entry in _SAFE_CONFIG:
        command += ["-c", entry]
    if "ssh" in _allowed_protocols():
        command += ["-c", "protocol.ssh.allow=always"]
    if settings.APM_GIT_CA_BUNDLE:
        command += ["-c", f"http.sslCAInfo={settings.APM_GIT_CA_BUNDLE}"]
    for entry in config:  # after the forced entries: a later -c of a single-valued key wins
        command += ["-c", entry]
    if git_dir is not None:
        command += ["--git-dir", git_dir]
    return [*command, *args]


def git_run(
    *args: str, git_dir: str | None = None, timeout: float = GIT_TIMEOUT_SECONDS, remote: str | None = None
) -> str:
    """Run git and return its standard output; raise ``GitError`` with git's own reason on failure.

    ``remote``: the checked source URL this command talks to (clone, fetch). Its host is resolved and
    checked here, right before git connects, and git connects to the addresses checked
    (``remote_config``); a refusal is a ``ValidationError`` on ``source``, as at registration.
    """
    config = remote_config(remote) if remote is not None else []
    try:
        completed = subprocess.run(  # noqa: S603 (an argument list built by git_command, no shell)
            git_command(*args, git_dir=git_dir, config=config),
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


def git_popen(
    *args: str, git_dir: str | None = None, stdin: bool = False, remote: str | None = None
) -> subprocess.Popen[bytes]:
    """Start git with its standard output as a byte stream (for ``log``, ``ls-tree``, ``cat-file``).

    ``remote``: as for ``git_run``, checked and pinned before git starts.
    """
    config = remote_config(remote) if remote is not None else []
    return subprocess.Popen(  # noqa: S603 (an argument list built by git_command, no shell)
        git_command(*args, git_dir=git_dir, config=config),
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
    credentials, whose host is written in the one form every resolver reads alike; or an existing local
    git repository under one of ``APM_REPO_ROOTS`` together with everything git would read through it
    (see ``_local_parse``). Everything else is refused with a ``ValidationError`` on ``source`` before
    any git process is started.

    Ingestion calls this again on every run, so a local repository changed after its registration to
    reach outside the roots is refused then too. Whether a remote's host may be reached is
    ``remote_host_check``'s to say (it resolves the name).
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


# --- Remote sources -------------------------------------------------------------------------------------

_DEFAULT_PORTS = {"https": 443, "ssh": 22}
# Host names as DNS spells them, in ASCII. Anything else (a percent sign, a trailing dot, a non-ASCII
# name, an empty label) is read differently by Python's resolver and by git's (curl, ssh), so a check of
# one form would not be a check of the name git connects to.
_HOST_NAME = re.compile(r"[a-z0-9_][a-z0-9_-]*(?:\.[a-z0-9_][a-z0-9_-]*)*")
# A name whose last label is a number is an IPv4 address to resolvers (2130706433, 0x7f.1, 127.1).
_NUMBER_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_SSH_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class RemoteTarget:
    """A remote's host, checked: the addresses it resolved to, every one of them allowed."""

    scheme: str
    host: str  # lower case; an IPv6 address without brackets
    port: int
    is_address: bool  # the URL names an address: nothing is resolved, so nothing needs pinning
    addresses: tuple[str, ...]


def _remote_parse(source: str) -> RepositorySource:
    parts = _url_split(source)
    allowed = ["https"] + (["ssh"] if settings.APM_ALLOW_SSH else [])
    if parts.scheme not in allowed:
        raise _refuse(f"Only {' and '.join(f'{scheme}://' for scheme in allowed)} URLs are allowed.")
    if parts.password is not None or (parts.username is not None and parts.scheme == "https"):
        raise _refuse("A repository URL cannot carry credentials.")
    if parts.username is not None and not _SSH_USER.fullmatch(parts.username):
        raise _refuse(f"{parts.username!r} is not a valid ssh user name.")
    if not parts.hostname or not parts.path.strip("/"):
        raise _refuse("A repository URL needs a host and a path.")
    _url_host(parts)
    return RepositorySource(kind="remote", location=source)


def _url_split(location: str) -> SplitResult:
    try:
        parts = urlsplit(location)
        parts.port  # noqa: B018 (parses the port, raising on a malformed one)
    except ValueError as exc:
        raise _refuse("This is not a valid URL.") from exc
    return parts


def _url_host(parts: SplitResult) -> tuple[str, bool]:
    """The URL's host in the form git will use, and whether it is an address; refuse ambiguous forms."""
    host = parts.hostname or ""
    written = parts.netloc.rpartition("@")[2]
    if "%" in written:
        # An IPv6 zone (fe80::1%25eth0) or a percent-encoded name: Python's resolver fails on both, git's
        # reads them, and a name nobody checked must not reach git.
        raise _refuse("A repository URL's host cannot contain '%' (an IPv6 zone or an encoded name).")
    if written.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise _refuse(f"[{host}] is not a valid IPv6 address.") from exc
        return host, True
    if host.endswith("."):
        raise _refuse(f"Write the host {host} without its trailing dot.")
    if not host.isascii():
        raise _refuse(f"Write the host {host} in its ASCII form (xn--…).")
    if not _HOST_NAME.fullmatch(host):
        raise _refuse(f"{host!r} is not a valid host name.")
    if _NUMBER_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise _refuse(f"Write the address {host} in its usual dotted form (such as 192.0.2.10).") from exc
        return host, True
    return host, False


def source_identity(parsed: RepositorySource) -> str:
    """What makes two spellings of a checked source one repository: the real git directory of a local
    source (``/srv/shop``, ``/srv/shop/.git``, a symlink to it); the host (whatever its case), port
    and path of a URL, with or without ``.git`` and a trailing slash."""
    if parsed.kind == "local":
        return os.path.realpath(parsed.location)
    parts = urlsplit(parsed.location)
    path = parts.path.rstrip("/").removesuffix(".git")
    default_port: int | str = _DEFAULT_PORTS.get(parts.scheme, "")
    port = parts.port or default_port
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}{path}"


def remote_target(location: str) -> RemoteTarget:
    """Resolve a remote's host and check every address; a ``ValidationError`` on source says why not.

    A host that does not resolve is refused (git would resolve it itself, perhaps differently). The
    answer names the kind of address refused, never the address a name resolved to: what internal
    names resolve to is no business of the person who typed the URL. Operators find the address in the
    log (``git_remote_refused``).
    """
    parts = _url_split(location)
    host, is_address = _url_host(parts)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    try:
        addresses = tuple(host_addresses(host, port))
    except (OSError, UnicodeError) as exc:
        logger.info("git_remote_unresolved", host=host, port=port, reason=str(exc))
        addresses = ()
    if not addresses:
        raise _refuse(f"The host {host} could not be resolved.")
    allowed = networks_parse(settings.APM_GIT_ALLOWED_NETWORKS, setting="APM_GIT_ALLOWED_NETWORKS")
    refused = address_first_internal(addresses, allowed=allowed)
    if refused is not None:
        address, reason = refused
        logger.warning(
            "git_remote_refused", host=host, port=port, address=address, reason=reason, addresses=addresses
        )
        # An address typed in the URL is the user's own; only a resolver's answer is kept from them.
        said = f"resolves to {address}, {reason}" if is_address else f"resolves to {reason}"
        raise _refuse(
            f"The host {host} {said}; repositories are fetched from public hosts only (operators may "
            "allow networks with APM_GIT_ALLOWED_NETWORKS)."
        )
    return RemoteTarget(scheme=parts.scheme, host=host, port=port, is_address=is_address, addresses=addresses)


def remote_host_check(location: str) -> None:
    """Refuse a remote whose host does not resolve or resolves to an internal address.

    Called at registration; ``git_run(..., remote=)`` checks again before every clone or fetch (DNS
    answers change) and hands git the addresses checked. Operators open internal networks (an
    on-premises git server) with ``APM_GIT_ALLOWED_NETWORKS``.
    """
    remote_target(location)


def remote_config(location: str) -> list[str]:
    """``git -c`` entries that make git connect to the addresses just checked for ``location``.

    https: curl gets the addresses for the host and port (``http.curloptResolve``) and resolves
    nothing itself, so a DNS answer changed since the check (rebinding) is not followed. ssh: ssh
    connects to the first address checked (``HostName``) and checks the host key under the name as
    usual (``HostKeyAlias``); it has no list of addresses to fall back on, and a ``ProxyCommand`` or
    ``ProxyJump`` in an ssh configuration the operator installed still applies.
    """
    _remote_parse(location)  # the scheme may have been disallowed since registration
    target = remote_target(location)
    if target.is_address:
        return []
    if target.scheme == "https":
        pinned = ",".join(f"[{address}]" if ":" in address else address for address in target.addresses)
        return [f"http.curloptResolve={target.host}:{target.port}:{pinned}"]
    # git runs core.sshCommand through the shell; host and address are checked forms, quoted anyway.
    alias = target.host if target.port == 22 else f"[{target.host}]:{target.port}"  # known_hosts' spelling
    command = [
        "ssh", "-o", "BatchMode=yes", "-o", f"HostName={target.addresses[0]}", "-o", f"HostKeyAlias={alias}"
    ]  # fmt: skip
    return [f"core.sshCommand={shlex.join(command)}"]


# --- Local sources --------------------------------------------------------------------------------------


def _local_parse(source: str) -> RepositorySource:
    """An existing git repository under ``APM_REPO_ROOTS``, with everything git reads through it.

    Symlinks resolved, these must all lie under a root: the source directory, its git directory (a
    ``.git`` may be a symlink), the common directory a ``commondir`` file names, the object store, every
    object store ``objects/info/alternates`` names (and theirs, recursively), and the target of every
    symlink inside those stores. Otherwise a repository under a root would let git read, and APM store,
    history from anywhere the worker can read.
    """
    path = Path(source)
    if not path.is_absolute():
        raise _refuse("A local repository must be given by its absolute path.")
    roots = [os.path.realpath(root) for root in settings.APM_REPO_ROOTS]
    real = Path(os.path.realpath(path))
    if not _under_roots(str(real), roots):
        listed = ", ".join(str(root) for root in settings.APM_REPO_ROOTS)
        raise _refuse(f"{source} is not under an allowed repository root (APM_REPO_ROOTS: {listed}).")
    if not real.exists():
        raise _refuse(f"{source} does not exist.")
    if not real.is_dir():
        raise _refuse(f"{source} is not a directory.")
    try:
        answer = git_run(
            "rev-parse", "--path-format=absolute", "--absolute-git-dir", "--git-common-dir",
            "--git-path", "objects", git_dir=_git_dir_of(real), timeout=30,
        )  # fmt: skip
    except GitError as exc:
        raise _refuse(f"{source} is not a git repository.") from exc
    lines = answer.rstrip("\n").split("\n")
    if len(lines) != 3:  # a path with a line break in it
        raise _refuse(f"{source} is not a git repository APM can read.")
    git_dir, common_dir, objects = (os.path.realpath(line) for line in lines)
    outside = "lies outside the allowed repository roots (APM_REPO_ROOTS)"
    if not _under_roots(git_dir, roots):
        raise _refuse(f"{source}: its git directory {outside}.")
    if not _under_roots(common_dir, roots):
        raise _refuse(f"{source}: its common git directory (commondir) {outside}.")
    if not _under_roots(objects, roots):
        raise _refuse(f"{source}: its object store {outside}.")
    _object_stores_check(source, objects, roots)
    return RepositorySource(kind="local", location=git_dir)


def _git_dir_of(path: Path) -> str:
    dot_git = path / ".git"
    return str(dot_git if dot_git.is_dir() else path)


def _under_roots(real: str, roots: list[str]) -> bool:
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _object_stores_check(source: str, objects: str, roots: list[str]) -> None:
    """Refuse alternates and symlinks that lead git's object reads out of the roots."""
    seen: set[str] = set()
    pending = [objects]
    while pending:
        store = pending.pop()
        if store in seen:
            continue
        seen.add(store)
        if not _under_roots(store, roots):
            raise _refuse(
                f"{source}: objects/info/alternates names an object store outside the allowed repository "
                "roots (APM_REPO_ROOTS)."
            )
        if _links_outside(store, roots):
            raise _refuse(
                f"{source}: its object store holds a symbolic link to a place outside the allowed "
                "repository roots (APM_REPO_ROOTS)."
            )
        pending.extend(_alternates(source, store))


def _links_outside(store: str, roots: list[str]) -> bool:
    """Whether a symlink anywhere in ``store`` (followed into directories under the roots) leaves them."""
    seen: set[str] = set()
    pending = [store]
    while pending:
        directory = pending.pop()
        if directory in seen:
            continue
        seen.add(directory)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue  # unreadable to APM, so unreadable to the git it runs too
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not _under_roots(target, roots):
                    return True
                if os.path.isdir(target):
                    pending.append(target)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return False


def _alternates(source: str, store: str) -> list[str]:
    """The object stores ``store/info/alternates`` names, resolved as git resolves them.

    git reads one path a line, skips empty lines and ``#`` comments, unquotes C-quoted lines, and reads
    a relative path from the store that names it, ``..`` collapsed before the file system is asked.
    """
    try:
        content = Path(store, "info", "alternates").read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _refuse(f"{source}: objects/info/alternates cannot be read.") from exc
    stores = []
    for line in content.split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        entry = _c_unquote(line) if line.startswith(b'"') else line
        if entry is None:
            raise _refuse(f"{source}: objects/info/alternates holds a line APM cannot read.")
        name = os.fsdecode(entry)
        if not os.path.isabs(name):
            name = f"{store}/{name}"
        stores.append(os.path.realpath(os.path.normpath(name)))
    return stores


_C_ESCAPES = {b"a": 7, b"b": 8, b"f": 12, b"n": 10, b"r": 13, b"t": 9, b"v": 11, b"\\": 92, b'"': 34}


def _c_unquote(quoted: bytes) -> bytes | None:
    """git's C-style unquoting of a whole line (``"a\\tb"``); None if the line is not exactly one quote."""
    out = bytearray()
    index = 1
    while index < len(quoted):
        char = quoted[index : index + 1]
        if char == b'"':
            return bytes(out) if index == len(quoted) - 1 else None
        if char != b"\\":
            out += char
            index += 1
            continue
        escape = quoted[index + 1 : index + 2]
        if escape in _C_ESCAPES:
            out.append(_C_ESCAPES[escape])
            index += 2
        elif re.fullmatch(rb"[0-3][0-7][0-7]", quoted[index + 1 : index + 4]):
            out.append(int(quoted[index + 1 : index + 4], 8))
            index += 4
        else:
            return None
    return None
