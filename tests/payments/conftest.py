"""Payments tests use the page tests' browser-like client too."""

from tests.web.conftest import browser

__all__ = ["browser"]
