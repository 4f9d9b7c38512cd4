//! The words the sample is made of. Every town has an airport in
//! `data/airports.csv` (a unit test checks), so the sample's demand can be
//! read per airport (`GET /imports/{id}/towns/airports`).

/// Towns with their relative population and the course their residents ask
/// for more than others (the skew demand should reveal).
pub(super) const TOWNS: &[(&str, u32, &str)] = &[
    ("London", 18, "data-science"),
    ("Moscow", 17, "python"),
    ("Paris", 12, "design"),
    ("Berlin", 10, "rust"),
    ("Madrid", 9, "english"),
    ("Barcelona", 7, "design"),
    ("Kazan", 6, "accounting"),
    ("Novosibirsk", 6, "rust"),
    ("Helsinki", 5, "data-science"),
    ("Sochi", 4, "english"),
];

/// The sample's towns whose name is ambiguous in `data/airports.csv`
/// (one airport in each of two countries), with the country the sample
/// means: `insikt demo` fixes them through `PUT /towns/{name}`.
pub const PLACE_FIXES: &[(&str, &str)] = &[("Barcelona", "Spain")];

/// Age groups of the default demand bins (`18,25,35,45,55,65`): the ages a
/// resident of the group may have, how many residents fall in it, and how
/// many statements one of them makes relative to the others.
pub(super) const AGES: &[(u32, u32, u32, u32)] = &[
    (14, 17, 6, 2),
    (18, 24, 16, 5),
    (25, 34, 22, 5),
    (35, 44, 19, 4),
    (45, 54, 15, 3),
    (55, 64, 12, 2),
    (65, 84, 10, 1),
];

/// Courses with a base weight and, per age group (index into `AGES`), a
/// multiplier: the young ask for programming and design, the middle-aged for
/// accounting, the old for languages.
pub(super) const COURSES: &[(&str, u32, [u32; 7])] = &[
    ("python", 6, [4, 4, 3, 2, 1, 1, 1]),
    ("rust", 3, [3, 4, 3, 2, 1, 1, 1]),
    ("data-science", 4, [1, 3, 4, 3, 2, 1, 1]),
    ("design", 4, [4, 3, 2, 2, 1, 1, 1]),
    ("english", 5, [2, 2, 2, 2, 3, 4, 5]),
    ("accounting", 3, [1, 1, 2, 4, 4, 3, 1]),
    ("gardening", 1, [1, 1, 1, 2, 3, 5, 8]),
    // Not offered: asked for now and then everywhere (the noise around
    // the story, `story.rs`).
    ("data-analytics", 1, [1, 1, 1, 1, 1, 1, 1]),
];

/// Advertising channels that brought residents, with a weight per age group
/// (index into `AGES`): the young are on short videos, the old listen to
/// the radio.
pub(super) const CHANNELS: &[(&str, [u32; 7])] = &[
    ("tiktok", [10, 8, 4, 2, 1, 0, 0]),
    ("instagram", [6, 8, 7, 4, 2, 1, 0]),
    ("telegram", [2, 4, 5, 4, 3, 2, 1]),
    ("search", [2, 4, 5, 5, 4, 3, 2]),
    ("billboard", [1, 1, 2, 3, 3, 3, 3]),
    ("radio", [0, 1, 1, 2, 4, 6, 8]),
];

/// Channels a statement names itself (a landing page, a mailing), which win
/// over its resident's channel in demand.
pub(super) const STATEMENT_CHANNELS: &[&str] = &["email", "website"];

pub(super) const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Park Avenue",
    "Lenina",
    "Calle Mayor",
    "Rue de la Paix",
    "Hauptstrasse",
    "Mannerheimintie",
    "Kurortny Prospekt",
    "Bauman Street",
];

pub(super) const FEMALE_NAMES: &[&str] = &[
    "Anna", "Maria", "Elena", "Sofia", "Laura", "Emma", "Olga", "Aino", "Lucia", "Chloe",
];
pub(super) const MALE_NAMES: &[&str] = &[
    "Ivan", "Pablo", "Lukas", "Oliver", "Louis", "Mikko", "Dmitry", "Jordi", "Felix", "Harry",
];
pub(super) const SURNAMES: &[&str] = &[
    "Smith", "Ivanova", "Garcia", "Muller", "Martin", "Virtanen", "Petrov", "Puig", "Khan", "Brown",
];

/// What residents write when they ask for a course (`{}` is the course).
pub(super) const TEXTS: &[&str] = &[
    "I would take {} in the evenings",
    "Is there a {} course near me?",
    "{} on weekends, please",
    "My employer would pay for {}",
    "Interested in {} online",
];
