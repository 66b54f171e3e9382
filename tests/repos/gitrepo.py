"""Build real git repositories for the ingestion tests, and read git's own answers about them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


class GitRepo:
    """A working repository driven through the git CLI, with a clock that moves one minute a commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._clock = 1_700_000_000
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    @classmethod
    def existing(cls, path: Path) -> GitRepo:
        """Drive a repository that is already there (built by ``benchmarks.repogen``, say)."""
        repo = cls.__new__(cls)
        repo.path = path
        repo._clock = 1_700_000_000
        return repo

    def env(self) -> dict[str, str]:
        self._clock += 60
        date = f"@{self._clock} +0000"
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            **IDENTITY,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_DATE": date,
        }

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None) -> bytes:
        return subprocess.run(
            ["git", "-C", str(self.path), *args],
            check=True,
            capture_output=True,
            input=input,
            env=env or self.env(),
        ).stdout

    def write(self, name: str, content: str | bytes) -> None:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)

    def commit(self, message: str, *, allow_empty: bool = False) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message, *(["--allow-empty"] if allow_empty else []))
        return self.head()

    def env_as(self, who: tuple[str, str], when: dt.datetime, offset: str = "+0000") -> dict[str, str]:
        """The environment of a commit by ``who`` (name, email) at ``when``, author and committer both
        (APM orders by the committer date)."""
        stamp = f"@{int(when.timestamp())} {offset}"
        name, email = who
        return {
            **self.env(),
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
        }

    def commit_as(self, message: str, who: tuple[str, str], when: dt.datetime, offset: str = "+0000") -> str:
        """Commit everything written, as ``who`` at ``when``."""
        env = self.env_as(who, when, offset)
        self.git("add", "-A", env=env)
        self.git("commit", "-q", "-m", message, env=env)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref).decode().strip()

    @property
    def git_dir(self) -> str:
        return str(self.path / ".git")

    # --- git's own answers, read independently of APM's parser ---------------------------------------

    def rev_list(self, ref: str = "main") -> set[str]:
        return set(self.git("rev-list", ref).decode().split())

    def parents(self, ref: str = "main") -> dict[str, list[str]]:
        rows = self.git("rev-list", "--parents", ref).decode().splitlines()
        return {row.split()[0]: row.split()[1:] for row in rows}

    def numstat(self, ref: str = "main") -> dict[str, dict[bytes, tuple[int | None, int | None]]]:
        """{sha: {new path: (added, deleted)}} from ``git log --numstat -M -z`` (None for binary)."""
        out = self.git("log", "-z", "--numstat", "-M", "--format=%x1e%H", ref)
        result: dict[str, dict[bytes, tuple[int | None, int | None]]] = {}
        for record in out.split(b"\x1e")[1:]:
            sha, _, rest = record.partition(b"\n")
            tokens = rest.split(b"\0")
            entries: dict[bytes, tuple[int | None, int | None]] = {}
            index = 0
            while index < len(tokens):
                token = tokens[index].lstrip(b"\n")
                index += 1
                if not token:
                    continue
                added, deleted, path = token.split(b"\t", 2)
                if not path:  # a rename: old and new path follow
                    path = tokens[index + 1]
                    index += 2
                entries[path] = (
                    None if added == b"-" else int(added),
                    None if deleted == b"-" else int(deleted),
                )
            result[sha.decode().strip("\0")] = entries
        return result

    def name_status(self, ref: str = "main") -> dict[str, dict[bytes, str]]:
        """{sha: {new path: status letter}} from ``git log --name-status -M -z``."""
        out = self.git("log", "-z", "--name-status", "-M", "--format=%x1e%H", ref)
        result: dict[str, dict[bytes, str]] = {}
        for record in out.split(b"\x1e")[1:]:
            sha, _, rest = record.partition(b"\n")
            tokens = rest.split(b"\0")
            entries: dict[bytes, str] = {}
            index = 0
            while index < len(tokens):
                status = tokens[index].lstrip(b"\n").decode()
                index += 1
                if not status:
                    continue
                if status[0] in "RC":
                    entries[tokens[index + 1]] = status[0]
                    index += 2
                else:
                    entries[tokens[index]] = status[0]
                    index += 1
            result[sha.decode().strip("\0")] = entries
        return result

    def tree(self, ref: str = "main") -> dict[bytes, tuple[str, int | None]]:
        """{path: (mode, size)} from ``git ls-tree -r -l -z``."""
        result = {}
        for token in self.git("ls-tree", "-r", "-l", "-z", ref).split(b"\0"):
            if token:
                meta, path = token.split(b"\t", 1)
                mode, _kind, _sha, size = meta.split()
                result[path] = (mode.decode(), None if size == b"-" else int(size))
        return result
