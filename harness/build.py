"""Kernel build: out of tree, through ccache, cached by everything that decides the result.

Artifact key = source identity + series content + merged config + toolchain version.
A key already in kernels/ means no make at all. Otherwise make runs in a build directory
kept per source and merged config, so after a one-file patch change make recompiles only
the objects that file feeds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from harness import cache, kconfig, patches, proc, prune
from harness.errors import BuildError
from harness.runconfig import KernelSpec
from harness.source import SourceTree, collect_garbage, git

# Fixed build identity: the same inputs give the same bits, and ccache can hit on version.c.
REPRODUCIBLE_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01",
    "KBUILD_BUILD_USER": "folio-harness",
    "KBUILD_BUILD_HOST": "folio-harness",
    "KBUILD_BUILD_VERSION": "1",
}


@dataclass(frozen=True)
class BuildRequest:
    spec: KernelSpec
    source: SourceTree
    series: patches.Series
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    make_args: tuple[str, ...] = ()
    force: bool = False  # run make even when the artifacts are cached
    build_dir: Path | None = None  # where make runs; default: one per source and config
    lenient_kconfig: bool = False  # requested options this tree does not define yet: fine


@dataclass
class BuildResult:
    key: str
    bzimage: Path
    config: Path
    log: Path
    cached: bool  # True: artifacts came from the cache, no make ran
    head: str  # source commit built
    config_sha256: str
    toolchain: str
    build_dir: Path
    seconds: dict[str, float]

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        for k in ("bzimage", "config", "log", "build_dir"):
            data[k] = str(data[k])
        return data


def toolchain_version() -> str:
    gcc = proc.output_of(["gcc", "--version"]).splitlines()[0]
    ld = proc.output_of(["ld", "--version"]).splitlines()[0]
    return f"{gcc}; {ld}"


def make_env() -> dict[str, str]:
    env = dict(REPRODUCIBLE_ENV)
    env["CCACHE_DIR"] = str(cache.root() / "ccache")
    env.setdefault("CCACHE_MAXSIZE", "8G")
    return env


def make_command(tree: Path, build_dir: Path, jobs: int, extra: tuple[str, ...]) -> list[str]:
    cc = "ccache gcc" if shutil.which("ccache") else "gcc"
    return [
        "make",
        "-C",
        str(tree),
        f"O={build_dir}",
        "ARCH=x86_64",
        f"CC={cc}",
        f"HOSTCC={cc}",
        f"-j{jobs}",
        *extra,
        "bzImage",
    ]


def _install_config(build_dir: Path, text: str) -> None:
    """Write .config only when it changed, so make does not see a new config for nothing."""
    target = build_dir / ".config"
    if target.exists() and target.read_text() == text:
        return
    build_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _kconfig_memo(request: BuildRequest, toolchain: str) -> Path:
    """Where the merged .config for these inputs is remembered.

    Merging runs kconfig three times (5-10 s). Its result is a pure function of the files
    kconfig reads (the base source, the series' changes to Kconfig files and kconfig's
    scripts, see kconfig.reads), the base config, the fragments and the compiler (Kconfig
    asks it for its version and flags), so a patch that changes only C keeps the memo.
    """
    spec = request.spec
    inputs = json.dumps(
        {
            "source": request.source.identity,
            "series_kconfig": request.series.identity_of(kconfig.reads),
            "base": spec.base_config,
            "fragments": [cache.sha256_file(f) for f in spec.fragments],
            "toolchain": toolchain,
        },
        sort_keys=True,
    )
    return cache.root() / "kconfig" / f"{cache.sha256_bytes(inputs.encode())[:20]}.config"


def _merged_config(request: BuildRequest, toolchain: str, log_path: Path) -> kconfig.MergedConfig:
    """The merged .config, from the memo or by running kconfig (needs the source lock).

    The memo holds kconfig's output; it is checked against the fragments every time (a
    millisecond), so strict and lenient requests share it.
    """
    memo = _kconfig_memo(request, toolchain)
    spec = request.spec
    if memo.exists():
        text = memo.read_text()
        with log_path.open("a") as log:
            log.write(f"# merged config from {memo}\n")
    else:
        scratch = cache.root() / "builds" / f"{request.source.identity}-kconfig"
        text = kconfig.merge(request.source.tree, scratch, spec.base_config, spec.fragments,
                             log_path)  # fmt: skip
        cache.write_atomic(memo, text)
    defined = kconfig.defined_in(request.source.tree) if request.lenient_kconfig else None
    kconfig.verify(kconfig.parse_config(text), kconfig.requests(spec.fragments), defined)
    return kconfig.MergedConfig(text, kconfig.options_sha256(text))


@dataclass(frozen=True)
class _Keyed:
    """The artifact key of a merged config, and where its build lives."""

    request: BuildRequest
    merged: kconfig.MergedConfig
    toolchain: str

    @property
    def inputs(self) -> dict[str, object]:
        return {
            "source": self.request.source.identity,
            "series": self.request.series.identity,
            "config": self.merged.sha256,
            "toolchain": self.toolchain,
            "make_args": list(self.request.make_args),
        }

    @property
    def key(self) -> str:
        return cache.sha256_bytes(json.dumps(self.inputs, sort_keys=True).encode())[:20]

    @property
    def store(self) -> Path:
        return cache.root() / "kernels" / self.key

    @property
    def build_dir(self) -> Path:
        if self.request.build_dir is not None:
            return self.request.build_dir
        return cache.root() / "builds" / f"{self.request.source.identity}-{self.merged.sha256[:16]}"

    def cached(self) -> bool:
        return (self.store / "bzImage").exists() and not self.request.force

    def same_tree_pointer(self, tree_id: str) -> Path:
        """Where the key of a kernel built from the same tree content is remembered.

        Two series that leave the same files (a commit message edited, a patch split in
        two) build the same kernel: the git tree id of HEAD says so without make.
        """
        inputs = {**self.inputs, "series": None, "tree": tree_id}
        name = cache.sha256_bytes(json.dumps(inputs, sort_keys=True).encode())[:20]
        return cache.root() / "trees" / name

    def result(self, cached: bool, head: str, seconds: dict[str, float]) -> BuildResult:
        return BuildResult(
            key=self.key,
            bzimage=self.store / "bzImage",
            config=self.store / "config",
            log=self.store / "build.log",
            cached=cached,
            head=head,
            config_sha256=self.merged.sha256,
            toolchain=self.toolchain,
            build_dir=self.build_dir,
            seconds=seconds,
        )


def _from_cache(keyed: _Keyed, log_path: Path, seconds: dict[str, float]) -> BuildResult:
    meta = json.loads((keyed.store / "meta.json").read_text())
    prune.touch(keyed.store)
    with log_path.open("a") as log:
        log.write(f"# kernel {keyed.key} found in the cache: no make\n")
    return keyed.result(True, str(meta.get("head", "")), seconds)


# kbuild's quiet output, one line per step: '  CC      mm/memory.o', '  LD      vmlinux'.
MAKE_STEP = re.compile(r"^  [A-Z][A-Z0-9_-]*\s+\S")
STEPS_MEMO = ".folio-harness-make-steps"  # in the build directory: steps of its fullest make


class MakeWatcher(Protocol):
    """Follows make as it runs (a progress bar): told how many steps to expect (None when
    this build directory never ran make before), then fed every line of make's output."""

    def start(self, expected_steps: int | None) -> None: ...

    def line(self, text: str) -> None: ...


def _expected_steps(build_dir: Path, config_sha256: str | None = None) -> int | None:
    """The memo in the build directory; else the step count of a cached kernel's build log
    with the same merged config (a build directory made before the memo existed)."""
    try:
        return int((build_dir / STEPS_MEMO).read_text().strip())
    except (OSError, ValueError):
        pass
    if config_sha256 is None:
        return None
    counts = []
    for meta in (cache.root() / "kernels").glob("*/meta.json"):
        try:
            if json.loads(meta.read_text())["inputs"]["config"] != config_sha256:
                continue
            with (meta.parent / "build.log").open(errors="replace") as log:
                counts.append(sum(1 for line in log if MAKE_STEP.match(line)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return max(counts) if counts and max(counts) > 0 else None


def _remember_steps(build_dir: Path, steps: int) -> None:
    """Keep the largest step count seen: an incremental make is a fraction of a full one."""
    if steps > (_expected_steps(build_dir) or 0):
        cache.write_atomic(build_dir / STEPS_MEMO, f"{steps}\n")


def _say_waiting(message: str) -> None:
    print(f"build: {message} (another build of this source tree)", flush=True)


def build(
    request: BuildRequest,
    log_path: Path,
    on_wait: Callable[[str], None] = _say_waiting,
    watch: MakeWatcher | None = None,
) -> BuildResult:
    """Apply the series, merge the config, and build unless the artifacts are cached."""
    seconds: dict[str, float] = {}
    source = request.source
    log_path.parent.mkdir(parents=True, exist_ok=True)
    toolchain = toolchain_version()

    # A remembered config whose kernel is cached needs neither the tree nor its lock: a
    # cached run never waits behind another run's build of the same source.
    memo = _kconfig_memo(request, toolchain)
    if memo.exists() and not request.lenient_kconfig:
        text = memo.read_text()
        keyed = _Keyed(request, kconfig.MergedConfig(text, kconfig.options_sha256(text)), toolchain)
        if keyed.cached() and (keyed.store / "meta.json").exists():
            return _from_cache(keyed, log_path, seconds)

    with cache.locked(f"source-{source.identity}", on_wait):
        t0 = time.monotonic()
        collect_garbage(source.tree)
        head = patches.apply(source, request.series)
        seconds["patch"] = time.monotonic() - t0

        t0 = time.monotonic()
        keyed = _Keyed(request, _merged_config(request, toolchain, log_path), toolchain)
        seconds["kconfig"] = time.monotonic() - t0
        if keyed.cached():
            prune.touch(keyed.store)
            return keyed.result(True, head, seconds)
        tree_id = git(source.tree, "rev-parse", "HEAD^{tree}").stdout.strip()
        if not request.force and _reuse_same_tree(keyed, tree_id, head, log_path):
            return keyed.result(True, head, seconds)

        t0 = time.monotonic()
        new_build_dir = not (keyed.build_dir / ".config").exists()
        _install_config(keyed.build_dir, keyed.merged.text)
        argv = make_command(source.tree, keyed.build_dir, request.jobs, request.make_args)
        steps = 0

        def on_line(text: str) -> None:
            nonlocal steps
            steps += bool(MAKE_STEP.match(text))
            if watch is not None:
                watch.line(text)

        if watch is not None:
            watch.start(_expected_steps(keyed.build_dir, keyed.merged.sha256))
        with log_path.open("a") as log:
            try:
                proc.run(argv, env=make_env(), log=log, log_path=log_path, on_line=on_line)
            except proc.CommandError as exc:
                raise BuildError(
                    f"kernel build failed (status {exc.returncode}); see {log_path}\n"
                    + _first_errors(exc.output)
                ) from None
        seconds["make"] = time.monotonic() - t0
        _remember_steps(keyed.build_dir, steps)

        with cache.staging_dir(keyed.store) as staging:
            shutil.copy2(keyed.build_dir / "arch/x86/boot/bzImage", staging / "bzImage")
            shutil.copy2(keyed.build_dir / ".config", staging / "config")
            shutil.copy2(log_path, staging / "build.log")
            meta = {"inputs": keyed.inputs, "head": head}
            (staging / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        cache.write_atomic(keyed.same_tree_pointer(tree_id), keyed.key)
        prune.touch(keyed.store, measure=True)
        # The build directory grows little after its first build: measure it only then.
        prune.touch(keyed.build_dir, measure=new_build_dir)
    # Outside the source lock: eviction takes the lock of each tree whose builds it removes.
    prune.enforce_cap(protect=(keyed.store, keyed.build_dir))
    return keyed.result(False, head, seconds)


def _reuse_same_tree(keyed: _Keyed, tree_id: str, head: str, log_path: Path) -> bool:
    """Publish the kernel built from the same tree under this key; False if there is none."""
    pointer = keyed.same_tree_pointer(tree_id)
    try:
        other = cache.root() / "kernels" / pointer.read_text().strip()
    except OSError:
        return False
    if not (other / "bzImage").exists():
        return False  # evicted since
    with cache.staging_dir(keyed.store) as staging:
        for name in ("bzImage", "config", "build.log"):
            shutil.copy2(other / name, staging / name)
        meta = {"inputs": keyed.inputs, "head": head, "same_tree_as": other.name}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    prune.touch(keyed.store, measure=True)
    with log_path.open("a") as log:
        log.write(f"# tree {tree_id} was built as kernel {other.name}: no make\n")
    return True


def _first_errors(output: str) -> str:
    lines = [line for line in output.splitlines() if "error:" in line or "Error " in line]
    return "\n".join(lines[:10])
