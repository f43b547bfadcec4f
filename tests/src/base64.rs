//! Standard base64 (RFC 4648, with padding) decoding, as busybox `base64` writes it.

/// Decodes `text`, ignoring whitespace (line breaks, a tty's `\r`).
/// Returns `None` on a character outside the alphabet or a truncated group.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0; // bits not yet written, most recent in the low end
    let mut bits = 0; // how many of them
    let mut padding = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return None,
        };
        if padding > 0 {
            return None; // data after padding
        }
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 0, 2 or 4 leftover bits are the zero filler of a final group of 4, 3 or 2 characters.
    (bits < 6 && padding <= 2).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_rfc4648_vectors() {
        let cases: [(&str, &str); 7] = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (encoded, plain) in cases {
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes(), "{encoded}");
        }
    }

    #[test]
    fn ignores_line_breaks_and_carriage_returns() {
        assert_eq!(decode("Zm9v\r\nYmFy\r\n").unwrap(), b"foobar");
    }

    #[test]
    fn decodes_all_byte_values() {
        // `head -c 3 | base64` of 0xff 0x00 0x80 and the like.
        assert_eq!(decode("/wCA").unwrap(), [0xff, 0x00, 0x80]);
        assert_eq!(decode("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("Zm9v!").is_none());
        assert!(decode("Zg==Zg==").is_none());
        assert!(decode("Z").is_none());
    }
}
