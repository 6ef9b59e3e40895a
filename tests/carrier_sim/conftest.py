"""Fixtures of the carrier-simulator tests: the interop PKI fixture is reused."""

from tests.interop.conftest import pki

__all__ = ["pki"]
