//! Comparing guest buffers and files in tests.

/// Asserts two byte strings are equal, naming the first difference rather than printing
/// megabytes.
#[track_caller]
pub fn same(actual: &[u8], wanted: &[u8]) {
    assert_eq!(actual.len(), wanted.len(), "lengths differ");
    if let Some(at) = actual.iter().zip(wanted).position(|(a, w)| a != w) {
        panic!(
            "bytes differ from offset {at}: {:02x?} instead of {:02x?}",
            &actual[at..(at + 16).min(actual.len())],
            &wanted[at..(at + 16).min(wanted.len())]
        );
    }
}
