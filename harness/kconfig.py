"""Kconfig: merge fragments onto a base config with the kernel's own tools, then verify.

merge_config.sh and olddefconfig silently drop an option whose dependencies are not met;
a dropped option would make a run test something other than what was asked, so every
requested value is checked against the result and a mismatch is an error naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import cache, proc
from harness.errors import ConfigError, KconfigError

_SET_RE = re.compile(r'^(CONFIG_[A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^\s"#]+)$')
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Request:
    option: str
    value: str  # 'n' for "is not set"
    fragment: Path
    line: int


def reads(path: str) -> bool:
    """Whether kconfig reads this file of the tree when it merges a config.

    The Kconfig files themselves, kconfig's own sources and the helper scripts its
    $(shell ...) calls run (scripts/), the defconfig and tinyconfig fragments (*/configs/),
    and the Makefiles that drive `make tinyconfig`. Anything else (C, headers) cannot
    change the merged .config. Errs on the side of "yes".
    """
    name = path.rsplit("/", 1)[-1]
    return (
        name.startswith("Kconfig")
        or path.startswith("scripts/")
        or "/configs/" in f"/{path}"
        or name.endswith(".config")
        or path in ("Makefile", "arch/x86/Makefile")
    )


def parse_config(text: str) -> dict[str, str]:
    """A .config or fragment as option -> value ('n' for '# ... is not set')."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET_RE.match(line):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET_RE.match(line):
            values[m.group(1)] = "n"
    return values


def read_fragment(path: Path) -> list[Request]:
    requests: list[Request] = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read kconfig fragment: {exc.strerror}") from None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (line.startswith("#") and not _UNSET_RE.match(line)):
            continue
        if m := _SET_RE.match(line):
            requests.append(Request(m.group(1), m.group(2), path, lineno))
        elif m := _UNSET_RE.match(line):
            requests.append(Request(m.group(1), "n", path, lineno))
        else:
            raise ConfigError(
                f"{path}:{lineno}: not a kconfig line: {raw.strip()!r} "
                "(expected CONFIG_FOO=y or '# CONFIG_FOO is not set'; kconfig has no "
                "comments after a value)"
            )
    return requests


def requests(fragments: tuple[Path, ...]) -> list[Request]:
    return [req for frag in fragments for req in read_fragment(frag)]


def defined_in(tree: Path) -> Callable[[str], bool]:
    """Whether a Kconfig file of the work tree defines an option (CONFIG_FOO: 'config FOO')."""

    def defined(option: str) -> bool:
        symbol = option.removeprefix("CONFIG_")
        found = proc.run(
            ["git", "grep", "-q", "-E", f"^[[:space:]]*(menu)?config {symbol}[[:space:]]*$",
             "--", "*Kconfig*"],
            cwd=tree, check=False,
        )  # fmt: skip
        return found.returncode == 0

    return defined


def verify(
    merged: dict[str, str],
    requests: list[Request],
    defined: Callable[[str], bool] | None = None,
) -> None:
    """Raise KconfigError listing every requested option the merged config lost.

    With `defined`, an option the tree does not define at all is no loss (a prefix of a
    series requested with the fragments of the whole series).
    """
    final: dict[str, Request] = {}
    for req in requests:  # later fragments override earlier ones, as in merge_config.sh
        final[req.option] = req
    problems = []
    for req in final.values():
        got = merged.get(req.option, "n")
        if got != req.value and (defined is None or defined(req.option)):
            shown = "not set" if got == "n" else got
            problems.append(
                f"  {req.option}: requested {req.value} at {req.fragment}:{req.line}, got {shown}"
            )
    if problems:
        raise KconfigError(
            "kconfig dropped requested options (usually a missing 'depends on'; add the "
            "dependency to the fragment or remove the line):\n" + "\n".join(problems)
        )


@dataclass(frozen=True)
class MergedConfig:
    text: str
    sha256: str


def merge(
    tree: Path, scratch: Path, base_config: str, fragments: tuple[Path, ...], log_path: Path
) -> str:
    """Produce the final .config in `scratch` (an O= directory used only for kconfig).

    The caller checks the result against the fragments (verify).
    """
    for frag in fragments:
        read_fragment(frag)  # a malformed fragment stops here, before kconfig runs
    scratch.mkdir(parents=True, exist_ok=True)
    make = ["make", "-s", "-C", str(tree), f"O={scratch}", "ARCH=x86_64"]
    with log_path.open("a") as log:
        proc.run([*make, base_config], log=log, log_path=log_path)
        if fragments:
            proc.run(
                [
                    str(tree / "scripts/kconfig/merge_config.sh"),
                    "-m",
                    "-O",
                    str(scratch),
                    str(scratch / ".config"),
                    *map(str, fragments),
                ],
                cwd=tree,
                log=log,
                log_path=log_path,
            )
        proc.run([*make, "olddefconfig"], log=log, log_path=log_path)
    return (scratch / ".config").read_text()


def options_sha256(config_text: str) -> str:
    """Hash of the option lines only: the header comments don't change what is built."""
    options = "\n".join(line for line in config_text.splitlines() if line.startswith("CONFIG_"))
    return cache.sha256_bytes(options.encode())
