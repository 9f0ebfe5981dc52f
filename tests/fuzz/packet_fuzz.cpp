// libFuzzer target: the capture hot path on arbitrary frames.
//
// Input: byte 0 picks the link type (index into kLinkTypes, modulo its size);
// the rest is the captured frame. The frame goes through decodePacket() and
// then through a WindowCounter that protects every address (0.0.0.0/0 and
// ::/0), so every decodable packet reaches the victim table, the sketches and
// the alert path. Every kInputsPerWindow inputs the window is closed, merged
// as the pipeline merges workers' windows, turned into the sensor's JSON
// output and into a wire Summary, and that Summary must pass the aggregator's
// own EnvelopeDecoder: whatever traffic a sensor sees, what it sends must not
// be refused as insane.
//
// Contract checked: nothing crashes or trips a sanitizer; decodePacket()
// returns a status below kCount, and when it reports an IP version the
// addresses lie inside the frame.
//
// The counter keeps state across inputs (as a capture worker does), so a
// crash in WindowCounter may need the inputs before it; decodePacket() itself
// is stateless and its crashes reproduce from the one input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "common/envelope.h"
#include "common/ip.h"
#include "sensor/capture/source.h"
#include "sensor/decode.h"
#include "sensor/summary_json.h"
#include "sensor/uplink.h"
#include "sensor/window.h"

namespace garda::sensor {
namespace {

// Keep in this order: the seed corpus (tests/fuzz/make_seeds.cpp) stores the
// index into this table, not the link type.
constexpr int kLinkTypes[] = {kLinkTypeEthernet, kLinkTypeNull,      kLinkTypeLoop,
                              kLinkTypeRawDlt,   kLinkTypeRawOpenBsd, kLinkTypeRaw,
                              kLinkTypeIpv4,     kLinkTypeIpv6,      kLinkTypeLinuxSll,
                              kLinkTypeLinuxSll2};
constexpr size_t kLinkTypeCount = sizeof(kLinkTypes) / sizeof(kLinkTypes[0]);

constexpr unsigned kInputsPerWindow = 64;
// Small, so that the table-full path (victimPacketsCut) and the sketches'
// eviction are reached within one window.
constexpr unsigned kMaxVictims = 16;
constexpr uint64_t kAlertPackets = 4;
constexpr unsigned kWindowMs = 1000;
constexpr int64_t kWindowNs = int64_t{kWindowMs} * 1'000'000;
constexpr int64_t kFirstWindowNs = 1'700'000'000LL * 1'000'000'000LL;

volatile uint64_t gSink = 0;

const common::PrefixSet& everything() {
  static const common::PrefixSet set(
      {*common::Prefix::parse("0.0.0.0/0"), *common::Prefix::parse("::/0")});
  return set;
}

void checkView(DecodeStatus st, const PacketView& v, const uint8_t* frame, size_t length) {
  if (static_cast<size_t>(st) >= kDecodeStatusCount || decodeStatusName(st) == nullptr) abort();
  if (v.ipVersion == 0) {
    if (st == DecodeStatus::kOk) abort();  // kOk means an IP header was decoded
    return;
  }
  if (v.ipVersion != 4 && v.ipVersion != 6) abort();
  const size_t n = v.ipVersion == 4 ? 4 : 16;
  const auto begin = reinterpret_cast<uintptr_t>(frame);
  for (const uint8_t* a : {v.src, v.dst}) {
    const auto at = reinterpret_cast<uintptr_t>(a);
    if (a == nullptr || at < begin || at - begin + n > length) {
      std::fprintf(stderr, "packet_fuzz: address outside the frame (status %s)\n",
                   decodeStatusName(st));
      abort();
    }
  }
  // Reads the address bytes, so ASan checks them too.
  auto src = v.ipVersion == 4 ? common::IpAddress::fromV4Bytes(v.src)
                              : common::IpAddress::fromV6Bytes(v.src);
  gSink = gSink + src.lo() + v.srcPort + v.dstPort + v.tcpFlags + v.icmpType + v.outerVlanId;
}

struct Worker {
  WindowCounter counter{everything(), kMaxVictims, kAlertPackets,
                        SketchLimits{.topSources = 4, .topPorts = 3, .hllPrecision = 4}};
  unsigned inputs = 0;
  uint64_t seq = 0;
  int64_t windowStartNs = kFirstWindowNs;
  common::EnvelopeDecoder decoder;

  void closeWindow() {
    WindowStats stats;
    counter.closeInto(stats);
    stats.startNs = windowStartNs;
    stats.windowMs = kWindowMs;
    windowStartNs += kWindowNs;

    // Two workers' windows, as the pipeline merges them.
    WindowStats merged;
    merged.startNs = stats.startNs;
    merged.windowMs = stats.windowMs;
    mergeWindow(merged, stats, kMaxVictims);
    mergeWindow(merged, stats, kMaxVictims);

    gSink = gSink + windowToJson(merged, "fuzz-sensor").dump().size();

    std::string bytes = encodeSummary(merged, "fuzz-sensor", 0x5eed, ++seq, 0, 0);
    // std::string's buffer is heap-allocated and suitably aligned.
    auto r = decoder.decode(
        std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    if (r != common::EnvelopeReject::kNone) {
      std::fprintf(stderr, "packet_fuzz: the aggregator refuses the sensor's summary: %s: %s\n",
                   common::envelopeRejectName(r), decoder.detail().c_str());
      abort();
    }
  }
};

}  // namespace
}  // namespace garda::sensor

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace garda::sensor;
  if (size < 1) return 0;
  const int linkType = kLinkTypes[data[0] % kLinkTypeCount];
  // The frame ends exactly where libFuzzer's allocation ends: ASan catches
  // any read past the captured length.
  const uint8_t* frame = data + 1;
  const size_t length = size - 1;

  PacketView view;
  DecodeStatus st = decodePacket(linkType, frame, length, view);
  checkView(st, view, frame, length);
  // A reused view must not carry anything over from the frame before.
  PacketView again;
  again.ipVersion = 6;
  again.hasPorts = true;
  again.srcPort = 1;
  if (decodePacket(linkType, frame, length, again) != st || again.ipVersion != view.ipVersion ||
      again.hasPorts != view.hasPorts || again.srcPort != view.srcPort) {
    std::fprintf(stderr, "packet_fuzz: decodePacket() result depends on the view's old contents\n");
    abort();
  }

  static Worker worker;
  CapturedPacket p;
  p.linkType = linkType;
  p.data = frame;
  p.capturedLength = static_cast<uint32_t>(length);
  // A frame on the wire is never shorter than what was captured of it, and
  // never empty.
  p.wireLength = static_cast<uint32_t>(length == 0 ? 1 : length);
  p.timestampNs = worker.windowStartNs + worker.inputs;
  gSink = gSink + (worker.counter.count(p) != nullptr);

  if (++worker.inputs % kInputsPerWindow == 0) worker.closeWindow();
  return 0;
}
