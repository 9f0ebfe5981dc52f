#include "sensor/evidence.h"

#include <capnp/message.h>

#include <algorithm>

#include "common/envelope.h"

namespace garda::sensor {

bool EvidenceFilter::matches(const PacketView& v) const noexcept {
  if (v.ipVersion == 0) return false;
  const auto dst = v.ipVersion == 4 ? common::IpAddress::fromV4Bytes(v.dst)
                                    : common::IpAddress::fromV6Bytes(v.dst);
  if (!victim.contains(dst)) return false;
  if (protocol != 0 && v.l4Protocol != protocol) return false;
  if (v.isFragment && !v.isFirstFragment) return true;
  if (sourcePort != 0 && (!v.hasPorts || v.srcPort != sourcePort)) return false;
  if (destinationPort != 0 && (!v.hasPorts || v.dstPort != destinationPort)) return false;
  if (tcpFlagsMask != 0 && (v.l4Protocol != 6 || (v.tcpFlags & tcpFlagsMask) != tcpFlags))
    return false;
  return true;
}

std::optional<EvidenceRequest> evidenceRequestFrom(wire::EvidenceRequest::Reader r) {
  auto victim = common::readPrefix(r.getVictim());
  if (!victim) return std::nullopt;
  EvidenceRequest out;
  out.incidentId = r.getIncidentId();
  out.requestId = r.getRequestId();
  out.filter.victim = *victim;
  out.filter.protocol = r.getProtocol();
  out.filter.sourcePort = r.getSourcePort();
  out.filter.destinationPort = r.getDestinationPort();
  out.filter.tcpFlagsMask = r.getTcpFlagsMask();
  out.filter.tcpFlags = r.getTcpFlags();
  out.maxPackets = std::clamp<uint32_t>(r.getMaxPackets(), 1, common::kMaxEvidencePackets);
  out.snapLen = std::clamp<uint32_t>(r.getSnapLen(), common::kMinEvidenceSnapLen,
                                     common::kMaxEvidenceSnapLen);
  out.deadlineNs = r.getDeadlineNs();
  return out;
}

void EvidenceTap::offerArmed(const CapturedPacket& p) noexcept {
  PacketView v;
  if (decodePacket(p.linkType, p.data, p.capturedLength, v) != DecodeStatus::kOk) return;
  std::lock_guard lock(mutex_);
  if (!current_ || full_ || !current_->request.filter.matches(v)) return;
  auto& c = *current_;
  if (c.frames.empty()) {
    c.linkType = p.linkType;
  } else if (c.linkType != p.linkType) {
    counters_.otherLinkType++;
    return;
  }
  const size_t n = std::min<size_t>(p.capturedLength, c.request.snapLen);
  try {
    c.frames.push_back({p.timestampNs, std::max<uint32_t>(p.wireLength, static_cast<uint32_t>(n)),
                        std::string(reinterpret_cast<const char*>(p.data), n)});
  } catch (const std::bad_alloc&) {
    full_ = true;
    armed_.store(false, std::memory_order_relaxed);
    return;
  }
  heldBytes_ += n;
  counters_.framesCopied++;
  if (c.frames.size() >= c.request.maxPackets || heldBytes_ + c.request.snapLen > kMaxHeldBytes) {
    if (c.frames.size() < c.request.maxPackets) counters_.byteCapHits++;
    full_ = true;
    armed_.store(false, std::memory_order_relaxed);
  }
}

std::optional<EvidenceResult> EvidenceTap::arm(EvidenceRequest request) {
  std::optional<EvidenceResult> previous;
  std::lock_guard lock(mutex_);
  if (current_) {
    EvidenceResult held = std::move(*current_);
    held.reason = "replaced";
    previous.emplace(std::move(held));
  }
  counters_.requests++;
  current_.emplace();
  current_->request = std::move(request);
  current_->frames.reserve(std::min<size_t>(current_->request.maxPackets, 1024));
  heldBytes_ = 0;
  full_ = false;
  armed_.store(true, std::memory_order_relaxed);
  return previous;
}

std::optional<EvidenceResult> EvidenceTap::take(int64_t nowWallNs, const char* finalReason) {
  std::lock_guard lock(mutex_);
  if (!current_) return std::nullopt;
  const char* reason = full_ ? "full"
                       : nowWallNs >= current_->request.deadlineNs ? "deadline"
                                                                   : finalReason;
  if (!reason) return std::nullopt;
  armed_.store(false, std::memory_order_relaxed);
  EvidenceResult out = std::move(*current_);
  current_.reset();
  out.reason = reason;
  heldBytes_ = 0;
  full_ = false;
  return out;
}

bool EvidenceTap::holding() const {
  std::lock_guard lock(mutex_);
  return current_.has_value();
}

EvidenceCounters EvidenceTap::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

std::vector<std::string> encodeEvidence(const EvidenceResult& r, const std::string& sensorId,
                                        size_t maxBytes) {
  std::vector<std::string> out;
  size_t next = 0;
  uint32_t part = 0;
  do {
    size_t end = next, bytes = 0;
    while (end < r.frames.size() && (end == next || bytes + r.frames[end].data.size() <= maxBytes)) {
      bytes += r.frames[end].data.size();
      ++end;
    }
    capnp::MallocMessageBuilder message;
    auto e = common::initEnvelope(message).getBody().initEvidence();
    e.setIncidentId(r.request.incidentId);
    e.setRequestId(r.request.requestId);
    e.setSensorId(sensorId);
    e.setLinkType(static_cast<uint16_t>(r.linkType));
    auto packets = e.initPackets(static_cast<unsigned>(end - next));
    for (size_t i = next; i < end; ++i) {
      auto p = packets[static_cast<unsigned>(i - next)];
      const auto& f = r.frames[i];
      p.setTsNs(f.tsNs);
      p.setOrigLen(f.origLen);
      p.setData(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(f.data.data()),
                                    f.data.size()));
    }
    e.setPart(part++);
    e.setDone(end == r.frames.size());
    if (end == r.frames.size()) e.setReason(r.reason);
    out.push_back(common::encodeMessage(message));
    next = end;
  } while (next < r.frames.size());
  return out;
}

}  // namespace garda::sensor
