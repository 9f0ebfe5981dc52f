#include "aggregator/evidence.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>

#include "common/envelope.h"
#include "sensor/evidence.h"
#include "tests/unit/aggregator/summary_builder.h"

namespace garda::aggregator {
namespace {

using testing::ip;
using testing::kT0;

constexpr const char* kIncident = "inc-20231114T221320Z-000001";

Incident incident() {
  Incident inc;
  inc.id = kIncident;
  IncidentMember syn;
  syn.sensorId = "alpha";
  syn.victim = ip("198.18.2.10");
  syn.vector = wire::Vector::TCP_SYN;
  syn.classification = "syn_flood";
  syn.peakPps = 5000;
  IncidentMember dns = syn;
  dns.sensorId = "beta";
  dns.vector = wire::Vector::UDP_REFLECTION;
  dns.reflectionPort = 53;
  dns.classification = "dns_reflection";
  IncidentMember weak = syn;  // alpha's lighter member: not what alpha samples
  weak.vector = wire::Vector::ICMP;
  weak.peakPps = 10;
  inc.members = {syn, dns, weak};
  return inc;
}

class EvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("garda-evidence-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    store_ = std::make_unique<Store>(dir_.string());
    collector_ = std::make_unique<EvidenceCollector>(
        *store_, [this](const std::string& id, const std::string& bytes) {
          if (!connected_) return false;
          sent_.emplace_back(id, bytes);
          return true;
        });
  }
  void TearDown() override {
    collector_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The request sent to `sensor`, decoded as the sensor's uplink would.
  sensor::EvidenceRequest requestTo(const std::string& sensor) {
    for (const auto& [id, bytes] : sent_) {
      if (id != sensor) continue;
      EXPECT_EQ(decoder_->decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()),
                                          bytes.size())),
                common::EnvelopeReject::kNone)
          << decoder_->detail();
      auto r = sensor::evidenceRequestFrom(decoder_->envelope().getBody().getEvidenceRequest());
      EXPECT_TRUE(r);
      return *r;
    }
    ADD_FAILURE() << "nothing sent to " << sensor;
    return {};
  }

  // The sensor's answer (`frames` SYN-sized frames), through the sensor's
  // own encoder, handed to the collector part by part.
  void answer(const sensor::EvidenceRequest& request, const std::string& sensor, size_t frames,
              size_t frameBytes = 60, size_t partBytes = 1 << 20) {
    sensor::EvidenceResult r;
    r.request = request;
    r.reason = "full";
    for (size_t i = 0; i < frames; ++i)
      r.frames.push_back({kT0 + static_cast<int64_t>(i) * 1000, static_cast<uint32_t>(frameBytes),
                          std::string(frameBytes, static_cast<char>(i))});
    for (const auto& bytes : sensor::encodeEvidence(r, sensor, partBytes)) deliver(sensor, bytes);
  }
  void deliver(const std::string& sensor, const std::string& bytes) {
    ASSERT_EQ(decoder_->decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()),
                                        bytes.size())),
              common::EnvelopeReject::kNone)
        << decoder_->detail();
    collector_->onEvidence(sensor, decoder_->envelope().getBody().getEvidence(), kT0);
  }
  uint64_t rejects(EvidenceReject r) const {
    return collector_->counters().rejects[static_cast<size_t>(r)];
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EvidenceCollector> collector_;
  std::vector<std::pair<std::string, std::string>> sent_;
  bool connected_ = true;
  // Behind a pointer: its capnp reader's destructor may throw, and a fixture's
  // destructor must not (clang: -Wexception-spec of ~Test).
  std::unique_ptr<common::EnvelopeDecoder> decoder_ = std::make_unique<common::EnvelopeDecoder>();
};

TEST_F(EvidenceTest, AsksEachSensorOnceForItsHeaviestVectorTowardTheVictim) {
  auto asked = collector_->request(incident(), kT0);
  EXPECT_EQ(asked, (std::vector<std::string>{"alpha", "beta"}));
  auto syn = requestTo("alpha");
  EXPECT_EQ(syn.incidentId, kIncident);
  EXPECT_EQ(syn.filter.victim.toString(), "198.18.2.10/32");
  EXPECT_EQ(syn.filter.protocol, 6);
  EXPECT_EQ(syn.filter.tcpFlagsMask, 0x12);
  EXPECT_EQ(syn.filter.tcpFlags, 0x02);
  EXPECT_GE(syn.maxPackets, 1u);
  EXPECT_LE(syn.maxPackets, common::kMaxEvidencePackets);
  EXPECT_GT(syn.deadlineNs, kT0);
  auto dns = requestTo("beta");
  EXPECT_EQ(dns.filter.protocol, 17);
  EXPECT_EQ(dns.filter.sourcePort, 53);
  EXPECT_NE(dns.requestId, syn.requestId);
  EXPECT_TRUE(collector_->request(incident(), kT0).empty()) << "asked already";
  EXPECT_TRUE(collector_->pending(kIncident));
}

TEST_F(EvidenceTest, AnUnreachableSensorIsAskedAgainLater) {
  connected_ = false;
  Incident inc = incident();
  collector_->onOpen({&inc}, kT0);
  EXPECT_EQ(collector_->counters().requestsUnsent, 2u);
  EXPECT_FALSE(collector_->pending(kIncident));
  connected_ = true;
  collector_->onOpen({&inc}, kT0 + 1);
  EXPECT_EQ(collector_->counters().requested, 2u);
  collector_->onOpen({&inc}, kT0 + 2);
  EXPECT_EQ(collector_->counters().requested, 2u) << "once per sensor";
}

TEST_F(EvidenceTest, AnswersInPartsAreJoinedStoredAndWrittenAsAPcap) {
  collector_->request(incident(), kT0);
  EXPECT_FALSE(collector_->pcap(kIncident)) << "nothing answered yet";
  answer(requestTo("alpha"), "alpha", 10, 60, /*partBytes=*/200);
  EXPECT_EQ(collector_->counters().parts, 4u);
  EXPECT_EQ(collector_->counters().stored, 1u);
  answer(requestTo("beta"), "beta", 0);
  auto pcap = collector_->pcap(kIncident);
  ASSERT_TRUE(pcap);
  EXPECT_EQ(pcap->packets, 10u);
  EXPECT_EQ(pcap->sensors, (std::vector<std::string>{"alpha"}));
  EXPECT_EQ(pcap->empty, (std::vector<std::string>{"beta (full)"}));
  EXPECT_FALSE(collector_->pending(kIncident));

  // libpcap reads the file back: 10 records of 60 bytes, in time order.
  const auto path = dir_ / "evidence.pcap";
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(pcap->bytes.data(), 1, pcap->bytes.size(), f);
    std::fclose(f);
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  ASSERT_NE(p, nullptr) << err;
  EXPECT_EQ(pcap_datalink(p), DLT_EN10MB);
  pcap_pkthdr* h;
  const u_char* data;
  int n = 0;
  while (pcap_next_ex(p, &h, &data) == 1) {
    EXPECT_EQ(h->caplen, 60u);
    EXPECT_EQ(static_cast<int64_t>(h->ts.tv_sec) * 1'000'000'000 + h->ts.tv_usec, kT0 + n * 1000);
    EXPECT_EQ(data[0], n);
    ++n;
  }
  pcap_close(p);
  EXPECT_EQ(n, 10);
}

TEST_F(EvidenceTest, WhatWasNotAskedOrIsOutOfBoundsIsRejectedAndNotStored) {
  collector_->request(incident(), kT0);
  const auto alpha = requestTo("alpha");

  sensor::EvidenceRequest unknown = alpha;
  unknown.requestId = 12345;
  answer(unknown, "alpha", 1);
  EXPECT_EQ(rejects(EvidenceReject::kUnknownRequest), 1u);

  answer(alpha, "beta", 1);  // beta answering alpha's request
  EXPECT_EQ(rejects(EvidenceReject::kWrongSensor), 1u);

  sensor::EvidenceRequest other = alpha;
  other.incidentId = "inc-20231114T221320Z-000099";
  answer(other, "alpha", 1);
  EXPECT_EQ(rejects(EvidenceReject::kWrongIncident), 1u);

  answer(alpha, "alpha", alpha.maxPackets + 1);
  EXPECT_EQ(rejects(EvidenceReject::kTooManyPackets), 1u);

  answer(alpha, "alpha", 1, alpha.snapLen + 1);
  EXPECT_EQ(rejects(EvidenceReject::kOverSnapLen), 1u);

  // A later part before the first.
  sensor::EvidenceResult r;
  r.request = alpha;
  for (int i = 0; i < 4; ++i) r.frames.push_back({kT0, 60, std::string(60, 'x')});
  auto parts = sensor::encodeEvidence(r, "alpha", 100);
  ASSERT_GE(parts.size(), 2u);
  deliver("alpha", parts[1]);
  EXPECT_EQ(rejects(EvidenceReject::kOutOfOrder), 1u);

  EXPECT_FALSE(collector_->pcap(kIncident)) << "nothing stored";
  EXPECT_TRUE(collector_->pending(kIncident)) << "the real answer is still welcome";
  answer(alpha, "alpha", 3);
  ASSERT_TRUE(collector_->pcap(kIncident));
  EXPECT_EQ(collector_->pcap(kIncident)->packets, 3u);
}

TEST_F(EvidenceTest, UnansweredRequestsExpireAndMayBeAskedAgain) {
  collector_->request(incident(), kT0);
  collector_->tick(kT0 + 3600LL * 1'000'000'000);
  EXPECT_EQ(collector_->counters().expired, 2u);
  EXPECT_FALSE(collector_->pending(kIncident));
  sent_.clear();
  EXPECT_EQ(collector_->request(incident(), kT0).size(), 2u);
}

TEST(VectorFilter, EachVectorSamplesWhatItCounts) {
  EXPECT_EQ(vectorFilter(wire::Vector::TCP_SYN_ACK, 0, false).tcpFlags, 0x12);
  EXPECT_EQ(vectorFilter(wire::Vector::TCP_OTHER, 0, false).tcpFlagsMask, 0x02);
  EXPECT_EQ(vectorFilter(wire::Vector::UDP, 0, false).sourcePort, 0);
  EXPECT_EQ(vectorFilter(wire::Vector::ICMP, 0, false).protocol, 1);
  EXPECT_EQ(vectorFilter(wire::Vector::ICMP, 0, true).protocol, 58);
  EXPECT_EQ(vectorFilter(wire::Vector::FRAGMENT, 0, false).protocol, 0);
}

}  // namespace
}  // namespace garda::aggregator
