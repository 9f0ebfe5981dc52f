#include "sensor/enforce/nftables_enforcer.h"

#include <nftables/libnftables.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <memory>
#include <regex>
#include <stdexcept>

#include "common/clock.h"

namespace garda::sensor {
namespace {

// How one rule becomes a map element: which map (its shape), the map's key
// type and lookup expression, and this rule's key.
struct Placement {
  std::string map;
  std::string type;
  std::string lookup;
  std::string key;
};

std::string maskText(const common::Prefix& p) {
  uint8_t bytes[16] = {};
  const bool v4 = p.address().isV4();
  const unsigned width = v4 ? 4 : 16;
  for (unsigned bit = 0; bit < p.length(); ++bit) bytes[bit / 8] |= uint8_t(0x80u >> (bit % 8));
  return (width == 4 ? common::IpAddress::fromV4Bytes(bytes)
                     : common::IpAddress::fromV6Bytes(bytes))
      .toString();
}

// Empty on success, otherwise why the rule cannot be placed.
std::string place(const common::OrderMatch& m, Placement& out) {
  const bool hasSrc = m.source.length() > 0, hasDst = m.destination.length() > 0;
  if (hasSrc && hasDst && m.source.address().isV4() != m.destination.address().isV4())
    return "source and destination are of different address families";
  const bool v4 = hasSrc ? m.source.address().isV4() : hasDst && m.destination.address().isV4();
  const char* family = !hasSrc && !hasDst ? "x" : v4 ? "4" : "6";
  std::vector<std::string> types, exprs, keys;
  auto address = [&](const common::Prefix& p, const char* field) {
    const unsigned full = v4 ? 32 : 128;
    std::string e = std::string(v4 ? "ip " : "ip6 ") + field;
    if (p.length() < full) e += " & " + maskText(p);
    types.push_back(v4 ? "ipv4_addr" : "ipv6_addr");
    exprs.push_back(e);
    keys.push_back(p.address().toString());
  };
  if (hasSrc) address(m.source, "saddr");
  if (hasDst) address(m.destination, "daddr");
  if (m.protocol != 0) {
    types.push_back("inet_proto");
    exprs.push_back("meta l4proto");
    keys.push_back(std::to_string(m.protocol));
  }
  if (m.sourcePort != 0) {
    types.push_back("inet_service");
    exprs.push_back("th sport");
    keys.push_back(std::to_string(m.sourcePort));
  }
  if (m.destinationPort != 0) {
    types.push_back("inet_service");
    exprs.push_back("th dport");
    keys.push_back(std::to_string(m.destinationPort));
  }
  if (keys.empty()) return "matches all traffic";
  auto join = [](const std::vector<std::string>& parts) {
    std::string s;
    for (const auto& p : parts) s += (s.empty() ? "" : " . ") + p;
    return s;
  };
  out.map = std::string("m") + family + "_s" + std::to_string(hasSrc ? m.source.length() : 0) +
            "_d" + std::to_string(hasDst ? m.destination.length() : 0) + "_" +
            (m.protocol ? "p" : "") + (m.sourcePort ? "s" : "") + (m.destinationPort ? "d" : "") +
            "x";
  out.type = join(types);
  // A port without a protocol means the port of any protocol that has one,
  // never an ICMP type read as if it were a port.
  std::string guard = (m.sourcePort || m.destinationPort) && !m.protocol
                          ? "meta l4proto { 6, 17, 33, 132, 136 } "
                          : "";
  out.lookup = guard + join(exprs) + " vmap @" + out.map;
  out.key = join(keys);
  return {};
}

bool safeComment(const std::string& id) {
  return !id.empty() && id.size() <= 120 && std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == ':';
  });
}

int64_t timeoutMs(int64_t expiresAtNs) {
  int64_t ms = (expiresAtNs - common::wallNowNs() + 999'999) / 1'000'000;
  return std::max<int64_t>(ms, 1);
}

// The first "counter packets P bytes B" in nft's output.
std::pair<uint64_t, uint64_t> firstCounter(const std::string& text) {
  static const std::regex kCounter("counter packets ([0-9]+) bytes ([0-9]+)");
  std::smatch m;
  if (!std::regex_search(text, m, kCounter)) return {0, 0};
  return {std::stoull(m[1].str()), std::stoull(m[2].str())};
}

bool isMissing(const std::string& error) {
  return error.find("No such file or directory") != std::string::npos;
}

std::string keyText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_object() && v.contains("concat")) {
    std::string s;
    for (const auto& part : v["concat"]) s += (s.empty() ? "" : " . ") + keyText(part);
    return s;
  }
  return {};
}

// A context whose output and errors are buffered (read back by runOn).
nft_ctx* newContext() {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) throw std::runtime_error("nftables: cannot create a libnftables context");
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  return ctx;
}

// Runs `commands` in one transaction: "" when it went through, else the
// first line of libnftables' error. Its output goes to `out` (or is cleared).
std::string runOn(nft_ctx* ctx, const std::string& commands, std::string* out) {
  int rc = nft_run_cmd_from_buffer(ctx, commands.c_str());
  if (out)
    *out = nft_ctx_get_output_buffer(ctx);
  else
    (void)nft_ctx_get_output_buffer(ctx);  // clears it
  std::string errors = nft_ctx_get_error_buffer(ctx);
  if (rc == 0) return {};
  std::string first = errors.substr(0, errors.find('\n'));
  return first.empty() ? "libnftables failed" : first;
}

}  // namespace

NftablesEnforcer::NftablesEnforcer(std::string table) : table_(std::move(table)) {
  ctx_ = newContext();
  // `add` is a no-op for a table or chain that is there, so a restart keeps
  // what a previous run left (and its element timeouts).
  std::string err =
      run("add table inet " + table_ + "\nadd chain inet " + table_ +
          " prerouting { type filter hook prerouting priority -300; policy accept; }");
  if (!err.empty()) {
    nft_ctx_free(ctx_);
    throw std::runtime_error("nftables: cannot create table inet " + table_ + ": " + err);
  }
  adoptLeftovers();
}

std::string NftablesEnforcer::withdraw(const std::string& table) {
  std::unique_ptr<nft_ctx, decltype(&nft_ctx_free)> ctx(newContext(), nft_ctx_free);
  const std::string err = runOn(ctx.get(), "delete table inet " + table, nullptr);
  if (err.empty()) return "nftables: deleted table inet " + table + " and its rules";
  if (isMissing(err)) return "nftables: no table inet " + table + ": nothing to delete";
  throw std::runtime_error("nftables: cannot delete table inet " + table + ": " + err);
}

NftablesEnforcer::~NftablesEnforcer() {
  // The table stays: its elements expire in the kernel on their own.
  if (ctx_) nft_ctx_free(ctx_);
}

std::string NftablesEnforcer::run(const std::string& commands, std::string* out) {
  counters_.transactions++;
  std::string err = runOn(ctx_, commands, out);
  if (!err.empty()) counters_.failures++;
  return err;
}

std::optional<nlohmann::json> NftablesEnforcer::listTable() {
  nft_ctx_output_set_flags(ctx_, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_NUMERIC_ALL);
  std::string out;
  std::string err = run("list table inet " + table_, &out);
  nft_ctx_output_set_flags(ctx_, 0);
  if (!err.empty()) {
    spdlog::warn("nftables: cannot list table inet {}: {}", table_, err);
    return std::nullopt;
  }
  auto doc = nlohmann::json::parse(out, nullptr, false);
  if (doc.is_discarded() || !doc.contains("nftables") || !doc["nftables"].is_array())
    return std::nullopt;
  return doc;
}

void NftablesEnforcer::adoptLeftovers() {
  auto listed = listTable();
  if (!listed) return;
  const nlohmann::json& doc = *listed;
  const int64_t now = common::wallNowNs();
  for (const auto& item : doc["nftables"]) {
    if (item.contains("chain")) {
      std::string name = item["chain"].value("name", "");
      if (name.rfind("rl_", 0) == 0) {
        leftoverChains_.insert(name);
        nextChain_ =
            std::max(nextChain_, unsigned(std::strtoul(name.c_str() + 3, nullptr, 10)) + 1);
      }
    }
    if (!item.contains("map")) continue;
    const auto& map = item["map"];
    std::string name = map.value("name", "");
    if (name.empty() || name[0] != 'm') continue;
    maps_.insert(name);
    if (!map.contains("elem")) continue;
    for (const auto& pair : map["elem"]) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].contains("elem")) continue;
      const auto& el = pair[0]["elem"];
      std::string id = el.value("comment", "");
      if (id.empty()) continue;
      Element e;
      e.map = name;
      e.key = keyText(el["val"]);
      if (pair[1].contains("drop")) {
        e.verdict = "drop";
      } else if (pair[1].contains("jump")) {
        e.chain = pair[1]["jump"].value("target", "");
        e.verdict = "jump " + e.chain;
        leftoverChains_.erase(e.chain);
      } else {
        continue;
      }
      int64_t expires = el.value("expires", int64_t{0});
      e.owners[id] = now + expires * 1'000'000'000;
      std::string at = e.map + " " + e.key;
      byRule_[id] = at;
      leftovers_.insert(id);
      elements_[at] = std::move(e);
      counters_.adopted++;
    }
  }
  if (counters_.adopted)
    spdlog::info(
        "nftables: table inet {} holds {} rules from an earlier run; they stay until "
        "their timeout or until the aggregator's list says otherwise",
        table_, counters_.adopted);
}

std::string NftablesEnforcer::ensureMap(const std::string& map, const std::string& type,
                                        const std::string& lookup) {
  if (maps_.count(map)) return {};
  std::string err = run("add map inet " + table_ + " " + map + " { type " + type +
                        " : verdict; flags timeout; counter; }\nadd rule inet " + table_ +
                        " prerouting " + lookup);
  if (err.empty()) maps_.insert(map);
  return err;
}

std::string NftablesEnforcer::writeElement(Element& e, bool inKernel, const std::string& extra) {
  int64_t expires = 0;
  for (const auto& [id, at] : e.owners) expires = std::max(expires, at);
  // The comment names the first owner: what an operator sees in `nft list`
  // and what a restarted sensor adopts.
  const std::string& comment = e.owners.begin()->first;
  std::string element = "{ " + e.key;
  auto [packets, bytes] = inKernel ? elementCounter(e) : std::pair<uint64_t, uint64_t>{0, 0};
  if (packets)
    element += " counter packets " + std::to_string(packets) + " bytes " + std::to_string(bytes);
  element += " timeout " + std::to_string(timeoutMs(expires)) + "ms comment \"" + comment +
             "\" : " + e.verdict + " }";
  const std::string add = "add element inet " + table_ + " " + e.map + " " + element;
  if (!inKernel) return run(extra + add);
  // Older kernels do not refresh the timeout of an element that is there, so
  // a renewal replaces it, in one transaction.
  std::string err =
      run(extra + "delete element inet " + table_ + " " + e.map + " { " + e.key + " }\n" + add);
  if (!err.empty() && isMissing(err)) err = run(extra + add);  // expired in the kernel meanwhile
  return err;
}

std::pair<uint64_t, uint64_t> NftablesEnforcer::elementCounter(const Element& e) {
  std::string out;
  if (!run("get element inet " + table_ + " " + e.map + " { " + e.key + " }", &out).empty())
    return {0, 0};
  return firstCounter(out);
}

std::string NftablesEnforcer::apply(const Rule& rule) {
  if (!safeComment(rule.id))
    return "order id \"" + rule.id + "\" cannot be written as an nftables comment";
  Placement p;
  if (auto why = place(rule.match, p); !why.empty()) return why;
  const bool rate = rule.match.action == common::OrderMatch::Action::kRateLimit;
  const std::string at = p.map + " " + p.key;

  auto mine = byRule_.find(rule.id);
  if (mine != byRule_.end() && mine->second != at) {
    if (auto err = dropOwner(rule.id); !err.empty()) return err;
  }
  leftovers_.erase(rule.id);

  auto it = elements_.find(at);
  if (it != elements_.end()) {
    Element& e = it->second;
    const std::string& other = e.owners.begin()->first;
    bool sameOrder = e.owners.count(rule.id) > 0;
    if (!sameOrder && (rate || e.verdict != "drop"))
      return "same match as order " + other + ", which " +
             (e.verdict == "drop" ? "drops it" : "rate-limits it") +
             " (nftables holds one action per match)";
    if (sameOrder && rate != (e.verdict != "drop"))
      return "order " + rule.id + " changed its action; withdraw it first";
    e.owners[rule.id] = rule.expiresAtNs;
    byRule_[rule.id] = at;
    return writeElement(e, true);
  }

  if (auto err = ensureMap(p.map, p.type, p.lookup); !err.empty()) return err;
  Element e;
  e.map = p.map;
  e.key = p.key;
  e.owners[rule.id] = rule.expiresAtNs;
  std::string extra;
  if (rate) {
    e.chain = "rl_" + std::to_string(nextChain_++);
    e.verdict = "jump " + e.chain;
    extra = "add chain inet " + table_ + " " + e.chain + "\nadd rule inet " + table_ + " " +
            e.chain + " limit rate over " + std::to_string(rule.match.ratePps) +
            "/second counter drop comment \"" + rule.id + "\"\n";
  } else {
    e.verdict = "drop";
  }
  if (auto err = writeElement(e, false, extra); !err.empty()) return err;
  byRule_[rule.id] = at;
  elements_[at] = std::move(e);
  return {};
}

std::string NftablesEnforcer::dropOwner(const std::string& id) {
  auto mine = byRule_.find(id);
  if (mine == byRule_.end()) return {};
  auto it = elements_.find(mine->second);
  byRule_.erase(mine);
  if (it == elements_.end()) return {};
  Element& e = it->second;
  e.owners.erase(id);
  if (!e.owners.empty()) return writeElement(e, true);
  std::string err = run("delete element inet " + table_ + " " + e.map + " { " + e.key + " }");
  if (isMissing(err)) err.clear();  // the kernel expired it already
  if (err.empty() && !e.chain.empty()) {
    err = run("delete chain inet " + table_ + " " + e.chain);
    if (isMissing(err)) err.clear();
  }
  if (err.empty()) elements_.erase(it);
  return err;
}

std::string NftablesEnforcer::remove(const Rule& rule) {
  leftovers_.erase(rule.id);
  return dropOwner(rule.id);
}

uint64_t NftablesEnforcer::packetsDropped(const Rule& rule) {
  auto mine = byRule_.find(rule.id);
  if (mine == byRule_.end()) return 0;
  auto it = elements_.find(mine->second);
  if (it == elements_.end()) return 0;
  const Element& e = it->second;
  if (e.chain.empty()) return elementCounter(e).first;
  std::string out;
  if (!run("list chain inet " + table_ + " " + e.chain, &out).empty()) return 0;
  return firstCounter(out).first;
}

bool NftablesEnforcer::readDropCounts(const std::vector<const Rule*>& rules,
                                      std::vector<DropCount>& out) {
  out.assign(rules.size(), DropCount{});
  if (rules.empty()) return true;
  auto listed = listTable();
  if (!listed) return true;  // zeros this window; logged by listTable
  auto countOf = [](const nlohmann::json& c) {
    return DropCount{c.value("packets", uint64_t{0}), c.value("bytes", uint64_t{0})};
  };
  std::map<std::string, DropCount> byElement, byChain;  // "map key", rl chain
  for (const auto& item : (*listed)["nftables"]) {
    if (item.contains("rule")) {
      const auto& r = item["rule"];
      std::string chain = r.value("chain", "");
      if (chain.rfind("rl_", 0) != 0 || !r.contains("expr")) continue;
      for (const auto& x : r["expr"])
        if (x.is_object() && x.contains("counter")) byChain[chain] = countOf(x["counter"]);
      continue;
    }
    if (!item.contains("map") || !item["map"].contains("elem")) continue;
    const std::string name = item["map"].value("name", "");
    for (const auto& pair : item["map"]["elem"]) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].contains("elem")) continue;
      const auto& el = pair[0]["elem"];
      if (el.contains("counter"))
        byElement[name + " " + keyText(el["val"])] = countOf(el["counter"]);
    }
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    auto mine = byRule_.find(rules[i]->id);
    if (mine == byRule_.end()) continue;
    auto e = elements_.find(mine->second);
    if (e == elements_.end()) continue;
    const auto& found = e->second.chain.empty() ? byElement : byChain;
    auto c = found.find(e->second.chain.empty() ? mine->second : e->second.chain);
    if (c != found.end()) out[i] = c->second;
  }
  return true;
}

void NftablesEnforcer::reconcile(const std::set<std::string>& keep) {
  std::vector<std::string> stale;
  for (const auto& id : leftovers_)
    if (!keep.count(id)) stale.push_back(id);
  for (const auto& id : stale) {
    if (auto err = dropOwner(id); !err.empty())
      spdlog::warn("nftables: cannot remove rule {} left by an earlier run: {}", id, err);
    else
      counters_.leftoversRemoved++;
  }
  leftovers_.clear();
  // Rate-limit chains whose element the kernel expired while no sensor ran.
  for (const auto& chain : leftoverChains_) (void)run("delete chain inet " + table_ + " " + chain);
  leftoverChains_.clear();
  if (!stale.empty())
    spdlog::info(
        "nftables: removed {} rules left by an earlier run that the aggregator no "
        "longer lists",
        stale.size());
}

}  // namespace garda::sensor
