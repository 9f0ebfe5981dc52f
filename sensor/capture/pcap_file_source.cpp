#include "sensor/capture/pcap_file_source.h"

#include <stdexcept>
#include <thread>

#include "common/clock.h"

namespace garda::sensor {

PcapFileSource::PcapFileSource(std::string path, Speed speed)
    : path_(std::move(path)), speed_(speed) {
  char err[PCAP_ERRBUF_SIZE] = {};
  // Ask for nanosecond timestamps; libpcap scales microsecond files up.
  handle_ = pcap_open_offline_with_tstamp_precision(path_.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (!handle_) throw std::runtime_error(path_ + ": cannot open capture: " + err);
  nanoPrecision_ = pcap_get_tstamp_precision(handle_) == PCAP_TSTAMP_PRECISION_NANO;
  linkType_ = pcap_datalink(handle_);
}

PcapFileSource::~PcapFileSource() {
  if (handle_) pcap_close(handle_);
}

void PcapFileSource::run(PacketSink& sink) {
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int64_t firstPacketNs = -1;
  int64_t startMonoNs = 0;
  int64_t lastTs = 0;
  while (!stopping_.load(std::memory_order_relaxed)) {
    int rc = pcap_next_ex(handle_, &header, &data);
    if (rc == PCAP_ERROR_BREAK) break;  // end of file
    if (rc != 1) {
      readError_ = pcap_geterr(handle_);
      break;
    }
    CapturedPacket p;
    // Classic pcap stores seconds as an unsigned 32-bit field; libpcap
    // sign-extends it, so times from 2038-01-19 on come out negative.
    int64_t seconds = header->ts.tv_sec;
    if (seconds < 0 && seconds >= INT32_MIN) seconds += int64_t{1} << 32;
    p.timestampNs = seconds * 1000000000 +
                    int64_t{header->ts.tv_usec} * (nanoPrecision_ ? 1 : 1000);
    p.wireLength = header->len;
    p.capturedLength = header->caplen;
    p.linkType = linkType_;
    p.data = data;
    if (speed_ == Speed::kRealtime) {
      if (firstPacketNs < 0) {
        firstPacketNs = p.timestampNs;
        startMonoNs = common::monoNowNs();
      }
      int64_t dueMono = startMonoNs + (p.timestampNs - firstPacketNs);
      // Sleep in short steps so windows keep closing through long gaps.
      for (int64_t now = common::monoNowNs(); now < dueMono && !stopping_.load();
           now = common::monoNowNs()) {
        int64_t step = std::min<int64_t>(dueMono - now, 50'000'000);
        std::this_thread::sleep_for(std::chrono::nanoseconds(step));
        sink.tick(firstPacketNs + (common::monoNowNs() - startMonoNs));
      }
    }
    packets_.fetch_add(1, std::memory_order_relaxed);
    sink.onPacket(p);
    lastTs = p.timestampNs;
    if ((packets_.load(std::memory_order_relaxed) & 1023) == 0) sink.tick(lastTs);
  }
  sink.tick(lastTs);
}

}  // namespace garda::sensor
