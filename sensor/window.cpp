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

WindowCounter::VictimSketch::VictimSketch(const SketchLimits& l)
    : sources(std::max<size_t>(128, size_t{l.topSources} * 4)),
      distinct(l.hllPrecision),
      srcPorts(std::max<size_t>(16, size_t{l.topPorts} * 2)),
      dstPorts(std::max<size_t>(16, size_t{l.topPorts} * 2)) {}

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
  used_.assign(capacity, 0);
  usedSlots_.reserve(maxVictims);
  slotSketch_.assign(capacity, 0);
  pool_.reserve(maxVictims);
  for (unsigned i = 0; i < maxVictims; ++i) pool_.emplace_back(limits_);
  (void)reflectionBitmap();
  (void)reflectionIndexTable();
}

int64_t WindowCounter::victimSlot(const common::IpAddress& a) noexcept {
  size_t i = common::IpAddressHash{}(a) & mask_;
  while (used_[i]) {
    if (table_[i].address == a) return static_cast<int64_t>(i);
    i = (i + 1) & mask_;
  }
  if (usedSlots_.size() >= maxVictims_) return -1;
  used_[i] = 1;
  slotSketch_[i] = static_cast<uint32_t>(usedSlots_.size());
  usedSlots_.push_back(static_cast<uint32_t>(i));
  table_[i].address = a;
  return static_cast<int64_t>(i);
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
  if (protected_.contains(src)) outbound_.add(src);
  if (!protected_.contains(dst)) return nullptr;
  const int64_t slot = victimSlot(dst);
  if (slot < 0) {
    victimPacketsCut_++;
    return nullptr;
  }
  VictimCounters* victim = &table_[static_cast<size_t>(slot)];
  VictimSketch& sketch = pool_[slotSketch_[static_cast<size_t>(slot)]];
  sketch.sources.add(src);
  sketch.distinct.add(src);
  if (v.hasPorts) {
    sketch.srcPorts.add(v.srcPort);
    sketch.dstPorts.add(v.dstPort);
  }
  if (vec == Vector::kUdpReflection) {
    const auto r = static_cast<size_t>(reflectionPortIndex(v.srcPort));
    victim->reflectionPackets[r]++;
    victim->reflectionBytes[r] += p.wireLength;
  }
  auto k = static_cast<size_t>(vec);
  victim->packets++;
  victim->bytes += p.wireLength;
  victim->vectorPackets[k]++;
  victim->vectorBytes[k] += p.wireLength;
  return victim->packets == alertPackets_ ? victim : nullptr;
}

void WindowCounter::closeInto(WindowStats& out) {
  out.totals = totals_;
  out.victimsCut = 0;
  out.victimPacketsCut = victimPacketsCut_;
  out.decodeStatus = decodeStatus_;
  out.victims.clear();
  out.victims.reserve(usedSlots_.size());
  for (uint32_t i : usedSlots_) {
    VictimCounters& v = out.victims.emplace_back(std::move(table_[i]));
    VictimSketch& s = pool_[slotSketch_[i]];
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
    table_[i] = VictimCounters{};
    used_[i] = 0;
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
