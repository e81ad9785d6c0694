#!/usr/bin/env bash
# Builds fogd and the shipped functions, fetches LiteRT's runtime, then runs the agent on
# provisioning/demo.toml until Ctrl-C. Watch the log: CPU alerts, SYN-flood mitigations from
# the ddos-detector function on the flows softflowd exports from
# provisioning/demo-traffic.pcap, and failed-login alerts from login-watch, which gets the
# sshd lines this script sends with `logger` (util-linux) to fogd's syslog port.
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
config=provisioning/demo.toml
if [ ! -x "$softflowd" ]; then
    echo "demo.sh: no softflowd; ddos-detector gets flow windows from a timer replay over MQTT (provisioning/demo-flow-replay.toml) instead" >&2
    mkdir -p target
    cat provisioning/demo.toml provisioning/demo-flow-replay.toml >target/demo-timer-replay.toml
    config=target/demo-timer-replay.toml
fi
wasi-functions/build.sh --quiet >/dev/null
cargo build --release --quiet -p fogd
target/release/fogd run --config "$config" &
fogd=$!
trap 'kill "$fogd" 2>/dev/null' INT TERM EXIT

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
