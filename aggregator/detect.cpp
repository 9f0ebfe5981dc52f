#include "aggregator/detect.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <optional>

#include "common/envelope.h"

namespace garda::aggregator {
namespace {

constexpr int64_t kNsPerMs = 1'000'000;
constexpr uint32_t kMaxSamples = 1u << 30;
constexpr uint8_t kRecordVersion = 1;
constexpr size_t kRecordValueSize = 1 + 8 + 8 + 8 + 4 + 2 + 2 + 1;

constexpr std::string_view kVectorNames[kWireVectorCount] = {
    "tcp_syn", "tcp_syn_ack", "tcp_other", "udp", "udp_reflection", "icmp", "fragment", "other"};

size_t vectorIndex(wire::Vector v) noexcept {
  return static_cast<size_t>(v);
}

// The key "vector" of a reflection port's bits-per-second baseline: one past
// the wire vectors, so it never collides with a packet-rate key.
constexpr uint8_t kReflectionVolume = kWireVectorCount;

wire::Vector wireVectorOf(uint8_t keyVector) noexcept {
  return keyVector == kReflectionVolume ? wire::Vector::UDP_REFLECTION
                                        : static_cast<wire::Vector>(keyVector);
}

void putU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void putU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void putU16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}
uint64_t getLe(std::string_view in, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(in[at + i])) << (8 * i);
  return v;
}
uint64_t getBe(std::string_view in, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[at + i]);
  return v;
}

}  // namespace

std::string_view vectorName(wire::Vector v) noexcept {
  size_t i = vectorIndex(v);
  return i < kWireVectorCount ? kVectorNames[i] : std::string_view("unknown");
}

bool vectorFromName(std::string_view name, wire::Vector& out) noexcept {
  for (size_t i = 0; i < kWireVectorCount; ++i) {
    if (kVectorNames[i] == name) {
      out = static_cast<wire::Vector>(i);
      return true;
    }
  }
  return false;
}

std::string_view classifyAttack(wire::Vector v, uint16_t reflectionPort) noexcept {
  switch (v) {
    case wire::Vector::TCP_SYN:
      return "syn_flood";
    case wire::Vector::TCP_SYN_ACK:
      return "synack_reflection";
    case wire::Vector::TCP_OTHER:
      return "ack_rst_flood";
    case wire::Vector::UDP:
      return "udp_flood";
    case wire::Vector::ICMP:
      return "icmp_flood";
    case wire::Vector::FRAGMENT:
      return "fragment_flood";
    case wire::Vector::OTHER:
      return "ip_proto_flood";
    case wire::Vector::UDP_REFLECTION:
      break;
  }
  switch (reflectionPort) {
    case 19:
      return "chargen_reflection";
    case 53:
      return "dns_reflection";
    case 69:
      return "tftp_reflection";
    case 111:
      return "portmap_reflection";
    case 123:
      return "ntp_reflection";
    case 137:
      return "netbios_reflection";
    case 161:
      return "snmp_reflection";
    case 389:
      return "cldap_reflection";
    case 500:
      return "ike_reflection";
    case 520:
      return "rip_reflection";
    case 1434:
      return "mssql_reflection";
    case 1900:
      return "ssdp_reflection";
    case 3283:
      return "ard_reflection";
    case 3702:
      return "wsd_reflection";
    case 4500:
      return "ike_reflection";
    case 5353:
      return "mdns_reflection";
    case 5683:
      return "coap_reflection";
    case 10001:
      return "ubiquiti_reflection";
    case 11211:
      return "memcached_reflection";
    case 37810:
      return "dvr_reflection";
    case 47808:
      return "bacnet_reflection";
    default:
      return "udp_reflection";
  }
}

Detector::Detector(DetectConfig config) : config_(config) {}

uint32_t Detector::sensorIndex(std::string_view id) {
  if (auto it = sensorIds_.find(id); it != sensorIds_.end()) return it->second;
  auto index = static_cast<uint32_t>(sensors_.size());
  sensors_.push_back(Sensor{});
  sensors_.back().id = std::string(id);
  sensorIds_.emplace(std::string(id), index);
  setWindow(sensors_.back(), 1000);
  return index;
}

void Detector::setWindow(Sensor& s, unsigned windowMs) {
  if (windowMs == 0) windowMs = 1000;
  if (s.windowMs == windowMs) return;
  s.windowMs = windowMs;
  auto windows = [windowMs](unsigned ms) {
    return std::max<uint32_t>(1, (ms + windowMs - 1) / windowMs);
  };
  s.sustainWindows = windows(config_.sustainMs);
  s.clearWindows = windows(config_.clearMs);
  s.warmupWindows = windows(config_.warmupMs);
  s.alpha = config_.baselineHalfLifeMs == 0
                ? 1.0
                : 1.0 - std::exp2(-static_cast<double>(windowMs) / config_.baselineHalfLifeMs);
}

size_t Detector::StateTable::VictimKeyHash::operator()(const VictimKey& k) const noexcept {
  uint64_t x = common::IpAddressHash{}(k.victim) ^ (uint64_t{k.sensor} * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 32;
  return static_cast<size_t>(x);
}

Detector::State* Detector::StateTable::Victim::find(const Key& k) {
  if (!looked_) {
    auto it = table_->byVictim_.find(VictimKey{victim_, sensor_});
    slots_ = it == table_->byVictim_.end() ? nullptr : &it->second;
    looked_ = true;
  }
  if (slots_ == nullptr) return nullptr;
  const uint32_t sub = subOf(k);
  for (auto& slot : *slots_)
    if (slot.sub == sub) return &slot.state;
  return nullptr;
}

Detector::State& Detector::StateTable::Victim::at(const Key& k) {
  if (slots_ == nullptr) {
    slots_ = &table_->byVictim_[VictimKey{victim_, sensor_}];
    looked_ = true;
  }
  const uint32_t sub = subOf(k);
  for (auto& slot : *slots_)
    if (slot.sub == sub) return slot.state;
  ++table_->size_;
  return slots_->emplace_back(Slot{sub, State{}}).state;
}

Detector::State* Detector::StateTable::find(const Key& k) {
  return victim(k.victim, k.sensor).find(k);
}

const Detector::State* Detector::StateTable::find(const Key& k) const {
  return const_cast<StateTable*>(this)->find(k);
}

Detector::State& Detector::StateTable::operator[](const Key& k) {
  return victim(k.victim, k.sensor).at(k);
}

void Detector::StateTable::erase(const Key& k) {
  auto it = byVictim_.find(VictimKey{k.victim, k.sensor});
  if (it == byVictim_.end()) return;
  auto& slots = it->second;
  const uint32_t sub = subOf(k);
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].sub != sub) continue;
    if (i + 1 != slots.size()) slots[i] = std::move(slots.back());
    slots.pop_back();
    --size_;
    break;
  }
  if (slots.empty()) byVictim_.erase(it);
}

Detector::State& Detector::stateFor(const Key& key) {
  return states_[key];
}

double Detector::threshold(const State& st, const Sensor& s, double floor) const noexcept {
  if (st.samples < s.warmupWindows) return floor;
  double sigma = std::max(std::sqrt(std::max(st.var, 0.0)), config_.minRelativeSigma * st.mean);
  return std::max(floor, st.mean + config_.k * sigma);
}

void Detector::fold(State& st, const Sensor& s, double pps) const noexcept {
  // Until the EWMA weight is reached this is the running mean of the samples
  // so far, so a young baseline is not dominated by its first window.
  double a = std::max(s.alpha, 1.0 / (static_cast<double>(st.samples) + 1.0));
  double diff = pps - st.mean;
  double incr = a * diff;
  st.mean += incr;
  st.var = (1.0 - a) * (st.var + diff * incr);
  if (st.samples < kMaxSamples) st.samples++;
}

void Detector::foldZeros(State& st, const Sensor& s, uint64_t n) const noexcept {
  while (n > 0 && 1.0 / (static_cast<double>(st.samples) + 1.0) > s.alpha) {
    fold(st, s, 0.0);
    --n;
  }
  if (n == 0) return;
  // n zero samples at a fixed weight a, r = 1 - a, in closed form:
  // mean' = r^n mean, var' = r^n (var + mean^2 (1 - r^n)).
  double rn = std::pow(1.0 - s.alpha, static_cast<double>(n));
  st.var = rn * (st.var + st.mean * st.mean * (1.0 - rn));
  st.mean *= rn;
  st.samples = static_cast<uint32_t>(std::min<uint64_t>(kMaxSamples, st.samples + n));
}

void Detector::markDirty(const Key& key, State& st) {
  if (st.dirty) return;
  st.dirty = true;
  dirty_.push_back(key);
}

void Detector::deactivate(Sensor& s, const Key& key) {
  auto it = std::find(s.active.begin(), s.active.end(), key);
  if (it == s.active.end()) return;
  *it = s.active.back();
  s.active.pop_back();
}

void Detector::emitQuiet(const Key& key, const Sensor& s, int64_t windowStartNs) {
  auto& q = batch_.quiets.emplace_back();
  q.sensorId = s.id;
  q.victim = key.victim;
  q.vector = wireVectorOf(key.vector);
  q.reflectionPort = key.port;
  q.classification = classifyAttack(q.vector, key.port);
  q.windowStartNs = windowStartNs;
  q.windowMs = s.windowMs;
  counters_.quiets++;
}

bool Detector::update(const Key& key, State& st, Sensor& s, int64_t windowStartNs, double pps,
                      double floor) {
  counters_.observations++;
  const int64_t windowNs = static_cast<int64_t>(s.windowMs) * kNsPerMs;
  auto clear = [&](int64_t atNs) {
    if (st.reported) emitQuiet(key, s, atNs);
    st.active = false;
    st.reported = false;
    st.below = 0;
    deactivate(s, key);
  };
  if (st.lastWindowStartNs != 0) {
    if (windowStartNs <= st.lastWindowStartNs) {
      counters_.staleWindows++;
      return false;
    }
    // Windows the sensor did not report for this key: zero traffic.
    uint64_t gap = static_cast<uint64_t>((windowStartNs - st.lastWindowStartNs) / windowNs);
    gap = gap > 0 ? gap - 1 : 0;
    if (gap > 0) {
      st.above = 0;
      if (st.active) {
        uint64_t need = s.clearWindows > st.below ? s.clearWindows - st.below : 1;
        if (gap >= need) {
          clear(st.lastWindowStartNs + static_cast<int64_t>(need) * windowNs);
          foldZeros(st, s, gap - need);
        } else {
          st.below = static_cast<uint16_t>(st.below + gap);
        }
      } else {
        foldZeros(st, s, gap);
      }
    }
  }
  st.lastWindowStartNs = windowStartNs;
  markDirty(key, st);

  const double thr = threshold(st, s, floor);
  if (pps > thr) {
    st.below = 0;
    if (st.above < std::numeric_limits<uint16_t>::max()) st.above++;
    // M windows over the threshold, or one window that alone carries what
    // M windows at the threshold would (a short, hard burst: a capture of
    // 0.1 s of attack, or the first second of a big one).
    const bool burst = pps * s.windowMs >= thr * config_.sustainMs;
    if (!st.active && (st.above >= s.sustainWindows || burst)) {
      st.active = true;
      st.reported = false;
      s.active.push_back(key);
    }
    return st.active;
  }
  st.above = 0;
  if (st.active) {
    // Still under attack as far as the baseline is concerned: not folded.
    if (++st.below >= s.clearWindows) clear(windowStartNs);
    return false;
  }
  fold(st, s, pps);
  return false;
}

void Detector::emitAnomaly(const Key& key, const State& st, const Sensor& s, VictimContext& v,
                           int64_t windowStartNs, double pps, double bps, double floor) {
  auto& a = batch_.anomalies.emplace_back();
  a.sensorId = s.id;
  a.victim = key.victim;
  a.vector = wireVectorOf(key.vector);
  a.reflectionPort = key.port;
  a.classification = classifyAttack(a.vector, key.port);
  a.victimClassification = a.classification;
  a.pps = pps;
  a.bps = bps;
  a.byVolume = key.vector == kReflectionVolume;
  a.warmingUp = st.samples < s.warmupWindows;
  if (!a.warmingUp) {
    a.baselineMean = st.mean;
    a.baselineSigma = std::sqrt(std::max(st.var, 0.0));
  }
  (a.byVolume ? a.thresholdBps : a.thresholdPps) = threshold(st, s, floor);
  a.onset = !st.reported;
  a.windowStartNs = windowStartNs;
  a.windowMs = s.windowMs;
  counters_.anomalies++;
  if (a.onset) counters_.onsets++;
  if (!v.hasStats) return;
  if (v.readInto < batch_.anomalies.size() - 1) {
    const Anomaly& first = batch_.anomalies[v.readInto];
    a.victimPackets = first.victimPackets;
    a.distinctSources = first.distinctSources;
    a.topSources = first.topSources;
    a.topDstPorts = first.topDstPorts;
    return;
  }
  v.readInto = batch_.anomalies.size() - 1;
  a.victimPackets = v.stats.getPackets();
  a.distinctSources = v.stats.getDistinctSources();
  auto sources = v.stats.getTopSources();
  a.topSources.reserve(sources.size());
  for (auto src : sources) {
    auto addr = common::readAddress(src.getAddress());
    if (!addr) continue;
    a.topSources.push_back({*addr, src.getPackets(), src.getError()});
  }
  auto ports = v.stats.getTopDstPorts();
  a.topDstPorts.reserve(ports.size());
  for (auto p : ports) a.topDstPorts.push_back({p.getPort(), p.getPackets()});
}

bool Detector::observeReflectionVolume(VictimContext& v, StateTable::Victim& states,
                                       uint32_t sensor, Sensor& s, int64_t windowStartNs) {
  uint64_t fragPackets = 0, fragBytes = 0;
  for (auto vc : v.stats.getVectors())
    if (vc.getVector() == wire::Vector::FRAGMENT) {
      fragPackets += vc.getPackets();
      fragBytes += vc.getBytes();
    }
  auto ports = v.stats.getReflectionPorts();
  unsigned top = 0;
  for (unsigned i = 1; i < ports.size(); ++i)
    if (ports[i].getBytes() > ports[top].getBytes()) top = i;
  const double perSecond = 1000.0 / s.windowMs;
  bool active = false;
  for (unsigned i = 0; i < ports.size(); ++i) {
    auto pc = ports[i];
    uint64_t packets = pc.getPackets(), bytes = pc.getBytes();
    // Fragments follow answers: a port without any in this window gets none.
    if (i == top && packets > 0) {
      packets += fragPackets;
      bytes += fragBytes;
    }
    double bps = static_cast<double>(bytes) * 8 * perSecond;
    // Small answers are the victim's own lookups, however many: no volume.
    if (packets == 0 ||
        static_cast<double>(bytes) < config_.reflectionMinAvgBytes * static_cast<double>(packets))
      bps = 0;
    Key key{*v.victim, sensor, pc.getPort(), kReflectionVolume};
    const State* byPackets = states.find(
        Key{*v.victim, sensor, pc.getPort(), static_cast<uint8_t>(wire::Vector::UDP_REFLECTION)});
    const bool named = byPackets != nullptr && byPackets->active;
    // After the lookup above: an insert into this victim may move its states.
    State& st = states.at(key);
    // The packet rate's anomaly, when there is one, already names this port.
    if (update(key, st, s, windowStartNs, bps, config_.reflectionFloorBps) && !named) {
      emitAnomaly(key, st, s, v, windowStartNs, static_cast<double>(packets) * perSecond, bps,
                  config_.reflectionFloorBps);
      st.reported = true;
    }
    active = active || st.active;
  }
  return active;
}

const DetectBatch& Detector::observe(wire::Summary::Reader summary) {
  batch_.anomalies.clear();
  batch_.quiets.clear();
  batch_.fromAlert = false;
  counters_.summaries++;
  auto idText = summary.getSensorId();
  const uint32_t index = sensorIndex(std::string_view(idText.cStr(), idText.size()));
  Sensor& s = sensors_[index];
  setWindow(s, summary.getWindowMs());
  const int64_t t = summary.getWindowStartNs();
  batch_.sensorId.assign(s.id);
  batch_.windowStartNs = t;
  batch_.windowMs = s.windowMs;
  const double perSecond = 1000.0 / s.windowMs;
  const double floorPerPort = config_.floorPps[vectorIndex(wire::Vector::UDP_REFLECTION)];

  for (auto victim : summary.getVictims()) {
    counters_.victims++;
    auto address = common::readAddress(victim.getAddress());
    if (!address) {
      counters_.badAddresses++;
      continue;
    }
    VictimContext ctx{victim, &*address, true};
    auto states = states_.victim(*address, index);
    const size_t first = batch_.anomalies.size();
    bool portActive = false;
    for (auto pc : victim.getReflectionPorts()) {
      Key key{*address, index, pc.getPort(), static_cast<uint8_t>(wire::Vector::UDP_REFLECTION)};
      State& st = states.at(key);
      double pps = static_cast<double>(pc.getPackets()) * perSecond;
      if (update(key, st, s, t, pps, floorPerPort)) {
        emitAnomaly(key, st, s, ctx, t, pps, static_cast<double>(pc.getBytes()) * 8 * perSecond,
                    floorPerPort);
        st.reported = true;
      }
      portActive = portActive || st.active;
    }
    portActive = observeReflectionVolume(ctx, states, index, s, t) || portActive;
    for (auto vc : victim.getVectors()) {
      const size_t vi = vectorIndex(vc.getVector());
      if (vi >= kWireVectorCount) continue;  // a vector from a newer schema
      const bool reflection = vc.getVector() == wire::Vector::UDP_REFLECTION;
      const double floor = reflection ? config_.reflectionTotalFloorPps : config_.floorPps[vi];
      Key key{*address, index, 0, static_cast<uint8_t>(vi)};
      State& st = states.at(key);
      double pps = static_cast<double>(vc.getPackets()) * perSecond;
      // The ports' own anomalies already name a reflection attack; the
      // total only speaks for a spread that no single port shows.
      if (update(key, st, s, t, pps, floor) && !(reflection && portActive)) {
        emitAnomaly(key, st, s, ctx, t, pps, static_cast<double>(vc.getBytes()) * 8 * perSecond,
                    floor);
        st.reported = true;
      }
    }
    for (size_t i = first + 1; i < batch_.anomalies.size(); ++i) {
      if (batch_.anomalies[i].classification != batch_.anomalies[first].classification) {
        for (size_t j = first; j < batch_.anomalies.size(); ++j)
          batch_.anomalies[j].victimClassification = kMixedAttack;
        break;
      }
    }
  }

  // Active keys this summary did not mention saw no traffic in this window.
  // A victim's keys went active together, so they mostly sit side by side:
  // its states are looked up once per run of them.
  std::optional<StateTable::Victim> states;
  for (size_t i = s.active.size(); i-- > 0;) {
    if (i >= s.active.size()) continue;
    const Key key = s.active[i];
    if (!states || !states->holds(key)) states.emplace(states_.victim(key.victim, key.sensor));
    State* st = states->find(key);
    if (st == nullptr) {
      s.active[i] = s.active.back();
      s.active.pop_back();
      continue;
    }
    if (st->lastWindowStartNs >= t) continue;
    const double floor = key.vector == kReflectionVolume ? config_.reflectionFloorBps
                         : key.vector == static_cast<uint8_t>(wire::Vector::UDP_REFLECTION)
                             ? (key.port == 0 ? config_.reflectionTotalFloorPps : floorPerPort)
                             : config_.floorPps[key.vector];
    update(key, *st, s, t, 0.0, floor);
  }
  evictIfFull();
  return batch_;
}

const DetectBatch& Detector::observeAlert(wire::Alert::Reader alert) {
  batch_.anomalies.clear();
  batch_.quiets.clear();
  batch_.fromAlert = true;
  counters_.alerts++;
  auto idText = alert.getSensorId();
  const uint32_t index = sensorIndex(std::string_view(idText.cStr(), idText.size()));
  Sensor& s = sensors_[index];
  batch_.sensorId.assign(s.id);
  batch_.windowStartNs = alert.getWindowStartNs();
  batch_.windowMs = s.windowMs;
  auto address = common::readAddress(alert.getVictim());
  const size_t vi = vectorIndex(alert.getVector());
  if (!address || vi >= kWireVectorCount) {
    counters_.badAddresses += !address;
    return batch_;
  }
  Key key{*address, index, 0, static_cast<uint8_t>(vi)};
  State& st = stateFor(key);
  if (!st.active) {
    st.active = true;
    st.reported = false;
    st.above = static_cast<uint16_t>(std::min<uint32_t>(s.sustainWindows, 0xffff));
    s.active.push_back(key);
  }
  st.below = 0;
  markDirty(key, st);
  // The rate so far: packets over the elapsed part of the window (at least
  // a millisecond, at most the window).
  const int64_t windowNs = static_cast<int64_t>(s.windowMs) * kNsPerMs;
  const int64_t elapsed =
      std::clamp<int64_t>(alert.getAtNs() - alert.getWindowStartNs(), kNsPerMs, windowNs);
  const double pps = static_cast<double>(alert.getPackets()) * 1e9 / static_cast<double>(elapsed);
  const double floor = vectorIndex(alert.getVector()) == vectorIndex(wire::Vector::UDP_REFLECTION)
                           ? config_.reflectionTotalFloorPps
                           : config_.floorPps[vi];
  VictimContext none;  // an alert carries no victim statistics
  emitAnomaly(key, st, s, none, alert.getWindowStartNs(), pps, 0.0, floor);
  st.reported = true;
  auto& a = batch_.anomalies.back();
  a.fromAlert = true;
  a.victimPackets = alert.getPackets();
  evictIfFull();
  return batch_;
}

void Detector::evictIfFull() {
  if (states_.size() <= config_.maxKeys) return;
  // Evict the stalest eighth at once, so the scan is paid once per many
  // inserts. Active keys are kept: an attack in progress is not stale.
  std::vector<std::pair<int64_t, Key>> ages;
  ages.reserve(states_.size());
  states_.forEach([&](const Key& key, const State& st) {
    ages.emplace_back(st.active ? std::numeric_limits<int64_t>::max() : st.lastWindowStartNs, key);
  });
  const size_t excess = states_.size() - config_.maxKeys;
  const size_t n = std::min(ages.size(), std::max(excess, config_.maxKeys / 8));
  std::nth_element(ages.begin(), ages.begin() + static_cast<std::ptrdiff_t>(n - 1), ages.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i < n; ++i) {
    if (ages[i].first == std::numeric_limits<int64_t>::max()) continue;
    const State* st = states_.find(ages[i].second);
    // Found missing at the next flush: an erase record. A dirty key is
    // listed already.
    if (!st->dirty) dirty_.push_back(ages[i].second);
    states_.erase(ages[i].second);
    counters_.evictions++;
  }
}

std::string Detector::recordKey(const Key& key) const {
  std::string out = sensors_[key.sensor].id;
  out.push_back('\0');
  for (uint64_t word : {key.victim.hi(), key.victim.lo()})
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(word >> (8 * i)));
  out.push_back(static_cast<char>(key.vector));
  out.push_back(static_cast<char>(key.port >> 8));
  out.push_back(static_cast<char>(key.port & 0xff));
  return out;
}

namespace {

std::string recordValue(double mean, double var, int64_t last, uint32_t samples, uint16_t above,
                        uint16_t below, bool active, bool reported) {
  std::string v;
  v.reserve(kRecordValueSize);
  v.push_back(static_cast<char>(kRecordVersion));
  putU64(v, std::bit_cast<uint64_t>(mean));
  putU64(v, std::bit_cast<uint64_t>(var));
  putU64(v, static_cast<uint64_t>(last));
  putU32(v, samples);
  putU16(v, above);
  putU16(v, below);
  v.push_back(static_cast<char>((active ? 1 : 0) | (reported ? 2 : 0)));
  return v;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> Detector::dirtyRecords() {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(dirty_.size());
  for (const Key& key : dirty_) {
    State* found = states_.find(key);
    if (found == nullptr) {
      out.emplace_back(recordKey(key), std::string());
      continue;
    }
    State& st = *found;
    if (!st.dirty) continue;  // evicted and re-created: listed twice
    st.dirty = false;
    out.emplace_back(recordKey(key), recordValue(st.mean, st.var, st.lastWindowStartNs, st.samples,
                                                 st.above, st.below, st.active, st.reported));
  }
  dirty_.clear();
  return out;
}

std::vector<std::pair<std::string, std::string>> Detector::allRecords() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(states_.size());
  states_.forEach([&](const Key& key, const State& st) {
    out.emplace_back(recordKey(key), recordValue(st.mean, st.var, st.lastWindowStartNs, st.samples,
                                                 st.above, st.below, st.active, st.reported));
  });
  return out;
}

bool Detector::load(std::string_view key, std::string_view value) {
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos || nul == 0 || key.size() != nul + 1 + 16 + 1 + 2 ||
      value.size() != kRecordValueSize || static_cast<uint8_t>(value[0]) != kRecordVersion) {
    counters_.recordsRejected++;
    return false;
  }
  uint8_t addr[16];
  for (size_t i = 0; i < 16; ++i) addr[i] = static_cast<uint8_t>(key[nul + 1 + i]);
  Key k;
  k.victim = common::IpAddress::fromV6Bytes(addr);
  k.vector = static_cast<uint8_t>(key[nul + 17]);
  k.port = static_cast<uint16_t>(getBe(key, nul + 18, 2));
  const double mean = std::bit_cast<double>(getLe(value, 1, 8));
  const double var = std::bit_cast<double>(getLe(value, 9, 8));
  if (k.vector > kReflectionVolume || !std::isfinite(mean) || !std::isfinite(var) || mean < 0 ||
      var < 0) {
    counters_.recordsRejected++;
    return false;
  }
  k.sensor = sensorIndex(key.substr(0, nul));
  State& st = states_[k];
  st.mean = mean;
  st.var = var;
  st.lastWindowStartNs = static_cast<int64_t>(getLe(value, 17, 8));
  st.samples = static_cast<uint32_t>(std::min<uint64_t>(getLe(value, 25, 4), kMaxSamples));
  st.above = static_cast<uint16_t>(getLe(value, 29, 2));
  st.below = static_cast<uint16_t>(getLe(value, 31, 2));
  const uint8_t flags = static_cast<uint8_t>(value[33]);
  Sensor& s = sensors_[k.sensor];
  if ((flags & 1) && !st.active) s.active.push_back(k);
  if (!(flags & 1) && st.active) deactivate(s, k);
  st.active = flags & 1;
  st.reported = (flags & 2) != 0;
  st.dirty = false;
  counters_.recordsLoaded++;
  evictIfFull();
  return true;
}

bool Detector::baseline(std::string_view sensorId, const common::IpAddress& victim, wire::Vector v,
                        uint16_t reflectionPort, BaselineView& out) const {
  auto sit = sensorIds_.find(sensorId);
  if (sit == sensorIds_.end()) return false;
  const State* st = states_.find(Key{victim, sit->second, reflectionPort, static_cast<uint8_t>(v)});
  if (st == nullptr) return false;
  out.mean = st->mean;
  out.sigma = std::sqrt(std::max(st->var, 0.0));
  out.samples = st->samples;
  out.active = st->active;
  out.lastWindowStartNs = st->lastWindowStartNs;
  return true;
}

}  // namespace garda::aggregator
