#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "sensor/enforce/enforcer.h"

struct bpf_object;

namespace garda::sensor {

struct XdpCounters {
  uint64_t installed = 0;
  uint64_t refreshed = 0;
  uint64_t removed = 0;
  uint64_t unsupported = 0;  // rules refused because XDP cannot express them
  uint64_t mapErrors = 0;
};

// The fast path: drops in XDP, before the kernel allocates an skb, with the
// program in bpf/garda_xdp.bpf.c (built by clang and embedded in the binary).
// Expresses drop rules of three shapes: a source prefix; sources (any
// prefix, or all) toward one destination address; a destination prefix; and
// (protocol tcp|udp, source port) toward one destination address
// (reflection). Anything else (rate limits, destination ports, protocol
// with a source prefix) is refused with the reason: use nftables for those.
//
// Each map entry holds the rule's absolute expiry converted to
// CLOCK_BOOTTIME, and the program ignores an expired entry, so a rule stops
// on time even when the sensor is dead; the sensor also deletes it when it
// expires. The program stays attached when the sensor exits (clean or not),
// so what is in force holds through a restart or a crash; a starting sensor
// replaces it in one step, with empty maps, and the aggregator's orderSync on
// hello puts back what is in force. It refuses to replace an XDP program that
// is not Garda's. Knowing its own program takes either CAP_SYS_ADMIN (to read
// the name of a program by id) or, as under the systemd unit, the record
// `<state_dir>/xdp-<interface>.prog` that each start writes: the id of the
// program it attached. `withdraw` takes the program off for good (package
// removal).
//
// Attaches in the calling thread's network namespace. Single-threaded.
class XdpEnforcer final : public Enforcer {
 public:
  // Loads and attaches to `interface`; records the program's id in
  // `stateDir` unless it is empty. Throws std::runtime_error with the reason
  // (no such interface, not root, verifier, another XDP program).
  XdpEnforcer(const std::string& interface, common::XdpMode mode, unsigned maxRules,
              const std::string& stateDir = {});
  ~XdpEnforcer() override;
  XdpEnforcer(const XdpEnforcer&) = delete;
  XdpEnforcer& operator=(const XdpEnforcer&) = delete;

  const char* name() const noexcept override { return "xdp"; }
  std::string apply(const Rule& rule) override;
  std::string remove(const Rule& rule) override;
  uint64_t packetsDropped(const Rule& rule) override;
  bool readDropCounts(const std::vector<const Rule*>& rules, std::vector<DropCount>& out) override;

  // Takes Garda's program off `interface` (found by name or by the record in
  // stateDir), leaves any other, and deletes the record. Returns what it did,
  // a line per program; throws std::runtime_error when it cannot.
  static std::string withdraw(const std::string& interface, const std::string& stateDir);

  // The kernel's id of the attached program.
  uint32_t programId() const noexcept { return programId_; }
  // "native" or "generic": how the program ended up attached.
  const std::string& attachMode() const noexcept { return attachMode_; }
  const XdpCounters& counters() const noexcept { return counters_; }

 private:
  // One map entry and the orders behind it (two orders may name one key).
  struct Entry {
    int mapFd = -1;
    std::vector<uint8_t> key;
    uint32_t slot = 0;
    std::map<std::string, int64_t> owners;  // order id -> expiry (wall ns)
  };

  std::string write(Entry& e);
  // The rule's entry's counters summed over CPUs; zeros when it has none.
  DropCount count(const Rule& rule);
  std::string dropOwner(const std::string& id);

  std::string interface_;
  int ifindex_ = 0;
  bpf_object* object_ = nullptr;
  int bySrc_ = -1, byDstSrc_ = -1, byFlow_ = -1, drops_ = -1;
  unsigned cpus_ = 1;
  uint32_t programId_ = 0;
  std::string attachMode_;
  std::vector<uint32_t> freeSlots_;
  std::map<std::string, Entry> entries_;       // by map fd + key bytes
  std::map<std::string, std::string> byRule_;  // order id -> entry
  XdpCounters counters_;
};

}  // namespace garda::sensor
