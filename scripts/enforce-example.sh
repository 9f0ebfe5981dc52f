#!/bin/sh
# An example for `[enforce] backend = "exec"`: garda-sensor runs
#   enforce-example.sh add|remove
# once per rule, with the rule as one JSON object on standard input, e.g.
#   {"id":"ord-...","action":"drop","source":"203.0.113.7/32","destination":"any",
#    "protocol":17,"source_port":53,"destination_port":0,"rate_pps":0,
#    "expires_at_ns":...,"expires_at":"2025-...Z","reason":"...","created_by":"..."}
# Exit 0 when the rule is in place (or gone, for remove); anything else makes
# the sensor report the order rejected, with the first line of stderr as the
# reason. The sensor kills the script after enforce.exec_timeout_ms.
#
# This example only LOGS (to syslog, tag garda-enforce) and PRINTS the
# commands an operator would run: it touches nothing on this host. Replace
# the print lines with your gateway's CLI or API call. Make the device expire
# the rule itself at "expires_at" where it can: the sensor removes it on
# time, but not while the sensor is down.
set -eu

verb=${1:-}
case "$verb" in add|remove) ;; *) echo "usage: $0 add|remove < rule.json" >&2; exit 2 ;; esac
rule=$(cat)

# Field extraction without jq (not installed everywhere): good enough for
# the flat object the sensor writes.
field() { printf '%s' "$rule" | sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\)\"\{0,1\}[,}].*/\1/p"; }
id=$(field id)
action=$(field action)
source=$(field source)
destination=$(field destination)
expires=$(field expires_at)

logger -t garda-enforce "$verb order $id: $action $source -> $destination until $expires" 2>/dev/null || true

if [ "$action" = drop ] && [ "$destination" = any ] && [ "$source" != any ]; then
  if [ "$verb" = add ]; then
    echo "ip route add blackhole $source  # or: vendor-cli acl add deny src $source"
  else
    echo "ip route del blackhole $source"
  fi
else
  echo "vendor-cli acl $verb id $id  # $action $source -> $destination"
fi
exit 0
