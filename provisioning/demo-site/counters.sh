#!/bin/sh
# snmpd `pass` script of the demo site: the octet counters of two parallel 100 Mbit/s
# uplinks under .1.3.6.1.4.1.8072.9999.2 (1: uplink-a, 2: uplink-b), integrated from their
# rates. uplink-b carries 25 Mbit/s; uplink-a 35 Mbit/s until 20 s after demo.sh started the
# site, then 4 Mbit/s more each second, up to 110.
[ "$1" = "-g" ] || exit 0
here=$(dirname "$0")
case "$2" in
.1.3.6.1.4.1.8072.9999.2.1) link=a base=35 climb=4 ;;
.1.3.6.1.4.1.8072.9999.2.2) link=b base=25 climb=0 ;;
*) exit 0 ;;
esac
now=$(date +%s%N)
octets=$(awk -v now="$now" -v started="$(cat "$here/started")" -v base="$base" -v climb="$climb" \
    -v state="$here/uplink-$link.state" 'function rate(t,  s) {
        s = (t / 1e9) - started - 20; if (s < 0) s = 0;
        r = base + climb * s; if (r > 110) r = 110; return r * 1e6;
    }
    BEGIN {
        last = now; total = 0;
        if ((getline kept < state) > 0) { split(kept, k, " "); last = k[1]; total = k[2]; }
        total += (rate(last) + rate(now)) / 2 * (now - last) / 1e9 / 8;
        printf "%.0f %.0f\n", now, total > state;
        printf "%.0f\n", total;
    }')
echo "$2"; echo counter; echo "$octets"
