#!/usr/bin/env bash
# Chain benchmark: sipp -> edge -> registrar over UDP, open-loop rate steps.
#
#   deploy/bench/chain.sh [options]
#     -S pinhole|kamailio|both  system under test (default pinhole; both =
#                               side by side, Kamailio first, same load)
#     -T chain|registrar        sipp -> edge -> registrar (default) or
#                               sipp -> registrar alone
#     -s memory|redis           Pinhole's store (default memory)
#     -a none|md5               no auth (default) or MD5 digest (401 + 200)
#     -k SOCKETS                client sockets (default 1000; 1 = one socket)
#     -r "R1 R2 ..."            offered REGISTER/s per step (default
#                               "1000 2000 3000 4000 5000 6000 8000 10000")
#     -d SECONDS                step length (default 10)
#     -n AORS                   AORs, registered once before the steps
#                               (default 100000)
#     -c CHILDREN               Kamailio children, 4 or 8 (default 4)
#     -x                        keep stepping after the first step that is
#                               not sustained (overload behaviour)
#     -i SECONDS                after the last step, stay idle this long and
#                               print PSS again (memory after a load step)
#     -C                        Pinhole's edge with separate access (UAs) and
#                               core (registrar) listeners, as deployed with
#                               two interfaces; default one listener for both
#
# Per step it prints the offered and achieved rate, failed calls,
# retransmissions, kernel drops on the system's own UDP sockets (the
# "drops" column of /proc/net/udp for its ports), CPU of each process (% of
# one core, Kamailio's children summed), PSS after the step, and p50/p99
# response time of the final REGISTER (sipp rtd, millisecond resolution).
# A step is sustained with under 0.1 % failed calls, under 0.1 %
# retransmissions (per call) and at least 97 % of the offered rate.
#
# Kamailio side: Debian's kamailio package, run with the anchor
# configurations from $ANCHORS/kamailio (default: ../shared/anchors next to
# the repository). They are copied into the run directory at run time, with
# their fixed ports and control socket rewritten to free ones; they are not
# part of this repository. The load (reg-outbound*.xml, same injection
# file) is identical for both systems.
#
# Needs: go, sipp (sip-tester), python3, redis-server (for -s redis),
# kamailio (for -S kamailio|both). Everything runs on 127.0.0.1. Absolute
# rates depend on the machine and on whatever else runs on it; compare only
# figures from one run.
set -euo pipefail

sut=pinhole topo=chain store=memory authm=none sockets=1000
rates="1000 2000 3000 4000 5000 6000 8000 10000" step=10 aors=100000
children=4 keepgoing=0 idle=0 split=0
while getopts "S:T:s:a:k:r:d:n:c:xi:C" o; do
  case $o in
    S) sut=$OPTARG ;; T) topo=$OPTARG ;; s) store=$OPTARG ;; a) authm=$OPTARG ;;
    k) sockets=$OPTARG ;; r) rates=$OPTARG ;; d) step=$OPTARG ;; n) aors=$OPTARG ;;
    c) children=$OPTARG ;; x) keepgoing=1 ;; i) idle=$OPTARG ;; C) split=1 ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
  esac
done

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
anchors=${ANCHORS:-}
if [ -z "$anchors" ]; then # ../shared/anchors next to the checkout (or a worktree of it)
  for a in "$repo/../shared/anchors" "$repo/../../shared/anchors"; do
    [ -d "$a" ] && { anchors=$(cd "$a" && pwd); break; }
  done
fi
run=$(mktemp -d /tmp/pinhole-chain.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "${KEEP_RUN:-}" ] || rm -rf "$run"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)
realm=sip.test

# freeport: a port free on 127.0.0.1 for both UDP and TCP (retried: on a
# busy machine the TCP side of a free UDP port is often taken).
freeport() { python3 -c 'import socket
for _ in range(200):
    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0))
    t=socket.socket()
    try:
        t.bind(("127.0.0.1",s.getsockname()[1]))
    except OSError:
        continue
    print(s.getsockname()[1]); break
else:
    raise SystemExit("no free UDP+TCP port")'; }

# wait_udp PORT: until something listens on 127.0.0.1:PORT/udp.
wait_udp() {
  local hex; hex=$(printf '0100007F:%04X' "$1")
  for _ in $(seq 1 300); do
    grep -q " $hex " /proc/net/udp && return 0
    sleep 0.1
  done
  echo "nothing listens on udp 127.0.0.1:$1" >&2; return 1
}

# udp_drops PORT...: kernel drops on our sockets bound to these ports.
udp_drops() {
  local pat="" p
  for p in "$@"; do pat="$pat|$(printf '0100007F:%04X' "$p")"; done
  awk -v pat="^(${pat#|})$" 'NR>1 && $2 ~ pat {d+=$NF} END{print d+0}' /proc/net/udp
}

# tree PID: PID and its children (Kamailio forks its workers).
tree() { echo "$1"; pgrep -P "$1" || true; }
cpu_ticks() {
  local t=0 p
  for p in $(tree "$1"); do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(awk '{sub(/.*\) /,""); print $12+$13}' "/proc/$p/stat")))
  done
  echo "$t"
}
pss_mb() {
  local k=0 p
  for p in $(tree "$1"); do
    [ -r "/proc/$p/smaps_rollup" ] || continue
    k=$((k + $(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup")))
  done
  echo $((k / 1024))
}

users_csv() {
  python3 - "$aors" > "$run/users.csv" <<'EOF'
import sys, uuid
n = int(sys.argv[1])
print("SEQUENTIAL")
for i in range(1, n + 1):
    print(f"user{i};pw-user{i};{uuid.UUID(int=i)}")
EOF
}

users_yaml() {
  python3 - "$aors" "$realm" > "$run/users.yaml" <<'EOF'
import sys, hashlib
n, realm = int(sys.argv[1]), sys.argv[2]
print("users:")
for i in range(1, n + 1):
    ha1 = hashlib.md5(f"user{i}:{realm}:pw-user{i}".encode()).hexdigest()
    print(f"  - {{username: user{i}, ha1: {{MD5: {ha1}}}}}")
EOF
}

# Each start_* sets: target (host:port sipp sends to), procs ("name=pid"
# list), ports (the system's UDP ports).
start_pinhole() {
  [ -x "$run/pinhole" ] || (cd "$repo" && go build -o "$run/pinhole" ./cmd/pinhole)
  local rp ep store_yaml auth_yaml
  rp=$(freeport)
  store_yaml="{backend: memory}"
  if [ "$store" = redis ]; then
    local redp; redp=$(freeport)
    redis-server --port "$redp" --bind 127.0.0.1 --save '' --appendonly no --dir "$run" \
      --logfile "$run/redis.log" & pids+=($!); redis_pid=$!
    until redis-cli -p "$redp" ping >/dev/null 2>&1; do sleep 0.1; done
    store_yaml="{backend: redis, url: redis://127.0.0.1:$redp/0}"
    redis_port=$redp
  fi
  auth_yaml="{enabled: false}"
  if [ "$authm" = md5 ]; then
    [ -s "$run/users.yaml" ] || users_yaml
    auth_yaml="{enabled: true, realm: $realm, users_file: $run/users.yaml, algorithms: [MD5], nonce_secret_file: $run/nonce.secret}"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run/nonce.secret"
  fi
  reg_ops=127.0.0.1:$(freeport)
  cat > "$run/registrar.yaml" <<EOF
ops: {listen: $reg_ops, pprof: true}
log: {level: warn, format: json}
registrar:
  listen: [{transport: udp, address: 127.0.0.1:$rp}, {transport: tcp, address: 127.0.0.1:$rp}]
  domains: [$realm]
  store: $store_yaml
  expires: {default: 3600s, min: 60s, max: 7200s, min_outbound: 60s, jitter: 0}
  gruu: true
  trusted_edges: [127.0.0.0/8]
  trusted_peers: [127.0.0.0/8]
  auth: $auth_yaml
EOF
  "$run/pinhole" -config "$run/registrar.yaml" 2> "$run/registrar.log" & pids+=($!)
  procs="registrar=$!"; ports="$rp"; target=127.0.0.1:$rp
  wait_udp "$rp"
  if [ "$topo" = chain ]; then
    ep=$(freeport)
    edge_ops=127.0.0.1:$(freeport)
    local listen="[{transport: udp, address: 127.0.0.1:$ep}, {transport: tcp, address: 127.0.0.1:$ep}]" cp=""
    if [ "$split" = 1 ]; then
      cp=$(freeport)
      listen="[{transport: udp, address: 127.0.0.1:$ep, role: access}, {transport: tcp, address: 127.0.0.1:$ep, role: access},"
      listen="$listen {transport: udp, address: 127.0.0.1:$cp, role: core}, {transport: tcp, address: 127.0.0.1:$cp, role: core}]"
    fi
    cat > "$run/edge.yaml" <<EOF
ops: {listen: $edge_ops, pprof: true}
log: {level: warn, format: json}
edge:
  listen: $listen
  registrar: sip:127.0.0.1:$rp
  trusted_core: [127.0.0.0/8]
  rate_limit: {disabled: true}
EOF
    "$run/pinhole" -config "$run/edge.yaml" 2> "$run/edge.log" & pids+=($!)
    procs="edge=$! $procs"; ports="$ep $cp $ports"; target=127.0.0.1:$ep
    wait_udp "$ep"
  fi
}

start_kamailio() {
  if [ ! -r "$anchors/kamailio/registrar.cfg" ]; then
    echo "no Kamailio anchor at $anchors/kamailio (set ANCHORS)" >&2; exit 1
  fi
  local rp ep defs=(-A "CHILDREN_$children")
  [ "$authm" = md5 ] && defs+=(-A WITH_AUTH)
  rp=$(freeport)
  # Anchor content, ports and control socket moved to this run.
  sed -e "s/15060/$rp/g" -e "s|/tmp/pinhole-anchor-kamailio_ctl|$run/kreg_ctl|" \
    -e "s/^#!define NUSERS 100000/#!define NUSERS $aors/" \
    "$anchors/kamailio/registrar.cfg" > "$run/kamailio-registrar.cfg"
  kamailio -f "$run/kamailio-registrar.cfg" -DD -E -m 1024 -M 16 "${defs[@]}" \
    -Y "$run" > "$run/kamailio-registrar.log" 2>&1 & pids+=($!)
  procs="registrar=$!"; ports="$rp"; target=127.0.0.1:$rp
  wait_udp "$rp"
  if [ "$topo" = chain ]; then
    ep=$(freeport)
    sed -e "s/15060/$rp/g" -e "s/15062/$ep/g" -e "s|/tmp/pinhole-anchor-edge_ctl|$run/kedge_ctl|" \
      "$anchors/kamailio/edge_chain.cfg" > "$run/kamailio-edge.cfg"
    kamailio -f "$run/kamailio-edge.cfg" -DD -E -m 1024 -M 16 -A "CHILDREN_$children" \
      -Y "$run" > "$run/kamailio-edge.log" 2>&1 & pids+=($!)
    procs="edge=$! $procs"; ports="$ep $ports"; target=127.0.0.1:$ep
    wait_udp "$ep"
  fi
}

stop_sut() {
  local kv
  for kv in $procs; do kill "${kv#*=}" 2>/dev/null || true; wait "${kv#*=}" 2>/dev/null || true; done
  if [ -n "${redis_pid:-}" ]; then kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; redis_pid=""; fi
}

scenario() { if [ "$authm" = md5 ]; then echo "$here/reg-outbound-auth.xml"; else echo "$here/reg-outbound.xml"; fi; }

# sipp_run DIR CALLS RATE LIMIT: one sipp run in DIR. sipp's default
# behaviours minus "bye": by default sipp answers a call it aborts (here:
# a REGISTER that got 503 instead of 200) with an in-dialog BYE, which
# would add a stream of BYEs to the REGISTER load under overload.
sipp_run() {
  local dir=$1 calls=$2 rate=$3 limit=$4 tmode=(-t un -max_socket "$sockets")
  [ "$sockets" = 1 ] && tmode=(-t u1)
  mkdir -p "$dir"
  (cd "$dir" && sipp "$target" -sf "$(scenario)" -inf "$run/users.csv" \
    -key domain "$realm" -key expires 3600 -auth_uri "$realm" "${tmode[@]}" \
    -m "$calls" -r "$rate" -l "$limit" -i 127.0.0.1 -p 0 -nostdin -buff_size 4194304 -default_behaviors all,-bye \
    -timeout "$((3 * step + 60))s" -trace_stat -stf stat.csv -trace_rtt -rtt_freq 1 \
    >/dev/null 2>&1 || true)
}

statcol() { awk -F';' -v c="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==c) k=i} END{print $k+0}' "$1/stat.csv"; }

run_sut() {
  local name=$1 ceiling=0 bad=0
  echo "== $name: topology $topo, store $([ "$name" = pinhole ] && echo "$store" || echo memory), auth $authm, $sockets client socket(s), $aors AORs"
  "start_$name"
  echo "   processes: $procs; target $target; run dir $run"
  [ "$name" = pinhole ] && echo "   ops (metrics, /debug/pprof/): registrar http://$reg_ops${edge_ops:+, edge http://$edge_ops}"
  local t0=$SECONDS
  sipp_run "$run/$name-preload" "$aors" 5000 200
  echo "   preload: $(statcol "$run/$name-preload" 'SuccessfulCall(C)') of $aors registered in $((SECONDS - t0)) s (closed loop, 200 in flight)"
  printf '   %8s %9s %7s %8s %8s %7s  %-28s %-24s %7s %7s  %s\n' \
    offered achieved failed retrans drops secs "cpu % of one core" "pss MB" p50ms p99ms verdict
  local r
  for r in $rates; do
    local dir="$run/$name-$r" kv
    local d0; d0=$(udp_drops $ports)
    declare -A c0=()
    for kv in $procs; do c0[${kv%%=*}]=$(cpu_ticks "${kv#*=}"); done
    local s0; s0=$(date +%s.%N)
    sipp_run "$dir" $((r * step)) "$r" 5000
    local s1; s1=$(date +%s.%N)
    local el; el=$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.1f", b-a}')
    local ok failed retr drops cpu="" pss=""
    ok=$(statcol "$dir" 'SuccessfulCall(C)'); failed=$(statcol "$dir" 'FailedCall(C)')
    retr=$(statcol "$dir" 'Retransmissions(C)'); drops=$(( $(udp_drops $ports) - d0 ))
    for kv in $procs; do
      local n=${kv%%=*} p=${kv#*=}
      cpu="$cpu $n=$(awk -v a="${c0[$n]}" -v b="$(cpu_ticks "$p")" -v hz="$hz" -v e="$el" 'BEGIN{printf "%.0f", 100*(b-a)/hz/e}')"
      pss="$pss $n=$(pss_mb "$p")"
    done
    local pct; pct=$(cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' '$3==1{print $2}' | sort -n |
      awk '{v[NR]=$1} END{if(NR==0){print "- -"; exit} i50=int(NR*0.50); if(i50<1)i50=1; i99=int(NR*0.99); if(i99<1)i99=1; printf "%.0f %.0f\n", v[i50], v[i99]}')
    # Achieved: successful calls over the time from sipp's start to its
    # last final response (at least the step length).
    local last; last=$(cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' '$3==1 && $1+0>m{m=$1+0} END{print m/1000}')
    local ach; ach=$(awk -v ok="$ok" -v e="$last" -v s="$step" 'BEGIN{d=(e>s)?e:s; printf "%.0f", ok/d}')
    local verdict
    verdict=$(awk -v ok="$ok" -v f="$failed" -v rt="$retr" -v a="$ach" -v r="$r" -v calls=$((r * step)) \
      'BEGIN{print (f < 0.001*calls && rt < 0.001*calls && a >= 0.97*r) ? "sustained" : "NOT sustained"}')
    printf '   %8s %9s %7s %8s %8s %7s  %-28s %-24s %7s %7s  %s\n' \
      "$r" "$ach" "$failed" "$retr" "$drops" "$el" "${cpu# }" "${pss# }" ${pct} "$verdict"
    if [ "$verdict" = sustained ]; then ceiling=$r; bad=0; else bad=$((bad + 1)); fi
    if [ "$verdict" != sustained ] && [ "$keepgoing" = 0 ]; then break; fi
  done
  if [ "$idle" -gt 0 ]; then
    sleep "$idle"
    local pss_idle=""
    for kv in $procs; do pss_idle="$pss_idle ${kv%%=*}=$(pss_mb "${kv#*=}")"; done
    echo "   idle ${idle} s after the last step: pss MB${pss_idle}"
  fi
  if [ "$name" = pinhole ] && [ "$store" = redis ] && [ -n "${redis_port:-}" ]; then
    local keys used
    keys=$(redis-cli -p "$redis_port" dbsize)
    used=$(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/{print $2+0}')
    echo "   redis: $keys keys, used_memory $used B, $(awk -v u="$used" -v n="$aors" 'BEGIN{printf "%.0f", u/n}') B per AOR (one binding each)"
  fi
  stop_sut
  echo "   $name: highest sustained step $ceiling REGISTER/s"
  eval "ceiling_$name=$ceiling"
}

command -v sipp >/dev/null || { echo "sipp not installed (apt-get install sip-tester)" >&2; exit 1; }
users_csv
echo "chain.sh on $(nproc) CPUs, $(date -u +%FT%TZ): -S $sut -T $topo -s $store -a $authm -k $sockets -d $step -n $aors -c $children -r \"$rates\""
case $sut in
  pinhole) run_sut pinhole ;;
  kamailio) run_sut kamailio ;;
  both)
    run_sut kamailio
    run_sut pinhole
    awk -v p="$ceiling_pinhole" -v k="$ceiling_kamailio" \
      'BEGIN{printf "ratio pinhole/kamailio (highest sustained step): %d / %d = %s\n", p, k, (k>0)?sprintf("%.2f", p/k):"n/a"}'
    ;;
  *) echo "-S pinhole|kamailio|both" >&2; exit 2 ;;
esac
