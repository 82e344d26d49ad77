use thiserror::Error;

/// Errors of the product-key crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeysError {
    /// A configuration field breaks a rule.
    #[error("invalid product-key config: {field} = {value}: {rule}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, as written.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

impl KeysError {
    pub(crate) fn invalid(field: &'static str, value: impl ToString, rule: &'static str) -> Self {
        Self::InvalidConfig {
            field,
            value: value.to_string(),
            rule,
        }
    }
}
