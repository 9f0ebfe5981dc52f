// The enforcement backends against the real kernel: nftables and XDP in a
// pair of network namespaces joined by a veth (198.18.0.0/15 addresses only),
// traffic sent by UDP sockets from one side and counted on the other; the
// exec backend with scripts that record what they were given.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/message.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "common/clock.h"
#include "common/envelope.h"
#include "sensor/enforce/exec_enforcer.h"
#include "sensor/enforce/nftables_enforcer.h"
#include "sensor/enforce/xdp_enforcer.h"
#include "sensor/orders.h"

namespace garda::sensor {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kSecond = 1'000'000'000;

constexpr const char* kAttacker = "198.18.0.1";   // blocked in most tests
constexpr const char* kBystander = "198.18.0.3";  // same wire, never blocked
constexpr const char* kVictim = "198.18.0.2";
constexpr const char* kMarker = "198.18.1.4";  // outside every rule: "all sent has arrived"
constexpr uint16_t kVictimPort = 9999;

Rule dropRule(const std::string& id, const std::string& source, int64_t ttlNs,
              const std::string& destination = "") {
  Rule r;
  r.id = id;
  r.incidentId = "inc-test";
  r.match.source = source.empty() ? common::Prefix{} : *common::Prefix::parse(source);
  if (!destination.empty()) r.match.destination = *common::Prefix::parse(destination);
  r.expiresAtNs = common::wallNowNs() + ttlNs;
  r.reason = "test";
  r.createdBy = "enforce_test";
  return r;
}

Rule reflectionRule(const std::string& id, uint16_t sourcePort, int64_t ttlNs) {
  Rule r = dropRule(id, "", ttlNs, std::string(kVictim) + "/32");
  r.match.protocol = IPPROTO_UDP;
  r.match.sourcePort = sourcePort;
  return r;
}

int sh(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

// Two namespaces made for one test, "attacker" side and "victim" side, with
// a veth between them, deleted in TearDown whatever happened. The enforcer
// under test runs on the victim side (in threads that enter its namespace).
class NamespacePair : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, nftables, XDP)";
    static int serial = 0;
    std::string tag = std::to_string(getpid()) + "x" + std::to_string(serial++);
    attackerNs_ = "genfa" + tag;
    victimNs_ = "genfv" + tag;
    ASSERT_EQ(sh("ip netns add " + attackerNs_), 0);
    ASSERT_EQ(sh("ip netns add " + victimNs_), 0);
    ASSERT_EQ(sh("ip -n " + attackerNs_ + " link add va type veth peer name vb netns " + victimNs_),
              0);
    ASSERT_EQ(sh("ip -n " + attackerNs_ + " addr add " + kAttacker + "/24 dev va"), 0);
    ASSERT_EQ(sh("ip -n " + attackerNs_ + " addr add " + kBystander + "/24 dev va"), 0);
    ASSERT_EQ(sh("ip -n " + attackerNs_ + " addr add " + kMarker + "/24 dev va"), 0);
    ASSERT_EQ(sh("ip -n " + victimNs_ + " addr add " + kVictim + "/24 dev vb"), 0);
    for (const auto& [ns, dev] : {std::pair{attackerNs_, "va"}, std::pair{victimNs_, "vb"}}) {
      ASSERT_EQ(sh("ip -n " + ns + " link set lo up"), 0);
      ASSERT_EQ(sh("ip -n " + ns + " link set " + dev + " up"), 0);
    }
    ASSERT_EQ(sh("ip -n " + victimNs_ + " route add 198.18.1.0/24 dev vb"), 0);
    inVictim([&] {
      receiver_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
      sockaddr_in a = address(kVictim, kVictimPort);
      ASSERT_EQ(bind(receiver_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
      int big = 4 << 20;
      setsockopt(receiver_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    });
    // Resolve ARP once, so the first counted packets are not held back.
    (void)send(kBystander, 4000, 1);
  }

  void TearDown() override {
    if (receiver_ >= 0) close(receiver_);
    if (!attackerNs_.empty()) sh("ip netns del " + attackerNs_);
    if (!victimNs_.empty()) sh("ip netns del " + victimNs_);
  }

  static sockaddr_in address(const char* ip, uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
  }

  // Runs `fn` in a thread inside the namespace (setns is per thread).
  static void inNamespace(const std::string& ns, const std::function<void()>& fn) {
    std::thread t([&] {
      int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0) << ns;
      ASSERT_EQ(setns(fd, CLONE_NEWNET), 0) << ns;
      close(fd);
      fn();
    });
    t.join();
  }
  void inVictim(const std::function<void()>& fn) { inNamespace(victimNs_, fn); }

  // Sends `count` datagrams from (ip, port) on the attacker side to the
  // victim and returns how many the victim received from that address. A
  // marker datagram from an address no rule covers follows them on the same
  // wire; its arrival means the flow has been through the victim's stack.
  int send(const char* ip, uint16_t port, int count) {
    drain();
    inNamespace(attackerNs_, [&] {
      auto burst = [&](const char* fromIp, uint16_t fromPort, int n) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in from = address(fromIp, fromPort), to = address(kVictim, kVictimPort);
        ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&from), sizeof from), 0)
            << fromIp << ":" << fromPort;
        char payload[64] = "garda enforce test";
        for (int i = 0; i < n; ++i)
          sendto(s, payload, sizeof payload, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        close(s);
      };
      burst(ip, port, count);
      burst(kMarker, 4999, 1);
    });
    const std::string marker = std::string(kMarker) + ":4999";
    const std::string flow = std::string(ip) + ":" + std::to_string(port);
    std::map<std::string, int> got;
    for (int waited = 0; waited < 3000 && !got.count(marker); waited += 10) {
      std::this_thread::sleep_for(10ms);
      for (const auto& [from, n] : drain()) got[from] += n;
    }
    EXPECT_TRUE(got.count(marker)) << "the marker never arrived";
    std::this_thread::sleep_for(20ms);
    for (const auto& [from, n] : drain()) got[from] += n;
    return got[flow];
  }

  // What the victim received since the last call, by "ip:port".
  std::map<std::string, int> drain() {
    std::map<std::string, int> got;
    char buf[256];
    sockaddr_in from{};
    socklen_t len = sizeof from;
    while (recvfrom(receiver_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) > 0) {
      char ip[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
      got[std::string(ip) + ":" + std::to_string(ntohs(from.sin_port))]++;
      len = sizeof from;
    }
    return got;
  }

  static void sleepUntilWall(int64_t wallNs) {
    int64_t left = wallNs - common::wallNowNs();
    if (left > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(left));
  }

  std::string attackerNs_, victimNs_;
  int receiver_ = -1;
};

// Builds one backend in the victim namespace; each call of the test goes
// through inVictim too, so libnftables / libbpf act there.
template <typename Backend>
class BackendTest : public NamespacePair {
 protected:
  void TearDown() override {
    if (backend_) inVictim([&] { backend_.reset(); });
    NamespacePair::TearDown();
  }
  std::string apply(const Rule& r) {
    std::string out;
    inVictim([&] { out = backend_->apply(r); });
    return out;
  }
  std::string remove(const Rule& r) {
    std::string out;
    inVictim([&] { out = backend_->remove(r); });
    return out;
  }
  uint64_t dropped(const Rule& r) {
    uint64_t out = 0;
    inVictim([&] { out = backend_->packetsDropped(r); });
    return out;
  }
  // Every rule's counters in one read, as the sensor does once per window.
  std::vector<DropCount> counts(const std::vector<const Rule*>& rules) {
    std::vector<DropCount> out;
    inVictim([&] { EXPECT_TRUE(backend_->readDropCounts(rules, out)); });
    EXPECT_EQ(out.size(), rules.size());
    out.resize(rules.size());
    return out;
  }
  // A source block, a reflection rule and an idle rule: each one's packets
  // and bytes (`bytesPerPacket` as this backend counts them) in one read.
  void expectCountsOfEachRule(uint64_t bytesPerPacket) {
    Rule src = dropRule("ord-src", std::string(kAttacker) + "/32", 60 * kSecond);
    Rule dns = reflectionRule("ord-dns", 53, 60 * kSecond);
    Rule idle = dropRule("ord-idle", "192.0.2.0/24", 60 * kSecond);
    for (const Rule* r : {&src, &dns, &idle}) ASSERT_EQ(apply(*r), "");
    EXPECT_EQ(send(kAttacker, 4000, 40), 0);
    EXPECT_EQ(send(kBystander, 53, 25), 0);
    auto c = counts({&src, &dns, &idle});
    EXPECT_EQ(c[0].packets, 40u);
    EXPECT_EQ(c[0].bytes, 40 * bytesPerPacket);
    EXPECT_EQ(c[1].packets, 25u);
    EXPECT_EQ(c[1].bytes, 25 * bytesPerPacket);
    EXPECT_EQ(c[2].packets, 0u);
    ASSERT_EQ(remove(src), "");
  }
  std::unique_ptr<Backend> backend_;
};

class NftablesEnforceTest : public BackendTest<NftablesEnforcer> {
 protected:
  void SetUp() override {
    NamespacePair::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    inVictim([&] { backend_ = std::make_unique<NftablesEnforcer>("garda"); });
  }
  // What `nft` itself shows of the table.
  std::string ruleset() {
    std::string text;
    FILE* p = popen(("ip netns exec " + victimNs_ + " nft list table inet garda").c_str(), "r");
    if (!p) return text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    pclose(p);
    return text;
  }
};

TEST_F(NftablesEnforceTest, DropsTheBlockedSourceAndPassesOthers) {
  ASSERT_EQ(send(kAttacker, 4000, 20), 20);
  Rule r = dropRule("ord-1", std::string(kAttacker) + "/32", 60 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 50), 0);
  EXPECT_EQ(send(kBystander, 4000, 50), 50);
  EXPECT_EQ(dropped(r), 50u);
  EXPECT_NE(ruleset().find("comment \"ord-1\""), std::string::npos) << ruleset();
  ASSERT_EQ(remove(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 20), 20);
}

TEST_F(NftablesEnforceTest, WithdrawDeletesTheTableAndItsRulesForGood) {
  ASSERT_EQ(apply(dropRule("ord-1", std::string(kAttacker) + "/32", 60 * kSecond)), "");
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  inVictim([&] { backend_.reset(); });  // the sensor stops: the rule holds
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  std::string first, second;
  inVictim([&] {
    first = NftablesEnforcer::withdraw("garda");
    second = NftablesEnforcer::withdraw("garda");
  });
  EXPECT_EQ(first, "nftables: deleted table inet garda and its rules");
  EXPECT_EQ(second, "nftables: no table inet garda: nothing to delete");
  EXPECT_EQ(ruleset(), "");
  EXPECT_EQ(send(kAttacker, 4000, 10), 10);
}

TEST_F(NftablesEnforceTest, DropsReflectionByProtocolAndSourcePortTowardTheVictim) {
  Rule r = reflectionRule("ord-dns", 53, 60 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kBystander, 53, 40), 0);
  EXPECT_EQ(send(kBystander, 5353, 40), 40);
  EXPECT_EQ(dropped(r), 40u);
  // A source port with no protocol: that port of any protocol with ports.
  Rule anyProto = reflectionRule("ord-ntp", 123, 60 * kSecond);
  anyProto.match.protocol = 0;
  ASSERT_EQ(apply(anyProto), "");
  EXPECT_EQ(send(kBystander, 123, 40), 0);
  EXPECT_EQ(dropped(anyProto), 40u);
}

TEST_F(NftablesEnforceTest, OverlappingPrefixesFromTwoOrdersLiveSideBySide) {
  Rule wide = dropRule("ord-24", "198.18.0.0/24", 60 * kSecond);
  Rule narrow = dropRule("ord-32", std::string(kAttacker) + "/32", 60 * kSecond,
                         std::string(kVictim) + "/32");
  ASSERT_EQ(apply(wide), "");
  ASSERT_EQ(apply(narrow), "");
  ASSERT_EQ(remove(wide), "");
  EXPECT_EQ(send(kAttacker, 4000, 30), 0);
  EXPECT_EQ(send(kBystander, 4000, 30), 30);
}

TEST_F(NftablesEnforceTest, TwoOrdersWithOneMatchShareAnElementUntilTheLastIsRemoved) {
  Rule a = dropRule("ord-a", std::string(kAttacker) + "/32", 60 * kSecond);
  Rule b = dropRule("ord-b", std::string(kAttacker) + "/32", 60 * kSecond);
  ASSERT_EQ(apply(a), "");
  ASSERT_EQ(apply(b), "");
  ASSERT_EQ(remove(a), "");
  EXPECT_EQ(send(kAttacker, 4000, 30), 0);
  ASSERT_EQ(remove(b), "");
  EXPECT_EQ(send(kAttacker, 4000, 30), 30);
}

TEST_F(NftablesEnforceTest, RateLimitLetsThroughAboutTheRateAndDropsTheRest) {
  Rule r = dropRule("ord-rl", "198.18.0.0/24", 60 * kSecond, std::string(kVictim) + "/32");
  r.match.action = common::OrderMatch::Action::kRateLimit;
  r.match.protocol = IPPROTO_UDP;
  r.match.ratePps = 10;
  ASSERT_EQ(apply(r), "");
  int got = send(kBystander, 4000, 300);
  EXPECT_GT(got, 0);
  EXPECT_LT(got, 40);  // 10/s plus the default burst of 5, over ~0.2 s
  EXPECT_EQ(dropped(r), static_cast<uint64_t>(300 - got));
}

// A datagram of 64 bytes: 92 bytes of IPv4 (what nftables counts at
// prerouting), 106 with the Ethernet header (what XDP sees).
constexpr uint64_t kIpBytes = 20 + 8 + 64, kFrameBytes = 14 + kIpBytes;

TEST_F(NftablesEnforceTest, ReportsEachRulesDroppedPacketsAndBytesInOneRead) {
  expectCountsOfEachRule(kIpBytes);
  Rule rate = dropRule("ord-rl", "198.18.0.0/24", 60 * kSecond, std::string(kVictim) + "/32");
  rate.match.action = common::OrderMatch::Action::kRateLimit;
  rate.match.protocol = IPPROTO_UDP;
  rate.match.ratePps = 10;
  // A rate limit reports what it dropped, not what it let through.
  ASSERT_EQ(apply(rate), "");
  int got = send(kBystander, 4000, 300);
  auto r = counts({&rate});
  EXPECT_GT(r[0].packets, 0u);
  EXPECT_EQ(r[0].packets, static_cast<uint64_t>(300 - got));
  EXPECT_EQ(r[0].bytes, r[0].packets * kIpBytes);
}

TEST_F(NftablesEnforceTest, TheKernelExpiresTheRuleOnTimeWithoutTheSensor) {
  Rule r = dropRule("ord-ttl", std::string(kAttacker) + "/32", 2 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 20), 0);
  sleepUntilWall(r.expiresAtNs + 300'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 20), 20);
  // The sensor's own removal afterwards is not an error.
  EXPECT_EQ(remove(r), "");
}

TEST_F(NftablesEnforceTest, RenewalPushesTheKernelTimeoutOutAndKeepsTheCount) {
  Rule r = dropRule("ord-renew", std::string(kAttacker) + "/32", 2 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  const int64_t firstExpiry = r.expiresAtNs;
  r.expiresAtNs = common::wallNowNs() + 6 * kSecond;
  ASSERT_EQ(apply(r), "");
  sleepUntilWall(firstExpiry + 500'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  EXPECT_EQ(dropped(r), 20u);
}

TEST_F(NftablesEnforceTest, RulesOfASensorKilledWithSigkillStillExpireOnTime) {
  backend_.reset();  // the killed process is the one that installs
  const int64_t expiresAt = common::wallNowNs() + 3 * kSecond;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = open(("/run/netns/" + victimNs_).c_str(), O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(10);
    NftablesEnforcer nft("garda");
    Rule r = dropRule("ord-killed", std::string(kAttacker) + "/32", 0);
    r.expiresAtNs = expiresAt;
    if (!nft.apply(r).empty()) _exit(11);
    raise(SIGKILL);
    _exit(12);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  EXPECT_EQ(send(kAttacker, 4000, 20), 0);
  sleepUntilWall(expiresAt - 700'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 20), 0);  // still in force just before its expiry
  sleepUntilWall(expiresAt + 300'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 20), 20);
}

TEST_F(NftablesEnforceTest, ARestartedSensorAdoptsItsRulesAndDropsTheOnesNoLongerListed) {
  Rule keep = dropRule("ord-keep", std::string(kAttacker) + "/32", 60 * kSecond);
  Rule stale = dropRule("ord-stale", std::string(kBystander) + "/32", 60 * kSecond);
  ASSERT_EQ(apply(keep), "");
  ASSERT_EQ(apply(stale), "");
  inVictim([&] { backend_ = std::make_unique<NftablesEnforcer>("garda"); });  // restart
  EXPECT_EQ(backend_->counters().adopted, 2u);
  // Until the aggregator's list arrives, both stay in force.
  EXPECT_EQ(send(kBystander, 4000, 10), 0);
  ASSERT_EQ(apply(keep), "");                            // the orderSync renews ord-keep ...
  inVictim([&] { backend_->reconcile({"ord-keep"}); });  // ... and does not list ord-stale
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  EXPECT_EQ(send(kBystander, 4000, 10), 10);
  std::string after = ruleset();
  EXPECT_NE(after.find("ord-keep"), std::string::npos) << after;
  EXPECT_EQ(after.find("ord-stale"), std::string::npos) << after;
}

TEST_F(NftablesEnforceTest, OrderManagerRefusesANeverBlockOrderBeforeTheKernelSeesIt) {
  common::SensorConfig config;
  config.neverBlock = {*common::Prefix::parse(std::string(kAttacker) + "/32")};
  OrderManager orders(config, *backend_);
  capnp::MallocMessageBuilder message;
  auto o = message.initRoot<wire::Order>();
  o.setOrderId("ord-nb");
  common::writePrefix(o.initSource(), *common::Prefix::parse("198.18.0.0/24"));
  o.setExpiresAtNs(common::wallNowNs() + 60 * kSecond);
  std::vector<OrderReportOut> reports;
  inVictim([&] { reports = orders.onOrder(o.asReader(), common::wallNowNs()); });
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].state, wire::OrderState::REJECTED);
  EXPECT_NE(reports[0].reason.find("never_block"), std::string::npos) << reports[0].reason;
  EXPECT_EQ(send(kAttacker, 4000, 10), 10);
  std::string table = ruleset();
  EXPECT_NE(table.find("table inet garda"), std::string::npos) << table;
  EXPECT_EQ(table.find("ord-nb"), std::string::npos) << table;
}

TEST_F(NftablesEnforceTest, Installs1000RulesAndReportsTheTime) {
  auto start = std::chrono::steady_clock::now();
  inVictim([&] {
    for (int i = 0; i < 1000; ++i) {
      Rule r = dropRule("ord-bulk-" + std::to_string(i),
                        "198.19." + std::to_string(i / 250) + "." + std::to_string(i % 250) + "/32",
                        60 * kSecond);
      ASSERT_EQ(backend_->apply(r), "");
    }
  });
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("nftables: 1000 rules installed in %.0f ms (%.2f ms per rule)\n", ms, ms / 1000);
  RecordProperty("install_1000_ms", static_cast<int>(ms));
  EXPECT_EQ(send(kAttacker, 4000, 10), 10);
}

class XdpEnforceTest : public BackendTest<XdpEnforcer> {
 protected:
  void SetUp() override {
    NamespacePair::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    inVictim([&] { backend_ = std::make_unique<XdpEnforcer>("vb", common::XdpMode::kAuto, 2048); });
  }
};

TEST_F(XdpEnforceTest, DropsTheBlockedSourcePrefixAndPassesOthers) {
  Rule r = dropRule("ord-1", std::string(kAttacker) + "/32", 60 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 50), 0);
  EXPECT_EQ(send(kBystander, 4000, 50), 50);
  EXPECT_EQ(dropped(r), 50u);
  ASSERT_EQ(remove(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 20), 20);
}

TEST_F(XdpEnforceTest, DropsSourcesTowardOneVictimAndReflection) {
  Rule toVictim = dropRule("ord-dst", "198.18.0.0/31", 60 * kSecond, std::string(kVictim) + "/32");
  Rule dns = reflectionRule("ord-dns", 53, 60 * kSecond);
  ASSERT_EQ(apply(toVictim), "");
  ASSERT_EQ(apply(dns), "");
  EXPECT_EQ(send(kAttacker, 4000, 30), 0);  // 198.18.0.1 is in the /31
  EXPECT_EQ(send(kBystander, 53, 30), 0);   // from port 53
  EXPECT_EQ(send(kBystander, 5353, 30), 30);
  EXPECT_EQ(dropped(toVictim), 30u);
  EXPECT_EQ(dropped(dns), 30u);
}

TEST_F(XdpEnforceTest, ReportsEachRulesDroppedPacketsAndBytesInOneRead) {
  expectCountsOfEachRule(kFrameBytes);
  // A slot used again (ord-src's) starts from zero.
  Rule again = dropRule("ord-again", "192.0.2.7/32", 60 * kSecond);
  ASSERT_EQ(apply(again), "");
  EXPECT_EQ(counts({&again})[0].packets, 0u);
}

TEST_F(XdpEnforceTest, RefusesWhatItCannotExpressWithTheReason) {
  Rule rate = dropRule("ord-rl", "", 60 * kSecond, std::string(kVictim) + "/32");
  rate.match.action = common::OrderMatch::Action::kRateLimit;
  rate.match.ratePps = 100;
  EXPECT_NE(apply(rate).find("cannot rate-limit"), std::string::npos);
  Rule dport = dropRule("ord-dport", std::string(kAttacker) + "/32", 60 * kSecond);
  dport.match.destinationPort = 80;
  EXPECT_NE(apply(dport).find("destination ports"), std::string::npos);
}

TEST_F(XdpEnforceTest, ARestartedSensorReplacesItsProgramEvenInTheOtherMode) {
  ASSERT_EQ(apply(dropRule("ord-old", std::string(kAttacker) + "/32", 60 * kSecond)), "");
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  inVictim(
      [&] { backend_ = std::make_unique<XdpEnforcer>("vb", common::XdpMode::kGeneric, 2048); });
  EXPECT_EQ(backend_->attachMode(), "generic");
  // Fresh maps: the old rule is gone until the aggregator's list brings it back.
  EXPECT_EQ(send(kAttacker, 4000, 10), 10);
  Rule r = dropRule("ord-old", std::string(kAttacker) + "/32", 60 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 10), 0);
  EXPECT_EQ(dropped(r), 10u);
}

TEST_F(XdpEnforceTest, TheProgramIgnoresAnExpiredEntryWithoutTheSensor) {
  Rule r = dropRule("ord-ttl", std::string(kAttacker) + "/32", 2 * kSecond);
  ASSERT_EQ(apply(r), "");
  EXPECT_EQ(send(kAttacker, 4000, 20), 0);
  sleepUntilWall(r.expiresAtNs + 200'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 20), 20);  // no remove() was called
  EXPECT_EQ(dropped(r), 20u);                // and the passed packets were not counted
}

TEST_F(XdpEnforceTest, RulesOfASensorKilledWithSigkillStillExpireOnTime) {
  inVictim([&] { backend_.reset(); });
  const int64_t expiresAt = common::wallNowNs() + 3 * kSecond;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = open(("/run/netns/" + victimNs_).c_str(), O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(10);
    XdpEnforcer xdp("vb", common::XdpMode::kAuto, 64);
    Rule r = dropRule("ord-killed", std::string(kAttacker) + "/32", 0);
    r.expiresAtNs = expiresAt;
    if (!xdp.apply(r).empty()) _exit(11);
    raise(SIGKILL);
    _exit(12);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
  EXPECT_EQ(send(kAttacker, 4000, 20), 0);
  sleepUntilWall(expiresAt - 700'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 20), 0);
  sleepUntilWall(expiresAt + 200'000'000);
  EXPECT_EQ(send(kAttacker, 4000, 20), 20);
}

TEST_F(XdpEnforceTest, Installs1000RulesAndReportsTheTime) {
  auto start = std::chrono::steady_clock::now();
  inVictim([&] {
    for (int i = 0; i < 1000; ++i) {
      Rule r = dropRule("ord-bulk-" + std::to_string(i),
                        "198.19." + std::to_string(i / 250) + "." + std::to_string(i % 250) + "/32",
                        60 * kSecond);
      ASSERT_EQ(backend_->apply(r), "");
    }
  });
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("xdp: 1000 rules installed in %.1f ms (%.3f ms per rule)\n", ms, ms / 1000);
  RecordProperty("install_1000_ms", static_cast<int>(ms));
  EXPECT_EQ(send(kAttacker, 4000, 10), 10);
}

// The sensor under its systemd unit: CAP_NET_RAW, NET_ADMIN, BPF and PERFMON
// and nothing else (no CAP_SYS_ADMIN, so no reading a program by id).
class XdpRestartTest : public XdpEnforceTest {
 protected:
  void SetUp() override {
    XdpEnforceTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    stateDir_ = std::filesystem::temp_directory_path() /
                ("garda-xdp-state-" + std::to_string(getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(stateDir_);
  }
  void TearDown() override {
    XdpEnforceTest::TearDown();
    if (!stateDir_.empty()) std::filesystem::remove_all(stateDir_);
  }

  // Runs `fn` in a child process in the victim namespace with the unit's
  // capabilities only; returns its exit status (fn's value, or 100 + n when
  // it could not get there).
  int unprivileged(const std::function<int()>& fn) {
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(("/run/netns/" + victimNs_).c_str(), O_RDONLY);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) _exit(101);
      __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct data[2]{};
      for (int cap : {CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON}) {
        data[cap / 32].effective |= 1u << (cap % 32);
        data[cap / 32].permitted |= 1u << (cap % 32);
      }
      if (syscall(SYS_capset, &header, data) != 0) _exit(102);
      int rc = 103;
      try {
        rc = fn();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        rc = 104;
      }
      std::fflush(nullptr);
      _exit(rc);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  // The XDP program ids on vb: {native, generic}.
  std::pair<uint32_t, uint32_t> attached() {
    bpf_xdp_query_opts q{};
    q.sz = sizeof q;
    inVictim([&] { EXPECT_EQ(bpf_xdp_query(static_cast<int>(if_nametoindex("vb")), 0, &q), 0); });
    return {q.drv_prog_id, q.skb_prog_id};
  }
  uint32_t anyAttached() {
    auto [native, generic] = attached();
    return native ? native : generic;
  }

  std::filesystem::path stateDir_;
};

TEST_F(XdpRestartTest, WithoutCapSysAdminARestartKnowsItsProgramByTheRecordItLeft) {
  uint32_t first = 0;
  inVictim([&] {
    backend_ = std::make_unique<XdpEnforcer>("vb", common::XdpMode::kAuto, 64, stateDir_);
    first = backend_->programId();
    backend_.reset();  // the sensor stops; its program stays
  });
  ASSERT_NE(first, 0u);
  EXPECT_EQ(anyAttached(), first);
  EXPECT_TRUE(std::filesystem::exists(stateDir_ / "xdp-vb.prog"));

  // Started again with the unit's capabilities, it replaces the program it
  // recorded and enforces, twice in a row.
  const int64_t expiresAt = common::wallNowNs() + 30 * kSecond;
  uint32_t last = first;
  for (int round = 0; round < 2; ++round) {
    uint32_t before = last;
    ASSERT_EQ(unprivileged([&] {
                XdpEnforcer xdp("vb", common::XdpMode::kAuto, 64, stateDir_);
                if (xdp.programId() == 0 || xdp.programId() == before) return 1;
                Rule r = dropRule("ord-restart", std::string(kAttacker) + "/32", 0);
                r.expiresAtNs = expiresAt;
                return xdp.apply(r).empty() ? 0 : 2;
              }),
              0)
        << "round " << round;
    last = anyAttached();
    EXPECT_NE(last, before) << "round " << round;
    std::ifstream record(stateDir_ / "xdp-vb.prog");
    uint32_t recorded = 0;
    record >> recorded;
    EXPECT_EQ(recorded, last) << "round " << round;
    // The rule the (now gone) child applied is in force.
    EXPECT_EQ(send(kAttacker, 4000, 10), 0) << "round " << round;
    EXPECT_EQ(send(kBystander, 4000, 10), 10) << "round " << round;
  }
}

TEST_F(XdpRestartTest, WithoutCapSysAdminAProgramWithNoRecordIsRefusedWithTheWayOut) {
  const uint32_t before = anyAttached();  // the fixture's, attached with no state dir
  ASSERT_NE(before, 0u);
  ASSERT_EQ(unprivileged([&] {
              try {
                XdpEnforcer xdp("vb", common::XdpMode::kAuto, 64, stateDir_);
                return 1;
              } catch (const std::runtime_error& e) {
                std::string what = e.what();
                bool ok = what.find("cannot read its name") != std::string::npos &&
                          what.find("`ip link set dev vb xdp off`") != std::string::npos;
                if (!ok) std::fprintf(stderr, "child: %s\n", what.c_str());
                return ok ? 0 : 2;
              }
            }),
            0);
  EXPECT_EQ(anyAttached(), before);  // untouched
}

// A trivial XDP program that is not Garda's ("other_xdp": pass everything),
// attached in generic mode; returns its fd (the caller closes it).
int attachForeignProgram() {
  bpf_insn insns[2]{};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = XDP_PASS;
  insns[1].code = BPF_JMP | BPF_EXIT;
  int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "other_xdp", "GPL", insns, 2, nullptr);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(bpf_xdp_attach(static_cast<int>(if_nametoindex("vb")), fd, XDP_FLAGS_SKB_MODE, nullptr),
            0);
  return fd;
}

TEST_F(XdpRestartTest, WithdrawTakesGardasProgramOffAndLeavesAnyOther) {
  inVictim([&] {
    backend_ = std::make_unique<XdpEnforcer>("vb", common::XdpMode::kGeneric, 64, stateDir_);
    backend_.reset();
  });
  ASSERT_NE(anyAttached(), 0u);
  // Unprivileged, as the record says whose it is.
  ASSERT_EQ(unprivileged([&] {
              std::string done = XdpEnforcer::withdraw("vb", stateDir_);
              std::fprintf(stderr, "withdraw: %s\n", done.c_str());
              return done.find("took garda_xdp") != std::string::npos ? 0 : 1;
            }),
            0);
  EXPECT_EQ(anyAttached(), 0u);
  EXPECT_FALSE(std::filesystem::exists(stateDir_ / "xdp-vb.prog"));

  int foreign = -1;
  inVictim([&] { foreign = attachForeignProgram(); });
  const uint32_t other = anyAttached();
  ASSERT_NE(other, 0u);
  inVictim([&] {
    try {
      XdpEnforcer xdp("vb", common::XdpMode::kAuto, 64, stateDir_);
      ADD_FAILURE() << "replaced another XDP program";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("\"other_xdp\""), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("garda will not replace it"), std::string::npos);
    }
    std::string done = XdpEnforcer::withdraw("vb", stateDir_);
    EXPECT_NE(done.find("left program id " + std::to_string(other) + " (\"other_xdp\")"),
              std::string::npos)
        << done;
  });
  EXPECT_EQ(anyAttached(), other);
  close(foreign);
}

TEST(XdpEnforce, AMissingInterfaceIsAStartupError) {
  try {
    XdpEnforcer xdp("garda-no-if0", common::XdpMode::kAuto, 16);
    FAIL() << "attached to a missing interface";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "xdp: interface garda-no-if0: No such device");
  }
}

// The exec backend: scripts written per test into a temporary folder.
class ExecEnforceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("garda-exec-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string script(const std::string& name, const std::string& body) {
    auto path = dir_ / name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    chmod(path.c_str(), 0755);
    return path;
  }
  std::string read(const std::string& name) {
    std::ifstream in(dir_ / name);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  std::filesystem::path dir_;
};

TEST_F(ExecEnforceTest, HandsTheVerbAndTheRuleAsJsonToTheScript) {
  const std::string log = (dir_ / "calls").string();
  ExecEnforcer exec(script("record.sh", "echo \"$# $1\" >> " + log + "\ncat >> " + log +
                                            "\necho 'ip route add blackhole 198.18.0.1/32'\n"),
                    5000);
  Rule r = dropRule("ord-7", std::string(kAttacker) + "/32", 60 * kSecond);
  ASSERT_EQ(exec.apply(r), "");
  ASSERT_EQ(exec.remove(r), "");
  std::string calls = read("calls");
  auto second = calls.find("1 remove\n");
  ASSERT_EQ(calls.rfind("1 add\n", 0), 0u) << calls;
  ASSERT_NE(second, std::string::npos) << calls;
  auto first = nlohmann::json::parse(calls.substr(6, second - 6));
  EXPECT_EQ(first, r.toJson());
  EXPECT_EQ(first["source"], "198.18.0.1/32");
  EXPECT_EQ(first["id"], "ord-7");
  EXPECT_EQ(exec.counters().runs, 2u);
}

TEST_F(ExecEnforceTest, ANonZeroExitIsARejectionWithTheFirstStderrLine) {
  ExecEnforcer exec(script("no.sh",
                           "cat >/dev/null\necho 'gateway refused: ACL full' >&2\n"
                           "echo 'second line' >&2\nexit 3\n"),
                    5000);
  EXPECT_EQ(exec.apply(dropRule("ord-1", "198.18.0.1/32", kSecond)),
            "gateway refused: ACL full (exit status 3)");
  EXPECT_EQ(exec.counters().failures, 1u);
}

TEST_F(ExecEnforceTest, ASilentFailureNamesTheCommandAndTheStatus) {
  std::string path = script("silent.sh", "exit 1\n");
  ExecEnforcer exec(path, 5000);
  EXPECT_EQ(exec.apply(dropRule("ord-1", "198.18.0.1/32", kSecond)), path + " add: exit status 1");
}

TEST_F(ExecEnforceTest, AScriptThatHangsIsKilledAtTheTimeout) {
  // The script's child holds the pipes open: it must be killed too.
  ExecEnforcer exec(script("hang.sh", "sleep 30\n"), 300);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(exec.apply(dropRule("ord-1", "198.18.0.1/32", kSecond)),
            "timed out after 300 ms (killed)");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(exec.counters().timeouts, 1u);
}

TEST_F(ExecEnforceTest, AScriptThatIgnoresItsInputDoesNotHurtTheSensor) {
  ExecEnforcer exec(script("ignore.sh", "exit 0\n"), 5000);
  Rule r = dropRule("ord-1", "198.18.0.1/32", kSecond);
  r.reason = std::string(200000, 'x');  // more than a pipe holds
  EXPECT_EQ(exec.apply(r), "");
}

TEST_F(ExecEnforceTest, AMissingProgramIsARejectionNotACrash) {
  ExecEnforcer exec((dir_ / "missing.sh").string(), 5000);
  EXPECT_NE(exec.apply(dropRule("ord-1", "198.18.0.1/32", kSecond)).find("cannot run"),
            std::string::npos);
}

TEST_F(ExecEnforceTest, TheShippedExampleScriptAcceptsAndTouchesNothing) {
  ExecEnforcer exec(std::string(GARDA_SOURCE_DIR) + "/scripts/enforce-example.sh", 5000);
  Rule r = dropRule("ord-1", "198.18.0.1/32", 60 * kSecond);
  EXPECT_EQ(exec.apply(r), "");
  EXPECT_EQ(exec.remove(r), "");
}

}  // namespace
}  // namespace garda::sensor
