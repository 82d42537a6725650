"""Patch series: a quilt-style `series` file naming `git format-patch` files, applied with git am.

The series branch is rebuilt from the pristine base whenever the series' content changes, so
no patch is ever applied twice. Files whose content ends up the same as before the switch
get their old mtime back: make then rebuilds only what the changed patches touch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness import cache
from harness.errors import ConfigError, PatchError
from harness.source import BASE_TAG, SourceTree, git

SERIES_BRANCH = "harness-series"
STATE_FILE = "harness-series.json"


@dataclass(frozen=True)
class Patch:
    path: Path
    sha256: str


@dataclass(frozen=True)
class Series:
    path: Path | None  # None: the baseline
    patches: tuple[Patch, ...]

    @property
    def identity(self) -> str:
        """Hash of the patches' names and contents, in order; 'none' for the baseline."""
        if not self.patches:
            return "none"
        text = "\n".join(f"{p.path.name} {p.sha256}" for p in self.patches)
        return cache.sha256_bytes(text.encode())[:16]


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


def _changed_files(tree: Path) -> dict[str, str]:
    """path -> blob id of every file HEAD changes relative to the base."""
    out = git(tree, "diff", "--raw", "--no-renames", BASE_TAG, "HEAD").stdout
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


def apply(source: SourceTree, series: Series) -> str:
    """Check out the base plus `series` in the source tree; returns the resulting HEAD.

    Caller must hold the source lock: the work tree is shared by every run of this source.
    """
    tree = source.tree
    state_path = tree / ".git" / STATE_FILE
    state = {}
    if state_path.exists():
        state = json.loads(state_path.read_text())
    head = git(tree, "rev-parse", "HEAD").stdout.strip()
    clean = not git(tree, "status", "--porcelain", "--untracked-files=no").stdout.strip()
    if state.get("series") == series.identity and state.get("head") == head and clean:
        return head

    # Remember what the old state had changed, to give unchanged files their mtimes back.
    before: dict[str, tuple[str, int]] = {}
    for name, blob in _changed_files(tree).items():
        with_path = tree / name
        if with_path.exists():
            before[name] = (blob, with_path.stat().st_mtime_ns)

    git(tree, "am", "--abort", check=False)
    git(tree, "checkout", "-q", "-f", "-B", SERIES_BRANCH, BASE_TAG)
    for patch in series.patches:
        result = git(tree, "am", "-q", "--keep-cr", str(patch.path), check=False)
        if result.returncode != 0:
            git(tree, "am", "--abort", check=False)
            git(tree, "checkout", "-q", "-f", "-B", SERIES_BRANCH, BASE_TAG)
            state_path.unlink(missing_ok=True)
            raise PatchError(
                f"{patch.path}: does not apply on {source.description} "
                f"(series {series.path}):\n{_failing_hunk(result.stdout)}"
            )

    after = _changed_files(tree)
    for name, (blob, mtime_ns) in before.items():
        if after.get(name) == blob:
            os.utime(tree / name, ns=(mtime_ns, mtime_ns))

    head = git(tree, "rev-parse", "HEAD").stdout.strip()
    cache.write_atomic(state_path, json.dumps({"series": series.identity, "head": head}))
    return head
