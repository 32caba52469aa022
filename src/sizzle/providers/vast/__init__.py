"""Vast.ai: a marketplace of GPU hosts, rented per offer through its REST API (v0)."""
