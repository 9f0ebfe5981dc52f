// AF_PACKET capture on the loopback interface. Needs root (CAP_NET_RAW):
// skipped with a message otherwise; CI runs as root.
#include "sensor/capture/afpacket_source.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "sensor/decode.h"

namespace garda::sensor {
namespace {

constexpr uint16_t kMatchPort = 47999;
constexpr uint16_t kOtherPort = 47998;

// Counts UDP packets to the two test ports, by port.
struct PortCounter : PacketSink {
  void onPacket(const CapturedPacket& p) override {
    PacketView v;
    if (decodePacket(p.linkType, p.data, p.capturedLength, v) != DecodeStatus::kOk) return;
    if (v.l4Protocol != IPPROTO_UDP || !v.hasPorts) return;
    if (v.dstPort == kMatchPort) matching++;
    if (v.dstPort == kOtherPort) other++;
  }
  void tick(int64_t) override {}
  std::atomic<uint64_t> matching{0};
  std::atomic<uint64_t> other{0};
};

void sendUdp(uint16_t port, int count) {
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < count; ++i)
    ::sendto(fd, "garda", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  ::close(fd);
}

TEST(AfPacketSource, BpfFilterKeepsOnlyMatchingPackets) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_RAW); CI runs as root";
  AfPacketSource source({"lo", 0, 4 << 20, "udp and dst port 47999"});
  PortCounter sink;
  std::thread capture([&] { source.run(sink); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  sendUdp(kMatchPort, 50);
  sendUdp(kOtherPort, 50);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  source.stop();
  capture.join();
  // On loopback AF_PACKET sees each datagram leave and arrive: 50 or 100.
  EXPECT_TRUE(sink.matching == 50 || sink.matching == 100) << sink.matching;
  EXPECT_EQ(sink.other, 0u);
  EXPECT_EQ(source.stats().kernelDrops, 0u);
  EXPECT_GE(source.stats().packets, sink.matching.load());
}

TEST(AfPacketSource, BadFilterNamesTheKey) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_RAW); CI runs as root";
  try {
    AfPacketSource source({"lo", 0, 4 << 20, "udp and and"});
    FAIL() << "a filter that does not compile must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("capture.bpf_filter = \"udp and and\""), std::string::npos)
        << e.what();
  }
}

TEST(AfPacketSource, MissingInterfaceNamesIt) {
  try {
    AfPacketSource source({"garda-no-such0", 0, 4 << 20, ""});
    FAIL() << "a missing interface must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("garda-no-such0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace garda::sensor
