#!/bin/sh
# snmpd `pass` script of the demo site: an edge router's health objects under
# .1.3.6.1.4.1.8072.9999.1 (temperature, fan speed, CPU, memory). Twelve seconds after
# demo.sh started the site, its fan begins to fail: 250 rpm slower each second, down to 700.
[ "$1" = "-g" ] || exit 0
here=$(dirname "$0")
elapsed=$(( $(date +%s) - $(cat "$here/started") ))
case "$2" in
.1.3.6.1.4.1.8072.9999.1.1) type=integer value=47 ;;
.1.3.6.1.4.1.8072.9999.1.2)
    type=integer value=5200
    if [ "$elapsed" -gt 12 ]; then
        value=$((5200 - 250 * (elapsed - 12)))
        [ "$value" -lt 700 ] && value=700
    fi ;;
.1.3.6.1.4.1.8072.9999.1.3) type=gauge value=22 ;;
.1.3.6.1.4.1.8072.9999.1.4) type=gauge value=41 ;;
*) exit 0 ;;
esac
echo "$2"; echo "$type"; echo "$value"
