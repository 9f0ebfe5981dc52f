// IncidentTracker's settings: aggregator.toml's [detect] and [correlate]
// turned into the detector's and correlator's own configs.
#include "aggregator/incidents.h"

#include <gtest/gtest.h>

#include "aggregator/detect.h"
#include "common/config.h"

namespace garda::aggregator {
namespace {

TEST(DetectSettings, DefaultsAreTheDetectorsAndCorrelatorsDefaults) {
  const DetectConfig d = detectConfigFrom(common::DetectSettings{});
  const DetectConfig want;
  EXPECT_EQ(d.k, want.k);
  EXPECT_EQ(d.sustainMs, want.sustainMs);
  EXPECT_EQ(d.clearMs, want.clearMs);
  EXPECT_EQ(d.warmupMs, want.warmupMs);
  EXPECT_EQ(d.baselineHalfLifeMs, want.baselineHalfLifeMs);
  EXPECT_EQ(d.floorPps, want.floorPps);
  EXPECT_EQ(d.reflectionTotalFloorPps, want.reflectionTotalFloorPps);
  EXPECT_EQ(d.reflectionFloorBps, want.reflectionFloorBps);
  EXPECT_EQ(d.reflectionMinAvgBytes, want.reflectionMinAvgBytes);
  const CorrelateConfig c = correlateConfigFrom(common::CorrelateSettings{});
  const CorrelateConfig wantC;
  EXPECT_EQ(c.resolveAfterMs, wantC.resolveAfterMs);
  EXPECT_EQ(c.idleResolveMs, wantC.idleResolveMs);
  EXPECT_EQ(c.joinWindowMs, wantC.joinWindowMs);
}

TEST(DetectSettings, FloorNamesAreTheDetectorsVectorNamesInWireOrder) {
  ASSERT_EQ(common::kDetectVectorNames.size(), kWireVectorCount);
  for (size_t i = 0; i < kWireVectorCount; ++i)
    EXPECT_EQ(common::kDetectVectorNames[i], vectorName(static_cast<wire::Vector>(i))) << i;
}

TEST(DetectSettings, ConfiguredValuesReachTheDetector) {
  common::AggregatorConfig config = common::parseAggregatorConfig(R"([aggregator]
secret_key = "k"
[detect]
k = 2.5
sustain_ms = 500
floor_pps = { udp_reflection = 300 }
[correlate]
join_window_ms = 5000
)",
                                                                  "aggregator.toml", false);
  const DetectConfig d = detectConfigFrom(config.detect);
  EXPECT_EQ(d.k, 2.5);
  EXPECT_EQ(d.sustainMs, 500u);
  EXPECT_EQ(d.floorPps[static_cast<size_t>(wire::Vector::UDP_REFLECTION)], 300);
  EXPECT_EQ(d.floorPps[static_cast<size_t>(wire::Vector::TCP_SYN)], 2000);
  EXPECT_EQ(correlateConfigFrom(config.correlate).joinWindowMs, 5000u);
  Detector detector(d);
  EXPECT_EQ(detector.config().k, 2.5);
}

}  // namespace
}  // namespace garda::aggregator
