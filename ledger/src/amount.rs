//! Exact money amounts in integer minor units.
//!
//! An [`Amount`] is parsed from a decimal string in the context of its currency and can only exist
//! valid: positive, no more decimals than the currency's minor unit, and at most [`AMOUNT_MAX`] minor
//! units (the range of a PostgreSQL `bigint`, so balances round-trip to storage exactly). Nothing here
//! ever rounds.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::{Currency, ErrorCode};

/// Largest amount or balance, in minor units.
pub const AMOUNT_MAX: u64 = i64::MAX as u64;

/// Longest decimal string accepted, so parsing cost is bounded.
pub const AMOUNT_TEXT_LENGTH_MAX: usize = 64;

/// Digits rust_decimal holds exactly on either side of the point; beyond that it would round.
const DECIMAL_DIGITS_MAX: usize = 28;

/// A positive decimal number as written by a client, not yet tied to a currency.
///
/// Post and void commands may name an amount before the currency is known (it comes from the
/// pending transfer); the scale check happens when the currency is known, in [`Amount::in_currency`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecimalAmount(Decimal);

impl DecimalAmount {
    pub fn parse(text: &str) -> Result<DecimalAmount, ErrorCode> {
        if text.is_empty() || text.len() > AMOUNT_TEXT_LENGTH_MAX {
            return Err(ErrorCode::InvalidAmount);
        }
        // Only plain decimal notation: digits with an optional fraction. No sign, exponent,
        // underscores or surrounding spaces, which rust_decimal would otherwise accept.
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let is_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if text.starts_with('-') && is_digits(&text[1..].replacen('.', "", 1)) {
            return Err(ErrorCode::AmountMustNotBeNegative);
        }
        if !is_digits(whole) || fraction.is_some_and(|f| !is_digits(f)) {
            return Err(ErrorCode::InvalidAmount);
        }
        // Leading and trailing zeros carry no value; dropping them first keeps rust_decimal from
        // rounding long fractions or overflowing on padded input.
        let whole = whole.trim_start_matches('0');
        let fraction = fraction.unwrap_or("").trim_end_matches('0');
        if fraction.len() > DECIMAL_DIGITS_MAX {
            return Err(ErrorCode::AmountExceedsCurrencyScale);
        }
        if whole.len() > DECIMAL_DIGITS_MAX {
            return Err(ErrorCode::AmountOverflow);
        }
        let whole = if whole.is_empty() { "0" } else { whole };
        let canonical = match fraction {
            "" => whole.to_string(),
            fraction => format!("{whole}.{fraction}"),
        };
        let value = Decimal::from_str(&canonical).map_err(|_| ErrorCode::AmountOverflow)?;
        if value.is_zero() {
            return Err(ErrorCode::AmountMustNotBeZero);
        }
        Ok(DecimalAmount(value))
    }
}

/// A positive amount in minor units of some currency, at most [`AMOUNT_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u64);

impl Amount {
    /// Parses a decimal string such as `"12.34"` for `currency`.
    pub fn parse(text: &str, currency: Currency) -> Result<Amount, ErrorCode> {
        Amount::in_currency(DecimalAmount::parse(text)?, currency)
    }

    /// Converts a parsed decimal to minor units of `currency`, refusing extra decimals.
    pub fn in_currency(value: DecimalAmount, currency: Currency) -> Result<Amount, ErrorCode> {
        let mut value = value.0.normalize();
        if value.scale() > currency.scale() {
            return Err(ErrorCode::AmountExceedsCurrencyScale);
        }
        value.rescale(currency.scale());
        if value.scale() != currency.scale() {
            return Err(ErrorCode::AmountOverflow);
        }
        let minor = u64::try_from(value.mantissa()).map_err(|_| ErrorCode::AmountOverflow)?;
        Amount::from_minor(minor)
    }

    /// An amount from minor units; zero and values above [`AMOUNT_MAX`] are refused.
    pub fn from_minor(minor: u64) -> Result<Amount, ErrorCode> {
        match minor {
            0 => Err(ErrorCode::AmountMustNotBeZero),
            m if m > AMOUNT_MAX => Err(ErrorCode::AmountOverflow),
            m => Ok(Amount(m)),
        }
    }

    pub fn minor(self) -> u64 {
        self.0
    }

    /// The amount as a decimal string with exactly the currency's scale, e.g. `"12.30"`.
    pub fn format(self, currency: Currency) -> String {
        format_minor(self.0, currency)
    }
}

/// Formats a minor-unit quantity (an amount or a balance) with the currency's scale.
pub fn format_minor(minor: u64, currency: Currency) -> String {
    let value = Decimal::from_i128_with_scale(i128::from(minor), currency.scale());
    value.to_string()
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} minor units", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    #[test]
    fn parses_exact_minor_units() {
        assert_eq!(Amount::parse("12.34", usd()).unwrap().minor(), 1234);
        assert_eq!(Amount::parse("12.3", usd()).unwrap().minor(), 1230);
        assert_eq!(Amount::parse("12", usd()).unwrap().minor(), 1200);
        assert_eq!(Amount::parse("0.01", usd()).unwrap().minor(), 1);
        assert_eq!(Amount::parse("12.340000", usd()).unwrap().minor(), 1234);
        let padded = "000000000000000000000000000000000012.50";
        assert_eq!(Amount::parse(padded, usd()).unwrap().minor(), 1250);
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Amount::parse("500", jpy).unwrap().minor(), 500);
    }

    #[test]
    fn every_invalid_amount_has_its_own_code() {
        let cases = [
            ("0", ErrorCode::AmountMustNotBeZero),
            ("0.00", ErrorCode::AmountMustNotBeZero),
            ("-1.00", ErrorCode::AmountMustNotBeNegative),
            ("12.345", ErrorCode::AmountExceedsCurrencyScale),
            ("92233720368547758.08", ErrorCode::AmountOverflow),
            ("99999999999999999999999999999999", ErrorCode::AmountOverflow),
            ("", ErrorCode::InvalidAmount),
            ("1e3", ErrorCode::InvalidAmount),
            ("+1", ErrorCode::InvalidAmount),
            (" 1", ErrorCode::InvalidAmount),
            ("1.", ErrorCode::InvalidAmount),
            (".5", ErrorCode::InvalidAmount),
            ("1_000", ErrorCode::InvalidAmount),
            ("NaN", ErrorCode::InvalidAmount),
            (
                "0.000000000000000000000000000001",
                ErrorCode::AmountExceedsCurrencyScale,
            ),
            (
                "1.0000000000000000000000000000001",
                ErrorCode::AmountExceedsCurrencyScale,
            ),
            ("1.2.3", ErrorCode::InvalidAmount),
        ];
        for (text, code) in cases {
            assert_eq!(Amount::parse(text, usd()), Err(code), "{text:?}");
        }
    }

    #[test]
    fn the_largest_amount_round_trips() {
        let max = Amount::parse("92233720368547758.07", usd()).unwrap();
        assert_eq!(max.minor(), AMOUNT_MAX);
        assert_eq!(max.format(usd()), "92233720368547758.07");
    }

    #[test]
    fn formats_with_the_currency_scale() {
        assert_eq!(Amount::from_minor(1230).unwrap().format(usd()), "12.30");
        assert_eq!(format_minor(0, usd()), "0.00");
        let bhd = Currency::from_code("BHD").unwrap();
        assert_eq!(Amount::from_minor(5).unwrap().format(bhd), "0.005");
    }
}
