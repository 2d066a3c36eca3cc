//! What counts as a protein sequence on input.
//!
//! Readers accept ASCII letters only, and read lower case as upper case through [`normalize`], the
//! one place sequences are normalised (soft-masked FASTA writes low-complexity regions in lower case;
//! the tokenizers know upper-case letters only and would map every lower-case residue to unknown).
//! Each reader counts the sequences it upper-cased, in its report. Letters outside a tokenizer's
//! alphabet (B, Z, O, J) are kept: each tokenizer maps them to its unknown token and counts them.
//! Anything else (digits, punctuation, gaps, whitespace inside a sequence, stop `*`) is an error naming
//! the position, because it usually means a wrong column or a corrupted file, and silently mapping it
//! would hide that.

use crate::error::{Error, Location, Result};

/// Check that `sequence` is a non-empty string of ASCII letters.
pub fn validate(sequence: &str, location: impl FnOnce() -> Location) -> Result<()> {
    if sequence.is_empty() {
        return Err(Error::data(location(), "empty sequence"));
    }
    validate_chars(sequence).map_err(|e| match e {
        Error::Data { message, .. } => Error::data(location(), message),
        other => other,
    })
}

/// Check `sequence` as [`validate`] does and upper-case it in place; returns whether it had lower-case
/// letters, for the reader's count.
pub fn normalize(sequence: &mut str, location: impl FnOnce() -> Location) -> Result<bool> {
    validate(sequence, location)?;
    let lower = sequence.bytes().any(|b| b.is_ascii_lowercase());
    if lower {
        sequence.make_ascii_uppercase();
    }
    Ok(lower)
}

/// The character check alone (an empty string passes); the error's location is a placeholder that
/// callers replace.
pub fn validate_chars(sequence: &str) -> Result<()> {
    match first_invalid(sequence) {
        Some((pos, ch)) => Err(Error::data(Location::file(""), describe_invalid(pos, ch))),
        None => Ok(()),
    }
}

/// The 0-based position and value of the first character that is no ASCII letter.
pub fn first_invalid(sequence: &str) -> Option<(usize, char)> {
    sequence.chars().enumerate().find(|(_, c)| !c.is_ascii_alphabetic())
}

/// "character '7' at residue 12 is not an amino-acid letter", for a 0-based position.
pub fn describe_invalid(pos: usize, ch: char) -> String {
    let shown: String = if ch.is_whitespace() || ch.is_control() { format!("{ch:?}") } else { format!("'{ch}'") };
    format!("character {shown} at residue {} is not an amino-acid letter", pos + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_rejects_the_rest() {
        let here = || Location::line("x.tsv", 3);
        assert!(validate("MKTAYIAKQRBZXUO", here).is_ok());
        assert!(validate("mkta", here).is_ok());
        let e = validate("MK7A", here).unwrap_err().to_string();
        assert!(e.contains("x.tsv:3") && e.contains("'7'") && e.contains("residue 3"), "{e}");
        let e = validate("", here).unwrap_err().to_string();
        assert!(e.contains("empty sequence"), "{e}");
        assert!(validate("MK-A", here).is_err());
        assert!(validate("MKA*", here).is_err());
    }

    #[test]
    fn normalize_upper_cases_and_says_so() {
        let here = || Location::line("x.tsv", 3);
        let mut s = "mkTAy".to_string();
        assert!(normalize(&mut s, here).unwrap());
        assert_eq!(s, "MKTAY");
        assert!(!normalize(&mut s, here).unwrap());
        assert!(normalize(&mut "mk7".to_string(), here).is_err());
    }
}
