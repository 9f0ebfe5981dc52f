#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "aggregator/correlate.h"
#include "aggregator/store.h"
#include "schemas/garda.capnp.h"

namespace garda::aggregator {

// Why an evidence message was not taken; stable names for metrics.
enum class EvidenceReject : uint8_t {
  kUnknownRequest = 0,  // no request of ours with this id is outstanding
  kWrongSensor,         // the request went to another sensor
  kWrongIncident,       // the incident id does not match the request's
  kOutOfOrder,          // a part other than the next one
  kLinkType,            // a part with another link type than the first
  kTooManyPackets,      // more than the request's maxPackets in all
  kOverSnapLen,         // a packet longer than the request's snapLen
  kStoreError,
  kCount
};
const char* evidenceRejectName(EvidenceReject r) noexcept;

struct EvidenceSettings {
  uint32_t maxPackets = 100;     // asked of each sensor (<= kMaxEvidencePackets)
  uint32_t snapLen = 1600;       // bytes kept per frame: a whole Ethernet frame
  int64_t deadlineMs = 30'000;   // the sensor sends what it has by then
  int64_t graceMs = 30'000;      // an answer this late after the deadline is not ours
};

struct EvidenceCounters {
  uint64_t requested = 0;
  uint64_t requestsUnsent = 0;  // the sensor had no connection
  uint64_t parts = 0;           // evidence messages taken
  uint64_t stored = 0;          // answers stored (one per sensor and incident)
  uint64_t packetsStored = 0;
  uint64_t expired = 0;         // requests never answered in time
  std::array<uint64_t, static_cast<size_t>(EvidenceReject::kCount)> rejects{};
};

// What an incident's stored evidence makes: a pcap file.
struct EvidencePcap {
  std::string bytes;                // the pcap file (libpcap's format, ns timestamps)
  size_t packets = 0;
  std::vector<std::string> sensors;  // whose packets it holds
  std::vector<std::string> empty;    // sensors that answered with no packets: "id (reason)"
  std::vector<std::string> skipped;  // sensors left out for another link type
};

// Evidence (a sample of attack packets) for incidents: asks the victim's
// sensors for the first N packets that match an incident's vector toward
// its victim (an evidenceRequest, sent as orders are), checks what they send
// back against what was asked (anything else is counted and dropped), joins
// the parts and stores each sensor's answer in the `evidence` family. Builds
// the pcap file of an incident for the console. Requests in flight live in
// memory only (a restart forgets them; the console asks again).
// Single-threaded (the aggregator loop).
class EvidenceCollector {
 public:
  using SendFn = std::function<bool(const std::string& sensorId, const std::string& bytes)>;
  EvidenceCollector(Store& store, SendFn send, EvidenceSettings settings = {});

  // Asks each sensor of `incident` that has not answered or been asked yet.
  // Returns the sensors asked now.
  std::vector<std::string> request(const Incident& incident, int64_t nowNs);
  // Asks for evidence of each open incident once per sensor in it (a sensor
  // that joins later is asked when it joins), and drops expired requests.
  // Call every second or so.
  void onOpen(const std::vector<const Incident*>& open, int64_t nowNs);
  // An evidence message from `sensorId` (its key's id). Never throws for
  // bad content: a reject is counted and logged.
  void onEvidence(const std::string& sensorId, wire::Evidence::Reader evidence, int64_t nowNs);
  // Drops requests past their deadline and grace.
  void tick(int64_t nowNs);

  // The incident's pcap; nullopt when no sensor has answered yet.
  std::optional<EvidencePcap> pcap(const std::string& incidentId);
  // True while a request for the incident is outstanding.
  bool pending(const std::string& incidentId) const;

  const EvidenceCounters& counters() const noexcept { return counters_; }

 private:
  struct Frame {
    int64_t tsNs;
    uint32_t origLen;
    std::string data;
  };
  struct Outstanding {
    std::string incidentId;
    std::string sensorId;
    uint32_t maxPackets = 0;
    uint32_t snapLen = 0;
    int64_t expiresNs = 0;
    uint32_t nextPart = 0;
    uint16_t linkType = 0;
    std::vector<Frame> frames;
  };
  void reject(EvidenceReject why, const std::string& sensorId, const std::string& detail);
  void store(const Outstanding& o, const std::string& reason);

  Store& store_;
  SendFn send_;
  EvidenceSettings settings_;
  uint64_t nextRequestId_;
  std::map<uint64_t, Outstanding> outstanding_;
  std::set<std::string> autoAsked_;  // incident id, 0x00, sensor id; open incidents only
  EvidenceCounters counters_;
};

// The filter an incident member's vector asks for (protocol, source port,
// TCP flags), as an evidenceRequest carries it.
struct VectorFilter {
  uint8_t protocol = 0;
  uint16_t sourcePort = 0;
  uint8_t tcpFlagsMask = 0;
  uint8_t tcpFlags = 0;
};
VectorFilter vectorFilter(wire::Vector vector, uint16_t reflectionPort, bool ipv6) noexcept;

}  // namespace garda::aggregator
