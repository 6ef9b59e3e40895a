"""Everything that speaks SIP, and the SDES-SRTP media of the gateway leg.

This package never imports :mod:`bridge`.
"""

__all__: list[str] = []
