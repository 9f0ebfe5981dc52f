#!/usr/bin/python3
"""An `[enforce] backend = "exec"` script for the drill's figures: it plays a
vendor gateway that Garda cannot program directly, by turning each rule into
an nftables rule in its own table (`ip garda_exec`) of the namespace the
sensor runs in.

  exec_nft_gateway.py add|remove < rule.json      (the sensor runs it)

add: one rule per order, matched by source/destination prefix, protocol and
ports, dropping (or rate-limiting) at prerouting priority -300, commented with
the order id; remove: deletes the rule with that comment. IPv4 only. Exit 0
when done; otherwise the first stderr line is the reason.
"""
import json
import subprocess
import sys

TABLE = "ip garda_exec"


def nft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=check)


def main() -> int:
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb not in ("add", "remove"):
        print("usage: exec_nft_gateway.py add|remove < rule.json", file=sys.stderr)
        return 2
    rule = json.load(sys.stdin)
    made = subprocess.run(["nft", "-f", "-"], text=True, capture_output=True,
                          input=f"table {TABLE} {{\n  chain pre {{\n    type filter hook "
                          "prerouting priority -300; policy accept;\n  }\n}\n")
    if made.returncode != 0:
        print(f"nft: cannot make table {TABLE}: {made.stderr.strip()}", file=sys.stderr)
        return 1
    comment = rule["id"]
    if verb == "remove":
        listing = json.loads(nft("-j", "-a", "list", "chain", *TABLE.split(), "pre").stdout)
        for item in listing.get("nftables", []):
            r = item.get("rule")
            if r and r.get("comment") == comment:
                nft("delete", "rule", *TABLE.split(), "pre", "handle", str(r["handle"]))
        return 0
    match = []
    if rule["source"] != "any":
        match += ["ip", "saddr", rule["source"]]
    if rule["destination"] != "any":
        match += ["ip", "daddr", rule["destination"]]
    proto = {6: "tcp", 17: "udp"}.get(rule["protocol"])
    if rule["protocol"] and not proto:
        match += ["ip", "protocol", str(rule["protocol"])]
    if proto:
        if rule["source_port"] or rule["destination_port"]:
            if rule["source_port"]:
                match += [proto, "sport", str(rule["source_port"])]
            if rule["destination_port"]:
                match += [proto, "dport", str(rule["destination_port"])]
        else:
            match += ["ip", "protocol", proto]
    verdict = (["limit", "rate", "over", f"{rule['rate_pps']}/second", "drop"]
               if rule["action"] == "rate_limit" else ["drop"])
    res = nft("add", "rule", *TABLE.split(), "pre", *match, *verdict, "comment", f'"{comment}"',
              check=False)
    if res.returncode != 0:
        print(f"nft: {res.stderr.strip().splitlines()[0] if res.stderr.strip() else res.returncode}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
