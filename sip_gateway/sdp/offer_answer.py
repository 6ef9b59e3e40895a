"""RFC 3264 offer/answer for one audio stream, ending in a :class:`MediaConfig`.

Theory of operation: three pure functions, no state between them.

* :func:`build_offer` writes our offer from a :class:`MediaProfile` and the call's
  :class:`LocalMedia`; SDES keys come from the injected ``key_source``.
* :func:`answer_offer` takes the peer's offer and returns ``(answer, config)``. The
  first audio m-line that passes policy is accepted; every other m-line is answered
  with port 0 so the answer keeps the offer's m-line count (RFC 3264 section 6).
* :func:`process_answer` takes our offer and the peer's answer and returns the
  config; our SDES keys are read back from our own offer, so no state is kept.

Codec choice: the answer carries one codec, the first one *in the offer's order*
that the profile supports (RFC 3264 section 6.1 asks the answerer to respect the
offerer's preference), plus ``telephone-event`` when offered. Crypto choice: the
first acceptable ``a=crypto`` in the offer's order, its tag mirrored (RFC 4568).

Policy refusals raise :class:`SdpError` (488); malformed SDP raises
:class:`SdpParseError` (400). Neither message carries key material. Local misuse
(a DTLS profile without fingerprints or ICE parameters, a ``key_source`` returning
the wrong length) raises ``ValueError`` or ``LocalProtocolError``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sip_gateway.sdp import _codecs, _security
from sip_gateway.sdp._security import KeySource
from sip_gateway.sdp.attributes import Attribute, Candidate, Direction, Group, RtpMap
from sip_gateway.sdp.errors import SdpError, SdpParseError
from sip_gateway.sdp.fingerprint import SetupRole
from sip_gateway.sdp.media_config import (
    DtlsCrypto,
    MediaConfig,
    RemoteIce,
    SdesCrypto,
    TelephoneEvent,
)
from sip_gateway.sdp.profile import LocalMedia, MediaProfile, MediaSecurity
from sip_gateway.sdp.session import Connection, Origin, SdpMedia, SdpSession, Timing

__all__ = [
    "DTLS_PROTOS",
    "SDES_PROTOS",
    "KeySource",
    "answer_offer",
    "build_offer",
    "process_answer",
]

SDES_PROTOS = ("RTP/SAVP", "RTP/SAVPF")
"""Transports accepted on an SDES leg (``RTP/SAVP`` is offered)."""
DTLS_PROTOS = ("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "TCP/TLS/RTP/SAVPF", "TCP/TLS/RTP/SAVP")
"""Transports accepted on a DTLS leg (``UDP/TLS/RTP/SAVPF`` is offered)."""
_PLAIN_PROTOS = ("RTP/AVP", "RTP/AVPF")
_HOLD_ADDRESSES = ("0.0.0.0", "::")  # noqa: S104 - RFC 2543 hold address, not a bind
_DTMF_EVENTS = "0-15"  # the RFC 4733 DTMF events we send and detect (no flash, 16)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Remote:
    """Transport facts of the peer's chosen m-line."""

    rtp: tuple[str, int]
    rtcp: tuple[str, int]
    rtcp_mux: bool
    on_hold: bool


def build_offer(
    profile: MediaProfile,
    local: LocalMedia,
    *,
    key_source: KeySource,
    direction: Direction = Direction.SENDRECV,
    previous: MediaConfig | None = None,
) -> SdpSession:
    """Build our offer: one audio m-line with the profile's codecs and security.

    Args:
        profile: the leg's media policy.
        local: our address, port, ``o=`` id and version (and ICE for DTLS legs).
        key_source: returns n random bytes (``secrets.token_bytes``); one key per suite.
        direction: our direction (``sendonly`` to put the peer on hold).
        previous: the config of the current session, for a re-offer: its SDES line
            and keys, or its DTLS role, are kept.

    Returns:
        The offer. Keep it: :func:`process_answer` reads our keys back from it.

    Raises:
        ValueError: a DTLS profile without fingerprints or ``local.ice``.
        LocalProtocolError: ``key_source`` returned the wrong number of bytes.
    """
    session = _new_session(profile, local, [Timing()])
    pts = [c.payload_type for c in profile.codecs]
    if profile.telephone_event:
        pts.append(profile.telephone_event_payload_type)
    dtls = profile.security is MediaSecurity.DTLS
    proto = DTLS_PROTOS[0] if dtls else SDES_PROTOS[0]
    media = SdpMedia(kind="audio", port=local.port, proto=proto, formats=[str(p) for p in pts])
    if dtls:
        media.add_attribute("mid", "0")
        session.add_attribute("group", "BUNDLE 0")
    event = None
    if profile.telephone_event:
        pt = profile.telephone_event_payload_type
        event = TelephoneEvent(payload_type=pt, clock_rate=8000)
    _add_codecs(media, profile, [(c.rtpmap(), c.fmtp) for c in profile.codecs], event)
    if dtls:
        prev = previous.crypto if previous and isinstance(previous.crypto, DtlsCrypto) else None
        _add_dtls(session, media, profile, local, prev.local_setup if prev else SetupRole.ACTPASS)
    else:
        prev_sdes = _previous_sdes(previous)
        for crypto in _security.offer_crypto(profile, key_source, prev_sdes):
            media.attributes.append(crypto.to_attribute())
    if profile.rtcp_mux:
        media.add_attribute("rtcp-mux")
    media.set_direction(direction)
    session.media.append(media)
    return session


def answer_offer(
    offer: SdpSession,
    profile: MediaProfile,
    local: LocalMedia,
    *,
    key_source: KeySource,
    direction: Direction = Direction.SENDRECV,
    previous: MediaConfig | None = None,
) -> tuple[SdpSession, MediaConfig]:
    """Answer the peer's offer (RFC 3264 section 6).

    Args:
        offer: the parsed offer.
        profile: the leg's media policy.
        local: our address, port, ``o=`` id and version (and ICE for DTLS legs).
        key_source: returns n random bytes (``secrets.token_bytes``).
        direction: the most we want (``sendrecv``; ``sendonly`` to hold the peer).
        previous: the config of the current session when this is a re-offer: an
            unchanged ``a=crypto`` line keeps our previous key, an unchanged DTLS
            fingerprint keeps our previous role.

    Returns:
        ``(answer, config)``: the answer has one m-line per offered m-line.

    Raises:
        SdpError: nothing acceptable (488): no audio, plain RTP, no common codec, no
            acceptable ``a=crypto``, no ``a=fingerprint`` on a DTLS leg ...
        SdpParseError: the chosen m-line is malformed (400).
        ValueError: a DTLS profile without fingerprints or ``local.ice``.
        LocalProtocolError: ``key_source`` returned the wrong number of bytes.
    """
    answer = _new_session(profile, local, list(offer.timings) or [Timing()])
    config: MediaConfig | None = None
    failure: SdpError | None = None
    for index, media in enumerate(offer.media):
        if config is None and media.kind.lower() == "audio" and media.port != 0:
            try:
                reply, config = _accept(
                    offer, index, profile, local, key_source, direction, previous
                )
            except SdpError as exc:
                failure = failure or exc
            else:
                answer.media.append(reply)
                continue
        answer.media.append(_declined(media))
    if config is None:
        raise failure or SdpError("offer has no audio stream to accept")
    if config.mid is not None and config.mid in offer.bundle_mids:
        answer.attributes.insert(
            0, Attribute("group", str(Group(semantics="BUNDLE", mids=(config.mid,))))
        )
    return answer, config


def process_answer(offer: SdpSession, answer: SdpSession, profile: MediaProfile) -> MediaConfig:
    """Check the peer's answer to our offer and derive the media config.

    Args:
        offer: the offer we sent (as returned by :func:`build_offer`).
        answer: the parsed answer.
        profile: the profile the offer was built with.

    Returns:
        The negotiated config.

    Raises:
        SdpError: the answer declined the audio, changed the transport or m-line
            count, chose no offered codec or no offered ``a=crypto`` line (488).
        SdpParseError: the answer is malformed (400).
        ValueError: ``offer`` has no active audio m-line (not one of ours).
    """
    index = next((i for i, m in enumerate(offer.media) if m.kind == "audio" and m.port != 0), None)
    if index is None:
        raise ValueError("the offer has no active audio m-line")
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m-lines, our offer had {len(offer.media)}")
    ours, theirs = offer.media[index], answer.media[index]
    if theirs.port == 0:
        raise SdpError("the answer declined our audio stream")
    if theirs.proto.upper() != ours.proto.upper():
        raise SdpError(
            f"the answer changed the transport from {ours.proto} to {theirs.proto[:40]}",
            policy="plain-rtp" if theirs.proto.upper() in _PLAIN_PROTOS else "wrong-transport",
        )
    rtpmaps = [
        r
        for r in _codecs.resolve(theirs, _codecs.rtpmap_table(ours))
        if str(r.payload_type) in ours.formats
    ]
    codecs = tuple(_codecs.to_codec(r, theirs) for r in rtpmaps if _codecs.spec_for(r, profile))
    if not codecs:
        raise SdpError("the answer has no codec of our offer", policy="no-common-codec")
    crypto: SdesCrypto | DtlsCrypto
    if profile.security is MediaSecurity.DTLS:
        offered_role = ours.setup or SetupRole.ACTPASS
        crypto = _security.dtls_from_answer(answer, theirs, profile, offered_role)
    else:
        crypto = _security.sdes_from_answer(ours, theirs, profile)
    remote = _remote(answer, theirs, rtcp_mux=ours.rtcp_mux and theirs.rtcp_mux)
    wanted = offer.direction_of(ours)
    return MediaConfig(
        codecs=codecs,
        telephone_event=_telephone_event(profile, rtpmaps, codecs[0].clock_rate),
        ptime=_ptime(theirs, profile),
        remote_address=remote.rtp,
        remote_rtcp_address=remote.rtcp,
        rtcp_mux=remote.rtcp_mux,
        direction=_local_direction(wanted, answer.direction_of(theirs), remote.on_hold),
        crypto=crypto,
        media_index=index,
        mid=ours.mid,
        remote_ice=_remote_ice(answer, theirs),
    )


def _accept(
    offer: SdpSession,
    index: int,
    profile: MediaProfile,
    local: LocalMedia,
    key_source: KeySource,
    direction: Direction,
    previous: MediaConfig | None,
) -> tuple[SdpMedia, MediaConfig]:
    media = offer.media[index]
    _check_proto(media.proto, profile)
    rtpmaps = _codecs.resolve(media)
    chosen = next(((r, s) for r in rtpmaps if (s := _codecs.spec_for(r, profile))), None)
    if chosen is None:
        supported = ", ".join(f"{c.name}/{c.clock_rate}" for c in profile.codecs)
        raise SdpError(f"no common codec (this leg supports {supported})", policy="no-common-codec")
    rtpmap, spec = chosen
    event = _telephone_event(profile, rtpmaps, rtpmap.clock_rate)
    crypto: SdesCrypto | DtlsCrypto
    if profile.security is MediaSecurity.DTLS:
        prev_dtls = (
            previous.crypto if previous and isinstance(previous.crypto, DtlsCrypto) else None
        )
        crypto = _security.answer_dtls(offer, media, profile, prev_dtls)
    else:
        crypto = _security.answer_sdes(media, profile, key_source, _previous_sdes(previous))
    remote = _remote(offer, media, rtcp_mux=profile.rtcp_mux and media.rtcp_mux)
    config = MediaConfig(
        codecs=(_codecs.to_codec(rtpmap, media),),
        telephone_event=event,
        ptime=_ptime(media, profile),
        remote_address=remote.rtp,
        remote_rtcp_address=remote.rtcp,
        rtcp_mux=remote.rtcp_mux,
        direction=_local_direction(direction, offer.direction_of(media), remote.on_hold),
        crypto=crypto,
        media_index=index,
        mid=media.mid,
        remote_ice=_remote_ice(offer, media),
    )
    return _answer_media(media, profile, local, config, spec.fmtp), config


def _answer_media(
    offered: SdpMedia,
    profile: MediaProfile,
    local: LocalMedia,
    config: MediaConfig,
    fmtp: str | None,
) -> SdpMedia:
    codec = config.codec
    rtpmap = RtpMap(
        payload_type=codec.payload_type,
        encoding=codec.name,
        clock_rate=codec.clock_rate,
        channels=codec.channels if codec.channels != 1 else None,
    )
    formats = [str(codec.payload_type)]
    if config.telephone_event is not None:
        formats.append(str(config.telephone_event.payload_type))
    media = SdpMedia(kind=offered.kind, port=local.port, proto=offered.proto, formats=formats)
    if config.mid is not None:
        media.add_attribute("mid", config.mid)
    _add_codecs(media, profile, [(rtpmap, fmtp)], config.telephone_event)
    if isinstance(config.crypto, SdesCrypto):
        media.attributes.append(config.crypto.local_attribute.to_attribute())
    else:
        _add_dtls(None, media, profile, local, config.crypto.local_setup)
    if config.rtcp_mux:
        media.add_attribute("rtcp-mux")
    media.set_direction(config.direction)
    return media


def _check_proto(proto: str, profile: MediaProfile) -> None:
    upper = proto.upper()
    if profile.security is MediaSecurity.DTLS:
        if upper not in DTLS_PROTOS:
            raise SdpError(
                f"{proto[:40]} refused: this leg requires DTLS-SRTP"
                " (UDP/TLS/RTP/SAVPF with a=fingerprint)",
                policy="plain-rtp" if upper in _PLAIN_PROTOS else "wrong-transport",
            )
    elif upper in _PLAIN_PROTOS:
        raise SdpError(
            f"plain {proto} refused: this leg requires RTP/SAVP with a=crypto", policy="plain-rtp"
        )
    elif upper not in SDES_PROTOS:
        raise SdpError(
            f"{proto[:40]} refused: this leg requires RTP/SAVP with a=crypto",
            policy="wrong-transport",
        )


def _declined(offered: SdpMedia) -> SdpMedia:
    media = SdpMedia(kind=offered.kind, port=0, proto=offered.proto, formats=list(offered.formats))
    if offered.mid is not None:
        media.add_attribute("mid", offered.mid)
    return media


def _new_session(profile: MediaProfile, local: LocalMedia, timings: list[Timing]) -> SdpSession:
    connection = Connection.for_host(local.address)
    origin = Origin(
        username=profile.username,
        session_id=str(local.session_id),
        session_version=local.session_version,
        address_type=connection.address_type,
        address=connection.address,
    )
    return SdpSession(
        origin=origin, session_name=profile.session_name, connection=connection, timings=timings
    )


def _add_codecs(
    media: SdpMedia,
    profile: MediaProfile,
    codecs: list[tuple[RtpMap, str | None]],
    event: TelephoneEvent | None,
) -> None:
    """Write rtpmap/fmtp lines, the telephone-event lines and ptime."""
    for rtpmap, fmtp in codecs:
        media.add_attribute("rtpmap", str(rtpmap))
        if fmtp is not None:
            media.add_attribute("fmtp", f"{rtpmap.payload_type} {fmtp}")
    if event is not None:
        media.add_attribute("rtpmap", f"{event.payload_type} telephone-event/{event.clock_rate}")
        media.add_attribute("fmtp", f"{event.payload_type} {_DTMF_EVENTS}")
    media.add_attribute("ptime", str(profile.ptime))


def _add_dtls(
    session: SdpSession | None,
    media: SdpMedia,
    profile: MediaProfile,
    local: LocalMedia,
    role: SetupRole,
) -> None:
    """Write ICE credentials, fingerprints, setup role and candidates."""
    if not profile.fingerprints or local.ice is None:
        raise ValueError("a DTLS profile needs fingerprints and LocalMedia.ice")
    ice = local.ice
    if ice.lite and session is not None:
        session.add_attribute("ice-lite")
    media.add_attribute("ice-ufrag", ice.ufrag)
    media.add_attribute("ice-pwd", ice.pwd)
    for fingerprint in profile.fingerprints:
        media.attributes.append(fingerprint.to_attribute())
    media.attributes.append(role.to_attribute())
    for candidate in ice.candidates:
        media.add_attribute("candidate", str(candidate))
    if ice.end_of_candidates:
        media.add_attribute("end-of-candidates")


def _previous_sdes(previous: MediaConfig | None) -> SdesCrypto | None:
    if previous is not None and isinstance(previous.crypto, SdesCrypto):
        return previous.crypto
    return None


def _telephone_event(
    profile: MediaProfile, rtpmaps: list[RtpMap], clock_rate: int
) -> TelephoneEvent | None:
    return _codecs.telephone_event(rtpmaps, clock_rate) if profile.telephone_event else None


def _remote(session: SdpSession, media: SdpMedia, *, rtcp_mux: bool) -> _Remote:
    connection = session.connection_for(media)
    if connection is None:
        raise SdpParseError("no c= line for the audio stream")
    host = connection.host
    rtp = (host, media.port)
    rtcp = rtp if rtcp_mux else (host, media.port + 1)
    if not rtcp_mux:
        try:
            attribute = media.rtcp
        except SdpParseError:
            attribute = None
        if attribute is not None:
            rtcp = (attribute.address or host, attribute.port)
    # c=0.0.0.0 is RFC 2543 hold, except with ICE, where it only means "see the candidates".
    ice = (media.ice_ufrag or session.ice_ufrag) is not None
    on_hold = host in _HOLD_ADDRESSES and not ice
    return _Remote(rtp=rtp, rtcp=rtcp, rtcp_mux=rtcp_mux, on_hold=on_hold)


def _local_direction(wanted: Direction, remote: Direction, on_hold: bool) -> Direction:
    """Our direction: we send only if the peer receives, receive only if it sends."""
    sends = wanted.sends and remote.receives and not on_hold
    return Direction.from_flags(sends=sends, receives=wanted.receives and remote.sends)


def _ptime(media: SdpMedia, profile: MediaProfile) -> int:
    """The peer's ``a=ptime`` (else ours), capped by its ``a=maxptime``; malformed is ignored."""
    try:
        ptime = media.ptime or profile.ptime
        maxptime = media.maxptime
    except SdpParseError:
        return profile.ptime
    return min(ptime, maxptime) if maxptime else ptime


def _remote_ice(session: SdpSession, media: SdpMedia) -> RemoteIce | None:
    ufrag = media.ice_ufrag or session.ice_ufrag
    pwd = media.ice_pwd or session.ice_pwd
    if ufrag is None or pwd is None:
        return None
    candidates: list[Candidate] = []
    for value in media.attribute_values("candidate"):
        try:
            candidates.append(Candidate.parse(value))
        except SdpParseError:
            continue
    lite = session.has_attribute("ice-lite")
    return RemoteIce(ufrag=ufrag, pwd=pwd, candidates=tuple(candidates), lite=lite)
