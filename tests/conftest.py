"""Shared test settings."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The suite shares the user's kernel cache with whatever else runs on the machine: its
# runs must never evict someone else's kernels. tests/test_prune.py sets caps itself.
os.environ.setdefault("FOLIO_HARNESS_CACHE_MAX", "off")

# End-to-end tests build and boot a real kernel: they need QEMU and the 6.1 source.
needs_kernel_tools = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None
    or not Path("/usr/src/linux-source-6.1.tar.xz").exists(),
    reason="needs qemu-system-x86 and linux-source-6.1 (scripts/setup.sh installs both)",
)
