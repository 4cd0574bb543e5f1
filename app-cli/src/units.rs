//! Token amounts (typed in whole tokens, stored in base units) and byte sizes.
use std::fmt;

/// A token amount in base units, shown with the mint's decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub base_units: u64,
    pub decimals: u8,
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u128.pow(u32::from(self.decimals));
        let (whole, frac) = (
            u128::from(self.base_units) / scale,
            u128::from(self.base_units) % scale,
        );
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let frac = format!("{frac:0width$}", width = usize::from(self.decimals));
            write!(f, "{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// Parses a token amount typed by a user (`12`, `0.5`, `1_000`) into base
/// units of a mint with `decimals`: exact, or an error naming the problem.
pub fn parse_tokens(text: &str, decimals: u8) -> Result<u64, String> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (whole, frac) = clean.split_once('.').unwrap_or((&clean, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(format!("{text:?} is not an amount"));
    }
    if !whole
        .chars()
        .chain(frac.chars())
        .all(|c| c.is_ascii_digit())
    {
        return Err(format!("{text:?} is not an amount (digits and one '.')"));
    }
    if frac.len() > usize::from(decimals) {
        return Err(format!(
            "{text:?} has {} decimals; the mint has {decimals}",
            frac.len()
        ));
    }
    let scale = 10u64
        .checked_pow(u32::from(decimals))
        .ok_or_else(|| format!("mint decimals {decimals} are out of range"))?;
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?
    };
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        let padded = format!("{frac:0<width$}", width = usize::from(decimals));
        padded
            .parse()
            .map_err(|_| format!("{text:?} is too large"))?
    };
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses a byte size: a number with an optional unit (`B`, `KB`, `MB`, `GB`,
/// `TB` powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` powers of 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 500GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A byte count for people: `1.50 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_amounts_parse_exactly_and_refuse_extra_decimals() {
        assert_eq!(parse_tokens("12", 6), Ok(12_000_000));
        assert_eq!(parse_tokens("0.5", 6), Ok(500_000));
        assert_eq!(parse_tokens(".000001", 6), Ok(1));
        assert_eq!(parse_tokens("1_000", 0), Ok(1_000));
        assert!(parse_tokens("0.0000001", 6)
            .unwrap_err()
            .contains("7 decimals"));
        assert!(parse_tokens("1e5", 6).is_err());
        assert!(parse_tokens("-1", 6).is_err());
        assert!(parse_tokens(".", 6).is_err());
        assert!(parse_tokens("18446744073709551615", 6)
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_tokens("18446744073709551615", 0), Ok(u64::MAX));
    }

    #[test]
    fn token_amounts_display_with_the_mints_decimals() {
        let t = |base_units, decimals| {
            Tokens {
                base_units,
                decimals,
            }
            .to_string()
        };
        assert_eq!(t(12_000_000, 6), "12");
        assert_eq!(t(12_500_000, 6), "12.5");
        assert_eq!(t(1, 6), "0.000001");
        assert_eq!(t(u64::MAX, 0), u64::MAX.to_string());
        assert_eq!(t(u64::MAX, 19), "1.8446744073709551615");
    }

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2tib"), Ok(2 << 40));
        assert!(parse_bytes("1 XB")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("99999999 TiB")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(human_bytes(1536 << 20), "1.50 GiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
