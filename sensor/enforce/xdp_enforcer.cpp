#include "sensor/enforce/xdp_enforcer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>

#include "common/clock.h"
#include "sensor/enforce/bpf/garda_xdp.h"

extern "C" {
extern const unsigned char kGardaXdpObject[];
extern const size_t kGardaXdpObjectSize;
}

namespace garda::sensor {
namespace {

constexpr const char* kProgramName = "garda_xdp";

int libbpfLog(enum libbpf_print_level level, const char* format, va_list args) {
  char line[512];
  vsnprintf(line, sizeof line, format, args);
  std::string text(line);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (level == LIBBPF_WARN)
    spdlog::warn("xdp (libbpf): {}", text);
  else
    spdlog::debug("xdp (libbpf): {}", text);
  return 0;
}

// The address in the 16-byte form the program compares: IPv6 as is, IPv4
// IPv4-mapped.
void mapped(const common::IpAddress& a, uint8_t out[16]) {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<uint8_t>(a.hi() >> (56 - 8 * i));
    out[8 + i] = static_cast<uint8_t>(a.lo() >> (56 - 8 * i));
  }
}

int64_t bootNowNs() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The program's name, or "" when this process may not look (reading another
// process's program by id takes CAP_SYS_ADMIN).
std::string programName(uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return {};
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  std::string name = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.name : "";
  close(fd);
  return name;
}

// The record of the program this sensor attached: "<prog id> <ifindex>".
// Program ids are allocated cyclically over 31 bits, so an id seen on the
// interface that equals the recorded one is the recorded program.
std::string recordPath(const std::string& stateDir, const std::string& interface) {
  return stateDir + "/xdp-" + interface + ".prog";
}

uint32_t recordedProgram(const std::string& stateDir, const std::string& interface,
                         int ifindex) {
  if (stateDir.empty()) return 0;
  std::ifstream in(recordPath(stateDir, interface));
  uint32_t id = 0;
  int index = 0;
  if (!(in >> id >> index) || index != ifindex) return 0;
  return id;
}

// Written to a temporary name and renamed, so a crash leaves the old record
// or the new one. Returns "" or the reason it could not be written.
std::string recordProgram(const std::string& stateDir, const std::string& interface,
                          int ifindex, uint32_t id) {
  const std::string path = recordPath(stateDir, interface), tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id << ' ' << ifindex << '\n';
    out.flush();
    if (!out) return tmp + ": " + std::strerror(errno);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = path + ": " + std::strerror(errno);
    std::remove(tmp.c_str());
    return why;
  }
  return {};
}

// Whether the program `id` on the interface is Garda's: by name when this
// process may read it, else by the record a previous run left.
bool isOurs(uint32_t id, uint32_t recorded, std::string* name) {
  *name = programName(id);
  return id == recorded || *name == kProgramName;
}

template <typename T>
std::vector<uint8_t> bytesOf(const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  return {p, p + sizeof value};
}

}  // namespace

XdpEnforcer::XdpEnforcer(const std::string& interface, common::XdpMode mode, unsigned maxRules,
                         const std::string& stateDir)
    : interface_(interface) {
  libbpf_set_print(libbpfLog);
  ifindex_ = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex_ == 0)
    throw std::runtime_error("xdp: interface " + interface + ": " + std::strerror(errno));

  // Only ever replace our own program.
  const uint32_t recorded = recordedProgram(stateDir, interface, ifindex_);
  bpf_xdp_query_opts query{};
  query.sz = sizeof query;
  if (bpf_xdp_query(ifindex_, 0, &query) == 0) {
    for (uint32_t id : {query.prog_id, query.drv_prog_id, query.skb_prog_id, query.hw_prog_id}) {
      if (id == 0) continue;
      std::string name;
      if (isOurs(id, recorded, &name)) continue;
      if (!name.empty())
        throw std::runtime_error("xdp: interface " + interface + " already runs XDP program \"" +
                                 name + "\" (id " + std::to_string(id) +
                                 "); garda will not replace it");
      throw std::runtime_error(
          "xdp: interface " + interface + " already runs XDP program id " + std::to_string(id) +
          ", which is not the one garda recorded" +
          (stateDir.empty() ? " (no enforce.state_dir is set)"
                            : " in " + recordPath(stateDir, interface)) +
          ", and without CAP_SYS_ADMIN garda cannot read its name; garda will not replace it. "
          "If it is a program an older garda left, take it off with `ip link set dev " +
          interface + " xdp off`");
    }
  }

  LIBBPF_OPTS(bpf_object_open_opts, openOpts, .object_name = "garda_xdp");
  object_ = bpf_object__open_mem(kGardaXdpObject, kGardaXdpObjectSize, &openOpts);
  if (!object_) throw std::runtime_error("xdp: cannot open the embedded BPF object");
  for (const char* m : {"by_src", "by_dst_src", "by_flow", "drops"}) {
    bpf_map* map = bpf_object__find_map_by_name(object_, m);
    if (!map || bpf_map__set_max_entries(map, maxRules) != 0) {
      bpf_object__close(object_);
      throw std::runtime_error(std::string("xdp: map ") + m + " missing from the BPF object");
    }
  }
  if (int err = bpf_object__load(object_); err != 0) {
    bpf_object__close(object_);
    throw std::runtime_error("xdp: cannot load the BPF program: " + std::string(strerror(-err)) +
                             " (root, kernel >= 5.8 with BPF and XDP needed)");
  }
  bySrc_ = bpf_object__find_map_fd_by_name(object_, "by_src");
  byDstSrc_ = bpf_object__find_map_fd_by_name(object_, "by_dst_src");
  byFlow_ = bpf_object__find_map_fd_by_name(object_, "by_flow");
  drops_ = bpf_object__find_map_fd_by_name(object_, "drops");
  int progFd = bpf_program__fd(bpf_object__find_program_by_name(object_, kProgramName));
  int cpus = libbpf_num_possible_cpus();
  cpus_ = cpus > 0 ? static_cast<unsigned>(cpus) : 1;

  // Our program left by an earlier run is replaced in one step when it is
  // attached in the mode this one gets (no moment without a program); one in
  // the other mode blocks attaching in this one and is taken off first.
  auto attachIn = [&](uint32_t flags, uint32_t otherFlags, uint32_t otherId) {
    if (otherId) bpf_xdp_detach(ifindex_, otherFlags, nullptr);
    return bpf_xdp_attach(ifindex_, progFd, flags, nullptr);
  };
  int err = -EINVAL;
  if (mode != common::XdpMode::kGeneric) {
    err = attachIn(XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, query.skb_prog_id);
    if (err == 0) attachMode_ = "native";
  }
  if (err != 0 && mode != common::XdpMode::kNative) {
    err = attachIn(XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE, query.drv_prog_id);
    if (err == 0) attachMode_ = "generic";
  }
  if (err != 0) {
    bpf_object__close(object_);
    throw std::runtime_error("xdp: cannot attach to " + interface + " (" +
                             (mode == common::XdpMode::kNative ? "native" : "generic") +
                             " mode): " + strerror(-err));
  }
  for (uint32_t slot = maxRules; slot > 0; --slot) freeSlots_.push_back(slot - 1);
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(progFd, &info, &len) == 0) programId_ = info.id;
  if (!stateDir.empty()) {
    if (std::string why = recordProgram(stateDir, interface, ifindex_, programId_); !why.empty())
      spdlog::warn("xdp: cannot record the program's id ({}): a restart without CAP_SYS_ADMIN "
                   "will not recognise it",
                   why);
  }
  spdlog::info("xdp: {} (id {}) attached to {} in {} mode, {} rules at most", kProgramName,
               programId_, interface, attachMode_, maxRules);
}

XdpEnforcer::~XdpEnforcer() {
  // The program stays attached, and its maps with it: entries stop at their
  // own deadline. The next sensor replaces it.
  if (object_) bpf_object__close(object_);
}

std::string XdpEnforcer::write(Entry& e) {
  int64_t expires = 0;
  for (const auto& [id, at] : e.owners) expires = std::max(expires, at);
  garda_entry value{};
  value.deadline_boot_ns = static_cast<uint64_t>(expires - common::wallNowNs() + bootNowNs());
  value.slot = e.slot;
  if (bpf_map_update_elem(e.mapFd, e.key.data(), &value, BPF_ANY) != 0) {
    counters_.mapErrors++;
    return std::string("cannot write the map entry: ") + std::strerror(errno);
  }
  return {};
}

std::string XdpEnforcer::apply(const Rule& rule) {
  const auto& m = rule.match;
  auto refuse = [&](std::string why) {
    counters_.unsupported++;
    return why + " (use the nftables backend for such rules)";
  };
  if (m.action == common::OrderMatch::Action::kRateLimit)
    return refuse("the xdp backend drops; it cannot rate-limit");
  if (m.destinationPort != 0) return refuse("the xdp backend does not match destination ports");
  const bool hasSrc = m.source.length() > 0, hasDst = m.destination.length() > 0;
  if (hasSrc && hasDst && m.source.address().isV4() != m.destination.address().isV4())
    return "source and destination are of different address families";
  const bool dstHost = hasDst && m.destination.length128() == 128;

  Entry e;
  if (m.protocol != 0 || m.sourcePort != 0) {
    if (hasSrc || !dstHost || m.sourcePort == 0 ||
        (m.protocol != IPPROTO_UDP && m.protocol != IPPROTO_TCP))
      return refuse(
          "the xdp backend matches a protocol only as (tcp or udp, source port) from any source "
          "toward one destination address");
    garda_flow_key k{};
    k.family = m.destination.address().isV4() ? 4 : 6;
    k.protocol = m.protocol;
    k.source_port = htons(m.sourcePort);
    mapped(m.destination.address(), k.dst);
    e.mapFd = byFlow_;
    e.key = bytesOf(k);
  } else if (hasSrc && !hasDst) {
    garda_src_key k{};
    k.prefixlen = m.source.length128();
    mapped(m.source.address(), k.addr);
    e.mapFd = bySrc_;
    e.key = bytesOf(k);
  } else if (hasDst && (dstHost || !hasSrc)) {
    garda_dst_src_key k{};
    k.prefixlen = dstHost ? 128 + (hasSrc ? m.source.length128() : 0) : m.destination.length128();
    mapped(m.destination.address(), k.dst);
    if (hasSrc) mapped(m.source.address(), k.src);
    e.mapFd = byDstSrc_;
    e.key = bytesOf(k);
  } else {
    return refuse("the xdp backend matches sources toward one destination address, not a prefix");
  }

  const std::string at = std::to_string(e.mapFd) + ":" + std::string(e.key.begin(), e.key.end());
  if (auto mine = byRule_.find(rule.id); mine != byRule_.end() && mine->second != at)
    (void)dropOwner(rule.id);
  auto it = entries_.find(at);
  if (it != entries_.end()) {
    it->second.owners[rule.id] = rule.expiresAtNs;
    byRule_[rule.id] = at;
    counters_.refreshed++;
    return write(it->second);
  }
  if (freeSlots_.empty()) return "all counter slots are in use (enforce.max_rules)";
  e.slot = freeSlots_.back();
  std::vector<garda_count> zeros(cpus_, garda_count{});
  if (bpf_map_update_elem(drops_, &e.slot, zeros.data(), BPF_ANY) != 0) {
    counters_.mapErrors++;
    return std::string("cannot reset the drop counter: ") + std::strerror(errno);
  }
  e.owners[rule.id] = rule.expiresAtNs;
  if (auto err = write(e); !err.empty()) return err;
  freeSlots_.pop_back();
  counters_.installed++;
  byRule_[rule.id] = at;
  entries_[at] = std::move(e);
  return {};
}

std::string XdpEnforcer::dropOwner(const std::string& id) {
  auto mine = byRule_.find(id);
  if (mine == byRule_.end()) return {};
  auto it = entries_.find(mine->second);
  byRule_.erase(mine);
  if (it == entries_.end()) return {};
  Entry& e = it->second;
  e.owners.erase(id);
  if (!e.owners.empty()) return write(e);
  if (bpf_map_delete_elem(e.mapFd, e.key.data()) != 0 && errno != ENOENT) {
    counters_.mapErrors++;
    return std::string("cannot delete the map entry: ") + std::strerror(errno);
  }
  freeSlots_.push_back(e.slot);
  entries_.erase(it);
  counters_.removed++;
  return {};
}

std::string XdpEnforcer::remove(const Rule& rule) {
  return dropOwner(rule.id);
}

DropCount XdpEnforcer::count(const Rule& rule) {
  auto mine = byRule_.find(rule.id);
  if (mine == byRule_.end()) return {};
  auto it = entries_.find(mine->second);
  if (it == entries_.end()) return {};
  std::vector<garda_count> perCpu(cpus_, garda_count{});
  if (bpf_map_lookup_elem(drops_, &it->second.slot, perCpu.data()) != 0) return {};
  DropCount total;
  for (const auto& c : perCpu) {
    total.packets += c.packets;
    total.bytes += c.bytes;
  }
  return total;
}

uint64_t XdpEnforcer::packetsDropped(const Rule& rule) {
  return count(rule).packets;
}

bool XdpEnforcer::readDropCounts(const std::vector<const Rule*>& rules,
                                 std::vector<DropCount>& out) {
  out.clear();
  out.reserve(rules.size());
  for (const Rule* r : rules) out.push_back(count(*r));
  return true;
}

std::string XdpEnforcer::withdraw(const std::string& interface, const std::string& stateDir) {
  const int ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
  if (ifindex == 0) {
    if (!stateDir.empty()) std::remove(recordPath(stateDir, interface).c_str());
    return "xdp: interface " + interface + " is not there: nothing to take off";
  }
  const uint32_t recorded = recordedProgram(stateDir, interface, ifindex);
  bpf_xdp_query_opts query{};
  query.sz = sizeof query;
  if (int err = bpf_xdp_query(ifindex, 0, &query); err != 0)
    throw std::runtime_error("xdp: cannot query " + interface + ": " + strerror(-err));
  struct Attached {
    uint32_t id;
    uint32_t flags;
    const char* mode;
  };
  std::string done;
  for (const Attached& a : {Attached{query.drv_prog_id, XDP_FLAGS_DRV_MODE, "native"},
                            Attached{query.skb_prog_id, XDP_FLAGS_SKB_MODE, "generic"}}) {
    if (a.id == 0) continue;
    std::string name;
    if (!isOurs(a.id, recorded, &name)) {
      done += "xdp: left program id " + std::to_string(a.id) + " (" +
              (name.empty() ? "not recorded as garda's" : "\"" + name + "\"") + ") on " +
              interface + "\n";
      continue;
    }
    if (int err = bpf_xdp_detach(ifindex, a.flags, nullptr); err != 0)
      throw std::runtime_error("xdp: cannot take program id " + std::to_string(a.id) + " off " +
                               interface + ": " + strerror(-err));
    done += "xdp: took " + std::string(kProgramName) + " (id " + std::to_string(a.id) + ", " +
            a.mode + " mode) off " + interface + "\n";
  }
  if (!stateDir.empty()) std::remove(recordPath(stateDir, interface).c_str());
  if (done.empty()) done = "xdp: no XDP program on " + interface + "\n";
  done.pop_back();
  return done;
}

}  // namespace garda::sensor
