//! [`Record`]: one change of the tables, and its bytes in the journal. The codec is apart
//! from the file that holds the bytes, so that what is written can be read (and tested)
//! alone.

use std::ffi::CString;

/// One change of the tables, as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Record {
    Init {
        capable: u64,
    },
    Node {
        id: u64,
        parent: u64,
        ino: u64,
        name: CString,
    },
    Forgotten {
        id: u64,
    },
    Renamed {
        id: u64,
        parent: u64,
        name: CString,
    },
    Opened {
        fh: u64,
        node: u64,
        flags: u32,
        dir: bool,
    },
    Released {
        fh: u64,
    },
}

impl Record {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let name = |out: &mut Vec<u8>, name: &CString| {
            let bytes = name.as_bytes();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Record::Init { capable } => {
                out.push(1);
                out.extend_from_slice(&capable.to_le_bytes());
            }
            Record::Node {
                id,
                parent,
                ino,
                name: n,
            } => {
                out.push(2);
                for value in [id, parent, ino] {
                    out.extend_from_slice(&value.to_le_bytes());
                }
                name(out, n);
            }
            Record::Forgotten { id } => {
                out.push(3);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Record::Renamed {
                id,
                parent,
                name: n,
            } => {
                out.push(4);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&parent.to_le_bytes());
                name(out, n);
            }
            Record::Opened {
                fh,
                node,
                flags,
                dir,
            } => {
                out.push(5);
                out.extend_from_slice(&fh.to_le_bytes());
                out.extend_from_slice(&node.to_le_bytes());
                out.extend_from_slice(&flags.to_le_bytes());
                out.push(u8::from(*dir));
            }
            Record::Released { fh } => {
                out.push(6);
                out.extend_from_slice(&fh.to_le_bytes());
            }
        }
    }

    /// Decodes the records of `bytes`; a record cut short at the end (a write the crash
    /// interrupted) or a kind of 0 (the file's unwritten rest, or a record whose kind, the
    /// byte written last, the crash came before) ends the list. An unknown kind is an error.
    pub(super) fn decode_all(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (head, tail) = (bytes.get(..n)?, bytes.get(n..)?);
            *bytes = tail;
            Some(head)
        }
        fn u64_of(bytes: &mut &[u8]) -> Option<u64> {
            take(bytes, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        }
        fn u32_of(bytes: &mut &[u8]) -> Option<u32> {
            take(bytes, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        }
        fn name_of(bytes: &mut &[u8]) -> Option<Option<CString>> {
            let len = u32_of(bytes)? as usize;
            take(bytes, len).map(|b| CString::new(b).ok())
        }
        let mut records = Vec::new();
        while let Some(&kind) = bytes.first() {
            let mut rest = &bytes[1..];
            let record = match kind {
                0 => break,
                1 => u64_of(&mut rest).map(|capable| Some(Record::Init { capable })),
                2 => (|| {
                    let (id, parent, ino) =
                        (u64_of(&mut rest)?, u64_of(&mut rest)?, u64_of(&mut rest)?);
                    Some(name_of(&mut rest)?.map(|name| Record::Node {
                        id,
                        parent,
                        ino,
                        name,
                    }))
                })(),
                3 => u64_of(&mut rest).map(|id| Some(Record::Forgotten { id })),
                4 => (|| {
                    let (id, parent) = (u64_of(&mut rest)?, u64_of(&mut rest)?);
                    Some(name_of(&mut rest)?.map(|name| Record::Renamed { id, parent, name }))
                })(),
                5 => (|| {
                    let (fh, node, flags) =
                        (u64_of(&mut rest)?, u64_of(&mut rest)?, u32_of(&mut rest)?);
                    let dir = take(&mut rest, 1)?[0] != 0;
                    Some(Some(Record::Opened {
                        fh,
                        node,
                        flags,
                        dir,
                    }))
                })(),
                6 => u64_of(&mut rest).map(|fh| Some(Record::Released { fh })),
                other => return Err(format!("unknown record kind {other}")),
            };
            match record {
                None => break,
                Some(None) => return Err("a name holds a NUL byte".into()),
                Some(Some(record)) => records.push(record),
            }
            bytes = rest;
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::super::journal::Journal;
    use super::*;

    fn name(text: &str) -> CString {
        CString::new(text).unwrap()
    }

    #[test]
    fn records_read_back_and_a_torn_last_one_is_dropped() {
        let records = vec![
            Record::Init { capable: 0x1234 },
            Record::Node {
                id: 2,
                parent: 1,
                ino: 77,
                name: name("a file\nwith a newline"),
            },
            Record::Renamed {
                id: 2,
                parent: 1,
                name: name("b"),
            },
            Record::Opened {
                fh: 9,
                node: 2,
                flags: 2,
                dir: false,
            },
            Record::Released { fh: 9 },
            Record::Forgotten { id: 2 },
        ];
        let bytes = Journal::bytes(&[], &records);
        assert_eq!(Record::decode_all(&bytes).unwrap(), records);
        for cut in 1..=9 {
            let decoded = Record::decode_all(&bytes[..bytes.len() - cut]).unwrap();
            assert_eq!(decoded, records[..records.len() - 1], "cut {cut}");
        }
        assert!(
            Record::decode_all(&[42])
                .unwrap_err()
                .contains("unknown record kind 42")
        );
    }
}
