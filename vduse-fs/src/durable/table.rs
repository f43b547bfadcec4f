//! [`Tables`]: the node IDs and handles the guest holds and what each stands for, the
//! state the journal records and a takeover rebuilds.

use std::collections::HashMap;
use std::ffi::CString;

use super::ROOT;
use super::record::Record;

/// Lookup count of a node restored from the journal: unknown, so never reached by forgets.
const RESTORED: u64 = u64::MAX / 2;

/// A node the guest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    /// The passthrough's number; `None` once it could not be found again.
    pub(super) inner: Option<u64>,
    pub(super) parent: u64,
    pub(super) name: CString,
    /// Host inode number, to tell the same file from another one now at its name.
    pub(super) ino: u64,
    pub(super) lookups: u64,
}

/// A handle the guest holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenFile {
    pub(super) inner: Option<u64>,
    pub(super) node: u64,
    pub(super) flags: u32,
    pub(super) dir: bool,
}

/// The guest's numbers and what they stand for.
#[derive(Debug, Default)]
pub(super) struct Tables {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) by_inner: HashMap<u64, u64>,
    pub(super) by_name: HashMap<(u64, CString), u64>,
    pub(super) next_node: u64,
    pub(super) files: HashMap<u64, OpenFile>,
    pub(super) next_fh: u64,
    pub(super) capable: Option<u64>,
}

impl Tables {
    pub(super) fn new() -> Self {
        Tables {
            next_node: ROOT + 1,
            next_fh: 1,
            ..Default::default()
        }
    }

    pub(super) fn apply(&mut self, record: Record) {
        match record {
            Record::Init { capable } => {
                *self = Tables::new();
                self.capable = Some(capable);
            }
            Record::Node {
                id,
                parent,
                ino,
                name,
            } => {
                self.by_name.insert((parent, name.clone()), id);
                self.nodes.insert(
                    id,
                    Node {
                        inner: None,
                        parent,
                        name,
                        ino,
                        lookups: RESTORED,
                    },
                );
                self.next_node = self.next_node.max(id + 1);
            }
            Record::Forgotten { id } => {
                if let Some(node) = self.nodes.remove(&id) {
                    self.unname(id, &node);
                }
            }
            Record::Renamed { id, parent, name } => self.rename(id, parent, name),
            Record::Opened {
                fh,
                node,
                flags,
                dir,
            } => {
                self.files.insert(
                    fh,
                    OpenFile {
                        inner: None,
                        node,
                        flags,
                        dir,
                    },
                );
                self.next_fh = self.next_fh.max(fh + 1);
            }
            Record::Released { fh } => {
                self.files.remove(&fh);
            }
        }
    }

    pub(super) fn unname(&mut self, id: u64, node: &Node) {
        let key = (node.parent, node.name.clone());
        if self.by_name.get(&key) == Some(&id) {
            self.by_name.remove(&key);
        }
    }

    pub(super) fn rename(&mut self, id: u64, parent: u64, name: CString) {
        if let Some(mut node) = self.nodes.remove(&id) {
            self.unname(id, &node);
            node.parent = parent;
            node.name = name.clone();
            self.by_name.insert((parent, name), id);
            self.nodes.insert(id, node);
        }
    }

    /// The live tables as records, in an order that replays to them.
    pub(super) fn snapshot(&self) -> Vec<Record> {
        let mut records = Vec::new();
        if let Some(capable) = self.capable {
            records.push(Record::Init { capable });
        }
        let mut ids: Vec<&u64> = self.nodes.keys().collect();
        ids.sort();
        for id in ids {
            let node = &self.nodes[id];
            records.push(Record::Node {
                id: *id,
                parent: node.parent,
                ino: node.ino,
                name: node.name.clone(),
            });
        }
        let mut fhs: Vec<&u64> = self.files.keys().collect();
        fhs.sort();
        for fh in fhs {
            let file = &self.files[fh];
            records.push(Record::Opened {
                fh: *fh,
                node: file.node,
                flags: file.flags,
                dir: file.dir,
            });
        }
        records
    }
}
