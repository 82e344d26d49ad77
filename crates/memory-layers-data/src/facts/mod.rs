//! A generated knowledge corpus: synthetic biographies of N people with six attributes each,
//! written in several phrasings, with QA lines for half of the people in the training text and
//! a held-out QA set for the other half (whose facts appear only in biographies), and
//! recall probes of every fact.

use memory_layers_zoo::SplitMix64;
use serde::{Deserialize, Serialize};

mod lists;

use self::lists::{ATTRIBUTES, CITIES, EMPLOYERS, FIRST, LAST, MAJORS, MONTHS, UNIVERSITIES};
use crate::{Document, QaPair, RecallProbe};

/// Distinct first-and-last names; beyond them, names get a middle initial.
const PLAIN_NAMES: usize = FIRST.len() * LAST.len();

/// Most people the corpus can describe (every name with and without a middle initial).
pub const MAX_PEOPLE: usize = PLAIN_NAMES * 27;

/// Size and seed of the generated corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactsConfig {
    /// People described (at most [`MAX_PEOPLE`]; beyond 1600, names get middle initials).
    pub people: usize,
    /// Biographies per person in the training text, each in freshly drawn phrasings: the
    /// exposures of each fact per pass over the corpus.
    pub bios_per_person: usize,
    /// Seed of the attributes and phrasings.
    pub seed: u64,
    /// People of the seed's name list skipped: a corpus with `first = n` describes people
    /// none of the corpus with the same seed and `people = n` does (new facts to learn after
    /// those).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for FactsConfig {
    fn default() -> Self {
        Self {
            people: 200,
            bios_per_person: 12,
            seed: 1,
            first: 0,
        }
    }
}

impl FactsConfig {
    /// Checks the sizes; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), crate::DataError> {
        if self.people < 2 || self.people > MAX_PEOPLE {
            return Err(crate::DataError::setting(
                "data.facts.people",
                self.people,
                "must be in 2..=43200 (half are asked about in training, half held out)",
            ));
        }
        if self
            .first
            .checked_add(self.people)
            .is_none_or(|end| end > MAX_PEOPLE)
        {
            return Err(crate::DataError::setting(
                "data.facts.first",
                self.first,
                "plus data.facts.people must be at most 43200 (the names there are)",
            ));
        }
        if self.bios_per_person == 0 {
            return Err(crate::DataError::setting(
                "data.facts.bios_per_person",
                self.bios_per_person,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Information content of the facts in bits: every attribute value is drawn uniformly
    /// and independently, so each person holds `Σ log2(choices)` bits.
    pub fn bits(&self) -> f64 {
        self.people as f64 * CHOICES.iter().map(|&c| (c as f64).log2()).sum::<f64>()
    }
}

/// The values each attribute can take, in attribute order.
const CHOICES: [usize; 6] = [
    28 * 12 * 50, // birth day, month, year
    CITIES.len(),
    UNIVERSITIES.len(),
    MAJORS.len(),
    EMPLOYERS.len(),
    CITIES.len(),
];

#[derive(Debug, Clone)]
struct Person {
    name: String,
    /// One value per [`ATTRIBUTES`] entry.
    values: [String; 6],
}

/// The generated corpus.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Biographies of everyone and QA lines for the first half, shuffled, as training text.
    pub training: Vec<Document>,
    /// Questions about the second half of the people, never asked in training.
    pub heldout_qa: Vec<QaPair>,
    /// Questions about the first half (also in the training text).
    pub train_qa: Vec<QaPair>,
    /// One recall probe per person and attribute (every fact is in the biographies), each in
    /// one of the training phrasings, cut before the value; people and attributes interleaved
    /// so that any prefix of the list covers both halves of the people.
    pub recall: Vec<RecallProbe>,
}

fn fill(template: &str, name: &str, value: &str) -> String {
    template.replace("{n}", name).replace("{v}", value)
}

impl Person {
    fn qa(&self) -> Vec<QaPair> {
        ATTRIBUTES
            .iter()
            .zip(&self.values)
            .map(|(attribute, value)| QaPair {
                question: fill(attribute.question, &self.name, ""),
                answer: value.clone(),
            })
            .collect()
    }

    /// The recall probe of attribute `a` in phrasing `p`.
    fn recall(&self, a: usize, p: usize) -> RecallProbe {
        let phrasing = ATTRIBUTES[a].phrasings[p];
        let prefix = &phrasing[..phrasing.find("{v}").expect("every phrasing has a value")];
        RecallProbe {
            prompt: fill(prefix.trim_end(), &self.name, ""),
            answer: self.values[a].clone(),
            choices: Some(CHOICES[a]),
        }
    }

    /// One biography: six sentences, each in a randomly drawn phrasing, in random order
    /// after the first.
    fn bio(&self, rng: &mut SplitMix64) -> String {
        let mut sentences: Vec<String> = ATTRIBUTES
            .iter()
            .zip(&self.values)
            .map(|(attribute, value)| {
                let phrasing = attribute.phrasings[rng.below(attribute.phrasings.len())];
                fill(phrasing, &self.name, value)
            })
            .collect();
        rng.shuffle(&mut sentences[1..]);
        sentences.join(" ")
    }
}

/// `count` distinct names: first and last names, then the same with middle initials.
fn names(count: usize, rng: &mut SplitMix64) -> Vec<String> {
    let plain = || FIRST.iter().flat_map(|f| LAST.iter().map(move |l| (f, l)));
    let mut names: Vec<String> = plain().map(|(f, l)| format!("{f} {l}")).collect();
    rng.shuffle(&mut names);
    if count > PLAIN_NAMES {
        let mut more: Vec<String> = ('A'..='Z')
            .flat_map(|i| plain().map(move |(f, l)| format!("{f} {i}. {l}")))
            .collect();
        rng.shuffle(&mut more);
        names.extend(more);
    }
    names.truncate(count);
    names
}

impl Facts {
    /// Generates the corpus; the same config gives the same corpus. At most [`MAX_PEOPLE`]
    /// people (see [`FactsConfig::validate`]).
    pub fn generate(config: &FactsConfig) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let names = names(config.first + config.people, &mut rng).split_off(config.first);
        let mut pick = |list: &'static [&'static str]| list[rng.below(list.len())].to_string();
        let mut people: Vec<Person> = names
            .into_iter()
            .map(|name| Person {
                name,
                values: [
                    String::new(),
                    pick(&CITIES),
                    pick(&UNIVERSITIES),
                    pick(&MAJORS),
                    pick(&EMPLOYERS),
                    pick(&CITIES),
                ],
            })
            .collect();
        for person in &mut people {
            let (day, month, year) = (
                1 + rng.below(28),
                MONTHS[rng.below(12)],
                1950 + rng.below(50),
            );
            person.values[0] = format!("{month} {day}, {year}");
        }
        let half = people.len() / 2;
        let train_qa: Vec<QaPair> = people[..half].iter().flat_map(Person::qa).collect();
        let heldout_qa: Vec<QaPair> = people[half..].iter().flat_map(Person::qa).collect();
        let mut texts: Vec<String> = Vec::new();
        for _ in 0..config.bios_per_person {
            for person in &people {
                texts.push(person.bio(&mut rng));
            }
        }
        texts.extend(train_qa.iter().map(QaPair::as_text));
        rng.shuffle(&mut texts);
        let training = texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| Document {
                source: format!("generated:facts:{i}"),
                text,
            })
            .collect();
        // Person i's attribute a in phrasing (i + a) mod 3; alternating halves.
        let order = (0..half)
            .flat_map(|i| [i, half + i])
            .chain(2 * half..people.len());
        let recall = order
            .flat_map(|i| (0..ATTRIBUTES.len()).map(move |a| (i, a)))
            .map(|(i, a)| people[i].recall(a, (i + a) % 3))
            .collect();
        Self {
            training,
            heldout_qa,
            train_qa,
            recall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_splits_people() {
        let config = FactsConfig {
            people: 10,
            bios_per_person: 2,
            seed: 4,
            first: 0,
        };
        let a = Facts::generate(&config);
        let b = Facts::generate(&config);
        assert_eq!(a.training, b.training);
        assert_eq!(a.heldout_qa.len(), 5 * 6);
        assert_eq!(a.train_qa.len(), 5 * 6);
        assert_eq!(a.training.len(), 10 * 2 + 5 * 6);
        let text: String = a.training.iter().map(|d| d.text.as_str()).collect();
        for qa in &a.heldout_qa {
            assert!(
                !text.contains(&qa.question),
                "held-out questions never appear in training"
            );
            assert!(
                text.contains(&qa.answer),
                "held-out facts appear in biographies"
            );
        }
        for qa in &a.train_qa {
            assert!(text.contains(&qa.as_text()));
        }
    }

    #[test]
    fn recall_probes_complete_training_sentences() {
        // 30 biographies per person: every phrasing appears (miss probability (2/3)^30).
        let facts = Facts::generate(&FactsConfig {
            people: 10,
            bios_per_person: 30,
            seed: 3,
            first: 0,
        });
        let text: String = facts.training.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(facts.recall.len(), 10 * 6);
        for probe in &facts.recall {
            let fact = format!("{} {}", probe.prompt, probe.answer);
            assert!(text.contains(&fact), "{fact}");
        }
        let name = |qa: &QaPair| {
            let q = qa.question.trim_start_matches("When was ");
            q.trim_end_matches(" born?").to_string()
        };
        assert!(facts.recall[0].prompt.contains(&name(&facts.train_qa[0])));
        assert!(facts.recall[6].prompt.contains(&name(&facts.heldout_qa[0])));
    }

    #[test]
    fn many_people_get_distinct_names_and_bits_scale() {
        let config = FactsConfig {
            people: 2000,
            bios_per_person: 1,
            seed: 2,
            first: 0,
        };
        let facts = Facts::generate(&config);
        let mut names: Vec<&str> = facts
            .heldout_qa
            .iter()
            .chain(&facts.train_qa)
            .step_by(6)
            .map(|qa| {
                let q = qa.question.trim_start_matches("When was ");
                q.trim_end_matches(" born?")
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 2000);
        let per_person = config.bits() / 2000.0;
        assert!((per_person - 36.2).abs() < 0.1, "{per_person}");
    }

    #[test]
    fn later_people_are_new_people() {
        let person = |qa: &QaPair| {
            let q = qa.question.trim_start_matches("When was ");
            q.trim_end_matches(" born?").to_string()
        };
        let names = |facts: &Facts| -> Vec<String> {
            facts
                .train_qa
                .iter()
                .chain(&facts.heldout_qa)
                .step_by(6)
                .map(person)
                .collect()
        };
        let config = FactsConfig {
            people: 20,
            bios_per_person: 1,
            seed: 5,
            first: 0,
        };
        let old = names(&Facts::generate(&config));
        // Across the 1600 plain names too.
        for (first, people) in [(20, 30), (1590, 30)] {
            let new = names(&Facts::generate(&FactsConfig {
                people,
                first,
                ..config.clone()
            }));
            assert_eq!(new.len(), people);
            assert!(new.iter().all(|n| !old.contains(n)), "first = {first}");
        }
        let before = names(&Facts::generate(&FactsConfig {
            people: 1590,
            ..config.clone()
        }));
        let after = names(&Facts::generate(&FactsConfig {
            people: 30,
            first: 1590,
            ..config
        }));
        assert!(after.iter().all(|n| !before.contains(n)));
        assert!(
            FactsConfig {
                people: 100,
                bios_per_person: 1,
                seed: 1,
                first: 43_150
            }
            .validate()
            .unwrap_err()
            .to_string()
            .contains("data.facts.first")
        );
    }
}
