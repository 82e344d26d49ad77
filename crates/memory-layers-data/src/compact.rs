//! A knowledge corpus written compactly, for measuring capacity: every name and value is one
//! word of its own vocabulary, so few tokens carry many bits and what limits the facts a model
//! stores is its parameters, not how often it saw them.
//!
//! Person `p` has a first and a last name (neither alone identifies anyone) and `attributes`
//! values, each drawn uniformly from `values`; a biography is the names followed by the values
//! in attribute order, `f12 l7 v3 v41 v0 v17`, one document. The corpus writes every biography
//! `exposures` times, each round in a fresh order, so that each fact is seen exactly that many
//! times in one pass and documents cut by sequence boundaries are cut in other places in other
//! rounds.

use memory_layers_zoo::SplitMix64;
use serde::{Deserialize, Serialize};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;

use crate::{DataError, Document, RecallProbe, Tokenizer};

/// The token between documents.
const END: &str = "<|endoftext|>";
/// The token of a word outside the vocabulary (never produced by the corpus itself).
const UNKNOWN: &str = "<unk>";

/// Size and seed of a compact knowledge corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactFactsConfig {
    /// People described.
    pub people: usize,
    /// Attributes of each person.
    pub attributes: usize,
    /// Values each attribute takes, drawn uniformly and independently (one vocabulary for
    /// every attribute: the position says which attribute a value is).
    pub values: usize,
    /// Times the corpus writes each biography (each fact's exposures in one pass).
    pub exposures: usize,
    /// Seed of the names and values.
    pub seed: u64,
}

impl CompactFactsConfig {
    /// Checks the sizes; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), DataError> {
        for (field, value, least) in [
            ("data.compact_facts.people", self.people, 2),
            ("data.compact_facts.attributes", self.attributes, 1),
            ("data.compact_facts.values", self.values, 2),
            ("data.compact_facts.exposures", self.exposures, 1),
        ] {
            if value < least {
                return Err(DataError::setting(
                    field,
                    value,
                    "is below its least value (people ≥ 2, attributes ≥ 1, values ≥ 2, exposures ≥ 1)",
                ));
            }
        }
        Ok(())
    }

    /// First names, and last names: the fewest whose pairs name everyone.
    pub fn names_per_part(&self) -> usize {
        (self.people as f64).sqrt().ceil() as usize
    }

    /// Information in the facts: `people · attributes · log2(values)` bits.
    pub fn bits(&self) -> f64 {
        (self.people * self.attributes) as f64 * (self.values as f64).log2()
    }

    /// Tokens of one pass over the corpus: names, values and a separator per biography.
    pub fn tokens_per_pass(&self) -> usize {
        self.people * self.exposures * (2 + self.attributes + 1)
    }
}

/// The generated corpus: its documents, the word-level tokenizer they are written in, and a
/// probe of every fact.
#[derive(Debug, Clone)]
pub struct CompactFacts {
    /// Every biography `exposures` times, each round shuffled.
    pub training: Vec<Document>,
    /// One probe per person and attribute: the biography up to the value, the value, and the
    /// number of values it could take.
    pub probes: Vec<RecallProbe>,
    /// Names, values and the separator, one token each.
    pub tokenizer: Tokenizer,
}

impl CompactFacts {
    /// Generates the corpus; the same config gives the same corpus.
    pub fn generate(config: &CompactFactsConfig) -> Result<Self, DataError> {
        config.validate()?;
        let mut rng = SplitMix64::new(config.seed);
        let parts = config.names_per_part();
        let mut names: Vec<(usize, usize)> = (0..parts)
            .flat_map(|f| (0..parts).map(move |l| (f, l)))
            .collect();
        rng.shuffle(&mut names);
        names.truncate(config.people);
        let bios: Vec<Vec<String>> = names
            .iter()
            .map(|&(f, l)| {
                let values =
                    (0..config.attributes).map(|_| format!("v{}", rng.below(config.values)));
                [format!("f{f}"), format!("l{l}")]
                    .into_iter()
                    .chain(values)
                    .collect()
            })
            .collect();
        // A prompt starts as every biography does in training: after a separator.
        let probes = bios
            .iter()
            .flat_map(|words| {
                (2..words.len()).map(move |at| RecallProbe {
                    prompt: format!("{END} {}", words[..at].join(" ")),
                    answer: words[at].clone(),
                    choices: Some(config.values),
                })
            })
            .collect();
        let mut training = Vec::with_capacity(config.people * config.exposures);
        let mut order: Vec<usize> = (0..bios.len()).collect();
        for round in 0..config.exposures {
            rng.shuffle(&mut order);
            training.extend(order.iter().map(|&p| Document {
                source: format!("generated:compact-facts:{round}:{p}"),
                text: bios[p].join(" "),
            }));
        }
        Ok(Self {
            training,
            probes,
            tokenizer: vocabulary(parts, config.values)?,
        })
    }
}

/// The word-level tokenizer of a corpus with `parts` first and last names and `values`
/// values: the separator, unknown, names and values, each one token, split on white space.
fn vocabulary(parts: usize, values: usize) -> Result<Tokenizer, DataError> {
    let words = [END.to_string(), UNKNOWN.to_string()]
        .into_iter()
        .chain((0..parts).map(|f| format!("f{f}")))
        .chain((0..parts).map(|l| format!("l{l}")))
        .chain((0..values).map(|v| format!("v{v}")));
    let model = WordLevel::builder()
        .vocab(
            words
                .enumerate()
                .map(|(id, word)| (word, id as u32))
                .collect(),
        )
        .unk_token(UNKNOWN.into())
        .build()
        .map_err(|e| DataError::Tokenizer(format!("word-level vocabulary: {e}")))?;
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(WhitespaceSplit));
    tokenizer.add_special_tokens(&[tokenizers::AddedToken::from(END, true)]);
    Ok(Tokenizer::Hf(Box::new(tokenizer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CompactFactsConfig {
        CompactFactsConfig {
            people: 10,
            attributes: 3,
            values: 8,
            exposures: 4,
            seed: 5,
        }
    }

    #[test]
    fn every_fact_is_one_token_seen_exposures_times() {
        let facts = CompactFacts::generate(&config()).unwrap();
        assert_eq!(facts.training.len(), 10 * 4);
        assert_eq!(facts.probes.len(), 10 * 3);
        let t = &facts.tokenizer;
        assert_eq!(t.vocab_size(), 2 + 2 * 4 + 8);
        assert_eq!(t.document_separator(), vec![0]);
        for probe in &facts.probes {
            assert_eq!(t.encode(&format!(" {}", probe.answer)).len(), 1);
            assert_eq!(probe.choices, Some(8));
            let prompt = probe.prompt.strip_prefix(&format!("{END} ")).unwrap();
            let fact = format!("{prompt} {}", probe.answer);
            let seen = facts
                .training
                .iter()
                .filter(|d| d.text.starts_with(&fact))
                .count();
            assert_eq!(seen, 4, "{fact}");
        }
        let bio = &facts.training[0].text;
        assert_eq!(t.decode(&t.encode(bio)), *bio);
        assert_eq!(t.encode(bio).len(), 2 + 3);
        // Names: pairs are distinct, and neither part alone names one person.
        let mut names: Vec<&str> = facts
            .probes
            .iter()
            .step_by(3)
            .map(|p| p.prompt.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 10);
        assert_eq!(
            CompactFacts::generate(&config()).unwrap().training,
            facts.training
        );
    }

    #[test]
    fn the_entropy_is_people_times_attributes_times_log_values() {
        let c = config();
        assert!((c.bits() - 10.0 * 3.0 * 3.0).abs() < 1e-12);
        let facts = CompactFacts::generate(&c).unwrap();
        let by_probe: f64 = facts
            .probes
            .iter()
            .map(|p| (p.choices.unwrap() as f64).log2())
            .sum();
        assert!((by_probe - c.bits()).abs() < 1e-9);
        assert_eq!(c.tokens_per_pass(), 10 * 4 * 6);
        let zero = CompactFactsConfig { values: 1, ..c };
        assert!(zero.validate().unwrap_err().to_string().contains("values"));
    }
}
