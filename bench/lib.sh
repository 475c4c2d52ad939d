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
	for p in "${started[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
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

# child_of WRAPPER: prints the PID of WRAPPER's child (the proxy under
# timeout(1)), waiting up to 5 s for it; prints nothing if there is none.
child_of() {
	local pid=""
	for _ in $(seq 250); do
		pid=$(pgrep -P "$1" | head -n1 || true)
		[[ -n $pid ]] && break
		kill -0 "$1" 2>/dev/null || break
		sleep 0.02
	done
	echo "$pid"
}
