#!/bin/sh
# Regenerates the test certificates of tests/support/src/tls_front.rs (run once, committed; the
# tests never run this). ECDSA P-256 keys; 100-year validity except `expired`.
#   ca          the test CA the refresher is told to trust (`root_certificates_pem`)
#   server      127.0.0.1, signed by the CA: the good certificate
#   self-signed 127.0.0.1, self-signed: a certificate the client does not trust
#   expired     127.0.0.1, signed by the CA, valid only in 2000
#   wrong-host  auth.example.org, signed by the CA: the name does not match 127.0.0.1
# These keys are test fixtures: they protect nothing. ca.key is not kept (the tests do not
# need it): regenerating makes all of them anew.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
key() { openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$1"; }

key ca.key
openssl req -x509 -new -key ca.key -days 36500 -subj "/CN=tokenvault test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem

cat > "$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = any
copy_extensions = copy
[any]
commonName = supplied
CNF
: > "$tmp/index.txt"
echo 1000 > "$tmp/serial"

leaf() { # name san startdate enddate
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -addext "subjectAltName=$2" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -out "$tmp/$1.csr"
  openssl ca -batch -config "$tmp/ca.cnf" -cert ca.pem -keyfile ca.key -notext \
    -startdate "$3" -enddate "$4" -in "$tmp/$1.csr" -out "$1.pem"
}
leaf server "IP:127.0.0.1" 20250101000000Z 21241231000000Z
leaf expired "IP:127.0.0.1" 20000101000000Z 20010101000000Z
leaf wrong-host "DNS:auth.example.org" 20250101000000Z 21241231000000Z

key self-signed.key
openssl req -x509 -new -key self-signed.key -days 36500 -subj "/CN=self-signed" \
  -addext "subjectAltName=IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
  -addext "extendedKeyUsage=serverAuth" -out self-signed.pem
