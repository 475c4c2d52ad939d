# bench/lib.sh: process handling shared by bench/run.sh and bench/ab.sh.
# Source it after setting tmp (the scratch directory, holding the bench
# binary); the sourcing script's EXIT trap calls stop_started.

# started holds the PIDs of every background process still running that
# the script started; stop_started ends exactly those.
started=()

# forget PID: PID has ended (and was waited for).
forget() {
	local keep=() p
	for p in "${started[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	started=("${keep[@]}")
}

stop_started() {
	local p
	for p in "${started[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	sleep 0.3
	# A recorded PID may be a timeout(1) wrapper, which leads a process
	# group of its own: KILL the group, so that the proxy under it (and
	# socat's forked children) go too.
	for p in "${started[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}

# start_upstreams LIFE: runs the upstream servers (bench upstream) for at
# most LIFE seconds and sources their addresses: SINK SOURCE ECHO TLSECHO
# CONTROL CA_FILE.
start_upstreams() {
	"$tmp/bench" upstream -dir "$tmp" -env-file "$tmp/up.env" -timeout "$1s" >"$tmp/upstream.log" 2>&1 &
	started+=($!)
	for _ in $(seq 200); do [[ -e $tmp/up.env ]] && break; sleep 0.05; done
	if [[ ! -e $tmp/up.env ]]; then
		cat "$tmp/upstream.log" >&2
		echo "bench: the upstream servers did not start" >&2
		exit 1
	fi
	. "$tmp/up.env"
}

# start_wrapped LIFE LOG PORT CMD...: runs CMD under timeout(1) for at
# most LIFE seconds, its output to LOG, and waits until it listens on
# 127.0.0.1:PORT. Sets PROXY_WRAPPER (the timeout(1)) and PROXY_PID (the
# proxy itself, the process tree to measure). On failure it stops what
# it started and returns 1.
start_wrapped() {
	local life=$1 log=$2 port=$3
	shift 3
	timeout -s KILL "${life}s" "$@" >"$log" 2>&1 &
	PROXY_WRAPPER=$!
	started+=("$PROXY_WRAPPER")
	PROXY_PID=""
	for _ in $(seq 250); do
		PROXY_PID=$(pgrep -P "$PROXY_WRAPPER" | head -n1 || true)
		[[ -n $PROXY_PID ]] && break
		kill -0 "$PROXY_WRAPPER" 2>/dev/null || break
		sleep 0.02
	done
	if [[ -z $PROXY_PID ]] ||
		! "$tmp/bench" waitlisten -port "$port" -pid "$PROXY_PID" -timeout 10s 2>>"$log"; then
		stop_proxy
		return 1
	fi
}

# stop_proxy stops what start_wrapped started: TERM, then KILL after 5 s.
stop_proxy() {
	kill -TERM "$PROXY_WRAPPER" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$PROXY_WRAPPER" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$PROXY_WRAPPER" 2>/dev/null; then
		[[ -n $PROXY_PID ]] && kill -KILL "$PROXY_PID" 2>/dev/null || true
		kill -KILL "$PROXY_WRAPPER" 2>/dev/null || true
	fi
	wait "$PROXY_WRAPPER" 2>/dev/null || true
	forget "$PROXY_WRAPPER"
}
