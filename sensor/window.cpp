#include "sensor/window.h"

#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <bitset>
#include <iterator>
#include <unordered_map>

namespace garda::sensor {
namespace {

constexpr uint16_t kReflectionPorts[] = {
    19,     // chargen
    53,     // DNS
    69,     // TFTP
    111,    // portmap
    123,    // NTP
    137,    // NetBIOS name service
    161,    // SNMP
    389,    // CLDAP
    500,    // IKE
    520,    // RIP
    1434,   // MS SQL resolution
    1900,   // SSDP
    3283,   // Apple Remote Desktop
    3702,   // WS-Discovery
    4500,   // IKE NAT-T
    5353,   // mDNS
    5683,   // CoAP
    10001,  // Ubiquiti discovery
    11211,  // memcached
    37810,  // DVR/IoT discovery
    47808,  // BACnet
};

const std::bitset<65536>& reflectionBitmap() {
  static const std::bitset<65536> bits = [] {
    std::bitset<65536> b;
    for (uint16_t p : kReflectionPorts) b.set(p);
    return b;
  }();
  return bits;
}

size_t roundUpPow2(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

static_assert(std::size(kReflectionPorts) == kReflectionPortCount);

const std::array<int8_t, 65536>& reflectionIndexTable() {
  static const std::array<int8_t, 65536> table = [] {
    std::array<int8_t, 65536> t;
    t.fill(-1);
    for (size_t i = 0; i < kReflectionPortCount; ++i)
      t[kReflectionPorts[i]] = static_cast<int8_t>(i);
    return t;
  }();
  return table;
}

}  // namespace

bool isReflectionPort(uint16_t port) noexcept { return reflectionBitmap().test(port); }
uint16_t reflectionPortAt(size_t i) noexcept { return kReflectionPorts[i]; }
int reflectionPortIndex(uint16_t port) noexcept { return reflectionIndexTable()[port]; }

namespace {

common::IpAddress addressOf(const PacketView& v, const uint8_t* bytes) noexcept {
  return v.ipVersion == 4 ? common::IpAddress::fromV4Bytes(bytes)
                          : common::IpAddress::fromV6Bytes(bytes);
}

template <typename Sketch, typename Out, typename Fill>
void topInto(const Sketch& s, size_t n, std::vector<Out>& out, Fill fill) {
  auto top = s.top(n);
  out.clear();
  out.reserve(top.size());
  for (const auto& e : top) out.push_back(fill(e));
}

}  // namespace

namespace {

// Filter shapes (see FilteredSpaceSaving for the bounds they give). Sources:
// 2^10 counters (4 KiB), threshold 2 + n/512, so with 128 counters every
// source above 0.98% of a victim's packets plus 2 is reported. Ports: 2^7
// counters (512 B), threshold 2 + n/64, so with 20 counters every port above
// 6.6% plus 2 is reported.
FilteredSpaceSaving<common::IpAddress>::Shape sourceShape(const SketchLimits& l) {
  return {std::max<size_t>(128, size_t{l.topSources} * 4), 10, 9, 2};
}
FilteredSpaceSaving<uint16_t>::Shape portShape(const SketchLimits& l) {
  return {std::max<size_t>(16, size_t{l.topPorts} * 2), 7, 6, 2};
}

}  // namespace

WindowCounter::VictimSketch::VictimSketch(const SketchLimits& l)
    : sources(sourceShape(l)),
      distinct(l.hllPrecision),
      srcPorts(portShape(l)),
      dstPorts(portShape(l)) {}

WindowCounter::WindowCounter(const common::PrefixSet& protectedSet, unsigned maxVictims,
                             uint64_t alertPackets, SketchLimits limits)
    : protected_(protectedSet),
      maxVictims_(maxVictims),
      alertPackets_(alertPackets),
      outbound_(std::max<size_t>(64, size_t{limits.topSources} * 4)),
      limits_(limits) {
  size_t capacity = roundUpPow2(std::max<size_t>(16, size_t{maxVictims} * 2));
  mask_ = capacity - 1;
  table_.resize(capacity);
  usedSlots_.reserve(maxVictims);
  traffic_.resize(maxVictims);
  pool_.reserve(maxVictims);
  for (unsigned i = 0; i < maxVictims; ++i) pool_.emplace_back(limits_);
  (void)reflectionBitmap();
  (void)reflectionIndexTable();
  constexpr size_t kMaxScannedPrefixes = 16;
  if (protectedSet.prefixes().size() <= kMaxScannedPrefixes) {
    for (const common::Prefix& p : protectedSet.prefixes()) {
      const unsigned len = p.length128();
      const uint64_t maskHi = len == 0 ? 0 : len >= 64 ? ~0ULL : ~0ULL << (64 - len);
      const uint64_t maskLo = len <= 64 ? 0 : len == 128 ? ~0ULL : ~0ULL << (128 - len);
      protectedScan_.push_back({maskHi, maskLo, p.address().hi() & maskHi,
                                p.address().lo() & maskLo});
    }
  }
}

bool WindowCounter::isProtected(const common::IpAddress& a) const noexcept {
  if (protectedScan_.empty() && !protected_.empty()) return protected_.contains(a);
  for (const MaskedPrefix& p : protectedScan_) {
    if ((a.hi() & p.maskHi) == p.hi && (a.lo() & p.maskLo) == p.lo) return true;
  }
  return false;
}

int64_t WindowCounter::victimSlot(const common::IpAddress& a) noexcept {
  size_t i = common::IpAddressHash{}(a) & mask_;
  while (table_[i].sketchPlus1 != 0) {
    if (table_[i].address == a) return static_cast<int64_t>(i);
    i = (i + 1) & mask_;
  }
  if (usedSlots_.size() >= maxVictims_) return -1;
  table_[i].sketchPlus1 = static_cast<uint32_t>(usedSlots_.size()) + 1;
  usedSlots_.push_back(static_cast<uint32_t>(i));
  table_[i].address = a;
  return static_cast<int64_t>(i);
}

inline void WindowCounter::prefetchSketchData(const SketchUpdate& u) const noexcept {
  const VictimSketch& s = pool_[u.sketch];
  s.sources.prefetch(u.sourceHash);
  s.distinct.prefetch(u.distinctHash);
  if (u.hasPorts) {
    s.srcPorts.prefetch(s.srcPorts.hashOf(u.srcPort));
    s.dstPorts.prefetch(s.dstPorts.hashOf(u.dstPort));
  }
}

inline void WindowCounter::prefetchSpaceSaving(const SketchUpdate& u) const noexcept {
  const VictimSketch& s = pool_[u.sketch];
  s.sources.prefetchSketch(u.sourceHash);
  if (u.hasPorts) {
    s.srcPorts.prefetchSketch(s.srcPorts.hashOf(u.srcPort));
    s.dstPorts.prefetchSketch(s.dstPorts.hashOf(u.dstPort));
  }
}

void WindowCounter::applySketchUpdate(const SketchUpdate& u) noexcept {
  VictimSketch& s = pool_[u.sketch];
  s.sources.add(u.source, u.sourceHash);
  s.distinct.addHash(u.distinctHash);
  if (u.hasPorts) {
    s.srcPorts.add(u.srcPort);
    s.dstPorts.add(u.dstPort);
  }
}

void WindowCounter::drainSketchUpdates() noexcept {
  for (; pendingTail_ < pendingHead_; ++pendingTail_)
    applySketchUpdate(pending_[pendingTail_ & (kPipelineDepth - 1)]);
}

void WindowCounter::copyCounters(const VictimSlot& slot, VictimCounters& v) const noexcept {
  const VictimTraffic& t = traffic_[slot.sketchPlus1 - 1];
  v.address = slot.address;
  v.packets = slot.packets;
  v.bytes = slot.bytes;
  for (size_t k = 0; k < kVectorCount; ++k) {
    v.vectorPackets[k] = t.vectors[k].packets;
    v.vectorBytes[k] = t.vectors[k].bytes;
  }
  for (size_t r = 0; r < kReflectionPortCount; ++r) {
    v.reflectionPackets[r] = t.reflection[r].packets;
    v.reflectionBytes[r] = t.reflection[r].bytes;
  }
}

const VictimCounters* WindowCounter::alertView(const VictimSlot& slot) noexcept {
  copyCounters(slot, alert_);
  return &alert_;
}

const VictimCounters* WindowCounter::count(const CapturedPacket& p) noexcept {
  totals_.packets++;
  totals_.bytes += p.wireLength;
  PacketView v;
  DecodeStatus st = decodePacket(p.linkType, p.data, p.capturedLength, v);
  decodeStatus_[static_cast<size_t>(st)]++;
  if (st != DecodeStatus::kOk) {
    totals_.other++;
    return nullptr;
  }
  Vector vec;
  switch (v.l4Protocol) {
    case IPPROTO_TCP:
      totals_.tcp++;
      if (v.isFragment && !v.isFirstFragment) vec = Vector::kFragment;
      else if ((v.tcpFlags & 0x12) == 0x02) vec = Vector::kTcpSyn;
      else if ((v.tcpFlags & 0x12) == 0x12) vec = Vector::kTcpSynAck;
      else vec = Vector::kTcpOther;
      break;
    case IPPROTO_UDP:
      totals_.udp++;
      if (v.isFragment && !v.isFirstFragment) vec = Vector::kFragment;
      else vec = isReflectionPort(v.srcPort) ? Vector::kUdpReflection : Vector::kUdp;
      break;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      totals_.icmp++;
      vec = (v.isFragment && !v.isFirstFragment) ? Vector::kFragment : Vector::kIcmp;
      break;
    default:
      totals_.other++;
      vec = (v.isFragment && !v.isFirstFragment) ? Vector::kFragment : Vector::kOther;
      break;
  }
  const common::IpAddress src = addressOf(v, v.src);
  const common::IpAddress dst = addressOf(v, v.dst);
  if (isProtected(src)) outbound_.add(src);
  if (!isProtected(dst)) return nullptr;
  const int64_t slotIndex = victimSlot(dst);
  if (slotIndex < 0) {
    victimPacketsCut_++;
    return nullptr;
  }
  VictimSlot& slot = table_[static_cast<size_t>(slotIndex)];
  const uint32_t sketch = slot.sketchPlus1 - 1;

  // Queue the sketch work (three prefetch stages, see the class comment).
  SketchUpdate& u = pending_[pendingHead_ & (kPipelineDepth - 1)];
  if (pendingHead_ - pendingTail_ == kPipelineDepth) {
    applySketchUpdate(u);
    ++pendingTail_;
  }
  const VictimSketch& s = pool_[sketch];
  __builtin_prefetch(&s.sources);
  __builtin_prefetch(&s.distinct);
  __builtin_prefetch(&s.srcPorts);
  __builtin_prefetch(&s.dstPorts);
  u.source = src;
  u.sourceHash = s.sources.hashOf(src);
  u.distinctHash = HyperLogLog::hashAddress(src);
  u.sketch = sketch;
  u.srcPort = v.srcPort;
  u.dstPort = v.dstPort;
  u.hasPorts = v.hasPorts;
  ++pendingHead_;
  const uint64_t queued = pendingHead_ - pendingTail_;
  if (queued > kDataPrefetchAge)
    prefetchSketchData(pending_[(pendingHead_ - kDataPrefetchAge - 1) & (kPipelineDepth - 1)]);
  if (queued > kSketchPrefetchAge)
    prefetchSpaceSaving(pending_[(pendingHead_ - kSketchPrefetchAge - 1) & (kPipelineDepth - 1)]);

  VictimTraffic& t = traffic_[sketch];
  if (vec == Vector::kUdpReflection) {
    const auto r = static_cast<size_t>(reflectionPortIndex(v.srcPort));
    t.reflection[r].packets++;
    t.reflection[r].bytes += p.wireLength;
  }
  auto k = static_cast<size_t>(vec);
  t.vectors[k].packets++;
  t.vectors[k].bytes += p.wireLength;
  slot.packets++;
  slot.bytes += p.wireLength;
  return slot.packets == alertPackets_ ? alertView(slot) : nullptr;
}

void WindowCounter::closeInto(WindowStats& out) {
  drainSketchUpdates();
  out.totals = totals_;
  out.victimsCut = 0;
  out.victimPacketsCut = victimPacketsCut_;
  out.decodeStatus = decodeStatus_;
  out.victims.clear();
  out.victims.reserve(usedSlots_.size());
  for (uint32_t i : usedSlots_) {
    VictimSlot& slot = table_[i];
    const uint32_t sketch = slot.sketchPlus1 - 1;
    VictimCounters& v = out.victims.emplace_back();
    copyCounters(slot, v);
    VictimSketch& s = pool_[sketch];
    topInto(s.sources, limits_.topSources, v.topSources, [](const auto& e) {
      return SourceCount{e.key, e.count, e.error};
    });
    auto port = [](const auto& e) { return PortCount{e.key, e.count}; };
    topInto(s.srcPorts, limits_.topPorts, v.topSrcPorts, port);
    topInto(s.dstPorts, limits_.topPorts, v.topDstPorts, port);
    v.distinctSources = s.distinct.estimate();
    v.sourceRegisters.assign(s.distinct.registers().begin(), s.distinct.registers().end());
    s.sources.reset();
    s.distinct.reset();
    s.srcPorts.reset();
    s.dstPorts.reset();
    traffic_[sketch] = VictimTraffic{};
    slot = VictimSlot{};
  }
  topInto(outbound_, limits_.topSources, out.outbound, [](const auto& e) {
    return SourceCount{e.key, e.count, e.error};
  });
  outbound_.reset();
  std::sort(out.victims.begin(), out.victims.end(),
            [](const VictimCounters& a, const VictimCounters& b) { return a.packets > b.packets; });
  usedSlots_.clear();
  totals_ = {};
  victimPacketsCut_ = 0;
  decodeStatus_ = {};
}

Windower::Windower(const common::PrefixSet& protectedSet, unsigned windowMs, unsigned maxVictims,
                   CloseFn onClose, bool emitEmpty, int64_t closeGraceNs,
                   SketchLimits limits)
    : counter_(protectedSet, maxVictims, 0, limits),
      windowNs_(int64_t{windowMs} * 1'000'000),
      onClose_(std::move(onClose)),
      emitEmpty_(emitEmpty),
      closeGraceNs_(closeGraceNs) {
  stats_.windowMs = windowMs;
}

void Windower::onPacket(const CapturedPacket& p) {
  int64_t ts = std::max<int64_t>(p.timestampNs, 0);
  if (openStartNs_ >= 0 && ts >= openStartNs_ + windowNs_) closeWindow();
  if (openStartNs_ < 0) openStartNs_ = std::max(ts - ts % windowNs_, closedUntilNs_);
  if (ts < openStartNs_) late_++;
  if (const VictimCounters* v = counter_.count(p); v && onAlert_) {
    auto top = std::max_element(v->vectorPackets.begin(), v->vectorPackets.end());
    onAlert_({v->address, static_cast<Vector>(top - v->vectorPackets.begin()), v->packets,
              openStartNs_, ts});
  }
}

void Windower::setAlert(uint64_t packetsPerWindow, AlertFn fn) {
  counter_.setAlertPackets(packetsPerWindow);
  onAlert_ = std::move(fn);
}

void Windower::tick(int64_t nowNs) {
  if (openStartNs_ >= 0 && nowNs >= openStartNs_ + windowNs_ + closeGraceNs_) closeWindow();
  if (emitEmpty_ && openStartNs_ < 0 && nowNs > 0)
    openStartNs_ = std::max(nowNs - nowNs % windowNs_, closedUntilNs_);
}

void Windower::flush() {
  if (openStartNs_ >= 0) closeWindow();
}

void Windower::closeWindow() {
  closedUntilNs_ = openStartNs_ + windowNs_;
  const int64_t start = openStartNs_;
  openStartNs_ = -1;
  if (counter_.empty() && !emitEmpty_) return;
  counter_.closeInto(stats_);
  stats_.startNs = start;
  stats_.latePackets = late_;
  late_ = 0;
  onClose_(stats_);
}

namespace {

// Sums two top lists by key (upper bounds and errors add), keeps the larger
// length of the two, highest first.
template <typename T, typename KeyOf>
void mergeTop(std::vector<T>& into, const std::vector<T>& from, KeyOf keyOf) {
  const size_t keep = std::max(into.size(), from.size());
  for (const auto& e : from) {
    auto it = std::find_if(into.begin(), into.end(),
                           [&](const T& x) { return keyOf(x) == keyOf(e); });
    if (it == into.end()) {
      into.push_back(e);
    } else {
      it->packets += e.packets;
      if constexpr (requires { e.error; }) it->error += e.error;
    }
  }
  std::sort(into.begin(), into.end(), [](const T& a, const T& b) { return a.packets > b.packets; });
  if (into.size() > keep) into.resize(keep);
}

void mergeVictim(VictimCounters& t, const VictimCounters& v) {
  t.packets += v.packets;
  t.bytes += v.bytes;
  for (size_t k = 0; k < kVectorCount; ++k) {
    t.vectorPackets[k] += v.vectorPackets[k];
    t.vectorBytes[k] += v.vectorBytes[k];
  }
  for (size_t k = 0; k < kReflectionPortCount; ++k) {
    t.reflectionPackets[k] += v.reflectionPackets[k];
    t.reflectionBytes[k] += v.reflectionBytes[k];
  }
  auto address = [](const SourceCount& s) { return s.address; };
  auto port = [](const PortCount& p) { return p.port; };
  mergeTop(t.topSources, v.topSources, address);
  mergeTop(t.topSrcPorts, v.topSrcPorts, port);
  mergeTop(t.topDstPorts, v.topDstPorts, port);
  if (!t.sourceRegisters.empty() && t.sourceRegisters.size() == v.sourceRegisters.size()) {
    // The union's distinct count comes from the merged registers, not a sum.
    HyperLogLog h(static_cast<unsigned>(std::countr_zero(t.sourceRegisters.size())));
    h.mergeRegisters(t.sourceRegisters);
    h.mergeRegisters(v.sourceRegisters);
    t.distinctSources = h.estimate();
    t.sourceRegisters.assign(h.registers().begin(), h.registers().end());
  } else {
    t.distinctSources += v.distinctSources;
  }
}

}  // namespace

void mergeWindow(WindowStats& into, const WindowStats& from, unsigned maxVictims) {
  into.totals.packets += from.totals.packets;
  into.totals.bytes += from.totals.bytes;
  into.totals.tcp += from.totals.tcp;
  into.totals.udp += from.totals.udp;
  into.totals.icmp += from.totals.icmp;
  into.totals.other += from.totals.other;
  into.latePackets += from.latePackets;
  into.victimsCut += from.victimsCut;
  into.victimPacketsCut += from.victimPacketsCut;
  for (size_t k = 0; k < into.decodeStatus.size(); ++k) into.decodeStatus[k] += from.decodeStatus[k];
  std::unordered_map<common::IpAddress, size_t, common::IpAddressHash> index;
  for (size_t i = 0; i < into.victims.size(); ++i) index[into.victims[i].address] = i;
  for (const auto& v : from.victims) {
    auto [it, fresh] = index.emplace(v.address, into.victims.size());
    if (fresh) {
      into.victims.push_back(v);
      continue;
    }
    mergeVictim(into.victims[it->second], v);
  }
  mergeTop(into.outbound, from.outbound, [](const SourceCount& s) { return s.address; });
  std::sort(into.victims.begin(), into.victims.end(),
            [](const VictimCounters& a, const VictimCounters& b) { return a.packets > b.packets; });
  if (into.victims.size() > maxVictims) {
    into.victimsCut += static_cast<uint32_t>(into.victims.size() - maxVictims);
    into.victims.resize(maxVictims);
  }
}

}  // namespace garda::sensor
