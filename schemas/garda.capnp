# Garda wire protocol: every message between sensor, aggregator and console is
# one Envelope. Evolution follows Cap'n Proto's rules: new fields take new
# ordinals at the end, nothing is renumbered or retyped, and a reader treats a
# union member it does not know as "unknown" (counted, never fatal).
#
# Conventions
# - Times are Unix nanoseconds (Int64, UTC) unless the name says otherwise.
# - An IP address is Data of 4 (IPv4) or 16 (IPv6) bytes, network order.
# - Counts are UInt64; a decoder rejects values that cannot be true
#   (see docs/protocol.md, "Sanity limits").

@0xd055e2f89b7b851b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("garda::wire");

const protocolVersion :UInt16 = 1;

struct Envelope {
  version @0 :UInt16;          # protocolVersion of the sender
  sentAtNs @1 :Int64;          # sender's wall clock when sent
  body :union {
    hello @2 :Hello;
    summary @3 :Summary;
    alert @4 :Alert;
    ack @5 :Ack;
    order @6 :Order;
    orderSync @7 :OrderSync;
    orderReport @8 :OrderReport;
    heartbeat @9 :Heartbeat;
    query @10 :Query;
    reply @11 :Reply;
    evidenceRequest @12 :EvidenceRequest;
    evidence @13 :Evidence;
    summaryBatch @14 :SummaryBatch;
  }
}

struct Prefix {
  address @0 :Data;            # 4 or 16 bytes; bits past `length` are zero
  length @1 :UInt8;            # 0..32 (IPv4) or 0..128 (IPv6)
}

# Sensor -> aggregator, first message after every (re)connect. The aggregator
# checks that sensorId is the id its ZAP handler bound to the sender's CURVE
# key, then answers with an orderSync of all active orders for this sensor.
struct Hello {
  sensorId @0 :Text;
  bootId @1 :UInt64;           # random per process start
  version @2 :Text;            # garda-sensor version string
  opd @3 :Text;                # the office's name, for display
  protected @4 :List(Prefix);  # the OPD's own address space
  windowMs @5 :UInt32;
  captureSource @6 :Text;      # "afpacket:eth0", "pcap:/path/file.pcap"
  takesAckBatches @7 :Bool;    # reads Ack.more: may be acked many at a time
}

# Attack vectors the sensor counts separately per victim.
enum Vector {
  tcpSyn @0;                   # SYN without ACK
  tcpSynAck @1;                # SYN+ACK (reflection off TCP servers)
  tcpOther @2;                 # everything else in TCP: ACK/RST/PSH floods
  udp @3;                      # UDP not from a reflection port
  udpReflection @4;            # UDP from a known reflection source port
  icmp @5;                     # ICMP and ICMPv6
  fragment @6;                 # non-first IP fragments (no L4 header)
  other @7;                    # any other IP protocol (GRE, ESP, ...)
}

struct VectorCount {
  vector @0 :Vector;
  packets @1 :UInt64;
  bytes @2 :UInt64;
}

struct PortCount {
  port @0 :UInt16;
  packets @1 :UInt64;
  bytes @2 :UInt64;
}

struct SourceCount {
  address @0 :Data;
  packets @1 :UInt64;          # Space-Saving estimate (upper bound)
  error @2 :UInt64;            # Space-Saving overestimate bound
}

# Per protected destination address, per window.
struct VictimStats {
  address @0 :Data;
  packets @1 :UInt64;
  bytes @2 :UInt64;
  vectors @3 :List(VectorCount);       # only vectors with packets > 0
  reflectionPorts @4 :List(PortCount); # UDP source ports from the reflection list
  topSources @5 :List(SourceCount);    # top-K, highest first
  distinctSources @6 :UInt64;          # HyperLogLog estimate
  topSrcPorts @7 :List(PortCount);
  topDstPorts @8 :List(PortCount);
}

# Whole-window totals at this sensor, over every frame captured.
struct Totals {
  packets @0 :UInt64;          # every frame, decodable or not
  bytes @1 :UInt64;            # wire length
  tcp @2 :UInt64;
  udp @3 :UInt64;
  icmp @4 :UInt64;
  other @5 :UInt64;            # non-IP, other IP protocols, undecodable
}

struct ReasonCount {
  reason @0 :Text;             # snake_case, stable (metric label)
  count @1 :UInt64;
}

# Sensor -> aggregator, one per window. (sensorId, bootId, seq) identifies it;
# the aggregator stores it before acking, so a resend is idempotent.
struct Summary {
  sensorId @0 :Text;
  bootId @1 :UInt64;
  seq @2 :UInt64;              # per boot, from 1, +1 per summary
  windowStartNs @3 :Int64;     # multiple of windowMs
  windowMs @4 :UInt32;
  totals @5 :Totals;
  victims @6 :List(VictimStats);
  victimsCut @7 :UInt32;       # victims seen but left out by the cap
  kernelDrops @8 :UInt64;      # capture drops reported by the kernel in this window
  decodeErrors @9 :List(ReasonCount);
  outbound @10 :List(SourceCount); # protected sources sending the most out
  droppedSummaries @11 :UInt64;    # summaries this boot lost to a full replay buffer
  victimPacketsCut @12 :UInt64;    # packets to victims the sensor could not track (table full)
  orderCounters @13 :List(OrderCounter); # the sensor's active rules' drop counters (none: cannot count)
}

# What one order's rule has dropped (or rate-limited away) at the sensor,
# cumulative since it was applied in this boot; read once per window.
struct OrderCounter {
  orderId @0 :Text;
  packets @1 :UInt64;
  bytes @2 :UInt64;
}

# Sensor -> aggregator, at once, when a victim crosses a hard threshold
# mid-window.
struct Alert {
  sensorId @0 :Text;
  bootId @1 :UInt64;
  victim @2 :Data;
  vector @3 :Vector;
  packets @4 :UInt64;          # in the window so far
  windowStartNs @5 :Int64;
  atNs @6 :Int64;
  thresholdPps @7 :UInt64;
}

enum AckStatus {
  stored @0;                   # written to the store
  duplicate @1;                # already stored earlier: nothing written
  refused @2;                  # sender may not send this (wrong id, unknown sensor)
  invalid @3;                  # failed sanity checks: dropped, not stored
  throttled @4;                # over the per-sensor rate limit: not stored, resend later
}

# Aggregator -> sensor, for one summary (and, in `more`, for others).
struct Ack {
  bootId @0 :UInt64;
  seq @1 :UInt64;
  status @2 :AckStatus;
  reason @3 :Text;
  # Further acks in the same message, each read as if it came alone (their
  # own `more` is empty). Only to a sensor whose hello set takesAckBatches:
  # one message per sensor per written batch instead of one per summary.
  more @4 :List(Ack);
}

enum OrderAction {
  drop @0;
  rateLimit @1;
}

# Aggregator -> sensor: a block rule. Persisted by the aggregator before it is
# sent. The rule carries its absolute expiry so no rule outlives its TTL.
struct Order {
  orderId @0 :Text;
  incidentId @1 :Text;         # empty for a manual block
  action @2 :OrderAction;
  source @3 :Prefix;           # length 0 = any source
  destination @4 :Prefix;      # length 0 = any destination
  protocol @5 :UInt8;          # IP protocol; 0 = any
  sourcePort @6 :UInt16;       # 0 = any
  destinationPort @7 :UInt16;  # 0 = any
  ratePps @8 :UInt64;          # with rateLimit
  expiresAtNs @9 :Int64;
  reason @10 :Text;
  createdBy @11 :Text;         # "planner" or the console user
  remove @12 :Bool;            # true: withdraw this order id now
}

# Aggregator -> sensor: every active order for this sensor (after a hello).
# The sensor applies missing ones and removes rules not in the list.
struct OrderSync {
  orders @0 :List(Order);
  # This aggregator takes summaryBatch messages on the connection the sync
  # answers (set by every aggregator that reads them; an older one leaves it
  # false, and the sensor then sends each summary alone).
  takesSummaryBatches @1 :Bool;
}

enum OrderState {
  applied @0;
  rejected @1;
  expired @2;
  removed @3;
}

struct OrderReport {
  orderId @0 :Text;
  state @1 :OrderState;
  reason @2 :Text;             # why rejected
  packetsDropped @3 :UInt64;
  atNs @4 :Int64;
  bootId @5 :UInt64;           # the reporting sensor's boot
}

# Both ways: the sensor's every heartbeat_ms, the aggregator's to every
# connected sensor every heartbeat_ms (proof that its loop, not only its TCP
# stack, is alive).
struct Heartbeat {
  sensorId @0 :Text;           # empty from the aggregator
  bootId @1 :UInt64;
  atNs @2 :Int64;
  backlog @3 :UInt32;          # summaries waiting for an ack
  kernelDrops @4 :UInt64;      # cumulative since boot
}

# Console -> aggregator.
struct Query {
  requestId @0 :UInt64;
  command :union {
    status @1 :Void;
    history @2 :HistoryQuery;
    incidents @3 :IncidentsQuery;
    incidentShow @4 :Text;
    top @5 :TopQuery;
    blockAdd @6 :BlockAdd;
    blockList @7 :Void;
    blockRemove @8 :Text;      # order id
    orderApprove @9 :Text;
    orderReject @10 :Text;
    incidentPcap @11 :Text;
    incidentExport @12 :ExportQuery;
    audit @13 :AuditQuery;
  }
}

struct HistoryQuery {
  sensorId @0 :Text;
  sinceNs @1 :Int64;           # 0 = from the oldest kept
  untilNs @2 :Int64;           # 0 = up to now
  limit @3 :UInt32;            # most recent N windows; 0 = server default
  points @4 :UInt32;           # > 0: downsampled to this many time buckets
  victim @5 :Text;             # non-empty: that victim's traffic (at sensorId, or city-wide)
}

struct AuditQuery {
  sinceNs @0 :Int64;           # 0 = from the oldest kept
  limit @1 :UInt32;            # the newest N records; 0 = server default
}

struct IncidentsQuery {
  openOnly @0 :Bool;
  sinceNs @1 :Int64;           # > 0: only incidents updated at or after this
}

struct TopQuery {
  sources @0 :Bool;            # false: victims
  sinceNs @1 :Int64;
  sensorId @2 :Text;           # empty: the whole city
  limit @3 :UInt32;
}

struct BlockAdd {
  prefix @0 :Prefix;
  ttlMs @1 :UInt64;
  reason @2 :Text;
}

struct ExportQuery {
  incidentId @0 :Text;
  format @1 :Text;             # "stix" | "misp"
}

# Aggregator -> console. The body is a JSON document: the same shape the CLI
# prints with --json and the HTTP API returns, produced by one implementation.
struct Reply {
  requestId @0 :UInt64;
  ok @1 :Bool;
  error @2 :Text;              # with ok = false: what went wrong, for a person
  json @3 :Text;
  data @4 :Data;               # binary payload (incident pcap)
}

# Aggregator -> sensor: copy the first maxPackets frames toward `victim` that
# match protocol, ports and TCP flags (0 = any) as evidence for an incident, each cut to
# snapLen bytes, and send them back (as one or more `evidence` messages) when
# maxPackets are copied or at deadlineNs, whichever comes first. A sensor
# holds one request at a time: a new one replaces the one armed. A non-first
# IP fragment (no L4 header) matches on protocol alone: the tails of large
# reflected answers belong in the evidence.
struct EvidenceRequest {
  incidentId @0 :Text;
  requestId @1 :UInt64;        # chosen by the aggregator, echoed back
  victim @2 :Prefix;
  protocol @3 :UInt8;          # IP protocol; 0 = any
  sourcePort @4 :UInt16;       # 0 = any
  destinationPort @5 :UInt16;  # 0 = any
  maxPackets @6 :UInt32;       # 1..1000
  snapLen @7 :UInt32;          # bytes kept per frame, 64..65535
  deadlineNs @8 :Int64;        # wall clock: send what there is by then
  tcpFlagsMask @9 :UInt8;      # with protocol 6: (flags & mask) == tcpFlags; 0 = any
  tcpFlags @10 :UInt8;
}

struct EvidencePacket {
  tsNs @0 :Int64;              # capture time (packet time in a replay)
  origLen @1 :UInt32;          # length on the wire
  data @2 :Data;               # the first snapLen bytes (or fewer)
}

# Sensor -> aggregator: the frames copied for one request. Several messages
# may answer one request (part counts from 0); the last has done = true.
struct Evidence {
  incidentId @0 :Text;
  requestId @1 :UInt64;
  sensorId @2 :Text;
  linkType @3 :UInt16;         # pcap LINKTYPE_* of every packet
  packets @4 :List(EvidencePacket);
  part @5 :UInt32;
  done @6 :Bool;
  reason @7 :Text;             # with done: "full", "deadline", "end_of_capture", "replaced"
}

# Sensor -> aggregator: summaries that waited while the sensor's earlier ones
# were unacked, in one message (only after an orderSync that set
# takesSummaryBatches on this connection). Each element is a whole Envelope
# whose body is a summary, in the bytes it would have been sent alone in: the
# aggregator decodes each with the usual limits, stores it as it is and acks
# it as if it came alone. At most 256 in one message (see docs/protocol.md).
struct SummaryBatch {
  summaries @0 :List(Data);
}
