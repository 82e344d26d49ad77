//! Names of the command-line enums: one spelling, given by their `clap::ValueEnum` derive,
//! for parsing, printing and listing.

use std::fmt;

use clap::ValueEnum;

/// Writes the command-line name of `value`, padded as the formatter asks (tables align it).
pub fn write(value: &impl ValueEnum, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let name = value.to_possible_value().expect("no variant is skipped");
    f.pad(name.get_name())
}
