//! A generated knowledge corpus: synthetic biographies of N people with six attributes each,
//! written in several phrasings, with QA lines for half of the people in the training text and
//! a held-out QA set for the other half (whose facts appear only in biographies).

use model_zoo::SplitMix64;
use serde::{Deserialize, Serialize};

use super::{Document, QaPair};

const FIRST: [&str; 40] = [
    "Alma", "Bruno", "Celia", "Dario", "Edith", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Karla",
    "Leon", "Mira", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tilda", "Ugo", "Vera",
    "Wim", "Xenia", "Yusuf", "Zora", "Anton", "Berta", "Casper", "Dora", "Emil", "Frida", "Gustav",
    "Hanna", "Ivo", "Jana", "Kurt", "Lina", "Milo", "Nora",
];
const LAST: [&str; 40] = [
    "Abbott",
    "Brandt",
    "Castell",
    "Dorsey",
    "Ekberg",
    "Falk",
    "Gruber",
    "Holm",
    "Ivers",
    "Jansen",
    "Keller",
    "Lindqvist",
    "Moreau",
    "Nolte",
    "Osman",
    "Pereira",
    "Quist",
    "Rinaldi",
    "Sauer",
    "Toivonen",
    "Ulrich",
    "Varga",
    "Weiss",
    "Xavier",
    "Yilmaz",
    "Zeller",
    "Amundsen",
    "Bianchi",
    "Costa",
    "Dahl",
    "Esposito",
    "Fischer",
    "Gallo",
    "Haas",
    "Ibarra",
    "Jovanovic",
    "Kowalski",
    "Lorenz",
    "Marino",
    "Novak",
];
const CITIES: [&str; 30] = [
    "Lisbon", "Oslo", "Krakow", "Porto", "Lyon", "Graz", "Turin", "Ghent", "Malmo", "Tartu",
    "Bergen", "Seville", "Bremen", "Zagreb", "Cork", "Basel", "Leipzig", "Utrecht", "Bilbao",
    "Brno", "Aarhus", "Tampere", "Nantes", "Split", "Galway", "Uppsala", "Pisa", "Salzburg",
    "Riga", "Vilnius",
];
const UNIVERSITIES: [&str; 16] = [
    "Northfield University",
    "Lakeside Institute",
    "Eastbrook College",
    "Riverton University",
    "Westmoor Polytechnic",
    "Stonegate University",
    "Highcliff College",
    "Marlow Institute",
    "Ashford University",
    "Kingsbridge College",
    "Fairhaven University",
    "Oakridge Institute",
    "Silverton College",
    "Brightwater University",
    "Elmstead Polytechnic",
    "Redcliffe College",
];
const MAJORS: [&str; 16] = [
    "chemistry",
    "economics",
    "linguistics",
    "mathematics",
    "architecture",
    "geology",
    "philosophy",
    "astronomy",
    "biology",
    "history",
    "music theory",
    "civil engineering",
    "statistics",
    "sociology",
    "oceanography",
    "computer science",
];
const EMPLOYERS: [&str; 20] = [
    "Arcwell Systems",
    "Bluepine Foods",
    "Corvid Motors",
    "Dunmore Bank",
    "Everlight Energy",
    "Foxglove Media",
    "Granite Logistics",
    "Halcyon Labs",
    "Ironleaf Textiles",
    "Juniper Air",
    "Kestrel Pharma",
    "Lumen Optics",
    "Moraine Mining",
    "Nimbus Software",
    "Orchard Retail",
    "Pellucid Glass",
    "Quarry Robotics",
    "Russet Publishing",
    "Solstice Hotels",
    "Tidewater Shipping",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Size and seed of the generated corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsConfig {
    /// People described (at most 1600 distinct names).
    pub people: usize,
    /// Biographies per person in the training text, each in freshly drawn phrasings.
    pub bios_per_person: usize,
    /// Seed of the attributes and phrasings.
    pub seed: u64,
}

impl Default for FactsConfig {
    fn default() -> Self {
        Self {
            people: 200,
            bios_per_person: 12,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Person {
    name: String,
    birth: String,
    city: &'static str,
    university: &'static str,
    major: &'static str,
    employer: &'static str,
    work_city: &'static str,
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
}

impl Person {
    fn qa(&self) -> Vec<QaPair> {
        let n = &self.name;
        let pair = |q: String, a: &str| QaPair {
            question: q,
            answer: a.to_string(),
        };
        vec![
            pair(format!("When was {n} born?"), &self.birth),
            pair(format!("Where was {n} born?"), self.city),
            pair(format!("Which university did {n} attend?"), self.university),
            pair(format!("What did {n} study?"), self.major),
            pair(format!("Which company does {n} work for?"), self.employer),
            pair(format!("In which city does {n} work?"), self.work_city),
        ]
    }

    /// One biography: six sentences, each in a randomly drawn phrasing, in random order
    /// after the first.
    fn bio(&self, rng: &mut SplitMix64) -> String {
        let n = &self.name;
        let mut pick = |options: Vec<String>| options[rng.below(options.len())].clone();
        let birth = pick(vec![
            format!("{n} was born on {}.", self.birth),
            format!("{n} came into the world on {}.", self.birth),
            format!("The birthday of {n} is {}.", self.birth),
        ]);
        let city = pick(vec![
            format!("{n} was born in {}.", self.city),
            format!("{n} grew up in {}, the city of their birth.", self.city),
            format!("The birthplace of {n} is {}.", self.city),
        ]);
        let university = pick(vec![
            format!("{n} studied at {}.", self.university),
            format!("{n} graduated from {}.", self.university),
            format!("{n} attended {}.", self.university),
        ]);
        let major = pick(vec![
            format!("{n} majored in {}.", self.major),
            format!("At university, {n} studied {}.", self.major),
            format!("The field {n} chose was {}.", self.major),
        ]);
        let employer = pick(vec![
            format!("{n} works for {}.", self.employer),
            format!("{n} is employed by {}.", self.employer),
            format!("These days {n} has a job at {}.", self.employer),
        ]);
        let work_city = pick(vec![
            format!("{n} works in {}.", self.work_city),
            format!("The office of {n} is in {}.", self.work_city),
            format!("{n} commutes to work in {}.", self.work_city),
        ]);
        let mut rest = vec![city, university, major, employer, work_city];
        rng.shuffle(&mut rest);
        std::iter::once(birth)
            .chain(rest)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Facts {
    /// Generates the corpus; the same config gives the same corpus.
    pub fn generate(config: &FactsConfig) -> Self {
        let mut rng = SplitMix64::new(config.seed);
        let mut names: Vec<String> = FIRST
            .iter()
            .flat_map(|f| LAST.iter().map(move |l| format!("{f} {l}")))
            .collect();
        rng.shuffle(&mut names);
        let mut pick = |list: &'static [&'static str]| list[rng.below(list.len())];
        let people: Vec<Person> = names
            .into_iter()
            .take(config.people)
            .map(|name| Person {
                name,
                birth: String::new(),
                city: pick(&CITIES),
                university: pick(&UNIVERSITIES),
                major: pick(&MAJORS),
                employer: pick(&EMPLOYERS),
                work_city: pick(&CITIES),
            })
            .collect();
        let people: Vec<Person> = people
            .into_iter()
            .map(|mut p| {
                let (day, month, year) = (
                    1 + rng.below(28),
                    MONTHS[rng.below(12)],
                    1950 + rng.below(50),
                );
                p.birth = format!("{month} {day}, {year}");
                p
            })
            .collect();
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
        Self {
            training,
            heldout_qa,
            train_qa,
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
}
