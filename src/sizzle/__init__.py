"""Sizzle: GPU sessions billed by the minute, for people who never opened a terminal."""

__version__ = "0.1.0"
