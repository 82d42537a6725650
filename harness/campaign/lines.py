"""The series' own lines: every line a patch adds, by patch and hunk, where it ends up.

Coverage and mutation both speak of "the lines the series adds" in the tree the whole series
produces. Each patch is applied with `git apply --cached` to a private index (the shared work
tree and its lock are not touched) and committed without a ref; `git blame` of the last
commit then says which patch each line of the final tree came from, and at which line of that
patch's own result, which names the hunk.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness import proc
from harness.errors import PatchError
from harness.patches import Series
from harness.source import BASE_TAG, GIT_IDENTITY

HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
# Deterministic commits: the same series gives the same commit ids on every run.
COMMIT_ENV = {
    "GIT_AUTHOR_DATE": "1970-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "1970-01-01T00:00:00Z",
}


@dataclass(frozen=True)
class Hunk:
    patch: str  # file name of the patch
    number: int  # 1-based, counted over the whole patch
    file: str  # path in the tree
    new_start: int
    new_len: int
    header: str  # the @@ line's function context

    @property
    def label(self) -> str:
        return f"{self.patch[:4]}#{self.number}"


@dataclass(frozen=True)
class AddedLine:
    patch: str
    hunk: int
    file: str
    line: int  # in the tree the whole series produces
    text: str


@dataclass
class SeriesLines:
    tree: Path  # the source repository
    commits: list[str]  # one per patch, in order
    hunks: dict[str, list[Hunk]]  # patch name -> its hunks
    added: list[AddedLine] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1]

    def final_text(self, path: str) -> str:
        return git_output(self.tree, "show", f"{self.head}:{path}")

    def hunk(self, patch: str, number: int) -> Hunk:
        return self.hunks[patch][number - 1]


def git_output(tree: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = proc.run(["git", *GIT_IDENTITY, *args], cwd=tree, env=env, check=False)
    if result.returncode != 0:
        raise PatchError(f"git {' '.join(args[:3])} in {tree} failed:\n{result.stdout[-800:]}")
    return result.stdout


def parse_hunks(patch_name: str, text: str) -> list[Hunk]:
    """Every hunk of a `git format-patch` file, with the file it changes."""
    hunks: list[Hunk] = []
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("+++ "):
            target = line[4:].strip()
            current = None if target == "/dev/null" else target.removeprefix("b/")
            continue
        match = HUNK_HEADER.match(line)
        if match and current is not None:
            hunks.append(
                Hunk(
                    patch=patch_name,
                    number=len(hunks) + 1,
                    file=current,
                    new_start=int(match.group(3)),
                    new_len=int(match.group(4) if match.group(4) is not None else 1),
                    header=match.group(5).strip(),
                )
            )
    return hunks


def commit_series(tree: Path, series: Series, extra: Iterable[Path] = ()) -> list[str]:
    """Commit base + each patch without touching the work tree; one commit id per patch."""
    parent = git_output(tree, "rev-parse", f"{BASE_TAG}^{{commit}}").strip()
    commits: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harness-index-") as scratch:
        env = {**COMMIT_ENV, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
        git_output(tree, "read-tree", parent, env=env)
        for patch in [*(p.path for p in series.patches), *extra]:
            result = proc.run(
                ["git", *GIT_IDENTITY, "apply", "--cached", str(patch.resolve())],
                cwd=tree, env=env, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise PatchError(f"{patch}: does not apply:\n{result.stdout.strip()[-800:]}")
            tree_id = git_output(tree, "write-tree", env=env).strip()
            parent = git_output(
                tree, "commit-tree", tree_id, "-p", parent, "-m", patch.name, env=env
            ).strip()
            commits.append(parent)
    return commits


def commit_on(tree: Path, parent: str, patch: Path) -> str:
    """Commit `patch` applied to commit `parent` (a private index, no ref); the commit id."""
    with tempfile.TemporaryDirectory(prefix="harness-index-") as scratch:
        env = {**COMMIT_ENV, "GIT_INDEX_FILE": os.path.join(scratch, "index")}
        git_output(tree, "read-tree", parent, env=env)
        result = proc.run(["git", *GIT_IDENTITY, "apply", "--cached", str(patch.resolve())],
                          cwd=tree, env=env, check=False)  # fmt: skip
        if result.returncode != 0:
            raise PatchError(f"{patch}: does not apply:\n{result.stdout.strip()[-800:]}")
        tree_id = git_output(tree, "write-tree", env=env).strip()
        return git_output(tree, "commit-tree", tree_id, "-p", parent, "-m", patch.name,
                          env=env).strip()  # fmt: skip


def _blame(tree: Path, head: str, path: str) -> list[tuple[str, int, int, str]]:
    """(commit, line in that commit, line in head, text) for every line of `path` at head."""
    out = git_output(tree, "blame", "--porcelain", head, "--", path)
    rows: list[tuple[str, int, int, str]] = []
    commit, orig, final = "", 0, 0
    for line in out.splitlines():
        if line.startswith("\t"):
            rows.append((commit, orig, final, line[1:]))
            continue
        fields = line.split()
        if len(fields) >= 3 and re.fullmatch(r"[0-9a-f]{40}", fields[0]):
            commit, orig, final = fields[0], int(fields[1]), int(fields[2])
    return rows


def series_lines(tree: Path, series: Series) -> SeriesLines:
    """The added lines of every patch that survive into the series' final tree."""
    if not series.patches:
        raise PatchError("the config has no kernel series: there are no added lines to measure")
    commits = commit_series(tree, series)
    names = [p.path.name for p in series.patches]
    hunks = {p.path.name: parse_hunks(p.path.name, p.path.read_text()) for p in series.patches}
    result = SeriesLines(tree, commits, hunks)
    by_commit = dict(zip(commits, names, strict=True))
    files = sorted({h.file for hs in hunks.values() for h in hs})
    head_files = set(git_output(tree, "ls-tree", "-r", "--name-only", result.head).splitlines())
    for path in files:
        if path not in head_files:
            continue  # deleted by a later patch
        for commit, orig, final, text in _blame(tree, result.head, path):
            patch = by_commit.get(commit)
            if patch is None:
                continue
            hunk = next(
                (h for h in hunks[patch]
                 if h.file == path and h.new_start <= orig < h.new_start + h.new_len),
                None,
            )  # fmt: skip
            if hunk is not None:
                result.added.append(AddedLine(patch, hunk.number, path, final, text))
    result.added.sort(key=lambda a: (names.index(a.patch), a.hunk, a.file, a.line))
    return result


def format_patch(subject: str, changes: Iterable[tuple[str, str, str]], body: str = "") -> str:
    """A `git am`-able mail changing each (path, before, after) from before to after."""
    diffs = []
    for path, before, after in changes:
        diff = difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{path}",
            tofile=f"b/{path}",
            n=3,
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in diff)
        if text:
            diffs.append(f"diff --git a/{path} b/{path}\n{text}")
    if not diffs:
        raise PatchError(f"{subject}: the patch would change nothing")
    return (
        "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
        "From: folio-harness developers <dev@folio-harness.invalid>\n"
        "Date: Thu, 1 Jan 1970 00:00:00 +0000\n"
        f"Subject: [PATCH] {subject}\n\n"
        f"{body.rstrip()}\n\n---\n" + "".join(diffs) + "-- \n2.39.2\n\n"
    )
