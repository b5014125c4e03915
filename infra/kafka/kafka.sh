#!/usr/bin/env bash
# The Apache Kafka broker of the test suites: a single KRaft node on loopback.
#
#   infra/kafka/kafka.sh start   resolve Kafka with Maven (cached), make certificates,
#                                format a fresh log dir, start the broker, wait until
#                                every listener answers
#   infra/kafka/kafka.sh stop    stop the broker that start started
#   infra/kafka/kafka.sh env     print the export lines the tests read
#
# Listeners (a fixed contract the tests rely on):
#   PLAINTEXT       127.0.0.1:19092                          LAMBDAREC_TEST_KAFKA
#   SASL_PLAINTEXT  127.0.0.1:19093, SCRAM-SHA-512           LAMBDAREC_TEST_KAFKA_SCRAM (+ _USER, _PASSWORD)
#   SASL_SSL        127.0.0.1:19094, SCRAM-SHA-512 over TLS  LAMBDAREC_TEST_KAFKA_TLS (+ _CA)
#   CONTROLLER      127.0.0.1:19095 (KRaft quorum, not for clients)
#
# Settings (environment):
#   LAMBDAREC_TEST_KAFKA_HOME      cache and state dir (default ~/.cache/lambdarec/kafka):
#                                  m2/ Maven repository, lib-VERSION/ the broker's jars,
#                                  run/ config, log dir, certificates, logs, pid
#   LAMBDAREC_TEST_KAFKA_VERSIONS  Kafka versions to try in order, the first that Maven
#                                  resolves is used (default "4.1.1 4.1.0 4.0.1 4.0.0")
#   LAMBDAREC_TEST_KAFKA_PORT      the first of the four ports (default 19092: the listeners
#                                  above take it and the next three), so that a second
#                                  broker with its own LAMBDAREC_TEST_KAFKA_HOME can run beside
#   LAMBDAREC_TEST_KAFKA_JVM_OPTS  JVM options (default "-XX:TieredStopAtLevel=1
#                                  -XX:+UseSerialGC": the test broker carries little load,
#                                  and on 2 busy cores the C1-only JIT halves its start-up)
#
# Maven resolves from Maven Central, its default repository (the pom declares no
# other); Java 17 runs the broker.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
home="${LAMBDAREC_TEST_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lambdarec/kafka}"
versions="${LAMBDAREC_TEST_KAFKA_VERSIONS:-4.1.1 4.1.0 4.0.1 4.0.0}"
run="$home/run"
user="lambdarec"

port="${LAMBDAREC_TEST_KAFKA_PORT:-19092}"
plain_addr=127.0.0.1:$port
scram_addr=127.0.0.1:$((port + 1))
tls_addr=127.0.0.1:$((port + 2))
controller_addr=127.0.0.1:$((port + 3))

log() { echo "kafka.sh: $*" >&2; }

# resolve prints the lib dir of the first version Maven can resolve.
resolve() {
	local v lib tmp
	for v in $versions; do
		lib="$home/lib-$v"
		if [ -f "$lib/.complete" ]; then
			echo "$lib"
			return 0
		fi
		log "resolving org.apache.kafka:kafka_2.13:$v with Maven into $lib"
		tmp="$lib.tmp"
		rm -rf "$tmp"
		if mvn -B -q -f "$here/pom.xml" \
			-Dmaven.repo.local="$home/m2" \
			-Dkafka.version="$v" \
			dependency:copy-dependencies \
			-DincludeScope=runtime -DoutputDirectory="$tmp" >"$home/mvn-$v.log" 2>&1; then
			rm -rf "$lib"
			mv "$tmp" "$lib"
			echo "$v" >"$lib/.complete"
			echo "$lib"
			return 0
		fi
		log "Kafka $v did not resolve (see $home/mvn-$v.log); trying the next version"
		rm -rf "$tmp"
	done
	log "no Kafka version of '$versions' resolved"
	return 1
}

# running: the pid file names a live process that is this broker (a stale
# pid of a killed broker may have been reused by another process).
running() {
	[ -f "$run/kafka.pid" ] && is_ours "$(cat "$run/kafka.pid")"
}

is_ours() {
	kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "kafka.Kafka $run/server.properties"
}

write_config() {
	cat >"$run/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$controller_addr
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$plain_addr,SASL_PLAINTEXT://$scram_addr,SASL_SSL://$tls_addr,CONTROLLER://$controller_addr
advertised.listeners=PLAINTEXT://$plain_addr,SASL_PLAINTEXT://$scram_addr,SASL_SSL://$tls_addr
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$run/certs/server.pem
ssl.client.auth=none
log.dirs=$run/data
# As on a production cluster: topics are created explicitly, never by a fetch.
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.flush.interval.messages=9223372036854775807
EOF
	cat >"$run/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $run/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
EOF
}

start() {
	if running; then
		log "already running (pid $(cat "$run/kafka.pid"))"
		return 0
	fi
	command -v java >/dev/null || { log "java is not installed"; return 1; }
	command -v mvn >/dev/null || { log "mvn is not installed"; return 1; }
	mkdir -p "$home"
	local t0 lib version password
	t0=$(date +%s%N)
	lib="$(resolve)"
	version="$(cat "$lib/.complete")"
	local t_resolved=$(($(date +%s%N) / 1000000))

	mkdir -p "$home/bin"
	(cd "$root" && go build -o "$home/bin/kafkatool" ./infra/kafka/kafkatool)

	rm -rf "$run"
	mkdir -p "$run/data"
	"$home/bin/kafkatool" certs -dir "$run/certs"
	password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
	printf '%s\n' "$password" >"$run/password"
	chmod 600 "$run/password"
	write_config

	local jvm=(java -Xms256m -Xmx768m ${LAMBDAREC_TEST_KAFKA_JVM_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$run/log4j2.properties"
		-cp "$lib/*")
	local cluster_id
	cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
	if ! "${jvm[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$run/server.properties" \
		--add-scram "SCRAM-SHA-512=[name=$user,password=$password]" >"$run/format.log" 2>&1; then
		log "formatting the log dir failed:"
		cat "$run/format.log" >&2
		return 1
	fi

	local t_launch=$(($(date +%s%N) / 1000000))
	nohup "${jvm[@]}" kafka.Kafka "$run/server.properties" >"$run/server.out" 2>&1 &
	echo $! >"$run/kafka.pid"
	echo "$version" >"$run/version"

	"$home/bin/kafkatool" wait -plain "$plain_addr" -scram "$scram_addr" -tls "$tls_addr" \
		-user "$user" -password-file "$run/password" -ca "$run/certs/ca.pem" -timeout 3m &
	local waiter=$!
	local pid
	pid="$(cat "$run/kafka.pid")"
	while kill -0 "$waiter" 2>/dev/null; do
		# Whether the process lives, not whether it is ours: until nohup has
		# exec'd java, its command line is still this script's.
		if ! kill -0 "$pid" 2>/dev/null; then
			kill "$waiter" 2>/dev/null || true
			wait "$waiter" 2>/dev/null || true
			log "the broker exited during startup:"
			tail -n 40 "$run/server.out" "$run/server.log" >&2 2>/dev/null || true
			return 1
		fi
		sleep 0.2
	done
	if ! wait "$waiter"; then
		log "the broker did not answer on every listener:"
		tail -n 40 "$run/server.out" "$run/server.log" >&2 2>/dev/null || true
		stop
		return 1
	fi
	local now_ms=$(($(date +%s%N) / 1000000))
	local ms=$((now_ms - t0 / 1000000))
	log "phases: Maven resolve $((t_resolved - t0 / 1000000)) ms, tool build, certificates and format $((t_launch - t_resolved)) ms, broker launch to every listener answering $((now_ms - t_launch)) ms"
	log "Apache Kafka $version answers on $plain_addr, $scram_addr, $tls_addr (pid $(cat "$run/kafka.pid"), started in $((ms / 1000)).$(printf %03d $((ms % 1000))) s)"
}

stop() {
	if ! [ -f "$run/kafka.pid" ]; then
		log "not started"
		return 0
	fi
	local pid
	pid="$(cat "$run/kafka.pid")"
	if is_ours "$pid"; then
		kill "$pid"
		for _ in $(seq 1 150); do
			is_ours "$pid" || break
			sleep 0.2
		done
		if is_ours "$pid"; then
			log "pid $pid did not stop in 30 s; killing it"
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$run/kafka.pid"
	log "stopped"
}

env_lines() {
	if ! running; then
		log "not running: start it first"
		return 1
	fi
	echo "export LAMBDAREC_TEST_KAFKA=$plain_addr"
	echo "export LAMBDAREC_TEST_KAFKA_SCRAM=$scram_addr"
	echo "export LAMBDAREC_TEST_KAFKA_USER=$user"
	echo "export LAMBDAREC_TEST_KAFKA_PASSWORD=$(cat "$run/password")"
	echo "export LAMBDAREC_TEST_KAFKA_TLS=$tls_addr"
	echo "export LAMBDAREC_TEST_KAFKA_CA=$run/certs/ca.pem"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
env) env_lines ;;
*)
	echo "usage: $0 start|stop|env" >&2
	exit 2
	;;
esac
