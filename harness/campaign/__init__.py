"""Campaigns: many runs of the harness driven as one (fuzz, mutate, nightly)."""
