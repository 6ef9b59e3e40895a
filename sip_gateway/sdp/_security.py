"""Security negotiation for offer/answer: SDES ``a=crypto`` and DTLS ``a=fingerprint``.

Theory of operation: these helpers decide which of the peer's ``a=crypto`` lines
(RFC 4568 section 7) or fingerprints (RFC 8842) are acceptable under a
:class:`MediaProfile`, draw fresh keys from the injected ``key_source`` and build
the :class:`SdesCrypto` / :class:`DtlsCrypto` facts. Refusals raise :class:`SdpError`
(488) with reasons that name tags, suites and parameters but never keys. Malformed
``a=crypto`` lines are skipped, as RFC 4568 asks, and only counted in the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sip_gateway.sdp.crypto import SUITES, CryptoAttribute
from sip_gateway.sdp.errors import SdpError, SdpParseError
from sip_gateway.sdp.fingerprint import Fingerprint, SetupRole
from sip_gateway.sdp.media_config import DtlsCrypto, SdesCrypto
from sip_gateway.sdp.profile import MediaProfile
from sip_gateway.sdp.session import SdpMedia, SdpSession
from sip_gateway.sip.errors import LocalProtocolError

KeySource = Callable[[int], bytes]
"""Returns ``n`` cryptographically random bytes; production passes ``secrets.token_bytes``."""

_PARAM_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
_REFUSED_SESSION_PARAMS = {
    "UNENCRYPTED_SRTP": "unencrypted SRTP refused",
    "UNENCRYPTED_SRTCP": "unencrypted SRTCP refused",
    "UNAUTHENTICATED_SRTP": "unauthenticated SRTP refused",
    "FEC_KEY": "FEC keys not supported",
}


def draw_key(key_source: KeySource, suite: str) -> bytes:
    """Draw a master key || salt for ``suite`` from the injected source.

    Raises:
        LocalProtocolError: the source returned something else than the bytes asked for.
    """
    length = SUITES[suite].key_salt_length
    key = key_source(length)
    if not isinstance(key, bytes) or len(key) != length:
        raise LocalProtocolError(f"key_source must return {length} bytes for {suite}")
    return key


def offer_crypto(
    profile: MediaProfile, key_source: KeySource, previous: SdesCrypto | None
) -> list[CryptoAttribute]:
    """Return our offered ``a=crypto`` lines, one per configured suite, tags from 1.

    A re-offer (``previous`` set) repeats the negotiated line, keys included, first.
    """
    lines: list[CryptoAttribute] = []
    if previous is not None and previous.suite in profile.crypto_suites:
        lines.append(previous.local_attribute)
    used = {c.tag for c in lines}
    tag = 1
    for suite in profile.crypto_suites:
        if any(c.suite == suite for c in lines):
            continue
        while tag in used:
            tag += 1
        used.add(tag)
        key = draw_key(key_source, suite)
        lines.append(CryptoAttribute.create(tag=tag, suite=suite, key_salt=key))
    return lines


def refusal_reason(crypto: CryptoAttribute, profile: MediaProfile) -> str | None:
    """Return why a peer's ``a=crypto`` line is unacceptable, or None if it is fine."""
    if crypto.suite not in profile.crypto_suites:
        return f"suite {crypto.suite} not accepted"
    if len(crypto.key_params) > 1:
        return "multiple master keys not supported"
    if crypto.has_mki and not profile.allow_mki:
        return "MKI not supported"
    for param in crypto.session_params:
        name, _, value = param.partition("=")
        if name in _REFUSED_SESSION_PARAMS:
            return _REFUSED_SESSION_PARAMS[name]
        if name == "KDR" and value != "0":
            return "key derivation rate not supported"
        if name == "FEC_ORDER" and value != "FEC_SRTP":
            return "FEC order not supported"
        if name not in ("KDR", "WSH", "FEC_ORDER") and not name.startswith("-"):
            # Echo only names shaped like RFC 4568 parameters: a misplaced key must not leak.
            shown = name if _PARAM_NAME.fullmatch(name) else "(unnamed)"
            return f"session parameter {shown} not understood"
    return None


def _acceptable(media: SdpMedia, profile: MediaProfile) -> tuple[list[CryptoAttribute], list[str]]:
    accepted: list[CryptoAttribute] = []
    reasons: list[str] = []
    for value in media.attribute_values("crypto"):
        try:
            crypto = CryptoAttribute.parse(value)
        except SdpParseError as exc:
            reasons.append(str(exc))
            continue
        reason = refusal_reason(crypto, profile)
        if reason is None:
            accepted.append(crypto)
        else:
            reasons.append(f"tag {crypto.tag}: {reason}")
    return accepted, reasons


def _no_crypto(what: str, reasons: list[str]) -> SdpError:
    detail = "; ".join(reasons[:8]) if reasons else "none present"
    return SdpError(f"{what} has no acceptable a=crypto line ({detail})", policy="no-crypto")


def answer_sdes(
    media: SdpMedia, profile: MediaProfile, key_source: KeySource, previous: SdesCrypto | None
) -> SdesCrypto:
    """Choose one of the offer's ``a=crypto`` lines and key our side of it.

    The first acceptable line in the offer's order wins (the offerer lists them by
    preference, RFC 4568 section 7.1.1) unless the profile prefers its own order.
    On a re-offer that repeats the previously chosen line unchanged, that line and our
    previous key are kept; otherwise our key is fresh.

    Raises:
        SdpError: no acceptable line (488), with the reason for each refused line.
    """
    accepted, reasons = _acceptable(media, profile)
    if not accepted:
        raise _no_crypto("offer", reasons)
    if profile.prefer_local_suite_order:
        accepted.sort(key=lambda c: profile.crypto_suites.index(c.suite))
    remote = accepted[0]
    if previous is not None and previous.remote_attribute in accepted:
        remote = previous.remote_attribute
        local = previous.local_attribute
    else:
        key = draw_key(key_source, remote.suite)
        local = CryptoAttribute.create(tag=remote.tag, suite=remote.suite, key_salt=key)
    return _sdes(remote, local)


def sdes_from_answer(offer: SdpMedia, answer: SdpMedia, profile: MediaProfile) -> SdesCrypto:
    """Match the answer's ``a=crypto`` line to one of ours by tag and suite.

    Raises:
        SdpError: the answer has no acceptable line matching our offer (488).
    """
    ours = {c.tag: c for c in offer.crypto}
    accepted, reasons = _acceptable(answer, profile)
    for remote in accepted:
        local = ours.get(remote.tag)
        if local is not None and local.suite == remote.suite:
            return _sdes(remote, local)
        reasons.append(f"tag {remote.tag}: does not match an offered tag and suite")
    raise _no_crypto("answer", reasons)


def _sdes(remote: CryptoAttribute, local: CryptoAttribute) -> SdesCrypto:
    return SdesCrypto(
        suite=remote.suite,
        tag=remote.tag,
        remote_key=remote.key_salt,
        local_key=local.key_salt,
        local_attribute=local,
        remote_attribute=remote,
    )


def remote_fingerprints(
    session: SdpSession, media: SdpMedia, profile: MediaProfile
) -> tuple[Fingerprint, ...]:
    """Return the peer's fingerprints with an accepted hash function.

    Raises:
        SdpError: no fingerprint at all, or none with an accepted hash (488).
    """
    values = media.attribute_values("fingerprint") or session.attribute_values("fingerprint")
    if not values:
        raise SdpError("DTLS-SRTP media without a=fingerprint refused", policy="no-fingerprint")
    found: list[Fingerprint] = []
    for value in values:
        try:
            found.append(Fingerprint.parse(value))
        except SdpParseError:
            continue
    allowed = {a.lower() for a in profile.fingerprint_algorithms}
    usable = tuple(f for f in found if f.algorithm.lower() in allowed)
    if not usable:
        raise SdpError(
            f"no a=fingerprint with an accepted hash ({', '.join(sorted(allowed))})",
            policy="no-fingerprint",
        )
    return usable


def answer_dtls(
    session: SdpSession, media: SdpMedia, profile: MediaProfile, previous: DtlsCrypto | None
) -> DtlsCrypto:
    """Check the offer's fingerprint and pick our ``a=setup`` role (RFC 8842).

    A missing ``a=setup`` in an offer means ``active`` (RFC 4145). On a re-offer with
    ``actpass`` and the same fingerprints, we keep our previous role so the existing
    DTLS association survives.

    Raises:
        SdpError: no acceptable fingerprint (488).
        SdpParseError: a malformed ``a=setup``.
    """
    fingerprints = remote_fingerprints(session, media, profile)
    remote_setup = media.setup or session.setup or SetupRole.ACTIVE
    local_setup = remote_setup.answer()
    unchanged = previous is not None and previous.remote_fingerprints == fingerprints
    if previous is not None and unchanged and remote_setup is SetupRole.ACTPASS:
        local_setup = previous.local_setup
    return DtlsCrypto(
        remote_fingerprints=fingerprints, remote_setup=remote_setup, local_setup=local_setup
    )


def dtls_from_answer(
    session: SdpSession, media: SdpMedia, profile: MediaProfile, offered: SetupRole
) -> DtlsCrypto:
    """Check the answer's fingerprint and derive our role from its ``a=setup``.

    A missing ``a=setup`` in an answer means ``passive`` (RFC 4145).

    Raises:
        SdpError: no acceptable fingerprint, or a role that does not fit our offer (488).
        SdpParseError: a malformed ``a=setup``.
    """
    fingerprints = remote_fingerprints(session, media, profile)
    remote_setup = media.setup or session.setup or SetupRole.PASSIVE
    roles = {SetupRole.ACTIVE: SetupRole.PASSIVE, SetupRole.PASSIVE: SetupRole.ACTIVE}
    local_setup = roles.get(remote_setup)
    allowed = offered is SetupRole.ACTPASS or offered is local_setup
    if local_setup is None or not allowed:
        raise SdpError(f"a=setup:{remote_setup} does not answer our a=setup:{offered}")
    return DtlsCrypto(
        remote_fingerprints=fingerprints, remote_setup=remote_setup, local_setup=local_setup
    )
