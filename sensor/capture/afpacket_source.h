#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "sensor/capture/source.h"

namespace garda::sensor {

// Live capture from one network interface with an AF_PACKET TPACKET_V3
// memory-mapped block ring. Several instances with the same `fanoutGroup`
// share the interface's traffic through PACKET_FANOUT (hash of the flow, so
// one flow always lands on one worker): one instance per worker thread.
// Kernel drop counts (PACKET_STATISTICS) are accumulated and reported in
// stats(), never hidden. Owns its socket and ring. run() on the worker
// thread; stop() and stats() from any thread.
class AfPacketSource : public PacketSource {
 public:
  // How long after a window's end its last packets may still sit in a block
  // the kernel has not handed over yet (twice the block timeout).
  static constexpr int64_t kCloseGraceNs = 20'000'000;

  struct Options {
    std::string interface;
    uint16_t fanoutGroup = 0;     // 0: no fanout (single worker)
    size_t ringBytes = 16 << 20;  // per worker
    std::string bpfFilter;        // tcpdump syntax; empty: everything
  };

  // Opens, sizes and maps the ring and binds to the interface; throws
  // std::runtime_error with the reason (no such interface, no
  // CAP_NET_RAW, bad filter) on failure.
  explicit AfPacketSource(Options options);
  ~AfPacketSource() override;
  AfPacketSource(const AfPacketSource&) = delete;
  AfPacketSource& operator=(const AfPacketSource&) = delete;

  void run(PacketSink& sink) override;
  void stop() override { stopping_.store(true); }
  CaptureStats stats() const override;
  std::string describe() const override { return "afpacket:" + options_.interface; }

 private:
  void readKernelStats();

  Options options_;
  int fd_ = -1;
  uint8_t* ring_ = nullptr;
  size_t ringSize_ = 0;
  unsigned blockSize_ = 0;
  unsigned blockCount_ = 0;
  int linkType_ = 1;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> packets_{0};
  std::atomic<uint64_t> kernelDrops_{0};
  std::atomic<uint64_t> freezes_{0};
};

}  // namespace garda::sensor
