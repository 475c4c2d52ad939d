#!/usr/bin/env bash
# bench/run.sh: measure relay against the physical limit (direct) and its
# peers (HAProxy, nginx stream, socat, a plain io.Copy Go proxy), side by
# side in one run on this machine, and write a markdown table.
#
# Everything listens on and dials 127.0.0.1 only. Every process the script
# starts is bounded in time (timeout(1) or its own -timeout) and is killed
# on exit. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
	cat <<'EOF'
usage: bash bench/run.sh [flags]

  --quick          short runs, 1 repetition (about 4 minutes, both layouts)
  --install        apt-get install missing peers first (needs root):
                   haproxy nginx libnginx-mod-stream socat
  --reps N         repetitions; each figure is the median (default 3; quick 1)
  --warmup D       warm-up before each measurement (default 1s; quick 250ms)
  --duration D     measured window (default 4s; quick 1s)
  --sessions N     idle sessions held (default 3000)
  --targets LIST   comma-separated subset of:
                   direct,relay-never,relay-verified,haproxy,nginx,socat,iocopy
  --groups LIST    comma-separated subset of the test groups (default all):
                   c2u,u2c,echo,idle,tls
  --layouts LIST   where the processes run, comma-separated (default both):
                   shared  the OS schedules proxy, load and upstreams on
                           every CPU the script may use
                   pinned  the proxy under test (all its processes and
                           threads) on --proxy-cpus, the load generator and
                           the upstream servers on --load-cpus (taskset)
                   each layout gets its own tables and its own best peer
  --pin            the pinned layout only (--layouts pinned)
  --proxy-cpus L   CPUs of the proxy when pinned (taskset list; default 1)
  --load-cpus L    CPUs of the load and upstreams when pinned (default 0)
  --out FILE       markdown report (default bench/results.md); the raw JSON
                   lines go beside it, one file per layout: FILE with
                   .shared.jsonl and .pinned.jsonl in place of .md
  -h, --help       this text
EOF
}

cmdline="$*"
all_targets="direct,relay-never,relay-verified,haproxy,nginx,socat,iocopy"
quick=0 install=0 reps="" warmup="" duration="" sessions=3000
targets=$all_targets out="bench/results.md" groups="c2u,u2c,echo,idle,tls"
layouts="shared,pinned" layouts_given=0 proxy_cpus=1 load_cpus=0
while (($#)); do
	case $1 in
	--quick) quick=1 ;;
	--install) install=1 ;;
	--reps) reps=$2; shift ;;
	--warmup) warmup=$2; shift ;;
	--duration) duration=$2; shift ;;
	--sessions) sessions=$2; shift ;;
	--targets) targets=$2; shift ;;
	--groups) groups=$2; shift ;;
	--out) out=$2; shift ;;
	--layouts) layouts=$2 layouts_given=1; shift ;;
	--pin) layouts=pinned layouts_given=1 ;;
	--proxy-cpus) proxy_cpus=$2; shift ;;
	--load-cpus) load_cpus=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown flag $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
[[ -n $groups ]] || { echo "run.sh: --groups: empty" >&2; usage >&2; exit 2; }
for g in ${groups//,/ }; do
	case $g in
	c2u | u2c | echo | idle | tls) ;;
	*) echo "run.sh: --groups: unknown group $g" >&2; usage >&2; exit 2 ;;
	esac
done
[[ -n $layouts ]] || { echo "run.sh: --layouts: empty" >&2; usage >&2; exit 2; }
seen=,
for l in ${layouts//,/ }; do
	case $l in
	shared | pinned) ;;
	*) echo "run.sh: --layouts: unknown layout $l" >&2; usage >&2; exit 2 ;;
	esac
	[[ $seen != *,$l,* ]] || { echo "run.sh: --layouts: $l given twice" >&2; exit 2; }
	seen+=$l,
done
if ((quick)); then
	: "${reps:=1}" "${warmup:=250ms}" "${duration:=1s}"
	settle=300ms
else
	: "${reps:=3}" "${warmup:=1s}" "${duration:=4s}"
	settle=1s
fi
# Upper bound on the life of any process started here (seconds).
life=$((quick ? 900 : 3600))

log() { echo "== $*" >&2; }

tmp=$(mktemp -d /tmp/relay-bench.XXXXXX)
chmod 755 "$tmp" # nginx workers run as nobody
notes=$tmp/notes.md
: >"$notes"
note() {
	echo "- $*" >>"$notes"
	echo "note: $*" >&2
}

. bench/lib.sh

# ---------------------------------------------------------------- layouts

# cpus_of PID: the CPUs PID may run on, as /proc lists them ("0-1").
cpus_of() { awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
# The script's own CPUs: the shared layout's, restored after a pinned one.
all_cpus=$(cpus_of $$)
# as_listed CPUS: a taskset list as /proc lists it, or nothing when
# taskset cannot pin to it (no taskset, or no such CPU here).
as_listed() { taskset -c "$1" awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status 2>/dev/null || true; }
if [[ ,$layouts, == *,pinned,* ]]; then
	why=""
	if ! command -v taskset >/dev/null; then
		why="taskset (util-linux) is not installed"
	else
		proxy_list=$(as_listed "$proxy_cpus") load_list=$(as_listed "$load_cpus")
		if [[ -z $proxy_list || -z $load_list ]]; then
			why="cannot pin to --proxy-cpus $proxy_cpus and --load-cpus $load_cpus here (this script may use CPUs $all_cpus)"
		elif [[ $proxy_list == "$load_list" ]]; then
			why="--proxy-cpus and --load-cpus are the same CPUs ($proxy_list)"
		fi
	fi
	if [[ -n $why ]]; then
		if ((layouts_given)); then
			echo "run.sh: the pinned layout: $why" >&2
			exit 2
		fi
		layouts=shared
		note "pinned layout skipped: $why"
	fi
fi
IFS=, read -r -a run_layouts <<<"$layouts"
declare -A layout_about=(
	[shared]="the OS schedules the proxy, the load and the upstreams on CPUs $all_cpus"
	[pinned]="the proxy on CPU ${proxy_list:-$proxy_cpus}, the load and the upstreams on CPU ${load_list:-$load_cpus}, by taskset"
)

# use_layout LAYOUT: from here on, what the script starts runs as LAYOUT
# has it. The script's shell takes the load's CPUs (the load generator,
# the upstreams and every helper inherit them); start_proxy puts the
# proxy on its own. The upstream servers are started afresh, so that Go
# sizes their GOMAXPROCS to their CPUs.
layout=""
upstream_pid=""
use_layout() {
	layout=$1
	if [[ $layout == pinned ]]; then
		taskset -cp "$load_cpus" $$ >/dev/null
	else
		taskset -cp "$all_cpus" $$ >/dev/null 2>&1 || true
	fi
	if [[ -n $upstream_pid ]]; then
		kill -TERM "$upstream_pid" 2>/dev/null || true
		wait "$upstream_pid" 2>/dev/null || true
		forget "$upstream_pid"
	fi
	rm -f "$tmp/up.env"
	log "starting the upstream servers ($layout)"
	start_upstreams "$life"
	upstream_pid=${started[-1]}
	jsonl=$tmp/results.$layout.jsonl
	touch "$jsonl"
	[[ $layout == pinned ]] && check_pinned "$upstream_pid" "$load_list" "the upstream servers"
	return 0
}

# proc_tree PID: PID and all its descendants.
proc_tree() {
	local p
	echo "$1"
	for p in $(pgrep -P "$1"); do proc_tree "$p"; done
}

# check_pinned PID CPUS WHAT: notes (once per WHAT) when a thread of
# PID's process tree may run on other CPUs than CPUS.
declare -A pin_noted=()
check_pinned() {
	local p t a bad=""
	for p in $(proc_tree "$1"); do
		for t in /proc/"$p"/task/*; do
			a=$(cpus_of "${t#/proc/}")
			[[ -z $a || $a == "$2" ]] || bad+=" pid $p thread ${t##*/}: $a;"
		done
	done
	if [[ -n $bad && -z ${pin_noted[$3]:-} ]]; then
		pin_noted[$3]=1
		note "pinned layout: $3 not on CPU $2 alone:${bad%;}"
	fi
}
cleanup() {
	stop_started
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- peers

nginx_stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
have_nginx_stream() {
	command -v nginx >/dev/null &&
		{ [[ -e $nginx_stream_module ]] || nginx -V 2>&1 | grep -q -- '--with-stream '; }
}
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v nginx >/dev/null || missing+=(nginx)
have_nginx_stream || missing+=(libnginx-mod-stream)
command -v socat >/dev/null || missing+=(socat)
if ((${#missing[@]})); then
	if ((install)) && [[ $(id -u) == 0 ]]; then
		log "installing ${missing[*]}"
		# Keep Debian's maintainer scripts from starting nginx or HAProxy as
		# services (nginx would take port 80): policy-rc.d says no.
		policy=/usr/sbin/policy-rc.d made_policy=0
		if [[ ! -e $policy ]]; then
			printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
		fi
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
			note "apt-get install ${missing[*]} failed"
		((made_policy)) && rm -f "$policy"
	else
		note "not installed: ${missing[*]}; their targets are skipped. Install with: sudo apt-get install haproxy nginx libnginx-mod-stream socat (or run this script as root with --install)"
	fi
fi

# ---------------------------------------------------------------- build

log "building bench and relay"
go build -o "$tmp/bench" ./examples/bench
have_relay=0
if go build -o "$tmp/relay" ./examples/proxy 2>"$tmp/relay-build.log"; then
	have_relay=1
else
	note "relay targets skipped: \`go build ./examples/proxy\` failed: $(head -c 300 "$tmp/relay-build.log" | tr '\n' ' ')"
fi

available() {
	case $1 in
	direct | iocopy) return 0 ;;
	relay-never | relay-verified) ((have_relay)) ;;
	haproxy) command -v haproxy >/dev/null ;;
	nginx) have_nginx_stream ;;
	socat) command -v socat >/dev/null ;;
	*) return 1 ;;
	esac
}
run_targets=()
IFS=, read -r -a wanted <<<"$targets"
for t in "${wanted[@]}"; do
	if [[ ,$all_targets, != *,$t,* ]]; then
		echo "run.sh: unknown target $t (want some of $all_targets)" >&2
		exit 2
	fi
	if available "$t"; then
		run_targets+=("$t")
	else
		case $t in relay-*) ;; *) note "$t skipped: not installed" ;; esac
	fi
done

# ---------------------------------------------------------------- limits

# 3000 idle sessions cost a proxy two fds each: lift the soft limit to the
# hard one for everything started from here on (proxies inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((nofile < 2 * sessions + 1000)); then
	note "ulimit -n is $nofile: too low for $sessions idle sessions (want $((2 * sessions + 1000)))"
fi

# ---------------------------------------------------------------- proxies

# write_haproxy FILE PORT UPSTREAM TLS. maxconn is sized to the idle test:
# HAProxy wants about 2.5 fds per maxconn (two sockets and splice pipes)
# and refuses to start when ulimit -n is below that.
write_haproxy() {
	local ssl="" nbthread=""
	# Pinned, one thread on the one CPU (HAProxy would size nbthread to
	# its CPUs anyway; say so).
	[[ $layout == pinned ]] && nbthread=$'\n    nbthread 1'
	(($4)) && ssl=" ssl verify required ca-file $CA_FILE verifyhost localhost"
	cat >"$1" <<EOF
global
    maxconn $((sessions + 1000))$nbthread
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    option splice-request
    option splice-response
    no option splice-auto
frontend fe
    bind 127.0.0.1:$2
    default_backend be
backend be
    server up $3$ssl
EOF
}

# write_nginx DIR PORT UPSTREAM TLS
write_nginx() {
	local load="" ssl="" workers=auto
	# Pinned, one worker: "auto" counts the machine's CPUs, not the
	# ones the worker may run on.
	[[ $layout == pinned ]] && workers=1
	[[ -e $nginx_stream_module ]] && load="load_module $nginx_stream_module;"
	(($4)) && ssl="proxy_ssl on; proxy_ssl_verify on; proxy_ssl_trusted_certificate $CA_FILE;
        proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
	cat >"$1/nginx.conf" <<EOF
$load
daemon off;
worker_processes $workers;
worker_rlimit_nofile $nofile;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 10000; }
stream {
    server {
        listen 127.0.0.1:$2;
        proxy_pass $3;
        proxy_connect_timeout 5s;
        proxy_timeout 10m;
        $ssl
    }
}
EOF
}

declare -A start_failed=()

# start_proxy TARGET UPSTREAM TLS: starts the target in front of UPSTREAM
# (TLS=1: the proxy originates TLS to it) and waits until it listens.
# Sets PROXY_PORT, and PROXY_PID and PROXY_WRAPPER (see start_wrapped).
start_proxy() {
	local target=$1 up=$2 tls=$3
	local dir=$tmp/$target
	mkdir -p "$dir" && chmod 755 "$dir"
	PROXY_PORT=$("$tmp/bench" freeport)
	local listen=127.0.0.1:$PROXY_PORT cmd=()
	case $target in
	relay-never)
		cmd=("$tmp/relay" -listen "$listen" -upstream "$up" -reuse never -spares 16) ;;
	relay-verified)
		cmd=("$tmp/relay" -listen "$listen" -upstream "$up" -reuse verified
			-fence-send 'PING\r\n' -fence-expect '+PONG\r\n') ;;
	haproxy)
		write_haproxy "$dir/haproxy.cfg" "$PROXY_PORT" "$up" "$tls"
		cmd=(haproxy -db -f "$dir/haproxy.cfg") ;;
	nginx)
		write_nginx "$dir" "$PROXY_PORT" "$up" "$tls"
		cmd=(nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf") ;;
	socat)
		local to="TCP:$up"
		((tls)) && to="OPENSSL:$up,cafile=$CA_FILE,verify=1,commonname=localhost"
		cmd=(socat "TCP-LISTEN:$PROXY_PORT,bind=127.0.0.1,fork,reuseaddr,backlog=1024" "$to") ;;
	iocopy)
		cmd=("$tmp/bench" iocopy -listen "$listen" -upstream "$up" -timeout "${life}s")
		((tls)) && cmd+=(-upstream-tls-ca "$CA_FILE") ;;
	esac
	if ((tls)) && [[ $target == relay-* ]]; then
		# X25519 alone: the key exchange HAProxy and nginx negotiate
		# (OpenSSL 3.0 has no ML-KEM), so that the figures compare
		# proxies, not key exchanges. relay's default adds ML-KEM; its
		# cost is in bench/README.md.
		cmd+=(-upstream-tls -upstream-tls-ca "$CA_FILE" -upstream-tls-curves X25519)
	fi
	# Pinned: taskset execs the proxy on its CPUs; every process and
	# thread it starts (nginx's workers, socat's children) inherits them.
	[[ $layout == pinned ]] && cmd=(taskset -c "$proxy_cpus" "${cmd[@]}")
	echo "${cmd[*]}" >"$dir/cmd"
	if ! start_wrapped "$life" "$dir/log" "$PROXY_PORT" "${cmd[@]}"; then
		# One note per target and kind of upstream, not per attempt.
		if [[ -z ${start_failed[$target/$tls]:-} ]]; then
			note "$target did not start in front of $up (tls=$tls), so its figures there are missing: $(tail -c 400 "$dir/log" | tr '\n' ' ')"
		fi
		start_failed[$target/$tls]=1
		return 1
	fi
}

# ---------------------------------------------------------------- load

# jsonl is the current layout's results file (see use_layout).
jsonl=""

# load ARGS...: one measurement against the current target.
load() {
	local where=()
	if [[ $target != direct ]]; then
		where=(-addr "127.0.0.1:$PROXY_PORT" -pid "$PROXY_PID")
	fi
	local before after
	before=$(wc -l <"$jsonl")
	timeout -s KILL 300 "$tmp/bench" load -control "$CONTROL" -target "$target" -rep "$rep" \
		-warmup "$warmup" -duration "$duration" -json "$jsonl" "${where[@]}" "$@" >&2 || true
	after=$(wc -l <"$jsonl")
	((after > before)) || note "$target rep $rep: no result from \`bench load $*\`"
}

# with_proxy UPSTREAM TLS STEP: runs STEP against a fresh proxy of the
# current target in front of UPSTREAM (or against UPSTREAM itself, direct).
with_proxy() {
	if [[ $target == direct ]]; then
		"$3"
	elif start_proxy "$target" "$1" "$2"; then
		"$3"
		# After the step, when nginx's workers are surely up.
		[[ $layout == pinned ]] && check_pinned "$PROXY_PID" "$proxy_list" "$target"
		stop_proxy
	fi
}

step_c2u() {
	load -mode throughput -server sink -dir c2u -conns 1
	load -mode throughput -server sink -dir c2u -conns 16
}
step_u2c() {
	load -mode throughput -server source -dir u2c -conns 1
	load -mode throughput -server source -dir u2c -conns 16
}
step_echo() {
	load -mode rr -server echo -conns 1
	load -mode rr -server echo -conns 32
	load -mode churn -server echo -conns 16
}
step_idle() {
	load -mode idle -server echo -conns "$sessions" -settle "$settle"
}
step_tls() {
	local client=()
	[[ $target == direct ]] && client=(-client-tls "$CA_FILE")
	load -mode churn -server tlsecho -conns 16 "${client[@]}"
}

# ---------------------------------------------------------------- facts

facts=$tmp/facts.md
{
	echo "- nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "- kernel: $(uname -srm)"
	echo "- $(go version)"
	echo "- relay: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo " (work tree modified: $(git diff --name-only HEAD | paste -sd, - | sed 's/,/, /g'))")$( ((have_relay)) || echo ', not built')"
	command -v haproxy >/dev/null && echo "- $(haproxy -v 2>&1 | head -n1)"
	command -v nginx >/dev/null && echo "- $(nginx -v 2>&1 | head -n1)"
	command -v socat >/dev/null && echo "- $(socat -V 2>&1 | grep -m1 'socat version')"
	command -v openssl >/dev/null && echo "- $(openssl version)"
	echo "- settings: $reps rep(s), warm-up $warmup, measured $duration, groups $groups, $sessions idle sessions, ulimit -n $nofile"
	echo "- layouts: $(for l in "${run_layouts[@]}"; do printf '%s (%s); ' "$l" "${layout_about[$l]}"; done | sed 's/; $//'), in turn within each repetition, the first of them alternating"
	[[ ,$layouts, == *,pinned,* ]] && echo "- pinned: nginx \`worker_processes 1\`, HAProxy \`nbthread 1\`, and the Go programs (relay, io.Copy, load, upstreams) size GOMAXPROCS to their CPUs; direct is the load and the upstreams on CPU $load_list with CPU $proxy_list idle: the most the load side can drive from its CPU. The shared layout keeps nginx's \`worker_processes auto\` and HAProxy's default threads (one per CPU)"
	echo "- command: \`bash bench/run.sh $cmdline\`"
	echo "- started: $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$facts"

# ---------------------------------------------------------------- run

# in_groups NAME: whether --groups includes NAME.
in_groups() { [[ ,$groups, == *,$1,* ]]; }

start=$SECONDS
log "targets: ${run_targets[*]}; layouts: ${run_layouts[*]}; $reps rep(s), warm-up $warmup, measured $duration"
for rep in $(seq "$reps"); do
	# The layouts take turns within a repetition, so that the machine's
	# drift (other work on it) reaches both alike; the first of a pair
	# tends to do better, so which goes first alternates.
	order=("${run_layouts[@]}")
	if ((rep % 2 == 0 && ${#order[@]} == 2)); then order=("${order[1]}" "${order[0]}"); fi
	for l in "${order[@]}"; do
		use_layout "$l"
		for target in "${run_targets[@]}"; do
			log "rep $rep/$reps, $layout: $target ($((SECONDS - start))s elapsed)"
			if in_groups c2u; then with_proxy "$SINK" 0 step_c2u; fi
			if in_groups u2c; then with_proxy "$SOURCE" 0 step_u2c; fi
			if in_groups echo; then with_proxy "$ECHO" 0 step_echo; fi
			if in_groups idle; then with_proxy "$ECHO" 0 step_idle; fi
			if in_groups tls; then with_proxy "$TLSECHO" 1 step_tls; fi
		done
	done
done
log "measured in $((SECONDS - start))s"
echo "- wall time of the measurements: $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$facts"

mkdir -p "$(dirname "$out")"
mode=full
((quick)) && mode=quick
report_args=()
for l in "${run_layouts[@]}"; do
	cp "$tmp/results.$l.jsonl" "${out%.md}.$l.jsonl"
	report_args+=(-in "$l=$tmp/results.$l.jsonl" -layout "$l=${layout_about[$l]}")
done
"$tmp/bench" report "${report_args[@]}" -out "$out" -facts "$facts" -notes "$notes" \
	-targets "$all_targets" -title "relay benchmark ($mode)"
log "wrote $out and the JSON lines beside it: $(for l in "${run_layouts[@]}"; do printf '%s ' "${out%.md}.$l.jsonl"; done)"
cat "$out"
