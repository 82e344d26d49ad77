//! Fact-recall probes: a prompt from the training text and the fact that completes it.
//! Unlike QA (which asks about held-out people), recall checks what training stored: by the
//! greedy continuation (exact), and where the probe says how many values the fact could take,
//! in bits (partial knowledge counts too).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::corpus::{jsonl_lines, string_field};
use super::normalize_answer;
use crate::DataError;

/// A prompt and the answer that completes it (`{"prompt": ..., "answer": ...}`, and
/// optionally `"choices"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallProbe {
    /// Text the model continues, e.g. `Alma Abbott was born in`.
    pub prompt: String,
    /// The fact, e.g. `Lisbon`.
    pub answer: String,
    /// How many values the fact could take, each as likely (30 cities): the fact holds
    /// `log2(choices)` bits, and the knowledge measure counts what the model holds of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<usize>,
}

impl RecallProbe {
    /// The bits the fact holds, `log2(choices)`, where the probe says.
    pub fn bits(&self) -> Option<f64> {
        self.choices.map(|c| (c as f64).log2())
    }
}

/// Loads recall probes: one `{"prompt": ..., "answer": ...}` object per line, with an
/// optional `"choices"` (a whole number of at least 2).
pub fn load_recall(path: &Path) -> Result<Vec<RecallProbe>, DataError> {
    jsonl_lines(path)?
        .iter()
        .map(|(line, value)| {
            let choices = match value.get("choices") {
                None | Some(serde_json::Value::Null) => None,
                Some(c) => Some(c.as_u64().filter(|&c| c >= 2).ok_or_else(|| {
                    DataError::input(
                        path,
                        Some(*line),
                        "\"choices\" must be a whole number of at least 2 (the values the fact could take)",
                    )
                })? as usize),
            };
            Ok(RecallProbe {
                prompt: string_field(path, *line, value, "prompt")?.to_string(),
                answer: string_field(path, *line, value, "answer")?.to_string(),
                choices,
            })
        })
        .collect()
}

/// Whether a greedy `continuation` recalls `answer`: after QA normalisation it starts with the
/// answer and the answer ends at a word boundary (`Lisbon.` and `Lisbon today` count, `Lisbonne`
/// does not). An empty answer never counts.
pub fn recalls(continuation: &str, answer: &str) -> bool {
    let (text, answer) = (normalize_answer(continuation), normalize_answer(answer));
    !answer.is_empty()
        && text.starts_with(&answer)
        && text[answer.len()..].chars().next().is_none_or(|c| c == ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_needs_the_whole_answer_at_a_word_boundary() {
        assert!(recalls(" Lisbon.", "Lisbon"));
        assert!(recalls(" lisbon and then", "Lisbon"));
        assert!(recalls(" March 3, 1961.", "March 3, 1961"));
        assert!(!recalls(" Lisbonne", "Lisbon"));
        assert!(!recalls(" Oslo", "Lisbon"));
        assert!(!recalls(" March 3, 1962", "March 3, 1961"));
        assert!(!recalls("", "Lisbon"));
        assert!(!recalls("anything", ""));
    }
}
