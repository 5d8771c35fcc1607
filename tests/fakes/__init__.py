"""Fake upstream servers for tests (loopback only)."""
