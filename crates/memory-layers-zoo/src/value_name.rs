//! Names of the enums that `config.toml` and the command line share: one spelling, serde's
//! (`memory-plus`, `1.3b`, `sparse-adamw`), for printing and parsing. A name that is not one
//! of them is an error that lists the ones that are.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A name that is not one of the type's (the message lists the valid ones).
pub type NameError = serde_plain::Error;

/// Implements [`fmt::Display`] (padded as the formatter asks, so tables align) and
/// [`std::str::FromStr`] from each type's serde names.
#[macro_export]
macro_rules! serde_names {
    ($($t:ty),* $(,)?) => {$(
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                $crate::value_name::write(self, f)
            }
        }

        impl ::std::str::FromStr for $t {
            type Err = $crate::value_name::NameError;

            fn from_str(name: &str) -> ::std::result::Result<Self, Self::Err> {
                $crate::value_name::parse(name)
            }
        }
    )*};
}

/// Writes the name of `value`, padded as the formatter asks.
pub fn write(value: &impl Serialize, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.pad(&serde_plain::to_string(value).map_err(|_| fmt::Error)?)
}

/// The value named `name`.
pub fn parse<T: DeserializeOwned>(name: &str) -> Result<T, NameError> {
    serde_plain::from_str(name)
}
