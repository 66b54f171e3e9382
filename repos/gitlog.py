"""Streaming readers of git's own output: ``git log --raw --numstat -z`` and ``git ls-tree -r -l -z``.

Nothing here holds more than one commit (or one tree entry) at a time: the output of a single git
process is read in blocks and parsed as it arrives, so memory stays flat however long the history is.

Text from git (messages, names, paths) is bytes. It is stored as UTF-8 when it is valid UTF-8, and
otherwise decoded as Latin-1: every byte becomes one character, so nothing is lost (encoding the text
back to Latin-1 gives the original bytes) and the text stays readable and searchable.
"""

from __future__ import annotations

import datetime
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from apm.dates import DAY_MAX, DAY_MIN, day_in_range
from repos.git import GitError, git_popen

READ_BLOCK = 1 << 16

# Header fields of one commit, NUL-separated; %x1e marks the start of a commit. Names and e-mails go
# through the repository's .mailmap (%aN, %aE: a bare mirror reads HEAD's), as git shortlog counts
# people: one person under two addresses is one contributor.
_LOG_FORMAT = "%x1e%H%x00%P%x00%aN%x00%aE%x00%at%x00%cN%x00%cE%x00%ct%x00%B"
_HEADER_FIELDS = 9


def text(raw: bytes) -> str:
    """Decode git's bytes: UTF-8 when valid, else Latin-1 (lossless, see the module docstring)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@dataclass
class ParsedChange:
    path: str
    change_type: str
    old_path: str = ""
    added: int | None = None
    deleted: int | None = None

    @property
    def is_binary(self) -> bool:
        return self.added is None


@dataclass
class ParsedCommit:
    sha: str
    parents: list[str]
    author_name: str
    author_email: str
    authored_at: datetime.datetime
    committer_name: str
    committer_email: str
    timestamp: datetime.datetime
    message: str
    changes: list[ParsedChange] = field(default_factory=list)
    # For the run's notes: how a date outside the days APM keeps was stored (see _commit_dates).
    date_note: str = ""

    @property
    def additions(self) -> int:
        return sum(change.added or 0 for change in self.changes)

    @property
    def deletions(self) -> int:
        return sum(change.deleted or 0 for change in self.changes)


def _tokens(stream: IO[bytes] | None) -> Iterator[bytes]:
    """NUL-terminated tokens of a byte stream, read in blocks."""
    assert stream is not None  # a git_popen process's stdout: always a pipe
    pending = b""
    while True:
        block = stream.read(READ_BLOCK)
        if not block:
            break
        pending += block
        *complete, pending = pending.split(b"\0")
        yield from complete
    if pending:
        yield pending


def _epoch(raw: bytes) -> datetime.datetime | None:
    """The moment of git's seconds since 1970, or None when it is not a day APM keeps (1900-2999)."""
    try:
        moment = datetime.datetime.fromtimestamp(int(raw), tz=datetime.UTC)
    except (ValueError, OverflowError, OSError):  # year 3170843, or not a number at all
        return None
    return moment if day_in_range(moment.date()) else None


def _bound(raw: bytes) -> datetime.datetime:
    """The nearest moment APM keeps to a date it cannot keep (the last day for one too far ahead)."""
    try:
        ahead = int(raw) > 0
    except ValueError:
        ahead = False
    return datetime.datetime.combine(DAY_MAX if ahead else DAY_MIN, datetime.time(), tzinfo=datetime.UTC)


def _commit_dates(
    sha: bytes, authored: bytes, committed: bytes
) -> tuple[datetime.datetime, datetime.datetime, str]:
    """(authored at, committed at, a note for people or "") of a commit.

    git accepts any date (``@99999999999999``, year 3170843), which neither Python nor the database can
    hold, and whoever may push may write one: one such commit would fail every run of its repository.
    The commit is kept: a date out of range takes the commit's other date when that one is valid, else
    the nearest day APM keeps, and the run's notes name the commit.
    """
    author_at, committer_at = _epoch(authored), _epoch(committed)
    if author_at is not None and committer_at is not None:
        return author_at, committer_at, ""
    author_kept = author_at or committer_at or _bound(authored)
    committer_kept = committer_at or author_at or _bound(committed)
    wrong = [
        f"{role} date {raw.decode('ascii', 'replace')}"
        for role, raw, valid in (("an author", authored, author_at), ("a committer", committed, committer_at))
        if valid is None
    ]
    note = (
        f"Commit {sha.decode('ascii')[:12]} has {' and '.join(wrong)} outside {DAY_MIN.year}-"
        f"{DAY_MAX.year}; it is kept, dated {committer_kept:%Y-%m-%d %H:%M} UTC."
    )
    return author_kept, committer_kept, note


def _commits_parse(tokens: list[bytes]) -> Iterator[ParsedCommit]:
    """Parse the NUL-separated tokens of ``git log -z --raw --numstat`` into commits.

    Each commit is 9 header tokens (the first starts with 0x1e), then its raw entries (":<modes>
    <shas> <status>" followed by one path, or two for renames and copies), then as many numstat entries
    ("<added>\t<deleted>\t<path>", or "<added>\t<deleted>\t" followed by two paths). Paths are consumed
    by that structure, never searched for, so no path can be mistaken for anything else.
    """
    count, index = len(tokens), 0
    while index < count:
        if not tokens[index].startswith(b"\x1e"):
            index += 1  # the empty token after the last NUL
            continue
        if index + _HEADER_FIELDS > count:
            raise GitError("git log output ended in the middle of a commit")
        sha, parents, an, ae, at, cn, ce, ct, message = tokens[index : index + _HEADER_FIELDS]
        index += _HEADER_FIELDS
        changes: list[ParsedChange] = []
        numstats: list[tuple[int | None, int | None]] = []
        while index < count and not tokens[index].startswith(b"\x1e"):
            token = tokens[index]
            index += 1
            if token[:1] == b"\n":
                token = token[1:]
            if token[:1] == b":":
                kind = token[token.rindex(b" ") + 1 : token.rindex(b" ") + 2].decode("ascii")
                if kind in "RC":
                    changes.append(
                        ParsedChange(
                            path=text(tokens[index + 1]), change_type=kind, old_path=text(tokens[index])
                        )
                    )
                    index += 2
                else:
                    changes.append(ParsedChange(path=text(tokens[index]), change_type=kind))
                    index += 1
            elif token:
                added, deleted, path = token.split(b"\t", 2)
                if not path:
                    index += 2  # a rename's old and new path, already known from its raw entry
                numstats.append(
                    (None if added == b"-" else int(added), None if deleted == b"-" else int(deleted))
                )
        # git lists the numstat entries for the same paths, in the same order, as the raw entries.
        for change, (added_lines, deleted_lines) in zip(changes, numstats, strict=False):
            change.added, change.deleted = added_lines, deleted_lines
        authored_at, committed_at, date_note = _commit_dates(sha[1:], at, ct)
        yield ParsedCommit(
            sha=sha[1:].decode("ascii"),
            parents=parents.decode("ascii").split(),
            author_name=text(an),
            author_email=text(ae),
            authored_at=authored_at,
            committer_name=text(cn),
            committer_email=text(ce),
            timestamp=committed_at,
            message=text(message),
            changes=changes,
            date_note=date_note,
        )


def log_revisions(*, tip: str, exclude: str = "") -> list[str]:
    """The revision arguments selecting the commits of ``tip`` not reachable from ``exclude``."""
    return [tip, f"^{exclude}"] if exclude else [tip]


def commits_read(*, git_dir: str, revisions: list[str], skip: int, max_count: int) -> list[ParsedCommit]:
    """One chunk of the commits selected by ``revisions`` (newest first), with their file changes.

    The chunk's output is read whole and parsed in one pass (much faster than token by token); memory
    is bounded by the chunk size (``max_count``), never by the length of the history.

    Merge commits come without file changes, as in ``git log --numstat``: what a merge brings in is
    counted once, on the commits that made it. Renames and copies are detected (``-M``).
    """
    args = ["log", "-z", "--raw", "--numstat", "-M", "--no-abbrev", f"--format={_LOG_FORMAT}"]
    args += [f"--skip={skip}", f"--max-count={max_count}"]
    process = git_popen(*args, "--end-of-options", *revisions, "--", git_dir=git_dir)
    try:
        assert process.stdout is not None
        output = process.stdout.read()
    finally:
        _finish(process, "log")
    return list(_commits_parse(output.split(b"\0")))


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str  # blob or commit (a submodule)
    sha: str
    size: int | None
    path: str


def tree_read(*, git_dir: str, tree_ish: str) -> Iterator[TreeEntry]:
    """Stream every entry of the tree at ``tree_ish``, recursively, with blob sizes."""
    process = git_popen(
        "ls-tree", "-r", "-l", "-z", "--full-tree", "--end-of-options", tree_ish, git_dir=git_dir
    )
    try:
        assert process.stdout is not None
        for token in _tokens(process.stdout):
            meta, path = token.split(b"\t", 1)
            mode, kind, sha, size = meta.split()
            yield TreeEntry(
                mode=mode.decode("ascii"),
                kind=kind.decode("ascii"),
                sha=sha.decode("ascii"),
                size=None if size == b"-" else int(size),
                path=text(path),
            )
    finally:
        _finish(process, "ls-tree")


def tree_changes_read(*, git_dir: str, old: str, new: str) -> Iterator[TreeEntry]:
    """Stream the paths that differ between the trees of ``old`` and ``new``, as entries of ``new``.

    A path gone from ``new`` comes with mode ``000000``. Renames are a deletion and an addition here
    (``--no-renames``): the file index is keyed by path. Sizes are not known (``None``).
    """
    process = git_popen(
        "diff-tree", "-r", "-z", "--raw", "--no-renames", "--no-abbrev", "--end-of-options", old, new,
        git_dir=git_dir,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        tokens = _tokens(process.stdout)
        for meta in tokens:
            if not meta.startswith(b":"):
                continue
            path = next(tokens)
            _, mode, _, sha, _ = meta[1:].split(b" ", 4)
            yield TreeEntry(
                mode=mode.decode("ascii"),
                kind="commit" if mode == b"160000" else "blob",
                sha=sha.decode("ascii"),
                size=None,
                path=text(path),
            )
    finally:
        _finish(process, "diff-tree")


def _finish(process: subprocess.Popen[bytes], command: str) -> None:
    """Reap a streaming git process; raise with git's reason if it failed (not if we stopped early)."""
    if process.stdout is not None:
        process.stdout.close()
    stderr = process.stderr.read() if process.stderr is not None else b""
    if process.stderr is not None:
        process.stderr.close()
    code = process.wait()
    if code not in (0, -13, 141):  # 141/-13: SIGPIPE because the reader stopped early on purpose
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {command} failed: {lines[-1] if lines else f'exit {code}'}")


@dataclass(frozen=True)
class BlobStats:
    sha: str
    size: int
    lines: int
    is_binary: bool


# git's own test for binary content: a NUL byte in the first 8000 bytes.
_BINARY_PROBE = 8000


def blobs_read(*, git_dir: str, shas: list[str]) -> Iterator[BlobStats]:
    """Size, line count and binary flag of each blob, read from one ``git cat-file --batch`` stream.

    Contents are read in blocks and counted as they pass, so a 50 MB file costs 64 KB of memory.
    """
    process = git_popen("cat-file", "--batch", git_dir=git_dir, stdin=True)
    assert process.stdin is not None
    assert process.stdout is not None

    def feed() -> None:
        try:
            for sha in shas:
                process.stdin.write(sha.encode("ascii") + b"\n")  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        finally:
            process.stdin.close()  # type: ignore[union-attr]

    # Writing the requests from a thread keeps git's input and output pipes from filling each other.
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    out = process.stdout
    try:
        for _ in shas:
            header = out.readline().split()
            if len(header) != 3:
                raise GitError(f"git cat-file: unexpected answer {b' '.join(header)!r}")
            sha, size = header[0].decode("ascii"), int(header[2])
            remaining, lines, is_binary, last = size, 0, False, b""
            probed = 0
            while remaining:
                block = out.read(min(READ_BLOCK, remaining))
                if not block:
                    raise GitError("git cat-file output ended in the middle of a blob")
                if probed < _BINARY_PROBE:
                    is_binary = is_binary or b"\0" in block[: _BINARY_PROBE - probed]
                    probed += len(block)
                lines += block.count(b"\n")
                last = block[-1:]
                remaining -= len(block)
            out.read(1)  # the newline git puts after each object
            if size and last != b"\n":
                lines += 1  # a last line without its newline still counts
            yield BlobStats(sha=sha, size=size, lines=0 if is_binary else lines, is_binary=is_binary)
    finally:
        writer.join(timeout=5)
        _finish(process, "cat-file")
