//! Checksums of migration scripts.
//!
//! Normalisation is decided once, here: a UTF-8 byte-order mark is stripped and
//! every CRLF becomes LF, so the same file checked out on Windows and Linux has
//! one checksum. The stored value names its algorithm: `sha256:<64 hex digits>`.

use sha2::{Digest, Sha256};

/// The algorithm prefix of every checksum Instar writes.
pub const ALGORITHM: &str = "sha256";

/// Returns `bytes` as text normalised for checksumming and execution.
///
/// Fails with the 1-based line and the byte offset of the first invalid UTF-8
/// sequence. Takes the bytes by value: text that needs no change is not copied.
pub fn normalise(bytes: impl Into<Vec<u8>>) -> Result<String, (usize, usize)> {
    let mut bytes = bytes.into();
    let bom = usize::from(bytes.starts_with(b"\xEF\xBB\xBF")) * 3;
    if let Err(e) = std::str::from_utf8(&bytes[bom..]) {
        let at = bom + e.valid_up_to();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        return Err((line, at));
    }
    bytes.drain(..bom);
    let text = String::from_utf8(bytes).map_err(|e| (1, e.utf8_error().valid_up_to()))?;
    Ok(if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text
    })
}

/// `sha256:<hex>` of already-normalised text.
pub fn checksum(normalised: &str) -> String {
    format!(
        "{ALGORITHM}:{}",
        hex(&Sha256::digest(normalised.as_bytes()))
    )
}

/// A short (16 hex digit) hash of one statement, used to check that the
/// statements a half-applied migration already ran did not change.
pub fn statement_hash(sql: &str) -> String {
    hex(&Sha256::digest(sql.trim().as_bytes())[..8])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_bom_do_not_change_the_checksum() {
        let lf = normalise(b"CREATE TABLE t (id int);\nSELECT 1;\n").unwrap();
        let crlf = normalise(b"CREATE TABLE t (id int);\r\nSELECT 1;\r\n").unwrap();
        let bom = normalise(b"\xEF\xBB\xBFCREATE TABLE t (id int);\r\nSELECT 1;\r\n").unwrap();
        assert_eq!(checksum(&lf), checksum(&crlf));
        assert_eq!(checksum(&lf), checksum(&bom));
        assert!(checksum(&lf).starts_with("sha256:"));
        assert_eq!(checksum(&lf).len(), 7 + 64);
    }

    #[test]
    fn invalid_utf8_reports_offset() {
        assert_eq!(normalise(b"ab\xFF"), Err((1, 2)));
        assert_eq!(normalise(b"\xEF\xBB\xBFa\nb\xFF"), Err((2, 6)));
    }
}
