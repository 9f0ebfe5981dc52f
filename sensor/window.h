#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "common/ip.h"
#include "sensor/capture/source.h"
#include "sensor/decode.h"
#include "sensor/sketch/filtered_space_saving.h"
#include "sensor/sketch/hyperloglog.h"
#include "sensor/sketch/space_saving.h"

namespace garda::sensor {

// The attack vectors counted per victim; the order matches wire::Vector.
enum class Vector : uint8_t {
  kTcpSyn = 0,
  kTcpSynAck,
  kTcpOther,
  kUdp,
  kUdpReflection,
  kIcmp,
  kFragment,
  kOther,
  kCount
};
constexpr size_t kVectorCount = static_cast<size_t>(Vector::kCount);

// UDP source ports of services abused for reflection/amplification (DNS, NTP,
// SSDP, memcached, CLDAP, chargen, SNMP, WS-Discovery, mDNS, NetBIOS, ...).
bool isReflectionPort(uint16_t port) noexcept;
constexpr size_t kReflectionPortCount = 21;
// The i-th reflection port (0 <= i < kReflectionPortCount), and the index of
// a port in that list (-1 when it is not a reflection port).
uint16_t reflectionPortAt(size_t i) noexcept;
int reflectionPortIndex(uint16_t port) noexcept;

struct SourceCount {
  common::IpAddress address;
  uint64_t packets = 0;  // Space-Saving upper bound
  uint64_t error = 0;    // packets - error is a lower bound
};

struct PortCount {
  uint16_t port = 0;
  uint64_t packets = 0;
};

// Sizes of the per-victim sketches (fixed at construction).
struct SketchLimits {
  unsigned topSources = 20;   // reported per victim; the sketch keeps 4x (at least 128)
  unsigned topPorts = 10;     // reported per victim and direction
  unsigned hllPrecision = 12; // 2^p one-byte registers per victim
};

struct VictimCounters {
  common::IpAddress address;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  std::array<uint64_t, kVectorCount> vectorPackets{};
  std::array<uint64_t, kVectorCount> vectorBytes{};
  std::array<uint64_t, kReflectionPortCount> reflectionPackets{};
  std::array<uint64_t, kReflectionPortCount> reflectionBytes{};
  // Filled at window close from the victim's sketches.
  std::vector<SourceCount> topSources;   // highest first
  std::vector<PortCount> topSrcPorts;
  std::vector<PortCount> topDstPorts;
  uint64_t distinctSources = 0;          // HyperLogLog estimate
  std::vector<uint8_t> sourceRegisters;  // the HyperLogLog, to merge workers' windows
};

struct WindowTotals {
  uint64_t packets = 0;  // every frame, decodable or not
  uint64_t bytes = 0;
  uint64_t tcp = 0;
  uint64_t udp = 0;
  uint64_t icmp = 0;
  uint64_t other = 0;
};

// What one window saw: plain data, mergeable across worker threads, turned
// into a wire Summary by the uplink.
struct WindowStats {
  int64_t startNs = 0;
  unsigned windowMs = 0;
  WindowTotals totals;
  std::vector<VictimCounters> victims;  // highest packet count first
  std::vector<SourceCount> outbound;    // protected sources sending the most
  uint32_t victimsCut = 0;              // victims left out by the cap at merge
  uint64_t victimPacketsCut = 0;        // packets to victims not tracked: table full
  std::array<uint64_t, static_cast<size_t>(DecodeStatus::kCount)> decodeStatus{};
  uint64_t latePackets = 0;             // timestamp before the open window
};

// Counts one window's packets for one capture thread. The victim table is
// sized once at construction (open addressing, capacity a power of two >= 2 x
// maxVictims), so counting a packet never allocates or locks. Not
// thread-safe: one per worker; windows are merged after close.
//
// Hot path layout: a victim's table slot is one cache line (address, packets,
// bytes, sketch number); its per-vector and reflection-port counters sit in
// their own array by sketch number, and its sketches (top sources, distinct
// sources, top ports) in another. Counters are updated as each packet is
// counted; the sketch updates run kPipelineDepth packets later, so that the
// cache lines each one needs (spread over thousands of victims' sketches) are
// prefetched while the packets between are counted rather than waited for
// one at a time: the sketch headers at once, the filter counters and
// HyperLogLog register (found through the headers) a few packets on, the
// Space-Saving index entry (where the filter counter says the packet will
// go there) a few more on. closeInto() applies those still queued first.
class WindowCounter {
 public:
  // `alertPackets`: a victim reaching this many packets within one window
  // is reported by count() the moment it does (0: never). `protectedSet`
  // must outlive the counter and not change after construction.
  WindowCounter(const common::PrefixSet& protectedSet, unsigned maxVictims,
                uint64_t alertPackets = 0, SketchLimits limits = {});

  // Decodes and counts one frame. Returns the victim when this packet made
  // it reach the alert threshold (once per victim per window), else null.
  // The victim's counters are complete; its sketch fields are left empty.
  // The pointer is valid until the next call.
  const VictimCounters* count(const CapturedPacket& packet) noexcept;
  // Moves this window's counts into `out` (victims sorted by packets) and
  // resets for the next window.
  void closeInto(WindowStats& out);
  bool empty() const noexcept { return totals_.packets == 0; }
  void setAlertPackets(uint64_t packets) noexcept { alertPackets_ = packets; }

  // Sketch updates queued behind count() (a power of two), and the ages at
  // which the second and third prefetch stages run.
  static constexpr size_t kPipelineDepth = 16;
  static constexpr size_t kDataPrefetchAge = 5;
  static constexpr size_t kSketchPrefetchAge = 11;

 private:
  struct VictimSketch {
    explicit VictimSketch(const SketchLimits& l);
    FilteredSpaceSaving<common::IpAddress> sources;
    HyperLogLog distinct;
    FilteredSpaceSaving<uint16_t> srcPorts;
    FilteredSpaceSaving<uint16_t> dstPorts;
  };
  struct alignas(64) VictimSlot {
    common::IpAddress address;
    uint64_t packets = 0;
    uint64_t bytes = 0;
    uint32_t sketchPlus1 = 0;  // 0: free slot
  };
  struct PacketsBytes {
    uint64_t packets = 0;
    uint64_t bytes = 0;
  };
  // Per victim, by sketch number: a packet touches one vector's pair (one
  // cache line) and, for reflection, one port's pair.
  struct alignas(64) VictimTraffic {
    std::array<PacketsBytes, kVectorCount> vectors{};
    std::array<PacketsBytes, kReflectionPortCount> reflection{};
  };
  // One packet's sketch work, queued behind count().
  struct SketchUpdate {
    common::IpAddress source;
    uint64_t sourceHash = 0;    // FilteredSpaceSaving::hashOf
    uint64_t distinctHash = 0;  // HyperLogLog::hashAddress
    uint32_t sketch = 0;
    uint16_t srcPort = 0;
    uint16_t dstPort = 0;
    bool hasPorts = false;
  };

  // A protected prefix as a 128-bit mask and value.
  struct MaskedPrefix {
    uint64_t maskHi, maskLo, hi, lo;
  };
  // protected_.contains(a), by a scan of masked compares when the set is
  // small (a hash set probe per prefix length costs more than a few dozen
  // compares).
  bool isProtected(const common::IpAddress& a) const noexcept;
  // The table slot of `a` (inserting it), or -1 when the table is full.
  int64_t victimSlot(const common::IpAddress& a) noexcept;
  // Always inlined: GCC's pure-const analysis sees no side effect in a
  // function that only prefetches and drops the call.
  [[gnu::always_inline]] inline void prefetchSketchData(const SketchUpdate& u) const noexcept;
  [[gnu::always_inline]] inline void prefetchSpaceSaving(const SketchUpdate& u) const noexcept;
  void applySketchUpdate(const SketchUpdate& u) noexcept;
  // Applies every queued sketch update.
  void drainSketchUpdates() noexcept;
  // A slot's packet and byte counters (no sketches) into `v`.
  void copyCounters(const VictimSlot& slot, VictimCounters& v) const noexcept;
  const VictimCounters* alertView(const VictimSlot& slot) noexcept;

  const common::PrefixSet& protected_;
  std::vector<MaskedPrefix> protectedScan_;  // empty: ask protected_
  unsigned maxVictims_;
  uint64_t alertPackets_;
  size_t mask_;
  std::vector<VictimSlot> table_;
  std::vector<uint32_t> usedSlots_;
  std::vector<VictimTraffic> traffic_;  // by sketch number
  std::vector<VictimSketch> pool_;      // by sketch number; one per victim that may be tracked
  std::array<SketchUpdate, kPipelineDepth> pending_{};
  uint64_t pendingHead_ = 0;  // updates queued so far; the last kPipelineDepth are pending
  uint64_t pendingTail_ = 0;  // updates applied so far
  VictimCounters alert_;
  SpaceSaving<common::IpAddress> outbound_;
  SketchLimits limits_;
  WindowTotals totals_;
  uint64_t victimPacketsCut_ = 0;
  std::array<uint64_t, static_cast<size_t>(DecodeStatus::kCount)> decodeStatus_{};
};

// Cuts a stream of packets into windows by packet timestamp and hands each
// closed, non-empty window to `onClose`. Window starts are multiples of
// windowMs since the Unix epoch. A packet older than the open window (a
// capture's timestamps may step back) is counted in the open window, or in
// the next one if none is open, and reported as late: a window, once closed
// and sent, is never reopened.
class Windower : public PacketSink {
 public:
  using CloseFn = std::function<void(WindowStats&)>;
  // Early alert: a victim crossed the hard threshold mid-window.
  struct Alert {
    common::IpAddress victim;
    Vector vector;          // the victim's largest vector so far
    uint64_t packets;       // in this window so far
    int64_t windowStartNs;
    int64_t atNs;           // packet time of the crossing
  };
  using AlertFn = std::function<void(const Alert&)>;
  // `emitEmpty`: live capture, where every window is reported (a silent
  // window is information) and tick() keeps windows rolling with the clock;
  // replay reports only windows that saw packets.
  // `closeGraceNs`: tick() closes a window only this long after its end, so
  // packets stamped before the end that are still in the capture ring's
  // current block (handed over every 10 ms) land in their own window.
  Windower(const common::PrefixSet& protectedSet, unsigned windowMs, unsigned maxVictims,
           CloseFn onClose, bool emitEmpty = false, int64_t closeGraceNs = 0,
           SketchLimits limits = {});

  void onPacket(const CapturedPacket& packet) override;
  // Alerts for victims reaching `packetsPerWindow` packets in a window.
  void setAlert(uint64_t packetsPerWindow, AlertFn fn);
  // Closes the open window if `nowNs` is past its end.
  void tick(int64_t nowNs) override;
  // Closes the open window regardless (end of capture).
  void flush();

 private:
  void closeWindow();

  WindowCounter counter_;
  int64_t windowNs_;
  int64_t openStartNs_ = -1;
  int64_t closedUntilNs_ = 0;  // end of the last closed window: never reopened
  uint64_t late_ = 0;
  CloseFn onClose_;
  AlertFn onAlert_;
  bool emitEmpty_;
  int64_t closeGraceNs_;
  WindowStats stats_;
};

// Adds `from` into `into` (same window): counters summed, victims merged by
// address and re-sorted, at most `maxVictims` kept (the rest counted in
// victimsCut). Used at window close to merge the workers' windows.
void mergeWindow(WindowStats& into, const WindowStats& from, unsigned maxVictims);

}  // namespace garda::sensor
