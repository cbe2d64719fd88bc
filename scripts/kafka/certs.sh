#!/usr/bin/env bash
# Makes the throw-away certificates of `scripts/kafka.sh start --security`
# with the openssl CLI, into DIR (PEM files, which both Kafka and
# librdkafka read; no Java keytool):
#
#   ca.pem               the test CA, which signs everything below
#   server.pem           the broker's private key and certificate (Kafka's
#                        PEM key store); its only name is IP 127.0.0.1, so
#                        `localhost` does not match it
#   client.crt           a client certificate for mutual TLS (CN=topicbus-client)
#   client.key           its private key, encrypted with the password in
#                        client.key.password (ssl.key.password)
#   expired.pem          a broker key and certificate that expired in 2020
#   other-ca.pem         a CA that signed nothing the broker presents
#   other-client.crt/.key  a client certificate signed by that other CA
#
#   scripts/kafka/certs.sh DIR
#
# Elliptic-curve keys (P-256): made in milliseconds. Valid for two days:
# long enough for a CI run, useless afterwards.
set -euo pipefail

dir="${1:?usage: certs.sh DIR}"
mkdir -p "$dir"
cd "$dir"

key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# A self-signed CA: $1 the file stem, $2 its name.
ca() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

# A certificate for the key $2, signed by CA $3, named $4, with the
# extensions $5, into $1.
sign() {
    local out="$1" key="$2" ca="$3" name="$4" extensions="$5"
    openssl req -new -key "$key" -subj "/CN=$name" -out "$out.csr"
    openssl x509 -req -in "$out.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial \
        -days 2 -out "$out" -extfile <(printf '%s\n' "$extensions") 2>/dev/null
    rm -f "$out.csr"
}

ca ca "topicbus test CA"
ca other-ca "topicbus other test CA"

key server.key
sign server.crt server.key ca 127.0.0.1 "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"
cat server.key server.crt >server.pem

key client.plain.key
sign client.crt client.plain.key ca topicbus-client "extendedKeyUsage=clientAuth"
openssl rand -hex 16 >client.key.password
openssl pkcs8 -topk8 -v2 aes-256-cbc -in client.plain.key -out client.key \
    -passout "file:client.key.password"
rm -f client.plain.key

key other-client.key
sign other-client.crt other-client.key other-ca topicbus-client "extendedKeyUsage=clientAuth"

# `openssl x509` takes no start date: `openssl ca` does, with a database.
key expired.key
openssl req -new -key expired.key -subj /CN=127.0.0.1 -out expired.csr
mkdir -p ca.db
: >ca.db/index.txt
cat >ca.db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = $dir/ca.db/index.txt
new_certs_dir = $dir/ca.db
serial = $dir/ca.db/serial
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = server
[any]
commonName = supplied
[server]
subjectAltName = IP:127.0.0.1
extendedKeyUsage = serverAuth
EOF
echo 01 >ca.db/serial
openssl ca -batch -config ca.db/ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
    -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z -notext 2>/dev/null
cat expired.key expired.crt >expired.pem
rm -rf expired.csr ca.db ./*.srl
