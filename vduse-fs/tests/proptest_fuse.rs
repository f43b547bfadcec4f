//! Property test of `serve_request` on FUSE messages with bad lengths: a `fuse_in_header`
//! whose `len` disagrees with the bytes sent, requests cut short or padded, split over
//! readable buffers at any points, and reply buffers of any size. Over a read-only
//! passthrough of a temporary directory, through chains built with virtio-queue's
//! `MockSplitQueue`; no kernel involved.
//!
//! For every request: no panic; the used length fits the reply buffers and, when there is
//! one, is the reply's own `len` and the reply answers the request's `unique`; nothing
//! outside the reply buffers changes; and the server still answers a good request.

use std::sync::Arc;

use fuse_backend_rs::abi::fuse_abi::{FsOptions, GetattrIn, InitIn, Opcode, OutHeader};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::passthrough::{Config, PassthroughFs};
use proptest::prelude::*;

mod common;

use common::{IN_HEADER_LEN, OUT_HEADER_LEN, message, pieces, readable, writable};
use vduse::backend::Memory;
use vduse_fs::backend::{FsServer, serve_request};
use vduse_fs::durable::DurableFs;
use vduse_fs::fs::ExportFs;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, ByteValued, Bytes, GuestAddress};

const MEMORY_SIZE: usize = 1 << 20;
const QUEUE_SIZE: u16 = 16;
const REQUEST_AT: u64 = 0x1_0000;
const REPLY_AT: u64 = 0x8_0000;

struct Export {
    _dir: tempfile::TempDir,
    server: FsServer,
    memory: Memory,
}

impl Export {
    fn new() -> Export {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
        let passthrough = PassthroughFs::<()>::new(Config {
            root_dir: dir.path().to_str().unwrap().to_owned(),
            do_import: true,
            ..Default::default()
        })
        .unwrap();
        let export = Export {
            _dir: dir,
            // Read-only: arbitrary requests change nothing on the host.
            server: Server::new(Arc::new(
                DurableFs::new(ExportFs::new(passthrough, true, false), None).unwrap(),
            )),
            memory: Memory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).unwrap(),
        };
        let init = InitIn {
            major: 7,
            minor: 31,
            max_readahead: 128 << 10,
            flags: (FsOptions::ASYNC_READ | FsOptions::BIG_WRITES).bits() as u32,
        };
        let used = export.serve(
            &message(Opcode::Init as u32, 1, 0, init.as_slice()),
            &[],
            &[4096],
        );
        assert!(used as usize > OUT_HEADER_LEN);
        export
    }

    /// Serves `request` cut at `cuts` with reply buffers of `reply_sizes`; returns the
    /// used length.
    fn serve(&self, request: &[u8], cuts: &[usize], reply_sizes: &[u32]) -> u32 {
        self.memory
            .write_slice(request, GuestAddress(REQUEST_AT))
            .unwrap();
        let mut descriptors = pieces(REQUEST_AT, request.len(), cuts, readable);
        let mut at = REPLY_AT;
        for &size in reply_sizes {
            descriptors.push(writable(at, size));
            at += u64::from(size);
        }
        let queue = MockSplitQueue::create(&self.memory, GuestAddress(0), QUEUE_SIZE);
        self.memory
            .write_obj(0u16, queue.avail_addr().unchecked_add(2))
            .unwrap();
        let chain = queue.build_desc_chain(&descriptors).unwrap();
        serve_request(&self.server, &self.memory, chain)
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![0u8; MEMORY_SIZE];
        self.memory.read_slice(&mut bytes, GuestAddress(0)).unwrap();
        bytes
    }
}

/// A request the server understands, before its lengths are spoiled.
fn request() -> impl Strategy<Value = (u32, u64, Vec<u8>)> {
    prop_oneof![
        Just((
            Opcode::Getattr as u32,
            1,
            GetattrIn::default().as_slice().to_vec()
        )),
        Just((Opcode::Lookup as u32, 1, b"hello.txt\0".to_vec())),
        Just((Opcode::Statfs as u32, 1, Vec::new())),
        Just((Opcode::Opendir as u32, 1, vec![0; 8])),
        Just((Opcode::Forget as u32, 1, 1u64.to_le_bytes().to_vec())),
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bad_lengths_get_an_error_reply_or_none_and_harm_nothing(
        (opcode, nodeid, body) in request(),
        claimed_len in proptest::option::of(prop_oneof![0u32..200, any::<u32>()]),
        resize in proptest::option::of(0usize..160),
        cuts in proptest::collection::vec(0usize..160, 0..4),
        reply_sizes in proptest::collection::vec(prop_oneof![0u32..32, 0u32..8192], 0..4),
        unique in 2u64..1000,
    ) {
        let export = Export::new();
        let mut bytes = message(opcode, unique, nodeid, &body);
        if let Some(len) = claimed_len {
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        if let Some(len) = resize {
            bytes.resize(len, 0xa5);
        }
        let room: u64 = reply_sizes.iter().map(|&size| u64::from(size)).sum();
        let before = export.snapshot();
        let used = export.serve(&bytes, &cuts, &reply_sizes);
        let after = export.snapshot();
        prop_assert!(u64::from(used) <= room, "used {} of {} bytes", used, room);
        let reply_end = REPLY_AT + room;
        for (addr, (old, new)) in before.iter().zip(&after).enumerate() {
            let addr = addr as u64;
            // The queue's rings are the mock's to write (building the chain).
            let ours = addr < 0x1000 || (REQUEST_AT..REQUEST_AT + bytes.len() as u64).contains(&addr);
            prop_assert!(
                old == new || ours || (REPLY_AT..reply_end).contains(&addr),
                "byte {:#x} changed outside the reply buffers", addr
            );
        }
        if used > 0 {
            prop_assert!(used as usize >= OUT_HEADER_LEN);
            let header: OutHeader = export.memory.read_obj(GuestAddress(REPLY_AT)).unwrap();
            prop_assert_eq!(header.len, used);
            prop_assert_eq!(header.unique, unique);
        }
        // The server still answers a good request.
        let good = message(Opcode::Getattr as u32, 7, 1, GetattrIn::default().as_slice());
        let used = export.serve(&good, &[IN_HEADER_LEN], &[4096]);
        let header: OutHeader = export.memory.read_obj(GuestAddress(REPLY_AT)).unwrap();
        prop_assert!(used as usize > OUT_HEADER_LEN);
        prop_assert_eq!((header.error, header.unique), (0, 7));
    }
}
