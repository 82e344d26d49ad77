//! Fact-recall probes: a prompt from the training text and the fact that completes it.
//! Unlike QA (which asks about held-out people), recall checks what training stored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::corpus::{jsonl_lines, string_field};
use super::normalize_answer;
use crate::DataError;

/// A prompt and the answer that completes it (`{"prompt": ..., "answer": ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallProbe {
    /// Text the model continues, e.g. `Alma Abbott was born in`.
    pub prompt: String,
    /// The fact, e.g. `Lisbon`.
    pub answer: String,
}

/// Loads recall probes: one `{"prompt": ..., "answer": ...}` object per line.
pub fn load_recall(path: &Path) -> Result<Vec<RecallProbe>, DataError> {
    jsonl_lines(path)?
        .iter()
        .map(|(line, value)| {
            Ok(RecallProbe {
                prompt: string_field(path, *line, value, "prompt")?.to_string(),
                answer: string_field(path, *line, value, "answer")?.to_string(),
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
