use std::path::Path;

use serde::{Deserialize, Serialize};

use super::corpus::{jsonl_lines, string_field};
use crate::DataError;

/// A question and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaPair {
    /// The question.
    pub question: String,
    /// The reference answer.
    pub answer: String,
}

/// The prompt a model continues: `Question: {question}\nAnswer:`.
pub fn prompt(question: &str) -> String {
    format!("Question: {question}\nAnswer:")
}

impl QaPair {
    /// The pair as training text, in the prompt's format.
    pub fn as_text(&self) -> String {
        format!("{} {}\n", prompt(&self.question), self.answer)
    }
}

/// Loads a QA set: one `{"question": ..., "answer": ...}` object per line.
pub fn load_qa(path: &Path) -> Result<Vec<QaPair>, DataError> {
    jsonl_lines(path)?
        .iter()
        .map(|(line, value)| {
            Ok(QaPair {
                question: string_field(path, *line, value, "question")?.to_string(),
                answer: string_field(path, *line, value, "answer")?.to_string(),
            })
        })
        .collect()
}

/// SQuAD normalisation: lower case, no punctuation, no articles, single spaces.
pub fn normalize_answer(text: &str) -> String {
    let lower: String = text
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1 if the normalised answers are equal, else 0.
pub fn exact_match(prediction: &str, answer: &str) -> f64 {
    f64::from(u8::from(
        normalize_answer(prediction) == normalize_answer(answer),
    ))
}

/// Token-level F1 of the normalised answers (SQuAD).
pub fn token_f1(prediction: &str, answer: &str) -> f64 {
    let (p, a) = (normalize_answer(prediction), normalize_answer(answer));
    let (p, a): (Vec<&str>, Vec<&str>) = (
        p.split_whitespace().collect(),
        a.split_whitespace().collect(),
    );
    if p.is_empty() || a.is_empty() {
        return f64::from(u8::from(p == a));
    }
    let mut remaining = a.clone();
    let mut common = 0usize;
    for word in &p {
        if let Some(i) = remaining.iter().position(|w| w == word) {
            remaining.swap_remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / a.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// QA results over a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QaScores {
    /// Mean exact match, in percent.
    pub exact_match: f64,
    /// Mean token F1, in percent.
    pub f1: f64,
    /// Mean NLL (nats per token) of ` {answer}\n` given the prompt.
    pub answer_nll: f64,
    /// Questions scored.
    pub count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_and_scores() {
        assert_eq!(normalize_answer("The  Eiffel Tower!"), "eiffel tower");
        assert_eq!(exact_match("the Eiffel tower.", "Eiffel Tower"), 1.0);
        assert_eq!(exact_match("Paris", "London"), 0.0);
        assert!((token_f1("new york city", "york city") - 0.8).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
        assert_eq!(prompt("Who?"), "Question: Who?\nAnswer:");
        let pair = QaPair {
            question: "Who?".into(),
            answer: "Me".into(),
        };
        assert_eq!(pair.as_text(), "Question: Who?\nAnswer: Me\n");
    }
}
