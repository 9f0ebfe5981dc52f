#!/usr/bin/env bash
# Installs, idempotently, every Debian 12 package that Garda's build, tests,
# benchmarks and the city drill need. Safe to run again: apt skips what is there.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "bootstrap.sh: needs root (apt-get install); run it with sudo" >&2
  exit 2
fi

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang llvm ccache
  # libraries (see docs/decisions.md for why each is here)
  capnproto libcapnp-dev
  libzmq3-dev cppzmq-dev libsodium-dev
  librocksdb-dev libjemalloc-dev
  libspdlog-dev libfmt-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libcurl4-openssl-dev libssl-dev
  libpcap-dev libbpf-dev libnftables-dev libsystemd-dev
  libgtest-dev libgmock-dev libbenchmark-dev libclang-rt-14-dev
  libcpp-httplib-dev libssl-dev openssl
  # tests, drill and benchmarks
  tshark wireshark-common hping3 python3 python3-scapy tcpreplay
  iproute2 nftables iputils-ping procps psmisc util-linux time
  # Debian packages (cpack -G DEB) and their check (tests/package)
  dpkg-dev lintian
  # HTTP API tests and load figures
  python3-jsonschema prometheus wrk
  # rollout: Ansible and its linters, and the rollout test's Debian hosts
  ansible ansible-lint yamllint debootstrap systemd-container openssh-client
  # the web console's browser test (playwright-core drives Debian's chromium)
  chromium fonts-dejavu-core
)
# npm builds the web console (web/). Debian's nodejs + npm only when no npm
# is on PATH: a node from elsewhere (e.g. nodesource) brings its own npm.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap.sh: all ${#packages[@]} packages present"
  exit 0
fi

echo "bootstrap.sh: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer once, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
