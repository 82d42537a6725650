"""Shared test settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# End-to-end tests build and boot a real kernel: they need QEMU and the 6.1 source.
needs_kernel_tools = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None
    or not Path("/usr/src/linux-source-6.1.tar.xz").exists(),
    reason="needs qemu-system-x86 and linux-source-6.1 (scripts/setup.sh installs both)",
)
