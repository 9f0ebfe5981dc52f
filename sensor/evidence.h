#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/ip.h"
#include "schemas/garda.capnp.h"
#include "sensor/capture/source.h"
#include "sensor/decode.h"

namespace garda::sensor {

// Which frames an evidence request wants: toward `victim`, of `protocol`,
// from/to the ports, with the TCP flags (each 0 = any). A non-first IP
// fragment has no L4 header: it matches on victim and protocol alone.
struct EvidenceFilter {
  common::Prefix victim;
  uint8_t protocol = 0;
  uint16_t sourcePort = 0;
  uint16_t destinationPort = 0;
  uint8_t tcpFlagsMask = 0;
  uint8_t tcpFlags = 0;

  bool matches(const PacketView& v) const noexcept;
};

// One evidence request as the sensor holds it.
struct EvidenceRequest {
  std::string incidentId;
  uint64_t requestId = 0;
  EvidenceFilter filter;
  uint32_t maxPackets = 0;  // 1..kMaxEvidencePackets
  uint32_t snapLen = 0;     // kMinEvidenceSnapLen..kMaxEvidenceSnapLen
  int64_t deadlineNs = 0;   // wall clock
};
// From the wire (already through the EnvelopeDecoder's sanity checks);
// nullopt when the victim prefix does not read.
std::optional<EvidenceRequest> evidenceRequestFrom(wire::EvidenceRequest::Reader r);

struct EvidenceFrame {
  int64_t tsNs = 0;
  uint32_t origLen = 0;
  std::string data;  // at most snapLen bytes
};

// What a request collected, ready to send.
struct EvidenceResult {
  EvidenceRequest request;
  int linkType = 1;
  std::vector<EvidenceFrame> frames;
  std::string reason;  // "full", "deadline", "end_of_capture", "replaced"
};

struct EvidenceCounters {
  uint64_t requests = 0;
  uint64_t framesCopied = 0;
  uint64_t otherLinkType = 0;  // matching frames of a second link type: skipped
  uint64_t byteCapHits = 0;    // requests cut short by kMaxHeldBytes
};

// The armed-filter tap on the capture path: copies the first maxPackets
// frames that match the armed request, then disarms itself. With nothing
// armed, offer() costs one relaxed atomic load. At most one request is armed;
// what it holds is bounded by maxPackets * snapLen and by kMaxHeldBytes.
// Thread rules: offer() from any number of capture threads; arm(), take()
// and counters() from the control thread (the uplink's). A mutex guards the
// collection; capture threads take it only while a request is armed and
// the frame decodes and matches.
class EvidenceTap {
 public:
  static constexpr size_t kMaxHeldBytes = 16 << 20;

  void offer(const CapturedPacket& p) noexcept {
    if (!armed_.load(std::memory_order_relaxed)) return;
    offerArmed(p);
  }

  // Arms `request`; a request already armed is returned with reason
  // "replaced" (send what it holds).
  std::optional<EvidenceResult> arm(EvidenceRequest request);
  // The armed request's collection once it is full or past its deadline
  // (wall clock), or at once with `finalReason` (end of capture). Disarms.
  std::optional<EvidenceResult> take(int64_t nowWallNs, const char* finalReason = nullptr);
  bool holding() const;
  EvidenceCounters counters() const;

 private:
  void offerArmed(const CapturedPacket& p) noexcept;

  std::atomic<bool> armed_{false};
  mutable std::mutex mutex_;
  std::optional<EvidenceResult> current_;  // a request is held (armed or full)
  size_t heldBytes_ = 0;
  bool full_ = false;
  EvidenceCounters counters_;
};

// The Envelopes (evidence) that carry `result` from sensor `sensorId`,
// each at most `maxBytes` of frame data (one at least, even when empty).
std::vector<std::string> encodeEvidence(const EvidenceResult& result, const std::string& sensorId,
                                        size_t maxBytes);

}  // namespace garda::sensor
