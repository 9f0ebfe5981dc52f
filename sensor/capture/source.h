#pragma once

#include <cstdint>
#include <string>

namespace garda::sensor {

// One captured frame as a source hands it on. `data` points into the
// source's own buffer (a pcap buffer or the AF_PACKET ring) and is valid only
// during the PacketSink call.
struct CapturedPacket {
  int64_t timestampNs = 0;
  uint32_t wireLength = 0;      // length on the wire
  uint32_t capturedLength = 0;  // bytes at `data` (may be less: snaplen)
  int linkType = 1;             // pcap LINKTYPE_* value
  const uint8_t* data = nullptr;
};

// Receives frames from a PacketSource, in capture order, on the source's
// thread. tick() is called at least every few milliseconds while capture is
// idle, with the current time, so that windows close on time when no packet
// arrives (live capture) — for replay, `nowNs` is packet time.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  virtual void onPacket(const CapturedPacket& packet) = 0;
  virtual void tick(int64_t nowNs) = 0;
};

// Capture counters every source reports, as cumulative totals.
struct CaptureStats {
  uint64_t packets = 0;
  uint64_t kernelDrops = 0;   // dropped by the kernel before we saw them
  uint64_t ifaceDrops = 0;
};

// The seam between capture back-ends (AF_PACKET live, pcap file replay) and
// everything after capture, which is the same for both. run() blocks until
// the source is exhausted (a file's end) or stop() is called from another
// thread; it throws std::runtime_error for startup failures (bad file,
// interface missing) with a message a person can act on.
class PacketSource {
 public:
  virtual ~PacketSource() = default;
  virtual void run(PacketSink& sink) = 0;
  virtual void stop() = 0;
  virtual CaptureStats stats() const = 0;
  virtual std::string describe() const = 0;  // "pcap:/path" or "afpacket:eth0"
};

}  // namespace garda::sensor
