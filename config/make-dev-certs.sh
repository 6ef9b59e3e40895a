#!/bin/sh
# Development certificates for the docker-compose deployment. Never use them in production.
#
# Usage: config/make-dev-certs.sh [NAME_OR_IP ...]
#
# Writes into config/tls/ (or $PSTN_TLS_DIR):
#   ca.crt ca.key                  a development CA (ECDSA P-256, CA:TRUE, pathlen 0)
#   bridge.crt bridge.key          the bridge: HTTPS/WSS, SIP-TLS, its trunk and MQTT client
#                                  certificate; names bridge, localhost, 127.0.0.1, 172.30.5.10
#                                  and every NAME_OR_IP given (the name or address browsers and
#                                  carriers use to reach this host)
#   carrier-sim.crt carrier-sim.key the carrier simulator: carrier-sim, 172.30.5.20
#   mosquitto.crt mosquitto.key    the broker: mosquitto, localhost, 127.0.0.1 (and its own
#                                  health check's client certificate)
#   ops.crt ops.key                a client certificate for ops subscribers (mosquitto_sub)
#
# Every certificate is SHA-256 signed, valid 365 days, with the key identifiers that
# `openssl verify -x509_strict` asks for; leaves carry serverAuth and clientAuth. Files that
# exist are kept (the script is idempotent): delete config/tls/ to issue everything again.
#
# Permissions: the directory is 0750 and keys are 0640, owned by you and your primary group.
# The containers run as non-root users (pstn-bridge 10001, mosquitto 1883) and get that group
# through `group_add: [${PSTN_TLS_GID}]` in docker-compose.yml: put `PSTN_TLS_GID=$(id -g)`
# into .env. Nobody else on the host can read the keys.
set -eu

dir=${PSTN_TLS_DIR:-$(dirname "$0")/tls}
days=365
umask 027
mkdir -p "$dir"
chmod 0750 "$dir"

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 0640 "$1"
}

if [ ! -s "$dir/ca.key" ] || [ ! -s "$dir/ca.crt" ]; then
    new_key "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
        -subj "/CN=pstn-bridge compose development CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$dir/ca.crt"
    chmod 0644 "$dir/ca.crt"
    # a new CA: the leaves it did not sign are issued again
    rm -f "$dir/bridge.crt" "$dir/carrier-sim.crt" "$dir/mosquitto.crt" "$dir/ops.crt"
    echo "created $dir/ca.crt"
fi

# leaf NAME SAN...: a key and a certificate signed by the CA (SAN entries: DNS:x or IP:x).
leaf() {
    name=$1
    shift
    [ -s "$dir/$name.key" ] && [ -s "$dir/$name.crt" ] && return 0
    san=""
    for entry in "$@"; do
        san="${san:+$san,}$entry"
    done
    ext=$(mktemp)
    csr=$(mktemp)
    trap 'rm -f "$ext" "$csr"' EXIT
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        echo "subjectKeyIdentifier=hash"
        echo "authorityKeyIdentifier=keyid"
        [ -n "$san" ] && echo "subjectAltName=$san"
    } > "$ext"
    new_key "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$csr"
    openssl x509 -req -in "$csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$days" \
        -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
    chmod 0644 "$dir/$name.crt"
    rm -f "$ext" "$csr"
    trap - EXIT
    echo "created $dir/$name.crt${san:+ ($san)}"
}

# Extra names for the bridge: an IPv4/IPv6 address becomes an IP SAN, anything else a DNS SAN.
extra=""
for name in "$@"; do
    case $name in
        *:*) extra="$extra IP:$name" ;;  # only IPv6 addresses contain ':'
        *[!0-9.]*) extra="$extra DNS:$name" ;;
        *) extra="$extra IP:$name" ;;
    esac
done

# shellcheck disable=SC2086  # $extra is a list of SAN entries
leaf bridge DNS:bridge DNS:localhost IP:127.0.0.1 IP:172.30.5.10 $extra
leaf carrier-sim DNS:carrier-sim IP:172.30.5.20
leaf mosquitto DNS:mosquitto DNS:localhost IP:127.0.0.1
leaf ops
echo "development PKI in $dir (trust $dir/ca.crt in the browser)"
