#!/usr/bin/env bash
# Local Apache Kafka (KRaft on 127.0.0.1) for development, demos and tests: one node, or a
# replicated cluster of KAFKA_BROKERS nodes (each a broker and a controller voter).
#   kafka.sh setup | up | down | status | wipe
#   kafka.sh cluster-up | cluster-down | cluster-status | cluster-wipe
# A cluster's node i (1..N) listens on KAFKA_PORT + 2(i-1), its controller on the port after,
# its data in KAFKA_DATA/node-i (default var/kafka-cluster-<port>); topics default to three
# replicas with min.insync.replicas=2 (fewer nodes: as many as there are, and 1).
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (port+1), KAFKA_DATA (var/kafka under the repo),
#              KAFKA_HEAP (512m), KAFKA_SASL_PORT + KAFKA_SASL_PLAIN_PASSWORD and
#              KAFKA_SSL_PORT (extra SASL and TLS listeners, for tests),
#              KAFKA_ACLS=1 with KAFKA_ADMIN_PASSWORD and KAFKA_PLAIN_USERS="name:password ..." (needs
#              KAFKA_SASL_PORT): StandardAuthorizer, allow.everyone.if.no.acl.found=false, super
#              user 'admin' (the broker's own controller and inter-broker traffic goes over SASL
#              as admin); the plaintext port then grants nothing. Create the principals' ACLs
#              with `warden kafka acls --apply` (streams/kafka_acls.py, docs/SECURITY.md "Kafka ACLs").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
data="${KAFKA_DATA:-$root/var/kafka-$port}"
heap="${KAFKA_HEAP:-512m}"
pidfile="$data/kafka.pid"
# One node of a cluster (set by cluster-up): its id, the controller quorum, topic replicas.
node_id="${KAFKA_NODE_ID:-1}"
voters="${KAFKA_VOTERS:-1@127.0.0.1:$cport}"
replication="${KAFKA_REPLICATION:-1}"
min_isr="${KAFKA_MIN_ISR:-1}"

setup() {
  if [ ! -f "$here/lib/kafka_2.13-4.1.1.jar" ]; then
    echo "resolving Kafka jars from Maven Central into $here/lib" >&2
    (cd "$here" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime)
  fi
}

# KAFKA_EXTRA_JVM_OPTS: more JVM flags, space-separated (the tests' brokers trade peak speed
# for start-up and idle CPU; tests/infra.py).
# shellcheck disable=SC2206
java_cmd=(java "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 ${KAFKA_EXTRA_JVM_OPTS:-}
  -Djava.awt.headless=true "-Dkafka.logs.dir=$data"
  "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$here/lib/*")

is_up() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

up() {
  setup
  if running; then echo "kafka already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
  if is_up; then echo "port $port is taken by another process; set KAFKA_PORT" >&2; return 1; fi
  mkdir -p "$data"
  sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$cport#g" -e "s#@DATA@#$data#g" \
    -e "s#@NODE_ID@#$node_id#g" -e "s#@VOTERS@#$voters#g" -e "s#@REPLICATION@#$replication#g" \
    -e "s#@MIN_ISR@#$min_isr#g" "$here/server.properties.in" > "$data/server.properties"
  # Optional extra listeners for security tests; later keys win in a properties file.
  listeners="PLAINTEXT://127.0.0.1:$port"
  protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "${KAFKA_SASL_PORT:-}" ]; then
    # PLAIN user 'warden'; SCRAM-SHA-512 users are added through the Admin API.
    : "${KAFKA_SASL_PLAIN_PASSWORD:?set KAFKA_SASL_PLAIN_PASSWORD together with KAFKA_SASL_PORT}"
    listeners="$listeners,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
    cat >> "$data/server.properties" <<EOF
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_warden="$KAFKA_SASL_PLAIN_PASSWORD";
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
  if [ -n "${KAFKA_SSL_PORT:-}" ]; then
    # A self-signed certificate for 127.0.0.1; clients trust $data/ca.pem.
    storepass="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    rm -f "$data/broker.p12" "$data/ca.pem"
    keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=127.0.0.1" \
      -ext "SAN=ip:127.0.0.1,dns:localhost" -ext "BC=ca:true" -keystore "$data/broker.p12" \
      -storetype PKCS12 -storepass "$storepass" -keypass "$storepass" > /dev/null 2>&1
    keytool -exportcert -rfc -alias broker -keystore "$data/broker.p12" -storepass "$storepass" \
      -file "$data/ca.pem" > /dev/null 2>&1
    listeners="$listeners,SSL://127.0.0.1:$KAFKA_SSL_PORT"
    protocols="$protocols,SSL:SSL"
    cat >> "$data/server.properties" <<EOF
ssl.keystore.location=$data/broker.p12
ssl.keystore.type=PKCS12
ssl.keystore.password=$storepass
ssl.key.password=$storepass
EOF
  fi
  if [ "$listeners" != "PLAINTEXT://127.0.0.1:$port" ]; then
    cat >> "$data/server.properties" <<EOF
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$listeners
listener.security.protocol.map=$protocols
EOF
  fi
  if [ "${KAFKA_ACLS:-0}" = "1" ]; then
    : "${KAFKA_SASL_PORT:?KAFKA_ACLS=1 needs KAFKA_SASL_PORT (the authenticated listener)}"
    : "${KAFKA_ADMIN_PASSWORD:?KAFKA_ACLS=1 needs KAFKA_ADMIN_PASSWORD (the super user)}"
    users="user_admin=\"$KAFKA_ADMIN_PASSWORD\" user_warden=\"$KAFKA_SASL_PLAIN_PASSWORD\""
    for entry in ${KAFKA_PLAIN_USERS:-}; do users="$users user_${entry%%:*}=\"${entry#*:}\""; done
    admin_login="username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\""
    # Later keys win: the controller listener and inter-broker traffic authenticate as the
    # super user, so nothing anonymous is trusted anywhere.
    cat >> "$data/server.properties" <<EOF
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
allow.everyone.if.no.acl.found=false
listener.security.protocol.map=$protocols,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required $admin_login user_admin="$KAFKA_ADMIN_PASSWORD";
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required $admin_login $users;
EOF
  fi
  if [ ! -f "$data/data/meta.properties" ]; then
    "${java_cmd[@]}" kafka.tools.StorageTool format -t "warden-local-cluster-0001" \
      -c "$data/server.properties" --ignore-formatted > "$data/format.log" 2>&1
  fi
  nohup "${java_cmd[@]}" kafka.Kafka "$data/server.properties" > "$data/stdout.log" 2>&1 &
  echo $! > "$pidfile"
  # A cluster's nodes start together (cluster-up waits for all of them).
  if [ "${KAFKA_NO_WAIT:-0}" = "1" ]; then echo "kafka node $node_id starting on 127.0.0.1:$port (pid $!)"; return 0; fi
  for _ in $(seq 1 120); do
    if is_up; then echo "kafka up on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0; fi
    if ! running; then echo "kafka exited; see $data/stdout.log and $data/server.log" >&2; tail -20 "$data/stdout.log" >&2; return 1; fi
    sleep 0.5
  done
  echo "kafka did not open 127.0.0.1:$port within 60 s; see $data/server.log" >&2
  return 1
}

down() {
  if ! running; then echo "kafka not running on port $port"; rm -f "$pidfile"; return 0; fi
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "kafka stopped"
}

status() {
  if running && is_up; then echo "up 127.0.0.1:$port pid $(cat "$pidfile")"; else echo "down"; return 3; fi
}

brokers="${KAFKA_BROKERS:-3}"
cluster_data="${KAFKA_DATA:-$root/var/kafka-cluster-$port}"

# Runs this script once per node with that node's ports, data and identity.
each_node() {
  local verb="$1" i nport ncport quorum="" rc=0
  for i in $(seq 1 "$brokers"); do quorum="$quorum,$i@127.0.0.1:$((port + 2 * (i - 1) + 1))"; done
  local rf=$((brokers < 3 ? brokers : 3)) isr=$((brokers < 3 ? 1 : 2))
  for i in $(seq 1 "$brokers"); do
    nport=$((port + 2 * (i - 1))); ncport=$((nport + 1))
    KAFKA_PORT=$nport KAFKA_CONTROLLER_PORT=$ncport KAFKA_DATA="$cluster_data/node-$i" KAFKA_NODE_ID=$i \
      KAFKA_VOTERS="${quorum#,}" KAFKA_REPLICATION=$rf KAFKA_MIN_ISR=$isr KAFKA_NO_WAIT=1 \
      bash "${BASH_SOURCE[0]}" "$verb" || rc=$?
  done
  return "$rc"
}

cluster_up() {
  if [ -n "${KAFKA_SASL_PORT:-}${KAFKA_SSL_PORT:-}" ]; then
    echo "cluster-up runs plaintext loopback nodes only; the SASL/TLS listeners are for one node" >&2; return 2
  fi
  [ "$brokers" -ge 1 ] || { echo "KAFKA_BROKERS must be at least 1" >&2; return 2; }
  setup
  each_node up || { each_node down; return 1; }
  # A node's port opens once it runs; the quorum forms when a majority of them do.
  local i nport
  for i in $(seq 1 "$brokers"); do
    nport=$((port + 2 * (i - 1)))
    for _ in $(seq 1 240); do
      (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break
      kill -0 "$(cat "$cluster_data/node-$i/kafka.pid" 2>/dev/null || echo 0)" 2>/dev/null ||
        { echo "kafka node $i exited; see $cluster_data/node-$i/server.log" >&2; return 1; }
      sleep 0.5
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null ||
      { echo "kafka node $i did not open 127.0.0.1:$nport within 120 s" >&2; return 1; }
  done
  echo "kafka cluster of $brokers up; bootstrap $(cluster_bootstrap)"
}

cluster_bootstrap() {
  local i out=""
  for i in $(seq 1 "$brokers"); do out="$out,127.0.0.1:$((port + 2 * (i - 1)))"; done
  echo "${out#,}"
}

case "${1:-}" in
  setup) setup ;;
  up) up ;;
  down) down ;;
  status) status ;;
  wipe) down; rm -rf "$data" ;;
  cluster-up) cluster_up ;;
  cluster-down) each_node down ;;
  cluster-status) each_node status ;;
  cluster-wipe) each_node down; rm -rf "$cluster_data" ;;
  cluster-bootstrap) cluster_bootstrap ;;
  *) echo "usage: $0 setup|up|down|status|wipe|cluster-up|cluster-down|cluster-status|cluster-wipe|cluster-bootstrap" >&2; exit 2 ;;
esac
