//! The device's counters: per queue, requests and bytes by type, errors by status,
//! requests in flight and a latency histogram; and their reports, one JSON object per
//! line for machines, a live line for a person at a terminal, a short `STATUS=` for
//! systemd.
//!
//! Each queue's counters are written by that queue's worker only (relaxed atomic adds, on
//! a cache line of their own) and read by the reporting thread, so counting costs the
//! request path no lock and no shared write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::HumanBytes;
use serde::Serialize;

use crate::request::{Request, SECTOR_SIZE, Status};

/// What a request was, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `VIRTIO_BLK_T_IN`.
    Read,
    /// `VIRTIO_BLK_T_OUT`.
    Write,
    /// `VIRTIO_BLK_T_FLUSH`.
    Flush,
    /// `VIRTIO_BLK_T_DISCARD`.
    Discard,
    /// `VIRTIO_BLK_T_WRITE_ZEROES`.
    WriteZeroes,
    /// `VIRTIO_BLK_T_GET_ID`.
    GetId,
    /// Anything else: unsupported types, malformed chains.
    Other,
}

const KINDS: usize = 7;

impl Kind {
    /// The kind of `request` and the bytes it moves (data, or the ranges it discards or
    /// zeroes).
    pub fn of(request: &Request) -> (Kind, u64) {
        let segment_bytes = |segments: &[crate::request::Segment]| {
            segments
                .iter()
                .map(|segment| u64::from(segment.num_sectors) * SECTOR_SIZE)
                .sum()
        };
        match request {
            Request::Read { data, .. } => (Kind::Read, data.len() as u64),
            Request::Write { data, .. } => (Kind::Write, data.len() as u64),
            Request::Flush => (Kind::Flush, 0),
            Request::GetId { data } => (Kind::GetId, data.len() as u64),
            Request::Discard { segments } => (Kind::Discard, segment_bytes(segments)),
            Request::WriteZeroes { segments } => (Kind::WriteZeroes, segment_bytes(segments)),
            Request::UnsupportedFlags | Request::Unsupported { .. } => (Kind::Other, 0),
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds: powers of two up to about 1 s;
/// a last bucket holds what took longer.
const BUCKETS: usize = 21;

fn bucket(latency: Duration) -> usize {
    let micros = latency.as_micros().max(1);
    // ceil(log2(micros)): 1 µs -> 0, 2 -> 1, 3..4 -> 2, ...
    let index = (u128::BITS - (micros - 1).leading_zeros()) as usize;
    index.min(BUCKETS)
}

/// One queue's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct QueueCounters {
    requests: [AtomicU64; KINDS],
    bytes: [AtomicU64; KINDS],
    ioerr: AtomicU64,
    unsupp: AtomicU64,
    started: AtomicU64,
    finished: AtomicU64,
    latency: [AtomicU64; BUCKETS + 1],
}

impl QueueCounters {
    /// A request was taken from the ring.
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A request started earlier was answered with `status` after `latency`; it moved
    /// `bytes` (when it succeeded).
    pub fn finished(&self, kind: Kind, bytes: u64, status: Status, latency: Duration) {
        let kind = kind as usize;
        self.requests[kind].fetch_add(1, Ordering::Relaxed);
        match status {
            Status::Ok => {
                self.bytes[kind].fetch_add(bytes, Ordering::Relaxed);
            }
            Status::IoErr => {
                self.ioerr.fetch_add(1, Ordering::Relaxed);
            }
            Status::Unsupp => {
                self.unsupp.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Release);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let finished = self.finished.load(Ordering::Acquire);
        let pair = |kind: Kind| Pair {
            requests: load(&self.requests[kind as usize]),
            bytes: load(&self.bytes[kind as usize]),
        };
        Counts {
            in_flight: load(&self.started).saturating_sub(finished),
            read: pair(Kind::Read),
            write: pair(Kind::Write),
            flush: pair(Kind::Flush),
            discard: pair(Kind::Discard),
            write_zeroes: pair(Kind::WriteZeroes),
            get_id: pair(Kind::GetId),
            other: pair(Kind::Other),
            errors: Errors {
                ioerr: load(&self.ioerr),
                unsupp: load(&self.unsupp),
            },
            latency_us: self
                .latency
                .iter()
                .enumerate()
                .map(|(index, count)| (index, load(count)))
                .filter(|&(_, count)| count > 0)
                .map(|(index, count)| Bucket {
                    le: (index < BUCKETS).then_some(1u64 << index),
                    count,
                })
                .collect(),
        }
    }
}

/// Requests of one kind, and the bytes of those that succeeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// Requests answered.
    pub requests: u64,
    /// Bytes moved by those answered OK.
    pub bytes: u64,
}

/// Requests answered with an error status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// `VIRTIO_BLK_S_IOERR`.
    pub ioerr: u64,
    /// `VIRTIO_BLK_S_UNSUPP`.
    pub unsupp: u64,
}

/// A latency bucket: answered in at most `le` microseconds (`null`: longer than the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// The upper bound, in microseconds.
    pub le: Option<u64>,
    /// Requests in it.
    pub count: u64,
}

/// The counters of a queue, or of the whole device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Taken from the ring and not answered yet.
    pub in_flight: u64,
    /// Reads.
    pub read: Pair,
    /// Writes.
    pub write: Pair,
    /// Flushes.
    pub flush: Pair,
    /// Discards (bytes: of the ranges).
    pub discard: Pair,
    /// Write zeroes (bytes: of the ranges).
    pub write_zeroes: Pair,
    /// GET_ID.
    pub get_id: Pair,
    /// Unsupported or malformed.
    pub other: Pair,
    /// By status.
    pub errors: Errors,
    /// The latency histogram, its non-empty buckets: from the request taken to its
    /// answer.
    pub latency_us: Vec<Bucket>,
}

impl Counts {
    /// The sum of `queues`.
    pub fn total(queues: &[Counts]) -> Counts {
        let mut total = Counts::default();
        let add = |sum: &mut Pair, more: &Pair| {
            sum.requests += more.requests;
            sum.bytes += more.bytes;
        };
        for queue in queues {
            total.in_flight += queue.in_flight;
            add(&mut total.read, &queue.read);
            add(&mut total.write, &queue.write);
            add(&mut total.flush, &queue.flush);
            add(&mut total.discard, &queue.discard);
            add(&mut total.write_zeroes, &queue.write_zeroes);
            add(&mut total.get_id, &queue.get_id);
            add(&mut total.other, &queue.other);
            total.errors.ioerr += queue.errors.ioerr;
            total.errors.unsupp += queue.errors.unsupp;
            for bucket in &queue.latency_us {
                match total.latency_us.iter_mut().find(|b| b.le == bucket.le) {
                    Some(sum) => sum.count += bucket.count,
                    None => total.latency_us.push(*bucket),
                }
            }
        }
        // Bounded buckets in order, the unbounded one last.
        total
            .latency_us
            .sort_by_key(|bucket| bucket.le.unwrap_or(u64::MAX));
        total
    }

    /// Requests answered, of every kind.
    pub fn requests(&self) -> u64 {
        [
            self.read,
            self.write,
            self.flush,
            self.discard,
            self.write_zeroes,
            self.get_id,
            self.other,
        ]
        .iter()
        .map(|pair| pair.requests)
        .sum()
    }

    /// A short summary, for `STATUS=` and the live line.
    pub fn summary(&self) -> String {
        format!(
            "{} reads ({}), {} writes ({}), {} flushes, {} in flight, {} errors",
            self.read.requests,
            HumanBytes(self.read.bytes),
            self.write.requests,
            HumanBytes(self.write.bytes),
            self.flush.requests,
            self.in_flight,
            self.errors.ioerr + self.errors.unsupp,
        )
    }
}

/// The JSON object of one report; its fields are documented in the man page.
#[derive(Debug, Serialize)]
struct Report<'a> {
    device: &'a str,
    /// What made the report: `signal` (SIGUSR1), `interval`, `exit`.
    event: &'a str,
    uptime_s: f64,
    total: Counts,
    queues: Vec<Counts>,
}

/// One line of JSON (without the newline) with the counters of `device`'s `queues`.
pub fn json_line(device: &str, event: &str, uptime: Duration, queues: Vec<Counts>) -> String {
    let report = Report {
        device,
        event,
        uptime_s: (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
        total: Counts::total(&queues),
        queues,
    };
    serde_json::to_string(&report).expect("a report serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_power_of_two_buckets() {
        let micros = |us| bucket(Duration::from_micros(us));
        assert_eq!(
            [
                micros(0),
                micros(1),
                micros(2),
                micros(3),
                micros(4),
                micros(5)
            ],
            [0, 0, 1, 2, 2, 3]
        );
        assert_eq!(micros(1 << 20), 20);
        assert_eq!(micros((1 << 20) + 1), BUCKETS);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS);
    }

    #[test]
    fn counters_add_up_per_queue_and_in_total() {
        let queues = [QueueCounters::default(), QueueCounters::default()];
        let ms = Duration::from_millis;
        for _ in 0..3 {
            queues[0].started();
        }
        queues[0].finished(Kind::Read, 4096, Status::Ok, ms(1));
        queues[0].finished(Kind::Write, 8192, Status::IoErr, ms(2));
        queues[1].started();
        queues[1].finished(Kind::Write, 512, Status::Ok, ms(2));
        queues[1].started();
        queues[1].finished(Kind::Other, 0, Status::Unsupp, Duration::ZERO);
        let counts: Vec<Counts> = queues.iter().map(QueueCounters::counts).collect();
        assert_eq!(counts[0].in_flight, 1);
        assert_eq!(
            counts[0].write,
            Pair {
                requests: 1,
                bytes: 0
            }
        );
        let total = Counts::total(&counts);
        assert_eq!(total.in_flight, 1);
        assert_eq!(
            total.read,
            Pair {
                requests: 1,
                bytes: 4096
            }
        );
        assert_eq!(
            total.write,
            Pair {
                requests: 2,
                bytes: 512
            }
        );
        assert_eq!(
            total.errors,
            Errors {
                ioerr: 1,
                unsupp: 1
            }
        );
        assert_eq!(total.requests(), 4);
        assert_eq!(
            total.latency_us,
            [
                Bucket {
                    le: Some(1),
                    count: 1
                },
                Bucket {
                    le: Some(1024),
                    count: 1
                },
                Bucket {
                    le: Some(2048),
                    count: 2
                },
            ]
        );
        assert_eq!(
            total.summary(),
            "1 reads (4.00 KiB), 2 writes (512 B), 0 flushes, 1 in flight, 2 errors"
        );
        let line = json_line("d0", "signal", Duration::from_millis(1500), counts);
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["device"], "d0");
        assert_eq!(value["uptime_s"], 1.5);
        assert_eq!(value["total"]["write"]["requests"], 2);
        assert_eq!(value["queues"][1]["errors"]["unsupp"], 1);
        assert_eq!(value["total"]["latency_us"][0]["le"], 1);
    }
}
