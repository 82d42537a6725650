"""Output formats: what the harness writes for people and other tools to read."""
