#!/usr/bin/env bash
# Builds fogd and the shipped functions, fetches LiteRT's runtime, then runs the agent on
# provisioning/demo.toml until Ctrl-C, as the gateway of a simulated site made of real
# protocol tools: softflowd exports the flows of provisioning/demo-traffic.pcap (a SYN flood
# among them), `logger` sends a router's syslog (failed logins, a configuration change), and
# snmpd plays an edge router (provisioning/demo-site/: a fan that starts to fail, an uplink
# that fills, a location that someone changes). Watch the log: CPU alerts, the flood
# mitigated, the failed logins, the configuration drift set back, the maintenance ticket and
# the uplink rebalanced, all within the first minute. A tool that cannot be installed is
# named, and the parts that need it are skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "==> installing python3-pip (to download LiteRT's runtime)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
if models/fetch-runtime.sh; then
    export FOGD_LITERT_LIB="$root/models/runtime/$(uname -m)/libLiteRt.so"
else
    echo "demo.sh: no LiteRT runtime; fogd runs, and ddos-detector reports inference unavailable" >&2
fi
# Flows come from softflowd replaying the shipped capture; it is installed like pip above.
softflowd=/usr/sbin/softflowd
if [ ! -x "$softflowd" ]; then
    echo "==> installing softflowd (to export the demo capture's flows as NetFlow)"
    { as_root apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends softflowd >/dev/null; } || true
fi
# The router's SNMP side: snmpd (and net-snmp's tools, for the configuration change), installed
# the same way.
snmpd=/usr/sbin/snmpd
if [ ! -x "$snmpd" ] || ! command -v snmpset >/dev/null; then
    echo "==> installing snmpd and snmp (to play the site's edge router)"
    { as_root apt-get update -qq &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends snmpd snmp >/dev/null; } || true
fi
# The config fogd runs: the demo, and what the site's tools call for. It lives in target/,
# beside provisioning/, so the relative paths in the files hold.
mkdir -p target
config=target/demo-run.toml
cp provisioning/demo.toml "$config"
if [ ! -x "$softflowd" ]; then
    echo "demo.sh: no softflowd; ddos-detector gets flow windows from a timer replay over MQTT (provisioning/demo-flow-replay.toml) instead" >&2
    cat provisioning/demo-flow-replay.toml >>"$config"
fi
site="$root/target/demo-site"
snmpd_pid=
if [ -x "$snmpd" ]; then
    rm -rf "$site"
    mkdir -p "$site"
    cp provisioning/demo-site/*.sh "$site/"
    echo demo-rw >"$site/rw-community"
    printf '%s\n' "agentaddress udp:127.0.0.1:1161" "rocommunity demo-ro 127.0.0.1" \
        "rwcommunity demo-rw 127.0.0.1" \
        "pass .1.3.6.1.4.1.8072.9999.1 /bin/sh $site/health.sh" \
        "pass .1.3.6.1.4.1.8072.9999.2 /bin/sh $site/counters.sh" >"$site/snmpd.conf"
    sed "s/@HOSTNAME@/$(hostname)/" provisioning/demo-site.toml >>"$config"
else
    echo "demo.sh: no snmpd; config-drift, predictive-maintenance and traffic-optimizer are not run" >&2
fi
wasi-functions/build.sh --quiet >/dev/null
cargo build --release --quiet -p fogd
if [ -x "$snmpd" ]; then
    date +%s >"$site/started"
    SNMP_PERSISTENT_DIR="$site" MIBS="" "$snmpd" -f -C -Lf "$site/snmpd.log" -c "$site/snmpd.conf" &
    snmpd_pid=$!
fi
target/release/fogd run --config "$config" &
fogd=$!
trap 'kill "$fogd" $snmpd_pid 2>/dev/null' INT TERM EXIT

# The senders start once fogd's metrics endpoint answers (it is up by then).
until (exec 3<>/dev/tcp/127.0.0.1/9464) 2>/dev/null; do
    kill -0 "$fogd" 2>/dev/null || break
    sleep 0.2
done

# A router's sshd under a password-guessing attack: three failures from one address every
# few seconds.
if command -v logger >/dev/null; then
    (
        while kill -0 "$fogd" 2>/dev/null; do
            for user in root admin oracle; do
                logger -n 127.0.0.1 -P 5514 -d --rfc5424 -p auth.warning -t sshd \
                    "Failed password for $user from 203.0.113.7 port 40022 ssh2" 2>/dev/null || true
            done
            sleep 4
        done
    ) &
else
    echo "demo.sh: no logger (util-linux); login-watch gets no syslog" >&2
fi

# Fifteen seconds in, someone moves the router in its configuration, and it logs the change.
if [ -n "$snmpd_pid" ]; then
    (
        sleep 15
        MIBS="" snmpset -v2c -c demo-rw -t 2 127.0.0.1:1161 1.3.6.1.2.1.1.6.0 s lab-bench >/dev/null 2>&1 || true
        logger -n 127.0.0.1 -P 5514 -d -t ios \
            "%SYS-5-CONFIG_I: Configured from console by admin on vty0 (192.0.2.5)" 2>/dev/null || true
    ) &
fi

# A router's flow export: each second softflowd replays the capture as NetFlow v9, calm
# (without the flood on 192.0.2.80 port 80) for four seconds, the whole of it with the flood
# for four, then calm for six, over and over.
if [ -x "$softflowd" ]; then
    (
        # softflowd stalls on exit when its control socket's path is long: run it nearby.
        work="$(mktemp -d)"
        cd "$work"
        calm=("not (dst host 192.0.2.80 and dst port 80)")
        while kill -0 "$fogd" 2>/dev/null; do
            for phase in calm calm calm calm flood flood flood flood calm calm calm calm calm calm; do
                filter=()
                [ "$phase" = calm ] && filter=("${calm[@]}")
                "$softflowd" -r "$root/provisioning/demo-traffic.pcap" -n 127.0.0.1:2055 -v 9 -d \
                    -p sf.pid -c sf.ctl "${filter[@]}" >/dev/null 2>&1 || true
                sleep 1
            done
        done
    ) &
fi
wait "$fogd"
