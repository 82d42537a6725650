"""The kernel source: imported once into the cache as a git repository with a pristine base.

A tarball (Debian's linux-source-6.1 by default) or a plain directory is unpacked and
committed as the base; a git checkout or URL is cloned and the requested ref becomes the
base. Series branches are made from that base (see patches.py).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import cache, proc
from harness.errors import SourceError

BASE_TAG = "harness-base"
GIT_IDENTITY = [
    "-c",
    "user.name=folio-harness",
    "-c",
    "user.email=harness@folio-harness.invalid",
]


@dataclass(frozen=True)
class SourceTree:
    identity: str  # short stable id of the base content
    description: str  # what the user named, for reports
    tree: Path  # git work tree in the cache
    version: str  # e.g. 6.1.192 from the top Makefile


def git(tree: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return proc.run(["git", *GIT_IDENTITY, *args], cwd=tree, check=check)


def _kernel_version(tree: Path) -> str:
    fields: dict[str, str] = {}
    with (tree / "Makefile").open() as f:
        for line in f:
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
                fields[key.strip()] = value.strip()
            if len(fields) == 4:
                break
    version = f"{fields.get('VERSION')}.{fields.get('PATCHLEVEL')}.{fields.get('SUBLEVEL')}"
    return version + fields.get("EXTRAVERSION", "")


def _commit_snapshot(tree: Path, message: str) -> None:
    git(tree, "init", "-q", "-b", "harness-import")
    # No auto-gc while importing: `git commit` would start one, detached, to run beside
    # the first build.
    git(tree, "config", "gc.auto", "0")
    # Debian's tree ignores everything at the top level (/* in .gitignore): force-add.
    # Every file is "big" for this one command, so git streams the blobs straight into
    # one pack (bulk checkin) instead of writing ~75,000 loose objects that a gc would
    # then have to pack and delete (minutes on a busy disk).
    git(tree, "-c", "core.bigFileThreshold=1", "add", "-A", "-f")
    git(tree, "commit", "-q", "--no-verify", "-m", message)
    git(tree, "tag", "-f", BASE_TAG)
    pack(tree)


def pack(tree: Path) -> None:
    """Pack what the import left loose (its trees), and let later gcs run in the foreground.

    An unpacked import makes the first git am start git's auto-gc, detached, and its
    repack runs beside make for minutes. `repack -d` without -a packs only the loose
    objects (a few thousand trees); later auto-gcs run in the foreground, under the source
    lock (see collect_garbage()), rather than beside a build.
    """
    git(tree, "repack", "-d", "-q")
    git(tree, "config", "--unset", "gc.auto", check=False)
    git(tree, "config", "gc.autoDetach", "false")


def collect_garbage(tree: Path) -> None:
    """Let git collect garbage if it wants to, in the foreground; cheap when it need not.

    Call with the source lock held, before patching: a tree imported before pack()
    existed gets its one big repack here, once, instead of beside make.
    """
    git(tree, "-c", "gc.autoDetach=false", "-c", "pack.window=0", "-c", "pack.compression=1",
        "gc", "--auto", "-q", check=False)  # fmt: skip


def _import_tarball(tarball: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    proc.run(["tar", "-xf", str(tarball), "-C", str(dest), "--strip-components=1"])
    if not (dest / "Makefile").exists():
        raise SourceError(f"{tarball}: no top-level Makefile after unpacking; not a kernel tarball")
    _commit_snapshot(dest, f"Import {tarball.name}")


def _import_directory(directory: Path, dest: Path) -> None:
    shutil.copytree(directory, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    _commit_snapshot(dest, f"Import {directory}")


def _import_git(url: str, ref: str, dest: Path) -> None:
    proc.run(["git", "clone", "-q", "--no-checkout", url, str(dest)])
    git(dest, "checkout", "-q", "-f", ref)
    git(dest, "tag", "-f", BASE_TAG)


def _resolve(source: Path | str, ref: str | None) -> tuple[str, str, str]:
    """(identity, kind, description) of a source without importing it."""
    if isinstance(source, str) or (source.is_dir() and (source / ".git").exists()):
        url = str(source)
        want = ref or "HEAD"
        out = proc.run(["git", "ls-remote", url, want], check=False)
        if isinstance(source, Path):
            out = proc.run(["git", "-C", url, "rev-parse", f"{want}^{{commit}}"], check=False)
        commit = out.stdout.split()[0] if out.returncode == 0 and out.stdout.strip() else ""
        if len(commit) != 40:
            raise SourceError(f"kernel source {url}: cannot resolve ref {want!r}")
        return f"git-{commit[:16]}", "git", f"{url}@{commit}"
    if source.is_file():
        return f"tar-{cache.sha256_file_cached(source)[:16]}", "tar", str(source)
    if source.is_dir():
        if not (source / "Makefile").exists():
            raise SourceError(f"kernel source {source}: no Makefile; not a kernel tree")
        listing = proc.output_of(
            [
                "find",
                ".",
                "-path",
                "./.git",
                "-prune",
                "-o",
                "-type",
                "f",
                "-printf",
                "%P %s %T@\n",
            ],
            cwd=source,
        )
        digest = cache.sha256_bytes("\n".join(sorted(listing.splitlines())).encode())
        return f"dir-{digest[:16]}", "dir", str(source)
    raise SourceError(
        f"kernel source {source} not found; install Debian's with "
        "'apt-get install linux-source-6.1' or set kernel.source in the run config"
    )


def prepare(
    source: Path | str, ref: str | None = None, on_wait: Callable[[str], None] | None = None
) -> SourceTree:
    """Import the source into the cache once; later calls only check that it is there."""
    identity, kind, description = _resolve(source, ref)
    home = cache.root() / "sources" / identity
    tree = home / "tree"
    # An import is published by one rename, so a tree that exists is complete: checking
    # needs no lock (builds hold it for minutes), only importing does.
    if (tree / ".git").exists():
        return SourceTree(identity, description, tree, _kernel_version(tree))
    with cache.locked(f"source-{identity}", on_wait):
        ok = tree.exists() and git(tree, "rev-parse", "-q", "--verify", BASE_TAG, check=False)
        if not ok or ok.returncode != 0:
            with cache.staging_dir(tree) as staging:
                staging.rmdir()
                if kind == "tar":
                    _import_tarball(Path(source), staging)
                elif kind == "dir":
                    _import_directory(Path(source), staging)
                else:
                    _import_git(str(source), ref or "HEAD", staging)
    return SourceTree(identity, description, tree, _kernel_version(tree))
