#include "sensor/capture/afpacket_source.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/clock.h"

namespace garda::sensor {
namespace {

constexpr unsigned kBlockSize = 1 << 20;  // 1 MiB blocks
constexpr unsigned kFrameSize = 2048;     // hint only with TPACKET_V3
constexpr unsigned kBlockTimeoutMs = 10;  // a partly filled block is handed over after this

std::runtime_error sysError(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

}  // namespace

AfPacketSource::AfPacketSource(Options options) : options_(std::move(options)) {
  unsigned ifindex = if_nametoindex(options_.interface.c_str());
  if (ifindex == 0)
    throw std::runtime_error("capture.interface = \"" + options_.interface +
                             "\": no such network interface");
  // Protocol 0: the socket receives nothing until bind() names the interface
  // and protocol, so no other interface's packets slip into the ring.
  fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw sysError("AF_PACKET socket (needs CAP_NET_RAW)");
  try {
    int version = TPACKET_V3;
    if (setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0)
      throw sysError("PACKET_VERSION TPACKET_V3");

    // Link type from the interface's hardware type: Ethernet (and loopback,
    // which carries Ethernet headers) or raw IP (tun, wireguard).
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, options_.interface.c_str(), IFNAMSIZ - 1);
    if (ioctl(fd_, SIOCGIFHWADDR, &ifr) == 0)
      linkType_ = (ifr.ifr_hwaddr.sa_family == ARPHRD_NONE) ? 101 : 1;

    if (!options_.bpfFilter.empty()) {
      pcap_t* dead = pcap_open_dead(linkType_, 65535);
      bpf_program program{};
      if (pcap_compile(dead, &program, options_.bpfFilter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        std::string err = pcap_geterr(dead);
        pcap_close(dead);
        throw std::runtime_error("capture.bpf_filter = \"" + options_.bpfFilter + "\": " + err);
      }
      sock_fprog fprog{static_cast<unsigned short>(program.bf_len),
                       reinterpret_cast<sock_filter*>(program.bf_insns)};
      int rc = setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog);
      pcap_freecode(&program);
      pcap_close(dead);
      if (rc != 0) throw sysError("SO_ATTACH_FILTER");
    }

    blockSize_ = kBlockSize;
    blockCount_ = static_cast<unsigned>(std::max<size_t>(4, options_.ringBytes / kBlockSize));
    tpacket_req3 req{};
    req.tp_block_size = blockSize_;
    req.tp_block_nr = blockCount_;
    req.tp_frame_size = kFrameSize;
    req.tp_frame_nr = (blockSize_ / kFrameSize) * blockCount_;
    req.tp_retire_blk_tov = kBlockTimeoutMs;
    req.tp_feature_req_word = 0;
    if (setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0)
      throw sysError("PACKET_RX_RING");
    ringSize_ = size_t{blockSize_} * blockCount_;
    void* map = mmap(nullptr, ringSize_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd_, 0);
    if (map == MAP_FAILED)  // MAP_LOCKED may exceed RLIMIT_MEMLOCK: try without
      map = mmap(nullptr, ringSize_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (map == MAP_FAILED) throw sysError("mmap of the capture ring");
    ring_ = static_cast<uint8_t*>(map);

    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = static_cast<int>(ifindex);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw sysError("bind to " + options_.interface);

    if (options_.fanoutGroup != 0) {
      int fanout = options_.fanoutGroup | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
      if (setsockopt(fd_, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof fanout) != 0)
        throw sysError("PACKET_FANOUT");
    }
    readKernelStats();  // start counting from now
    kernelDrops_.store(0);
    freezes_.store(0);
  } catch (...) {
    if (ring_) munmap(ring_, ringSize_);
    ::close(fd_);
    throw;
  }
}

AfPacketSource::~AfPacketSource() {
  if (ring_) munmap(ring_, ringSize_);
  if (fd_ >= 0) ::close(fd_);
}

void AfPacketSource::readKernelStats() {
  tpacket_stats_v3 st{};
  socklen_t len = sizeof st;
  // The kernel resets these counters on every read: accumulate.
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    kernelDrops_.fetch_add(st.tp_drops, std::memory_order_relaxed);
    freezes_.fetch_add(st.tp_freeze_q_cnt, std::memory_order_relaxed);
  }
}

CaptureStats AfPacketSource::stats() const {
  return {packets_.load(std::memory_order_relaxed), kernelDrops_.load(std::memory_order_relaxed),
          0};
}

void AfPacketSource::run(PacketSink& sink) {
  unsigned block = 0;
  int64_t nextStatsNs = 0;
  unsigned drainLeft = blockCount_;
  for (;;) {
    const bool stopping = stopping_.load(std::memory_order_relaxed);
    auto* desc = reinterpret_cast<tpacket_block_desc*>(ring_ + size_t{block} * blockSize_);
    const bool ready =
        (__atomic_load_n(&desc->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) != 0;
    // On stop, count what the kernel already handed over, then leave.
    if (stopping && (!ready || drainLeft-- == 0)) break;
    if (!ready) {
      pollfd pfd{fd_, POLLIN | POLLERR, 0};
      ::poll(&pfd, 1, static_cast<int>(kBlockTimeoutMs));
      int64_t now = common::wallNowNs();
      sink.tick(now);
      if (now >= nextStatsNs) {
        readKernelStats();
        nextStatsNs = now + 100'000'000;
      }
      continue;
    }
    uint32_t count = desc->hdr.bh1.num_pkts;
    auto* hdr = reinterpret_cast<tpacket3_hdr*>(reinterpret_cast<uint8_t*>(desc) +
                                                desc->hdr.bh1.offset_to_first_pkt);
    for (uint32_t i = 0; i < count; ++i) {
      CapturedPacket p;
      p.timestampNs = int64_t{hdr->tp_sec} * 1'000'000'000 + hdr->tp_nsec;
      p.wireLength = hdr->tp_len;
      p.capturedLength = hdr->tp_snaplen;
      p.linkType = linkType_;
      p.data = reinterpret_cast<const uint8_t*>(hdr) + hdr->tp_mac;
      sink.onPacket(p);
      hdr = reinterpret_cast<tpacket3_hdr*>(reinterpret_cast<uint8_t*>(hdr) + hdr->tp_next_offset);
    }
    packets_.fetch_add(count, std::memory_order_relaxed);
    __atomic_store_n(&desc->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    block = (block + 1) % blockCount_;
    sink.tick(common::wallNowNs());
  }
  readKernelStats();
}

}  // namespace garda::sensor
