#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "aggregator/store.h"
#include "common/config.h"
#include "common/envelope.h"

namespace garda::aggregator {

// What the aggregator knows of one sensor right now.
struct SensorState {
  std::string id;
  std::string opd;
  std::string version;
  std::string captureSource;
  uint64_t bootId = 0;
  int64_t lastSeenNs = 0;          // aggregator's wall clock at the last message
  unsigned windowMs = 0;
  int64_t lastWindowStartNs = 0;
  uint64_t lastWindowPackets = 0;
  uint64_t kernelDrops = 0;        // cumulative, as summaries report them
  uint64_t windowsStored = 0;
  uint32_t backlog = 0;            // from the sensor's heartbeat
  uint64_t alerts = 0;             // early alerts received
  int64_t lastAlertNs = 0;
  std::string lastAlertVictim;
  std::string routingId;           // the sensor's current connection (not persisted)
  // The encoding its last message came in; what we send it goes alike.
  common::WireEncoding encoding = common::WireEncoding::kPacked;
  // Its hello on that connection said it reads batched acks (Ack.more).
  bool takesAckBatches = false;
  // When a summary of it was last answered (wall clock; not persisted): an
  // ack is proof of life enough, and the loop's heartbeat skips it then.
  int64_t lastAnsweredNs = 0;
};

// The registry of the city's sensors: every sensor listed in aggregator.toml
// plus what each last told us. Kept in memory for status queries and written
// to the store's `sensors` family so a restart remembers last-seen times.
// Single-threaded (the aggregator loop).
class CityView {
 public:
  CityView(Store& store, const common::AggregatorConfig& config);

  void reload(const common::AggregatorConfig& config);
  SensorState* find(const std::string& id);
  // Marks a sensor seen now and remembers to persist it.
  SensorState& touch(const std::string& id, int64_t nowNs);
  // Hands every changed sensor's registry record to `put` and forgets the
  // change: ingest puts them in the same batch as the summaries, so counts
  // such as windows_stored survive a crash together with what they count.
  void takeChanges(const std::function<void(const std::string& id, const std::string& json)>& put);
  // Writes every changed sensor to the store (heartbeats, hellos).
  void persist();

  bool isListed(const std::string& id) const { return listed_.count(id) != 0; }
  const std::set<std::string>& listed() const noexcept { return listed_; }
  // Heard from within sensor_down_after_ms and reachable (a connection known).
  bool isUp(const std::string& id, int64_t nowNs) const;
  // The sensor on connection `routingId`, or "".
  std::string byRoutingId(const std::string& routingId) const;

  // The `status` reply: every listed sensor, up or down.
  nlohmann::json statusJson(int64_t nowNs) const;

 private:
  Store& store_;
  unsigned downAfterMs_;
  std::map<std::string, SensorState> sensors_;
  std::set<std::string> listed_;
  std::set<std::string> dirty_;
};

}  // namespace garda::aggregator
