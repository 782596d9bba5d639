//! Recovery keys: 128 random bits that unlock a keyslot of their own, written for a human.
//!
//! The text form is 48 digits in 8 groups of 6 (`docs/format.md`, section 4.2.1), as
//! BitLocker's recovery passwords: each group is 11 times a 16-bit share of the key, so a
//! group that is not a multiple of 11 (or is too large) has a typo. Any single wrong digit,
//! and any swap of two adjacent different digits, changes a group by a value 11 does not
//! divide: every such typo is reported as a typo, naming its group, never as a wrong key.

use std::fmt;

use secrecy::{ExposeSecret, SecretBox, SecretString};
use zeroize::Zeroizing;

use crate::crypto::fill_random;
use crate::error::{Error, Result};

/// The number of random bytes in a recovery key (128 bits).
pub const RECOVERY_KEY_LEN: usize = 16;
/// Groups in the text form, and digits per group.
const GROUPS: usize = RECOVERY_KEY_LEN / 2;
const DIGITS: usize = 6;

/// A recovery key: 128 bits from the operating system's generator, unlocking a keyslot of
/// kind [`SlotKind::RecoveryKey`](crate::SlotKind::RecoveryKey) through HKDF-SHA-256 (the
/// bits are uniformly random, so no password hash is needed).
///
/// It is shown to the user once, as 8 groups of 6 digits with a check in each group; a typo
/// is reported as [`Error::RecoveryKeyTypo`], naming the group, never as a wrong key.
/// `Debug` is redacted and there is no `Display`: the only way to the digits is
/// [`expose_text`](Self::expose_text).
///
/// ```
/// use tokenvault::{Error, KeySource, RecoveryKey, Vault};
/// use tokenvault::secrecy::{ExposeSecret, SecretBox};
///
/// # let dir = tempfile::tempdir()?;
/// let vault = Vault::create(dir.path().join("v"), &KeySource::raw_key(SecretBox::new(Box::new([7; 32]))))?;
/// let recovery = RecoveryKey::generate()?;
/// vault.add_keyslot(&KeySource::recovery_key(&recovery))?;
/// let written_down = recovery.expose_text().expose_secret().to_owned(); // show it once
/// vault.close()?;
///
/// // Later, the key typed back in opens the vault...
/// let typed = RecoveryKey::parse(&written_down)?;
/// let vault = Vault::open(dir.path().join("v"), &KeySource::recovery_key(&typed))?;
/// # vault.close()?;
/// // ...and a typo is a typo, not a wrong key.
/// let first = written_down.as_bytes()[0];
/// let typo = format!("{}{}", if first == b'9' { '8' } else { '9' }, &written_down[1..]);
/// assert!(matches!(RecoveryKey::parse(&typo), Err(Error::RecoveryKeyTypo { group: Some(1) })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RecoveryKey(SecretBox<[u8; RECOVERY_KEY_LEN]>);

impl RecoveryKey {
    /// A new recovery key from the operating system's random generator.
    ///
    /// # Errors
    /// [`Error::Backend`] if the generator fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = Box::new([0u8; RECOVERY_KEY_LEN]);
        fill_random(&mut bytes[..])?;
        Ok(Self(SecretBox::new(bytes)))
    }

    /// Reads a recovery key as a human typed it: 48 digits, in groups of 6, separated by
    /// dashes, spaces or nothing.
    ///
    /// # Errors
    /// [`Error::RecoveryKeyTypo`]: a group whose check fails (`group: Some(n)`, 1-based), or
    /// not 48 digits, or a character other than a digit, a dash or white space
    /// (`group: None`). The text is never repeated in the error.
    pub fn parse(text: &str) -> Result<Self> {
        let mut digits = Zeroizing::new(Vec::with_capacity(GROUPS * DIGITS));
        for c in text.bytes() {
            match c {
                b'0'..=b'9' => digits.push(c - b'0'),
                b'-' | b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => return Err(Error::RecoveryKeyTypo { group: None }),
            }
        }
        if digits.len() != GROUPS * DIGITS {
            return Err(Error::RecoveryKeyTypo { group: None });
        }
        let mut bytes = Box::new([0u8; RECOVERY_KEY_LEN]);
        for (g, group) in digits.chunks_exact(DIGITS).enumerate() {
            let value = group.iter().fold(0u32, |acc, d| acc * 10 + u32::from(*d));
            let share = match (value % 11, u16::try_from(value / 11)) {
                (0, Ok(share)) => share,
                _ => return Err(Error::RecoveryKeyTypo { group: Some(g + 1) }),
            };
            bytes[2 * g..2 * g + 2].copy_from_slice(&share.to_le_bytes());
        }
        Ok(Self(SecretBox::new(bytes)))
    }

    /// The text to show the user, once: `DDDDDD-DDDDDD-…`, 8 groups of 6 digits.
    pub fn expose_text(&self) -> SecretString {
        // Exactly the final length: `SecretString::from` makes a boxed `str`, which would
        // reallocate (and leave an unwiped copy behind) from a larger buffer.
        let mut text = String::with_capacity(GROUPS * DIGITS + GROUPS - 1);
        for (g, pair) in self.0.expose_secret().chunks_exact(2).enumerate() {
            if g > 0 {
                text.push('-');
            }
            let value = u32::from(u16::from_le_bytes([pair[0], pair[1]])) * 11;
            for place in (0..DIGITS).rev() {
                let digit = (value / 10u32.pow(place as u32)) % 10;
                text.push(char::from(b'0' + digit as u8));
            }
        }
        SecretString::from(text)
    }

    /// The key's bytes (the input of its keyslot's HKDF).
    pub(crate) fn bytes(&self) -> &[u8; RECOVERY_KEY_LEN] {
        self.0.expose_secret()
    }
}

impl Clone for RecoveryKey {
    fn clone(&self) -> Self {
        Self(SecretBox::new(Box::new(*self.0.expose_secret())))
    }
}

impl fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_swaps_and_wrong_lengths_are_typos() {
        let key = RecoveryKey::generate().unwrap();
        let text = key.expose_text();
        let digits: Vec<u8> = text
            .expose_secret()
            .bytes()
            .filter(u8::is_ascii_digit)
            .collect();
        for i in 0..digits.len() - 1 {
            if i % DIGITS == DIGITS - 1 || digits[i] == digits[i + 1] {
                continue; // across groups, or no change
            }
            let mut swapped = digits.clone();
            swapped.swap(i, i + 1);
            let swapped = String::from_utf8(swapped).unwrap();
            assert!(matches!(
                RecoveryKey::parse(&swapped),
                Err(Error::RecoveryKeyTypo { group: Some(g) }) if g == i / DIGITS + 1
            ));
        }
        let all = String::from_utf8(digits).unwrap();
        for bad in [
            &all[1..],
            &format!("{all}0"),
            &format!("{}x{}", &all[..3], &all[3..]),
            "",
        ] {
            assert!(matches!(
                RecoveryKey::parse(bad),
                Err(Error::RecoveryKeyTypo { group: None })
            ));
        }
        // Spaces, dashes and line ends between digits are ignored.
        let spaced: String = all
            .as_bytes()
            .chunks(3)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(RecoveryKey::parse(&spaced).unwrap().bytes(), key.bytes());
        assert_eq!(format!("{key:?}"), "RecoveryKey([REDACTED])");
    }

    #[test]
    fn text_round_trips_and_every_single_digit_typo_names_its_group() {
        let key = RecoveryKey::generate().unwrap();
        let text = key.expose_text();
        let text = text.expose_secret();
        assert_eq!(text.len(), GROUPS * DIGITS + GROUPS - 1);
        assert_eq!(RecoveryKey::parse(text).unwrap().bytes(), key.bytes());
        let bytes = text.as_bytes();
        let mut position = 0;
        for (i, c) in bytes.iter().enumerate() {
            if *c == b'-' {
                continue;
            }
            let group = position / DIGITS + 1;
            position += 1;
            for other in b'0'..=b'9' {
                if other == *c {
                    continue;
                }
                let mut typo = bytes.to_vec();
                typo[i] = other;
                let typo = String::from_utf8(typo).unwrap();
                assert!(
                    matches!(RecoveryKey::parse(&typo), Err(Error::RecoveryKeyTypo { group: Some(g) }) if g == group),
                    "a typo at {i} not reported in group {group}"
                );
            }
        }
    }
}
