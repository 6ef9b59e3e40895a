"""Fixtures shared by every test suite.

``tls_pki`` (session scope): a throwaway PKI from ``tests/pki.py``; see that module for the
certificate names. Suites that need their own copy use ``from tests.pki import make_pki``.
"""

from tests.pki import tls_pki

__all__ = ["tls_pki"]
