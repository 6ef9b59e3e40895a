# pstn-bridge image: the bridge (`pstn-bridge serve`) and, with another command, the carrier
# simulator (`pstn-bridge carrier-sim`). Used by docker-compose.yml; see the README's
# "Deployment (docker-compose)". Configuration, certificates and keys are never in the image:
# they are mounted at run time (/etc/pstn-bridge/bridge.toml, /etc/pstn-bridge/tls/).

# -- stage 1: the dialer page's JsSIP bundle (the Makefile's JSSIP_BUNDLE rule) ---------------
FROM node:20-bookworm-slim AS jssip
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
RUN mkdir -p bridge/static && npm run --silent build

# -- stage 2: the Python package and its dependencies in a virtual environment ----------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/pstn-bridge
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sip_gateway/ sip_gateway/
COPY bridge/ bridge/
COPY --from=jssip /src/bridge/static/jssip.bundle.js bridge/static/jssip.bundle.js
# The binary wheels (av with libopus, pylibsrtp with libsrtp2, cryptography, numpy, asyncpg)
# carry their C libraries: no compiler and no -dev packages are needed.
RUN /opt/pstn-bridge/bin/pip install --upgrade "pip>=25.1" \
    && /opt/pstn-bridge/bin/pip install .

# -- stage 3: the runtime ---------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ENV PATH=/opt/pstn-bridge/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/pstn-bridge /opt/pstn-bridge
# OpenSSL's own "Groups" setting limits every TLS context of the process to X25519, P-256,
# P-384 and P-521 (Python's ssl can name only one curve per context; see README "TLS posture").
COPY config/openssl-groups.cnf /etc/pstn-bridge/openssl-groups.cnf
ENV OPENSSL_CONF=/etc/pstn-bridge/openssl-groups.cnf
# A fixed non-root user; its home is the bridge's var_dir (a volume in docker-compose.yml):
# the SQLite fallback, the digest nonce secret, the generated ops token, spill files.
RUN groupadd --system --gid 10001 pstn-bridge \
    && useradd --system --uid 10001 --gid pstn-bridge --home-dir /var/lib/pstn-bridge \
        --shell /usr/sbin/nologin pstn-bridge \
    && install -d -o pstn-bridge -g pstn-bridge -m 0750 /var/lib/pstn-bridge \
    && install -d -m 0755 /etc/pstn-bridge /etc/pstn-bridge/tls
USER pstn-bridge:pstn-bridge
WORKDIR /var/lib/pstn-bridge
# HTTPS + WSS (dialer page, ops API, /healthz), SIP over TLS, the gateway leg's SRTP ports
# (sip.media_port_range of config/bridge.compose.toml).
EXPOSE 8443/tcp 5061/tcp 30000-30099/udp
# Liveness: GET /healthz over HTTPS, verifying the bridge's certificate against the mounted CA.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import pathlib, urllib.request; from sip_gateway.tls import TlsClientConfig, client_context; urllib.request.urlopen('https://127.0.0.1:8443/healthz', timeout=4, context=client_context(TlsClientConfig(ca_file=pathlib.Path('/etc/pstn-bridge/tls/ca.crt'))))"]
CMD ["pstn-bridge", "serve", "--config", "/etc/pstn-bridge/bridge.toml"]
