#!/usr/bin/env bash
# bench/ab.sh: compare two builds of the bundled proxy on one load, in
# alternating pairs, and print each figure's medians and in how many pairs
# the new build did better. On a small noisy machine this is the way to
# see a change of a few percent: both builds run in the same minutes, and
# the order within a pair alternates (base first, then new first), because
# the first of a pair tends to win whichever build it is. With
# --base-reuse and --new-reuse it compares two reuse configurations the
# same way (of one build, with --base and --new the same revision), and
# with --base-args and --new-args one build with and without a feature.
#
# Everything listens on and dials 127.0.0.1 only; every process started
# here is bounded in time and killed on exit. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	cat <<'EOF'
usage: bash bench/ab.sh [flags]

  --base REV       git revision of the base build (default HEAD)
  --new REV        git revision of the new build (default: the work tree)
  --mode M         churn (default), rr, throughput or idle
  --conns N        churn workers, rr conns, streams or idle sessions
                   (default: 16, 32, 16, 3000)
  --dir D          throughput direction: c2u (default) or u2c
  --reuse R        never (default, with -spares 16), verified (the fence
                   PING/+PONG) or redis (-protocol redis: the Redis reset)
  --base-reuse R   --reuse for the base build only (default: --reuse)
  --new-reuse R    --reuse for the new build only (default: --reuse)
  --base-args 'F'  extra proxy flags for the base side, after ab.sh's own
                   (so they win); split at white space, no quotes or globs
                   honoured inside: one shell word, e.g.
                   --new-args '-route x.test=127.0.0.1:1 -send-proxy v1';
                   the text $ECHO, $SINK, $SOURCE or $TLSECHO in it becomes
                   that bench upstream's address: '-route x.test=$ECHO'
  --new-args 'F'   the same for the new side
  --base-load-args 'F', --new-load-args 'F'
                   extra `bench load` flags for one side, split the same
                   way, e.g. --new-load-args '-proxy-header v1' with
                   --new-args '-accept-proxy 127.0.0.1/32'
  --tls            churn against the TLS upstream (the proxy originates TLS,
                   with -upstream-tls-curves X25519, as bench/run.sh)
  --pairs N        pairs of runs (default 6); an even count lets each
                   build go first equally often
  --warmup D       warm-up before each measurement (default 1s)
  --duration D     measured window (default 4s); D is N ms, s or m
  --out FILE       keep the raw JSON lines in FILE
  -h, --help       this text
EOF
}

base=HEAD new="" mode=churn conns="" dir=c2u reuse=never base_reuse="" new_reuse="" tls=0 pairs=6
base_extra="" new_extra="" base_load_extra="" new_load_extra=""
warmup=1s duration=4s out=""
while (($#)); do
	case $1 in
	--base) base=$2; shift ;;
	--new) new=$2; shift ;;
	--mode) mode=$2; shift ;;
	--conns) conns=$2; shift ;;
	--dir) dir=$2; shift ;;
	--reuse) reuse=$2; shift ;;
	--base-reuse) base_reuse=$2; shift ;;
	--new-reuse) new_reuse=$2; shift ;;
	--base-args) base_extra=$2; shift ;;
	--new-args) new_extra=$2; shift ;;
	--base-load-args) base_load_extra=$2; shift ;;
	--new-load-args) new_load_extra=$2; shift ;;
	--tls) tls=1 ;;
	--pairs) pairs=$2; shift ;;
	--warmup) warmup=$2; shift ;;
	--duration) duration=$2; shift ;;
	--out) out=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "ab.sh: unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case $mode in
churn) : "${conns:=16}" ;;
rr) : "${conns:=32}" ;;
throughput) : "${conns:=16}" ;;
idle) : "${conns:=3000}" ;;
*) echo "ab.sh: --mode: want churn, rr, throughput or idle, not $mode" >&2; exit 2 ;;
esac
: "${base_reuse:=$reuse}" "${new_reuse:=$reuse}"
for r in "$reuse" "$base_reuse" "$new_reuse"; do
	case $r in never | verified | redis) ;; *) echo "ab.sh: --reuse, --base-reuse, --new-reuse: want never, verified or redis, not $r" >&2; exit 2 ;; esac
done
case $dir in c2u | u2c) ;; *) echo "ab.sh: --dir: want c2u or u2c, not $dir" >&2; exit 2 ;; esac
if ((tls)) && [[ $mode != churn ]]; then
	echo "ab.sh: --tls goes with --mode churn" >&2
	exit 2
fi
[[ $pairs =~ ^[1-9][0-9]*$ ]] || { echo "ab.sh: --pairs: want a positive count, not $pairs" >&2; exit 2; }
# secs D: whole seconds, rounded up, of a duration given as Nms, Ns or Nm.
secs() {
	case $1 in
	*ms) echo $(((${1%ms} + 999) / 1000)) ;;
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	esac
}
for d in "$warmup" "$duration"; do
	[[ $d =~ ^[0-9]+(ms|s|m)$ ]] || { echo "ab.sh: --warmup, --duration: want a whole number of ms, s or m, not $d" >&2; exit 2; }
done

log() { echo "== $*" >&2; }

tmp=$(mktemp -d /tmp/relay-ab.XXXXXX)
. bench/lib.sh
cleanup() {
	stop_started
	git worktree remove --force "$tmp/src-base" 2>/dev/null || true
	git worktree remove --force "$tmp/src-new" 2>/dev/null || true
	rm -rf "$tmp"
	git worktree prune 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build NAME REV GIVEN: builds the proxy at REV (empty: the work tree) as
# $tmp/NAME; GIVEN is REV as the command line named it.
build() {
	local name=$1 rev=$2 given=$3 src=.
	if [[ -n $rev ]]; then
		src=$tmp/src-$name
		git worktree add --quiet --detach "$src" "$rev"
	fi
	(cd "$src" && go build -o "$tmp/$name" ./examples/proxy)
	log "$name: ${given:-work tree} ($(cd "$src" && git rev-parse --short HEAD)$([[ -n $rev ]] || git diff --quiet HEAD || echo ', modified'))"
}
# Resolve the revisions once, before building: with --base HEAD --new
# HEAD, a commit landing between the two builds must not make them differ.
for v in base new; do
	rev=${!v}
	[[ -z $rev ]] && continue
	if ! c=$(git rev-parse --verify --quiet "$rev^{commit}"); then
		echo "ab.sh: --$v: no such revision: $rev" >&2
		exit 2
	fi
	printf -v "$v" %s "$c"
	printf -v "${v}_given" %s "$rev"
done
log "building"
go build -o "$tmp/bench" ./examples/bench
build base "$base" "${base_given:-}"
build new "$new" "${new_given:-}"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Bounds: a load run gets its warm-up and measured window plus a minute
# (idle sets up thousands of sessions); everything lives for all the runs.
per_run=$(($(secs "$warmup") + $(secs "$duration") + 60))
life=$((pairs * 2 * (per_run + 15) + 60))
start_upstreams "$life"

up=$ECHO server=echo load_args=(-mode "$mode" -conns "$conns")
case $mode in
throughput)
	if [[ $dir == c2u ]]; then up=$SINK server=sink; else up=$SOURCE server=source; fi
	load_args+=(-dir "$dir") ;;
idle) load_args+=(-settle 1s) ;;
esac
if ((tls)); then up=$TLSECHO server=tlsecho; fi
load_args+=(-server "$server")

# proxy_args R: sets args to the proxy's flags for reuse R.
proxy_args() {
	args=(-upstream "$up" -log-level warn)
	case $1 in
	verified) args+=(-reuse verified -fence-send 'PING\r\n' -fence-expect '+PONG\r\n') ;;
	redis) args+=(-protocol redis) ;; # implies -reuse verified
	never) args+=(-reuse never -spares 16) ;;
	esac
	((tls)) && args+=(-upstream-tls -upstream-tls-ca "$CA_FILE" -upstream-tls-curves X25519)
	return 0
}
# words S: sets w to S split at white space (no quotes, no globs), with
# the literal text $ECHO, $SINK, $SOURCE or $TLSECHO in a word replaced by
# that upstream's address.
words() {
	local i x
	w=()
	read -r -a w <<<"$1" || true
	for i in "${!w[@]}"; do
		x=${w[i]//'$ECHO'/$ECHO} x=${x//'$SINK'/$SINK}
		x=${x//'$SOURCE'/$SOURCE} w[i]=${x//'$TLSECHO'/$TLSECHO}
	done
}
proxy_args "$base_reuse"
words "$base_extra"
base_extra=${w[*]}
base_args=("${args[@]}" "${w[@]}")
proxy_args "$new_reuse"
words "$new_extra"
new_extra=${w[*]}
new_args=("${args[@]}" "${w[@]}")
words "$base_load_extra"
base_load=("${w[@]}")
words "$new_load_extra"
new_load=("${w[@]}")

jsonl=$tmp/ab.jsonl
: >"$jsonl"
# measure NAME PAIR: one run of build NAME, labelled with the pair's number.
measure() {
	local name=$1 pair=$2 port args load
	if [[ $name == base ]]; then
		args=("${base_args[@]}") load=("${load_args[@]}" "${base_load[@]}")
	else
		args=("${new_args[@]}") load=("${load_args[@]}" "${new_load[@]}")
	fi
	port=$("$tmp/bench" freeport)
	if ! start_wrapped "$life" "$tmp/$name.log" "$port" "$tmp/$name" -listen "127.0.0.1:$port" "${args[@]}"; then
		cat "$tmp/$name.log" >&2
		echo "ab.sh: $name did not start" >&2
		exit 1
	fi
	if ! timeout -s KILL "$per_run" "$tmp/bench" load -addr "127.0.0.1:$port" -pid "$PROXY_PID" -control "$CONTROL" \
		-target "$name" -rep "$pair" -warmup "$warmup" -duration "$duration" -json "$jsonl" "${load[@]}" >&2; then
		# load writes its JSON line even when the run counted errors, and
		# compare then keeps the run and notes its errors.
		echo "ab.sh: $name, pair $pair: bench load failed or counted errors (compare notes a run it kept)" >&2
	fi
	stop_proxy
}

if [[ $base_reuse == "$new_reuse" ]]; then
	log "$pairs pair(s) of $mode (${load_args[*]}), reuse $reuse"
else
	log "$pairs pair(s) of $mode (${load_args[*]}), reuse: base $base_reuse, new $new_reuse"
fi
[[ -z $base_extra$base_load_extra ]] || log "base adds: proxy ${base_extra:-(nothing)}; load ${base_load_extra:-(nothing)}"
[[ -z $new_extra$new_load_extra ]] || log "new adds: proxy ${new_extra:-(nothing)}; load ${new_load_extra:-(nothing)}"
for pair in $(seq "$pairs"); do
	if ((pair % 2)); then
		measure base "$pair"
		measure new "$pair"
	else
		measure new "$pair"
		measure base "$pair"
	fi
done
[[ -n $out ]] && cp "$jsonl" "$out"
"$tmp/bench" compare -in "$jsonl" -a base -b new
