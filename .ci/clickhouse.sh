#!/usr/bin/env bash
# Installs Debian's clickhouse-server (release 18.16), writes a loopback-only
# configuration with its own data directory, starts the server in the
# background (no systemd), waits until it answers over the native protocol, and
# prints the DSN to use as LAMBDAREC_CLICKHOUSE_DSN on stdout (progress goes to
# stderr). Running it again while the server is up just prints the DSN.
#
#   export LAMBDAREC_CLICKHOUSE_DSN="$(.ci/clickhouse.sh)"
#
# Environment:
#   CLICKHOUSE_DIR   data, logs and config (default /tmp/lambdarec-clickhouse)
#   CLICKHOUSE_PORT  native TCP port (default 9000); the HTTP port is PORT-877
#                    (default 8123), the TLS native port PORT+440 (default 9440)
#
# Besides "default" (no password), the server has the user lambdarec_auth with
# the password in $CLICKHOUSE_DIR/auth.password, and serves the native protocol
# over TLS with a self-signed certificate generated here, $CLICKHOUSE_DIR/tls/
# server.crt (CN localhost, IP 127.0.0.1): the credential and TLS tests of the
# serving store use them.
set -euo pipefail

dir="${CLICKHOUSE_DIR:-/tmp/lambdarec-clickhouse}"
port="${CLICKHOUSE_PORT:-9000}"
http_port=$((port - 877))
tls_port=$((port + 440))
dsn="clickhouse://127.0.0.1:${port}/default"

log() { echo "clickhouse.sh: $*" >&2; }

answers() {
	clickhouse-client --host 127.0.0.1 --port "$port" --query 'SELECT 1' >/dev/null 2>&1
}

if ! command -v clickhouse-server >/dev/null 2>&1 || ! command -v clickhouse-client >/dev/null 2>&1; then
	log "installing clickhouse-server and clickhouse-client"
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq >&2 || true
	$sudo apt-get install -y -qq clickhouse-server clickhouse-client >&2
fi

if answers; then
	log "already running on 127.0.0.1:${port}"
	if [ ! -s "$dir/auth.password" ] || [ ! -s "$dir/tls/server.crt" ]; then
		log "warning: that server was started by an older clickhouse.sh (no user lambdarec_auth, no TLS port); the credential and TLS tests need them: stop it (kill \$(cat $dir/clickhouse-server.pid)) and run this again"
	fi
	echo "$dsn"
	exit 0
fi

mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log" "$dir/tls"

# The password of lambdarec_auth, and a self-signed certificate for the TLS
# port; both generated, never committed.
if [ ! -s "$dir/auth.password" ]; then
	head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$dir/auth.password"
fi
auth_password="$(cat "$dir/auth.password")"
if [ ! -s "$dir/tls/server.crt" ]; then
	if ! command -v openssl >/dev/null 2>&1; then
		log "installing openssl"
		sudo=""
		if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
		$sudo apt-get install -y -qq openssl >&2
	fi
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$dir/tls/server.key" -out "$dir/tls/server.crt" >/dev/null 2>&1
fi

cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$port</tcp_port>
    <http_port>$http_port</http_port>
    <tcp_port_secure>$tls_port</tcp_port_secure>
    <openSSL>
        <server>
            <certificateFile>$dir/tls/server.crt</certificateFile>
            <privateKeyFile>$dir/tls/server.key</privateKeyFile>
            <verificationMode>none</verificationMode>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <cacheSessions>true</cacheSessions>
            <disableProtocols>sslv2,sslv3,tlsv1,tlsv1_1</disableProtocols>
            <preferServerCiphers>true</preferServerCiphers>
        </server>
    </openSSL>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF

cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <lambdarec_auth>
            <password>$auth_password</password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </lambdarec_auth>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF

# The server runs as the user that starts it; when that is root, hand the
# directory to the package's clickhouse user and run as it.
run_as=()
if [ "$(id -u)" = 0 ] && id clickhouse >/dev/null 2>&1; then
	chown -R clickhouse:clickhouse "$dir"
	run_as=(setpriv --reuid=clickhouse --regid=clickhouse --init-groups)
fi

log "starting clickhouse-server on 127.0.0.1:${port} (data in $dir)"
nohup "${run_as[@]}" clickhouse-server --config-file="$dir/config.xml" \
	>"$dir/log/stdout.log" 2>&1 </dev/null &
echo $! >"$dir/clickhouse-server.pid"

for _ in $(seq 1 120); do
	if answers; then
		log "ready"
		echo "$dsn"
		exit 0
	fi
	if ! kill -0 "$(cat "$dir/clickhouse-server.pid")" 2>/dev/null; then
		log "clickhouse-server exited; its logs:"
		tail -n 50 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
		exit 1
	fi
	sleep 0.5
done
log "clickhouse-server did not answer within 60s; its logs:"
tail -n 50 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
exit 1
