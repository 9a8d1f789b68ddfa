#!/usr/bin/env bash
# A throwaway certificate authority for the TLS listeners of the test services, made with the
# openssl CLI in $ZEROLOST_STATE_DIR/tls (idempotent: made once, then left alone):
#   ca.crt / ca.key           the test CA (10 years)
#   server.crt / server.key   the services' certificate: localhost, 127.0.0.1 (2 years)
#   client.crt / client.key   a client certificate for mutual TLS, CN=zerolost (2 years)
#   other-ca.crt              a second CA that signed nothing here (the "unknown CA" tests)
#   wrong-name.crt / .key     signed by the test CA for another name (the "name mismatch" tests)
#   expired.crt / .key        signed by the test CA, expired (the "expired certificate" tests)
#   server.p12 / client.p12   the same pairs as PKCS#12 (password `zerolost`), for Java
#   server.jks / trust.jks    Java key and trust stores (Kafka, RocketMQ)
# Keys are readable by their owner and group only; the services' users are in no group of
# ours, so each service script copies what it needs next to its data.
# Usage: certs.sh [make|dir|remake]
source "$(dirname "$0")/lib.sh"
DIR="$STATE_DIR/tls"
PASS=zerolost

command -v openssl >/dev/null 2>&1 || apt_install openssl

# sign NAME SUBJECT DAYS EXT: a key and a certificate signed by the test CA.
sign() {
  local name=$1 subject=$2 days=$3 ext=$4
  openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
    -keyout "$DIR/$name.key" -out "$DIR/$name.csr" 2>/dev/null
  openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile <(printf '%s\n' "$ext") \
    -out "$DIR/$name.crt" 2>/dev/null
  rm -f "$DIR/$name.csr"
}

make_all() {
  [ -f "$DIR/done" ] && return 0
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=zerolost test CA" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=some other CA" \
    -keyout "$DIR/other-ca.key" -out "$DIR/other-ca.crt" 2>/dev/null
  local server_ext="basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
  sign server "/CN=localhost" 730 "$server_ext"
  sign client "/CN=zerolost" 730 "basicConstraints=CA:FALSE
extendedKeyUsage=clientAuth"
  sign wrong-name "/CN=not-this-host.invalid" 730 "basicConstraints=CA:FALSE
extendedKeyUsage=serverAuth
subjectAltName=DNS:not-this-host.invalid"
  expired_cert
  for pair in server client; do
    openssl pkcs12 -export -in "$DIR/$pair.crt" -inkey "$DIR/$pair.key" -certfile "$DIR/ca.crt" \
      -name "$pair" -passout "pass:$PASS" -out "$DIR/$pair.p12"
  done
  if command -v keytool >/dev/null 2>&1; then
    rm -f "$DIR/server.jks" "$DIR/trust.jks"
    keytool -importkeystore -noprompt -srckeystore "$DIR/server.p12" -srcstoretype PKCS12 \
      -srcstorepass "$PASS" -destkeystore "$DIR/server.jks" -deststoretype JKS \
      -deststorepass "$PASS" >/dev/null 2>&1
    keytool -importcert -noprompt -alias ca -file "$DIR/ca.crt" -keystore "$DIR/trust.jks" \
      -storepass "$PASS" >/dev/null 2>&1
  fi
  chmod 640 "$DIR"/*.key
  touch "$DIR/done"
  log "tls: test CA and certificates in $DIR"
}

# An expired certificate signed by the test CA, through `openssl ca` (the one signer that
# takes a start and an end date).
expired_cert() {
  local db="$DIR/ca-db"
  mkdir -p "$db"
  : > "$db/index.txt"
  echo 1000 > "$db/serial"
  cat > "$db/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $db/index.txt
serial = $db/serial
new_certs_dir = $db
certificate = $DIR/ca.crt
private_key = $DIR/ca.key
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
[ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
EOF
  openssl req -new -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$DIR/expired.key" -out "$DIR/expired.csr" 2>/dev/null
  openssl ca -batch -config "$db/ca.cnf" -extensions ext -in "$DIR/expired.csr" \
    -startdate 20200101000000Z -enddate 20200102000000Z -out "$DIR/expired.crt" >/dev/null 2>&1
  rm -f "$DIR/expired.csr"
}

case "${1:-make}" in
  make) make_all ;;
  remake) rm -rf "$DIR"; make_all ;;
  dir) echo "$DIR" ;;
  *) echo "usage: $0 make|remake|dir" >&2; exit 2 ;;
esac
