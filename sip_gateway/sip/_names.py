"""Header names: canonical spellings, compact forms, list headers, secret headers.

Theory of operation: header names are case-insensitive (RFC 3261 7.3.1). The parser and
:class:`~sip_gateway.sip.headers.Headers` store known names in one canonical spelling
and expand compact forms, so that lookups and serialization are uniform. Which headers
are comma-separated lists (RFC 3261 7.3.1: "header field values ... comma-separated") is
a property of the name, recorded here; so is which headers carry credentials and must
never be shown in a repr.
"""

from __future__ import annotations

__all__ = ["COMPACT_FORMS", "LIST_HEADERS", "SECRET_HEADERS", "canonical_name"]

COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_KNOWN = [
    "Accept",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Expires",
    "From",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Organization",
    "Priority",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Reply-To",
    "Require",
    "Retry-After",
    "Route",
    "Server",
    "Subject",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
    "RAck",
    "RSeq",
    "Path",
    "Service-Route",
    "Reason",
    "Privacy",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Min-SE",
    "Session-Expires",
    "Refer-To",
    "Referred-By",
    "Replaces",
    "Event",
    "Allow-Events",
    "Subscription-State",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "History-Info",
    "Identity",
    "Identity-Info",
    "Accept-Contact",
    "Reject-Contact",
    "Request-Disposition",
    "SIP-ETag",
    "SIP-If-Match",
]
_CANONICAL = {name.lower(): name for name in _KNOWN} | COMPACT_FORMS
LIST_HEADERS = frozenset(
    name.lower()
    for name in [
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Path",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Require",
        "Route",
        "Security-Client",
        "Security-Server",
        "Security-Verify",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
        "History-Info",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
    ]
)
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name (compact forms expanded)."""
    return _CANONICAL.get(name.lower(), name)
