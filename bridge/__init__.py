"""The back-to-back user agent between browsers and the phone network."""

__all__: list[str] = []
