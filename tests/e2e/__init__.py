"""Browser end-to-end tests: headless Chromium running the dialer page against a real bridge."""
