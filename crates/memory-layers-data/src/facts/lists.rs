//! The names, values and phrasings the generated biographies draw from.

pub(super) const FIRST: [&str; 40] = [
    "Alma", "Bruno", "Celia", "Dario", "Edith", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Karla",
    "Leon", "Mira", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tilda", "Ugo", "Vera",
    "Wim", "Xenia", "Yusuf", "Zora", "Anton", "Berta", "Casper", "Dora", "Emil", "Frida", "Gustav",
    "Hanna", "Ivo", "Jana", "Kurt", "Lina", "Milo", "Nora",
];
pub(super) const LAST: [&str; 40] = [
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
pub(super) const CITIES: [&str; 30] = [
    "Lisbon", "Oslo", "Krakow", "Porto", "Lyon", "Graz", "Turin", "Ghent", "Malmo", "Tartu",
    "Bergen", "Seville", "Bremen", "Zagreb", "Cork", "Basel", "Leipzig", "Utrecht", "Bilbao",
    "Brno", "Aarhus", "Tampere", "Nantes", "Split", "Galway", "Uppsala", "Pisa", "Salzburg",
    "Riga", "Vilnius",
];
pub(super) const UNIVERSITIES: [&str; 16] = [
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
pub(super) const MAJORS: [&str; 16] = [
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
pub(super) const EMPLOYERS: [&str; 20] = [
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
pub(super) const MONTHS: [&str; 12] = [
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

/// One attribute of a person: its question and its phrasings in biographies. In both, `{n}`
/// stands for the name; in a phrasing `{v}` stands for the value, and the text before it is
/// the recall prompt.
pub(super) struct Attribute {
    pub(super) question: &'static str,
    pub(super) phrasings: [&'static str; 3],
}

/// The six attributes, in the order of a person's values.
pub(super) const ATTRIBUTES: [Attribute; 6] = [
    Attribute {
        question: "When was {n} born?",
        phrasings: [
            "{n} was born on {v}.",
            "{n} came into the world on {v}.",
            "The birthday of {n} is {v}.",
        ],
    },
    Attribute {
        question: "Where was {n} born?",
        phrasings: [
            "{n} was born in {v}.",
            "{n} grew up in {v}, the city of their birth.",
            "The birthplace of {n} is {v}.",
        ],
    },
    Attribute {
        question: "Which university did {n} attend?",
        phrasings: [
            "{n} studied at {v}.",
            "{n} graduated from {v}.",
            "{n} attended {v}.",
        ],
    },
    Attribute {
        question: "What did {n} study?",
        phrasings: [
            "{n} majored in {v}.",
            "At university, {n} studied {v}.",
            "The field {n} chose was {v}.",
        ],
    },
    Attribute {
        question: "Which company does {n} work for?",
        phrasings: [
            "{n} works for {v}.",
            "{n} is employed by {v}.",
            "These days {n} has a job at {v}.",
        ],
    },
    Attribute {
        question: "In which city does {n} work?",
        phrasings: [
            "{n} works in {v}.",
            "The office of {n} is in {v}.",
            "{n} commutes to work in {v}.",
        ],
    },
];
