#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sensor/enforce/enforcer.h"

struct nft_ctx;

namespace garda::sensor {

struct NftablesCounters {
  uint64_t transactions = 0;  // batches sent to the kernel
  uint64_t failures = 0;      // batches the kernel (or libnftables) refused
  uint64_t adopted = 0;       // elements found from an earlier run at start
  uint64_t leftoversRemoved = 0;
};

// Enforces rules as elements of nftables verdict maps in one table the
// sensor owns (`inet <enforce.nft_table>`), through libnftables. Every
// element carries a kernel timeout, so the kernel itself removes a rule at
// its expiry even if the sensor is killed; the table is never deleted.
//
// Layout: one verdict map per rule shape (family, source and destination
// prefix lengths, which of protocol / source port / destination port are
// given), each looked up by one rule in the `prerouting` chain (hook
// prerouting, priority raw = -300: before conntrack, so a flood never fills
// the conntrack table). The map's key is the packet's masked addresses,
// protocol and ports; the element's verdict is `drop`, or `jump rl_N` for a
// rate limit, where chain rl_N holds `limit rate over R/second counter drop`.
// A map per shape keeps every lookup a hash lookup (no linear rule list) and
// lets overlapping orders (a /24 and a /32 inside it) live side by side,
// which one interval map cannot hold. Elements have per-element counters.
//
// Two orders with the same match share one element (it expires at the later
// of their expiries); orders with the same match but a different action are
// refused. At construction, elements left by an earlier run are adopted
// (they keep enforcing until their own timeout); reconcile() removes those
// the aggregator no longer lists.
//
// The libnftables context is opened in the calling thread's network
// namespace. Single-threaded.
class NftablesEnforcer final : public Enforcer {
 public:
  // Creates the table and chain if missing. Throws std::runtime_error when
  // libnftables cannot (no CAP_NET_ADMIN, no nf_tables in the kernel).
  explicit NftablesEnforcer(std::string table);
  ~NftablesEnforcer() override;
  NftablesEnforcer(const NftablesEnforcer&) = delete;
  NftablesEnforcer& operator=(const NftablesEnforcer&) = delete;

  // Deletes the table and every rule in it, for good (package removal).
  // Returns what it did; throws std::runtime_error when it cannot.
  static std::string withdraw(const std::string& table);

  const char* name() const noexcept override { return "nftables"; }
  std::string apply(const Rule& rule) override;
  std::string remove(const Rule& rule) override;
  uint64_t packetsDropped(const Rule& rule) override;
  // One `list table` in JSON for all of them: an element's own counter for a
  // drop, its rl_N chain's `counter drop` for a rate limit (what it dropped,
  // not what it let through).
  bool readDropCounts(const std::vector<const Rule*>& rules, std::vector<DropCount>& out) override;
  void reconcile(const std::set<std::string>& keep) override;

  const NftablesCounters& counters() const noexcept { return counters_; }
  const std::string& table() const noexcept { return table_; }

 private:
  // One map element: a key in one shape's map, and the orders behind it.
  struct Element {
    std::string map;
    std::string key;                        // nft syntax, e.g. "198.18.5.0 . 17"
    std::string verdict;                    // "drop" or "jump rl_N"
    std::string chain;                      // rl_N for a rate limit, else empty
    std::map<std::string, int64_t> owners;  // order id -> expiry (wall ns)
  };

  // Runs a batch of commands as one transaction. Empty on success,
  // otherwise libnftables' first error line. `out` receives the output.
  std::string run(const std::string& commands, std::string* out = nullptr);
  // Creates the shape's map and its lookup rule if this run has not seen it.
  std::string ensureMap(const std::string& map, const std::string& type, const std::string& lookup);
  // Writes the element with the latest of its owners' expiries, keeping its
  // counter when it is already in the kernel.
  std::string writeElement(Element& e, bool inKernel, const std::string& extra = {});
  // Takes `id` off its element; deletes the element (and its chain) when it
  // was the last owner.
  std::string dropOwner(const std::string& id);
  // Reads the element's counter (packets, bytes); zeros when it is gone.
  std::pair<uint64_t, uint64_t> elementCounter(const Element& e);
  void adoptLeftovers();
  // The table as libnftables JSON (`list table`); nullopt, logged, on error.
  std::optional<nlohmann::json> listTable();

  std::string table_;
  nft_ctx* ctx_ = nullptr;
  std::set<std::string> maps_;
  std::map<std::string, Element> elements_;    // by "map key"
  std::map<std::string, std::string> byRule_;  // order id -> element
  std::set<std::string> leftovers_;            // adopted ids not yet confirmed
  std::set<std::string> leftoverChains_;       // rl chains found at start
  unsigned nextChain_ = 1;
  NftablesCounters counters_;
};

}  // namespace garda::sensor
