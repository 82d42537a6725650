"""Errors the user can act on.

A HarnessError is printed as one short message (no traceback) and the run exits non-zero.
Anything else escaping the CLI is a harness bug and keeps its traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """A failure caused by input or environment, explained in the message."""


class ConfigError(HarnessError):
    """Bad YAML, an unknown key, a wrong type, a missing file named by a config."""


class SourceError(HarnessError):
    """The kernel source cannot be found or prepared."""


class PatchError(HarnessError):
    """A patch of the series does not apply."""


class KconfigError(HarnessError):
    """A requested kconfig option did not survive olddefconfig."""


class BuildError(HarnessError):
    """make failed; the message points at the build log."""


class GuestError(HarnessError):
    """The guest could not be prepared or driven (initramfs, QEMU)."""
