//! ISO 4217 currencies and their minor-unit scale.
//!
//! The table comes from the `iso_currency` crate (the complete ISO 4217 list). Codes without a minor
//! unit (gold, SDR, the testing and "no currency" codes) cannot carry a ledger balance and are refused.

use std::fmt;

use crate::ErrorCode;

/// The largest minor-unit scale any ISO 4217 currency has (CLF and UYW use 4).
pub const SCALE_MAX: u32 = 4;

/// A currency that can hold ledger balances: a known ISO 4217 code with a minor-unit scale.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    iso: iso_currency::Currency,
    scale: u8,
}

impl Currency {
    /// Parses an upper-case ISO 4217 alphabetic code such as `USD`.
    pub fn from_code(code: &str) -> Result<Currency, ErrorCode> {
        let iso = iso_currency::Currency::from_code(code).ok_or(ErrorCode::InvalidCurrency)?;
        let exponent = iso.exponent().ok_or(ErrorCode::CurrencyHasNoMinorUnit)?;
        let scale = u8::try_from(exponent).map_err(|_| ErrorCode::CurrencyHasNoMinorUnit)?;
        if u32::from(scale) > SCALE_MAX {
            return Err(ErrorCode::CurrencyHasNoMinorUnit);
        }
        Ok(Currency { iso, scale })
    }

    /// The three-letter code, e.g. `"USD"`.
    pub fn code(self) -> &'static str {
        self.iso.code()
    }

    /// Number of decimal places of the minor unit (2 for USD, 0 for JPY, 3 for BHD).
    pub fn scale(self) -> u32 {
        u32::from(self.scale)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_follow_iso_4217() {
        assert_eq!(Currency::from_code("USD").unwrap().scale(), 2);
        assert_eq!(Currency::from_code("JPY").unwrap().scale(), 0);
        assert_eq!(Currency::from_code("BHD").unwrap().scale(), 3);
        assert_eq!(Currency::from_code("CLF").unwrap().scale(), 4);
    }

    #[test]
    fn unknown_or_unitless_codes_are_refused() {
        assert_eq!(Currency::from_code("usd"), Err(ErrorCode::InvalidCurrency));
        assert_eq!(Currency::from_code("ZZZ"), Err(ErrorCode::InvalidCurrency));
        assert_eq!(Currency::from_code(""), Err(ErrorCode::InvalidCurrency));
        assert_eq!(Currency::from_code("XAU"), Err(ErrorCode::CurrencyHasNoMinorUnit));
        assert_eq!(Currency::from_code("XXX"), Err(ErrorCode::CurrencyHasNoMinorUnit));
    }
}
