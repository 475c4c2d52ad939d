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

  --quick          short runs, 1 repetition (about 2 minutes)
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
  --out FILE       markdown report (default bench/results.md); the raw JSON
                   lines go beside it as FILE with .jsonl
  -h, --help       this text
EOF
}

cmdline="$*"
all_targets="direct,relay-never,relay-verified,haproxy,nginx,socat,iocopy"
quick=0 install=0 reps="" warmup="" duration="" sessions=3000
targets=$all_targets out="bench/results.md" groups="c2u,u2c,echo,idle,tls"
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

# ---------------------------------------------------------------- upstream

log "starting the upstream servers"
start_upstreams "$life"

# ---------------------------------------------------------------- proxies

# write_haproxy FILE PORT UPSTREAM TLS. maxconn is sized to the idle test:
# HAProxy wants about 2.5 fds per maxconn (two sockets and splice pipes)
# and refuses to start when ulimit -n is below that.
write_haproxy() {
	local ssl=""
	(($4)) && ssl=" ssl verify required ca-file $CA_FILE verifyhost localhost"
	cat >"$1" <<EOF
global
    maxconn $((sessions + 1000))
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
	local load="" ssl=""
	[[ -e $nginx_stream_module ]] && load="load_module $nginx_stream_module;"
	(($4)) && ssl="proxy_ssl on; proxy_ssl_verify on; proxy_ssl_trusted_certificate $CA_FILE;
        proxy_ssl_name localhost; proxy_ssl_session_reuse on;"
	cat >"$1/nginx.conf" <<EOF
$load
daemon off;
worker_processes auto;
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

jsonl=$tmp/results.jsonl
: >"$jsonl"

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
	echo "- relay: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')$( ((have_relay)) || echo ', not built')"
	command -v haproxy >/dev/null && echo "- $(haproxy -v 2>&1 | head -n1)"
	command -v nginx >/dev/null && echo "- $(nginx -v 2>&1 | head -n1)"
	command -v socat >/dev/null && echo "- $(socat -V 2>&1 | grep -m1 'socat version')"
	command -v openssl >/dev/null && echo "- $(openssl version)"
	echo "- settings: $reps rep(s), warm-up $warmup, measured $duration, groups $groups, $sessions idle sessions, ulimit -n $nofile"
	echo "- command: \`bash bench/run.sh $cmdline\`"
	echo "- started: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$facts"

# ---------------------------------------------------------------- run

# in_groups NAME: whether --groups includes NAME.
in_groups() { [[ ,$groups, == *,$1,* ]]; }

start=$SECONDS
log "targets: ${run_targets[*]}; $reps rep(s), warm-up $warmup, measured $duration"
for rep in $(seq "$reps"); do
	for target in "${run_targets[@]}"; do
		log "rep $rep/$reps: $target ($((SECONDS - start))s elapsed)"
		if in_groups c2u; then with_proxy "$SINK" 0 step_c2u; fi
		if in_groups u2c; then with_proxy "$SOURCE" 0 step_u2c; fi
		if in_groups echo; then with_proxy "$ECHO" 0 step_echo; fi
		if in_groups idle; then with_proxy "$ECHO" 0 step_idle; fi
		if in_groups tls; then with_proxy "$TLSECHO" 1 step_tls; fi
	done
done
log "measured in $((SECONDS - start))s"

mkdir -p "$(dirname "$out")"
cp "$jsonl" "${out%.md}.jsonl"
mode=full
((quick)) && mode=quick
"$tmp/bench" report -in "$jsonl" -out "$out" -facts "$facts" -notes "$notes" \
	-targets "$all_targets" -title "relay benchmark ($mode)"
log "wrote $out and ${out%.md}.jsonl"
cat "$out"
