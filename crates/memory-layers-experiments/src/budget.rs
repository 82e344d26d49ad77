//! `--budget`: one knob that scales every run of a suite, in training tokens per run or in
//! minutes for the whole suite.

use std::fmt;
use std::str::FromStr;

use crate::ExperimentError;

/// How much training a suite gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Training tokens of every run (`2M`, `500k`, `1500000`).
    Tokens(u64),
    /// Wall-clock minutes of the whole suite (`45min`): every run gets the same tokens, as
    /// many as the suite's measured step times allow.
    Minutes(f64),
}

impl FromStr for Budget {
    type Err = ExperimentError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ExperimentError::Budget(text.to_string());
        let t = text.trim();
        if let Some(minutes) = t.strip_suffix("min") {
            let minutes: f64 = minutes.trim().parse().map_err(|_| bad())?;
            return if minutes.is_finite() && minutes > 0.0 {
                Ok(Self::Minutes(minutes))
            } else {
                Err(bad())
            };
        }
        let t = t.strip_suffix("tokens").unwrap_or(t).trim();
        let (number, scale) = match t.chars().last() {
            Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
            Some('M') => (&t[..t.len() - 1], 1e6),
            Some('G') => (&t[..t.len() - 1], 1e9),
            _ => (t, 1.0),
        };
        let tokens: f64 = number.trim().parse().map_err(|_| bad())?;
        let tokens = tokens * scale;
        if tokens.is_finite() && tokens >= 1.0 && tokens.fract() == 0.0 {
            Ok(Self::Tokens(tokens as u64))
        } else {
            Err(bad())
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tokens(tokens) => write!(f, "{tokens} tokens per run"),
            Self::Minutes(minutes) => write!(f, "{minutes} minutes per suite"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_units_and_refuse_nonsense() {
        assert_eq!("2M".parse::<Budget>().unwrap(), Budget::Tokens(2_000_000));
        assert_eq!("1.5M".parse::<Budget>().unwrap(), Budget::Tokens(1_500_000));
        assert_eq!("500k".parse::<Budget>().unwrap(), Budget::Tokens(500_000));
        assert_eq!("4096".parse::<Budget>().unwrap(), Budget::Tokens(4096));
        assert_eq!(
            "3000 tokens".parse::<Budget>().unwrap(),
            Budget::Tokens(3000)
        );
        assert_eq!("45min".parse::<Budget>().unwrap(), Budget::Minutes(45.0));
        assert_eq!("0.5 min".parse::<Budget>().unwrap(), Budget::Minutes(0.5));
        for bad in ["", "abc", "0", "-5", "1.5", "0min", "-1min", "2X", "nanmin"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad:?} is refused");
        }
    }
}
