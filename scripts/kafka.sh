#!/usr/bin/env bash
# Runs Apache Kafka (broker and KRaft controller in one process per node) on
# 127.0.0.1 for the Kafka tests, from the jars Maven Central publishes: no
# Docker, no release archive. docs/testing.md has timings and memory use.
#
#   scripts/kafka.sh install            # resolve the jars once (cached); prints the jar folder
#   scripts/kafka.sh start [--nodes N]  # a fresh cluster of 1 (default) or 3 nodes; prints its bootstrap address
#   scripts/kafka.sh start --security   # one node with every security listener; prints env lines (below)
#   scripts/kafka.sh stop               # stop the nodes this script started (SIGTERM), wait until they are gone
#   scripts/kafka.sh status             # one line per node; exit 0 if every node runs, 3 otherwise
#   scripts/kafka.sh address            # the running cluster's bootstrap address
#   scripts/kafka.sh kill NODE          # SIGKILL node NODE (1..N), as a crash would
#   scripts/kafka.sh restart NODE       # stop NODE if it runs, start it on its data, wait until every
#                                       # node is back and every partition is fully in sync
#
# `start` waits until the cluster answers a metadata request from Kafka's
# own admin client (scripts/kafka/Probe.java) listing all N brokers, then
# prints `127.0.0.1:PORT[,...]` on stdout; everything else goes to stderr
# and each node's log to KAFKA_DIR/nodeN/kafka.log.
#
# Environment:
#   KAFKA_DIR        data, logs and pid files; default: a folder per checkout
#                    under ${TMPDIR:-/tmp}, named by a hash of the checkout's path,
#                    so two checkouts never touch each other's cluster
#   KAFKA_PORT       first client port (node i listens on KAFKA_PORT+i-1, its
#                    controller on KAFKA_PORT+100+i-1, security mode's
#                    listeners on KAFKA_PORT+200..204); default: free ports
#   KAFKA_HEAP       heap per node (default 512m)
#   KAFKA_CACHE      the jars (default ~/.cache/topicbus/kafka-VERSION-POMHASH)
#   KAFKA_START_TIMEOUT  seconds `start` and `restart` wait (default 180)
#
# Security mode (`start --security`): one node, one start for every
# security test. Throw-away certificates are made with the openssl CLI
# (scripts/kafka/certs.sh) into KAFKA_DIR/certs, SCRAM users are added when
# the storage is formatted, and the node listens on
#   PLAINTEXT  no security (also the broker's own and the readiness probe's)
#   SSL        TLS with the server certificate
#   MTLS       TLS with ssl.client.auth=required
#   SASL       SASL_SSL with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN
#   OAUTH      SASL_SSL with OAUTHBEARER and the broker's unsecured token
#              validator; a session must re-authenticate every 3 s (so a
#              client must keep presenting a token that has not expired)
#   EXPIRED    TLS with a server certificate that expired in 2020
# and prints, instead of the bootstrap address, the lines (also kept in
# KAFKA_DIR/security.env)
#   TOPICBUS_SECURE_{PLAINTEXT,SSL,MTLS,SASL,OAUTH,EXPIRED}=127.0.0.1:PORT
#   TOPICBUS_SECURE_CERTS=DIR          the files scripts/kafka/certs.sh lists
#   TOPICBUS_SECURE_USER=alice         a user of PLAIN and both SCRAMs
#   TOPICBUS_SECURE_PASSWORD=...       made at random by each start
#
# Three-node mode: replication factor 3 for auto-created and internal
# topics, min.insync.replicas=2, so any one node can be lost without losing
# an acknowledged write (acks=all) or availability.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd -P)"
ROOT="$(cd "$HERE/.." && pwd -P)"
POM="$HERE/kafka/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
# The cache folder names the pom's contents, so a changed pom resolves anew.
POM_ID="$(sha256sum "$POM" | cut -c1-12)"
KAFKA_CACHE="${KAFKA_CACHE:-$HOME/.cache/topicbus/kafka-$KAFKA_VERSION-$POM_ID}"
LIB="$KAFKA_CACHE/lib"
PROBE_ID="$(sha256sum "$HERE/kafka/Probe.java" | cut -c1-12)"
PROBE_CLASSES="$KAFKA_CACHE/probe-$PROBE_ID"
KAFKA_DIR="${KAFKA_DIR:-${TMPDIR:-/tmp}/topicbus-kafka-$(printf %s "$ROOT" | sha256sum | cut -c1-12)}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-180}"
CLUSTER="$KAFKA_DIR/cluster.env"
# Security mode's listeners by name (empty otherwise), user and password.
declare -A SECURE_PORTS=()
SECURE_USER="" SECURE_PASSWORD=""

# A small heap, the serial collector and few threads: the machines have
# two cores, and a three-node cluster runs beside the test build.
JAVA_OPTS=(
    "-Xms64m" "-Xmx$KAFKA_HEAP" "-XX:+UseSerialGC" "-XX:+ExitOnOutOfMemoryError"
    "-XX:CICompilerCount=2" "-Djava.awt.headless=true" "-Djava.net.preferIPv4Stack=true"
    "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.properties"
)

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

install() {
    if [ ! -f "$LIB/.complete" ]; then
        command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Apache Kafka's jars"
        echo "resolving Apache Kafka $KAFKA_VERSION with Maven into $LIB" >&2
        rm -rf "$LIB"
        mkdir -p "$LIB"
        mvn -B -f "$POM" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$LIB" >"$KAFKA_CACHE/mvn.log" 2>&1 || {
            tail -n 40 "$KAFKA_CACHE/mvn.log" >&2
            die "Maven could not resolve Apache Kafka $KAFKA_VERSION (log: $KAFKA_CACHE/mvn.log)"
        }
        touch "$LIB/.complete"
    fi
    if [ ! -f "$PROBE_CLASSES/Probe.class" ]; then
        rm -rf "$PROBE_CLASSES.tmp"
        mkdir -p "$PROBE_CLASSES.tmp"
        javac -nowarn -cp "$LIB/*" -d "$PROBE_CLASSES.tmp" "$HERE/kafka/Probe.java" >&2
        rm -rf "$PROBE_CLASSES"
        mv "$PROBE_CLASSES.tmp" "$PROBE_CLASSES"
    fi
}

# `count` TCP ports free on 127.0.0.1 right now.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

# A Kafka Uuid (16 random bytes, URL-safe base64 without padding) that does
# not start with '-', which Kafka's tools would read as an option.
kafka_uuid() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
        case "$id" in -*) ;; *) echo "$id"; return ;; esac
    done
}

load_cluster() {
    [ -f "$CLUSTER" ] || die "no cluster in $KAFKA_DIR: run \`$0 start\` first"
    # shellcheck source=/dev/null
    . "$CLUSTER"
}

# The pid of node $1 if it runs: a live process whose command line names
# this node's configuration, so a reused pid is never taken for ours.
node_pid() {
    local file="$KAFKA_DIR/node$1/pid" pid
    [ -f "$file" ] || return 1
    pid="$(cat "$file")"
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$KAFKA_DIR/node$1/server.properties" || return 1
    echo "$pid"
}

write_config() {
    local n="$1" rf="$2" min_isr="$3" port="$4" controller_port="$5"
    local listeners="PLAINTEXT://127.0.0.1:$port" map="PLAINTEXT:PLAINTEXT" name
    for name in "${!SECURE_PORTS[@]}"; do
        listeners+=",$name://127.0.0.1:${SECURE_PORTS[$name]}"
    done
    if [ "${#SECURE_PORTS[@]}" -gt 0 ]; then
        map+=",SSL:SSL,MTLS:SSL,SASL:SASL_SSL,OAUTH:SASL_SSL,EXPIRED:SSL"
    fi
    listeners+=",CONTROLLER://127.0.0.1:$controller_port"
    mkdir -p "$KAFKA_DIR/node$n/data"
    cat >"$KAFKA_DIR/node$n/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
listeners=$listeners
advertised.listeners=$listeners
listener.security.protocol.map=$map,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$CONTROLLERS
log.dirs=$KAFKA_DIR/node$n/data

# Topics: the tests create theirs with the admin API; what is auto-created
# (a consumer's or producer's first look at a topic) gets these.
auto.create.topics.enable=${KAFKA_AUTO_CREATE_TOPICS:-false}
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
unclean.leader.election.enable=false

# A test's group starts as soon as its first member joins.
group.initial.rebalance.delay.ms=0

# Small segments: test topics stay small on disk.
log.segment.bytes=16777216
log.retention.hours=24

# Two cores for everything.
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
EOF
    if [ "${#SECURE_PORTS[@]}" -gt 0 ]; then
        security_config >>"$KAFKA_DIR/node$n/server.properties"
    fi
}

# The security listeners' settings (see the top of this file).
security_config() {
    local certs="$KAFKA_DIR/certs"
    cat <<EOF

# Security listeners: scripts/kafka.sh start --security.
ssl.keystore.type=PEM
ssl.keystore.location=$certs/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$certs/ca.pem
ssl.client.auth=none
listener.name.mtls.ssl.client.auth=required
listener.name.expired.ssl.keystore.location=$certs/expired.pem
listener.name.sasl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SECURE_USER="$SECURE_PASSWORD";
listener.name.sasl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
listener.name.oauth.oauthbearer.connections.max.reauth.ms=3000
EOF
}

launch() {
    local n="$1"
    (
        cd "$KAFKA_DIR/node$n"
        # A session of its own: stopping the shell job that ran `start`
        # does not take the broker with it; `stop` and `kill` do.
        setsid java "${JAVA_OPTS[@]}" -cp "$LIB/*" kafka.Kafka \
            "$KAFKA_DIR/node$n/server.properties" >>"$KAFKA_DIR/node$n/kafka.log" 2>&1 </dev/null &
        echo $! >"$KAFKA_DIR/node$n/pid"
    )
}

# Waits until the cluster, asked at $1, lists every node (and with
# `in-sync`, until no partition is under-replicated); fails early, with the
# log, if a node dies.
wait_ready() {
    local address="$1" probe_pid n
    shift
    java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$HERE/kafka/log4j2-quiet.properties" \
        -cp "$LIB/*:$PROBE_CLASSES" Probe "$address" "$NODES" "$START_TIMEOUT" "$@" &
    probe_pid=$!
    while kill -0 "$probe_pid" 2>/dev/null; do
        for n in $(seq 1 "$NODES"); do
            if ! node_pid "$n" >/dev/null; then
                kill "$probe_pid" 2>/dev/null || true
                wait "$probe_pid" 2>/dev/null || true
                echo "kafka.sh: node $n exited; the end of its log ($KAFKA_DIR/node$n/kafka.log):" >&2
                tail -n 40 "$KAFKA_DIR/node$n/kafka.log" >&2
                exit 1
            fi
        done
        sleep 0.2
    done
    wait "$probe_pid" || {
        echo "kafka.sh: the logs are in $KAFKA_DIR/node*/kafka.log" >&2
        exit 1
    }
}

start() {
    local nodes=1 security=false
    while [ $# -gt 0 ]; do
        case "$1" in
            --nodes) nodes="${2:-}"; shift 2 || die "--nodes needs a number" ;;
            --nodes=*) nodes="${1#--nodes=}"; shift ;;
            --security) security=true; shift ;;
            *) die "start: unknown argument \`$1\` (usage: start [--nodes 1|3] | start --security)" ;;
        esac
    done
    if $security && [ "$nodes" != 1 ]; then
        die "start: --security runs one node"
    fi
    case "$nodes" in
        1) local rf=1 min_isr=1 ;;
        3) local rf=3 min_isr=2 ;;
        *) die "start: --nodes must be 1 or 3, not \`$nodes\`" ;;
    esac
    install
    stop_all TERM
    rm -rf "$KAFKA_DIR"
    mkdir -p "$KAFKA_DIR"

    local ports=() controller_ports=() secure_ports=() n name
    if [ -n "${KAFKA_PORT:-}" ]; then
        for n in $(seq 1 "$nodes"); do
            ports+=($((KAFKA_PORT + n - 1)))
            controller_ports+=($((KAFKA_PORT + 100 + n - 1)))
        done
        for n in 1 2 3 4 5; do secure_ports+=($((KAFKA_PORT + 200 + n - 1))); done
    else
        # One call, so that no port is handed out twice.
        read -r -a ports <<<"$(free_ports $((2 * nodes + 5)))"
        controller_ports=("${ports[@]:$nodes:$nodes}")
        secure_ports=("${ports[@]:$((2 * nodes))}")
        ports=("${ports[@]:0:$nodes}")
    fi
    if $security; then
        command -v openssl >/dev/null || die "the openssl CLI is needed to make the test certificates"
        "$HERE/kafka/certs.sh" "$KAFKA_DIR/certs"
        SECURE_USER=alice
        SECURE_PASSWORD="$(openssl rand -hex 12)"
        for name in SSL MTLS SASL OAUTH EXPIRED; do
            SECURE_PORTS[$name]="${secure_ports[0]}"
            secure_ports=("${secure_ports[@]:1}")
        done
    fi
    BOOTSTRAP="" CONTROLLERS="" NODES="$nodes"
    local voters=""
    for n in $(seq 1 "$nodes"); do
        BOOTSTRAP+="${BOOTSTRAP:+,}127.0.0.1:${ports[$((n - 1))]}"
        CONTROLLERS+="${CONTROLLERS:+,}127.0.0.1:${controller_ports[$((n - 1))]}"
        voters+="${voters:+,}$n@127.0.0.1:${controller_ports[$((n - 1))]}:$(kafka_uuid)"
    done
    for n in $(seq 1 "$nodes"); do
        write_config "$n" "$rf" "$min_isr" "${ports[$((n - 1))]}" "${controller_ports[$((n - 1))]}"
    done
    printf 'NODES=%s\nBOOTSTRAP=%s\nCONTROLLERS=%s\n' "$NODES" "$BOOTSTRAP" "$CONTROLLERS" >"$CLUSTER"

    # One node is the whole controller quorum (--standalone); three start
    # with all three as voters (--initial-controllers, each node's
    # metadata folder taking the directory id its entry names).
    local cluster_id quorum pids=()
    cluster_id="$(kafka_uuid)"
    if [ "$nodes" = 1 ]; then quorum=(--standalone); else quorum=(--initial-controllers "$voters"); fi
    if $security; then
        quorum+=(
            --add-scram "SCRAM-SHA-256=[name=$SECURE_USER,password=$SECURE_PASSWORD]"
            --add-scram "SCRAM-SHA-512=[name=$SECURE_USER,password=$SECURE_PASSWORD]"
        )
    fi
    for n in $(seq 1 "$nodes"); do
        java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            -Dlog4j2.configurationFile="$HERE/kafka/log4j2-quiet.properties" \
            -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster_id" \
            -c "$KAFKA_DIR/node$n/server.properties" "${quorum[@]}" \
            >"$KAFKA_DIR/node$n/format.log" 2>&1 &
        pids+=($!)
    done
    for n in $(seq 1 "$nodes"); do
        wait "${pids[$((n - 1))]}" || {
            cat "$KAFKA_DIR/node$n/format.log" >&2
            die "formatting node $n's storage failed"
        }
    done

    for n in $(seq 1 "$nodes"); do
        launch "$n"
    done
    wait_ready "$BOOTSTRAP"
    if $security; then
        {
            echo "TOPICBUS_SECURE_PLAINTEXT=$BOOTSTRAP"
            for name in SSL MTLS SASL OAUTH EXPIRED; do
                echo "TOPICBUS_SECURE_$name=127.0.0.1:${SECURE_PORTS[$name]}"
            done
            echo "TOPICBUS_SECURE_CERTS=$KAFKA_DIR/certs"
            echo "TOPICBUS_SECURE_USER=$SECURE_USER"
            echo "TOPICBUS_SECURE_PASSWORD=$SECURE_PASSWORD"
        } | tee "$KAFKA_DIR/security.env"
    else
        echo "$BOOTSTRAP"
    fi
}

# Signals node $1 with $2 and waits until it is gone; SIGKILL after 60 s.
stop_node() {
    local n="$1" signal="$2" pid
    if pid="$(node_pid "$n")"; then
        kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 1 600); do
            node_pid "$n" >/dev/null || break
            sleep 0.1
        done
        if node_pid "$n" >/dev/null; then
            echo "kafka.sh: node $n did not stop within 60 s of SIG$signal; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            while node_pid "$n" >/dev/null; do sleep 0.1; done
        fi
    fi
    rm -f "$KAFKA_DIR/node$n/pid"
}

# Stops every node of this checkout's cluster, all at once.
stop_all() {
    local signal="$1" n
    [ -f "$CLUSTER" ] || return 0
    # shellcheck source=/dev/null
    . "$CLUSTER"
    for n in $(seq 1 "$NODES"); do
        stop_node "$n" "$signal" &
    done
    wait
}

check_node() {
    load_cluster
    case "${1:-}" in
        '' | *[!0-9]*) die "name a node: 1 to $NODES" ;;
    esac
    [ "$1" -ge 1 ] && [ "$1" -le "$NODES" ] || die "no node $1: the cluster has nodes 1 to $NODES"
}

# The client address of node $1.
node_address() {
    sed -n 's/^listeners=PLAINTEXT:\/\/\([^,]*\),.*/\1/p' "$KAFKA_DIR/node$1/server.properties"
}

status() {
    load_cluster
    local n pid all=0 port
    for n in $(seq 1 "$NODES"); do
        port="$(node_address "$n")"
        if pid="$(node_pid "$n")"; then
            echo "node $n: running, pid $pid, $port"
        else
            echo "node $n: stopped, $port"
            all=3
        fi
    done
    return "$all"
}

case "${1:-}" in
    install) install; echo "$LIB" ;;
    start) shift; start "$@" ;;
    stop) stop_all TERM ;;
    status) status ;;
    address) load_cluster; echo "$BOOTSTRAP" ;;
    kill) check_node "${2:-}"; stop_node "$2" KILL ;;
    restart)
        check_node "${2:-}"
        install
        stop_node "$2" TERM
        launch "$2"
        # Asked at the restarted node itself: a node answers clients only
        # once it has caught up with the cluster's metadata, while the
        # others may still list a killed node they have not yet fenced.
        wait_ready "$(node_address "$2")" in-sync
        ;;
    *)
        echo "usage: $0 install | start [--nodes 1|3] | start --security | stop | status | address | kill NODE | restart NODE" >&2
        exit 2
        ;;
esac
