"""Patch series: a quilt-style `series` file naming `git format-patch` files, applied with git am.

The series branch keeps one commit per applied patch. A new series is applied from the
first patch that differs from what the branch holds: the commits of the unchanged prefix
stay, the branch is reset to the last of them and only the rest is applied with git am.
Files whose content ends up the same as before get their old mtime back, so make rebuilds
only what the changed patches touch.

Other commands build variants of a series through the same path:
  series.prefix(n)            the first n patches (harness bisect)
  series.appended(path)       the series plus one more patch (harness mutate)
  apply(source, series)       check the variant out incrementally (caller holds the lock);
                              or hand it to build.build(), which takes the lock itself.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import cache
from harness.errors import ConfigError, PatchError
from harness.source import BASE_TAG, SourceTree, git

SERIES_BRANCH = "harness-series"
STATE_FILE = "harness-series.json"


# git format-patch's signature after the last hunk: "-- ", the git version, blank lines.
_SIGNATURE = re.compile(r"\n-- \n[^\n]*\n*\Z")


@dataclass(frozen=True)
class Patch:
    path: Path
    sha256: str

    def sections(self) -> list[tuple[str, str]]:
        """(path in the tree, text) of each file's part of the patch, in order."""
        found: list[tuple[str, str]] = []
        name, lines = "", []
        text = _SIGNATURE.sub("\n", self.path.read_text(errors="replace"))
        for line in text.splitlines(keepends=True):
            if line.startswith("diff --git "):
                if name:
                    found.append((name, "".join(lines)))
                words = line.split()
                # b/<path> names the file after the patch (a rename's new name).
                name = words[-1].split("/", 1)[1] if "/" in words[-1] else words[-1]
                lines = []
            if name:
                lines.append(line)
        if name:
            found.append((name, "".join(lines)))
        return found

    def touched_files(self) -> list[str]:
        return [name for name, _ in self.sections()]

    @functools.cached_property
    def effect(self) -> str:
        """Hash of the diff alone: what the patch does to the tree.

        `git format-patch` writes each commit's id, the author and the message around the
        diff; regenerating a series after editing one patch changes those in every later
        file. Two patches with the same effect leave the same tree on the same parent, so
        the kept prefix of the series branch is found by effect, not by file content.
        """
        return cache.sha256_bytes("".join(t for _, t in self.sections()).encode())


@dataclass(frozen=True)
class Series:
    path: Path | None  # the series file these patches came from; None: the baseline
    patches: tuple[Patch, ...]

    @property
    def identity(self) -> str:
        """Hash of the patches' names and contents, in order; 'none' for no patch."""
        if not self.patches:
            return "none"
        text = "\n".join(f"{p.path.name} {p.sha256}" for p in self.patches)
        return cache.sha256_bytes(text.encode())[:16]

    def prefix(self, count: int) -> Series:
        """The first `count` patches (the baseline for 0)."""
        return Series(self.path, self.patches[:count])

    def appended(self, patch: Path) -> Series:
        """The series with one more patch at its end (a mutant, a fix being tried)."""
        if not patch.is_file():
            raise ConfigError(f"{patch}: patch not found")
        return Series(self.path, (*self.patches, Patch(patch, cache.sha256_file(patch))))

    def identity_of(self, wanted: Callable[[str], bool]) -> str:
        """Hash of only the parts of the patches that change files `wanted` accepts.

        Two series with the same value leave those files with the same content, so
        anything computed only from them (the merged kconfig) is the same for both.
        """
        parts = [
            f"{name}\n{text}"
            for patch in self.patches
            for name, text in patch.sections()
            if wanted(name)
        ]
        return cache.sha256_bytes("\0".join(parts).encode())[:16] if parts else "none"


def read_series(path: Path | None) -> Series:
    """Parse a series file: one patch per line, '#' comments; quilt's -pN options ignored."""
    if path is None:
        return Series(None, ())
    patches: list[Patch] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split()[0]
        patch = path.parent / name
        if not patch.is_file():
            raise ConfigError(f"{path}:{lineno}: patch '{name}' not found (looked for {patch})")
        if name in seen:
            raise ConfigError(f"{path}:{lineno}: patch '{name}' is listed twice")
        seen.add(name)
        patches.append(Patch(patch, cache.sha256_file(patch)))
    return Series(path, tuple(patches))


def _changed_files(tree: Path, since: str, until: str = "HEAD") -> dict[str, str]:
    """path -> blob id of every file `until` changes relative to `since`."""
    out = git(tree, "diff", "--raw", "--no-renames", since, until).stdout
    changed: dict[str, str] = {}
    for line in out.splitlines():
        # :100644 100644 <old> <new> M\tpath
        meta, _, name = line.partition("\t")
        fields = meta.split()
        if len(fields) >= 4:
            changed[name] = fields[3]
    return changed


def _failing_hunk(output: str) -> str:
    """The lines of git am's output that say which file and hunk did not apply."""
    keep = [
        line
        for line in output.splitlines()
        if re.search(r"error:|patch failed|does not apply|Patch failed at|corrupt patch", line)
    ]
    return "\n".join(keep[:8]) or output.strip()[-800:]


@dataclass(frozen=True)
class _State:
    """What the series branch holds: one (patch effect, commit) per applied patch."""

    identity: str | None
    head: str
    applied: tuple[tuple[str, str], ...]

    def save(self, tree: Path) -> None:
        data = {"series": self.identity, "head": self.head, "applied": list(self.applied)}
        cache.write_atomic(tree / ".git" / STATE_FILE, json.dumps(data))

    @staticmethod
    def load(tree: Path) -> _State | None:
        try:
            data = json.loads((tree / ".git" / STATE_FILE).read_text())
            applied = tuple((str(s), str(c)) for s, c in data.get("applied", []))
            return _State(data.get("series"), str(data["head"]), applied)
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _kept_prefix(state: _State | None, series: Series, head: str) -> int:
    """How many leading patches of `series` the branch already holds as commits."""
    if state is None or state.head != head:
        return 0
    kept = 0
    for (effect, _), patch in zip(state.applied, series.patches, strict=False):
        if effect != patch.effect:
            break
        kept += 1
    return kept


def apply(source: SourceTree, series: Series) -> str:
    """Check out the base plus `series` in the source tree; returns the resulting HEAD.

    Only the patches after the longest prefix the branch already holds are applied.
    Caller must hold the source lock: the work tree is shared by every run of this source.

    Every path ends with a forced checkout, so a file someone edited by hand in the tree
    is put back (with a new mtime: make rebuilds it); nothing needs a `git status` of the
    whole tree first, which costs as much as the checkout itself.
    """
    tree = source.tree
    state = _State.load(tree)
    if (tree / ".git" / "rebase-apply").exists():
        git(tree, "am", "--abort", check=False)  # an interrupted run's git am
    head = git(tree, "rev-parse", "HEAD").stdout.strip()
    kept = _kept_prefix(state, series, head)
    applied = list(state.applied[:kept]) if state is not None else []
    fork = applied[-1][1] if applied else BASE_TAG
    if state is not None and kept == len(series.patches) == len(state.applied):
        # Nothing to apply: only make sure the tree is what HEAD says.
        git(tree, "checkout", "-q", "-f", "-B", SERIES_BRANCH, head)
        if state.identity != series.identity:  # same contents under other names
            _State(series.identity, head, state.applied).save(tree)
        return head

    # What the old branch changed after the fork point, to give unchanged files their
    # mtimes back once the new patches are in.
    # A file edited by hand since (its content is not its blob) keeps no mtime. Hashing the
    # few files is exact; the index's stat data is not (restoring mtimes staled it).
    before: dict[str, tuple[str, int]] = {}
    changed = {n: b for n, b in _changed_files(tree, fork).items() if (tree / n).is_file()}
    names = list(changed)
    hashes = git(tree, "hash-object", "--", *names).stdout.split() if names else []
    for name, content in zip(names, hashes, strict=True):
        if content == changed[name]:
            before[name] = (content, (tree / name).stat().st_mtime_ns)

    git(tree, "checkout", "-q", "-f", "-B", SERIES_BRANCH, fork)
    rest = series.patches[kept:]
    failure = None
    if rest:
        result = git(tree, "am", "-q", "--keep-cr", *(str(p.path) for p in rest), check=False)
        commits = git(tree, "rev-list", "--reverse", f"{fork}..HEAD").stdout.split()
        applied += [(p.effect, c) for p, c in zip(rest, commits, strict=False)]
        if result.returncode != 0:
            # Keep the patches that applied (bisect and the next run reuse them) and
            # leave a clean tree at the last of them.
            failure = result.stdout
            git(tree, "am", "--quit", check=False)
            git(tree, "reset", "-q", "--hard", "HEAD")

    restored = []
    for name, blob in _changed_files(tree, fork).items():
        if name in before and before[name][0] == blob:
            mtime_ns = before[name][1]
            os.utime(tree / name, ns=(mtime_ns, mtime_ns))
            restored.append(name)
    if restored:
        # Give the index their stat data too: else the next forced checkout would take
        # them for edited files and write them again, with new mtimes.
        git(tree, "update-index", "-q", "--", *restored)

    head = git(tree, "rev-parse", "HEAD").stdout.strip()
    complete = failure is None
    _State(series.identity if complete else None, head, tuple(applied)).save(tree)
    if failure is not None:
        bad = series.patches[len(applied)]
        raise PatchError(
            f"{bad.path}: does not apply on {source.description} "
            f"(series {series.path}, patch {len(applied) + 1} of {len(series.patches)}):\n"
            f"{_failing_hunk(failure)}"
        )
    return head
