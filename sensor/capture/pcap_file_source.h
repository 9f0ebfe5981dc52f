#pragma once

#include <pcap/pcap.h>

#include <atomic>
#include <string>

#include "sensor/capture/source.h"

namespace garda::sensor {

// Replays a pcap or pcapng file through libpcap: as fast as possible, or in
// real time (sleeping so that packets leave at their recorded spacing).
// Owns the pcap handle. run() and stop() may be called from different
// threads; everything else from the run() thread.
class PcapFileSource : public PacketSource {
 public:
  enum class Speed { kFast, kRealtime };

  // Opens the file; throws std::runtime_error naming it if libpcap cannot.
  PcapFileSource(std::string path, Speed speed);
  ~PcapFileSource() override;
  PcapFileSource(const PcapFileSource&) = delete;
  PcapFileSource& operator=(const PcapFileSource&) = delete;

  void run(PacketSink& sink) override;
  void stop() override { stopping_.store(true); }
  CaptureStats stats() const override { return {packets_.load(), 0, 0}; }
  std::string describe() const override { return "pcap:" + path_; }

  int linkType() const noexcept { return linkType_; }
  // Set when libpcap stopped on a damaged record before the end of the file.
  const std::string& readError() const noexcept { return readError_; }

 private:
  std::string path_;
  Speed speed_;
  pcap_t* handle_ = nullptr;
  int linkType_ = 0;
  bool nanoPrecision_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> packets_{0};
  std::string readError_;
};

}  // namespace garda::sensor
