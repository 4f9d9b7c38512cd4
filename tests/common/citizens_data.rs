//! A deterministic citizens import of any size, with realistic strings:
//! shared by the 10,000-citizen round-trip test and the citizens benchmark
//! (`examples/citizens_bench.rs`), so both measure the same kind of data.

use std::collections::HashSet;

use serde_json::{json, Value};

/// SplitMix64: tiny, fast and good enough for test data, and no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const TOWNS: &[&str] = &[
    "Москва",
    "Санкт-Петербург",
    "Новосибирск",
    "Екатеринбург",
    "Казань",
    "Нижний Новгород",
    "Челябинск",
    "Самара",
    "Омск",
    "Ростов-на-Дону",
    "Уфа",
    "Красноярск",
    "Воронеж",
    "Пермь",
    "Волгоград",
    "Краснодар",
    "Саратов",
    "Тюмень",
    "Тольятти",
    "Ижевск",
    "Керчь",
    "Барнаул",
    "Ульяновск",
    "Иркутск",
    "Хабаровск",
];
const STREETS: &[&str] = &[
    "Льва Толстого",
    "Иосифа Бродского",
    "Ленина",
    "Садовая",
    "Проспект Мира",
    "Большая Никитская",
    "Набережная реки Мойки",
    "Малая Бронная",
    "Первомайская",
    "Октябрьская",
    "Улица Академика Королёва",
    "Тверская",
];
const SURNAMES: &[&str] = &[
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
];
const MALE: &[&str] = &["Иван", "Сергей", "Алексей", "Дмитрий", "Андрей", "Михаил"];
const FEMALE: &[&str] = &["Мария", "Анна", "Елена", "Ольга", "Татьяна", "Наталья"];
const PATRONYMICS: &[&str] = &["Иванов", "Сергеев", "Алексеев", "Дмитриев", "Андреев"];
const CHANNELS: &[&str] = &["instagram", "vk", "telegram", "tv", "radio", "friends"];

/// `{"citizens":[…]}` with `n` citizens (ids shuffled), `pairs` distinct
/// relation pairs (a few of them self-relatives) and a channel on a third
/// of the citizens.
pub fn import(seed: u64, n: u32, pairs: usize) -> Value {
    let mut rng = Rng(seed);
    let mut ids: Vec<u32> = (0..n).collect();
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut relatives: Vec<Vec<u32>> = vec![Vec::new(); n as usize];
    let mut seen = HashSet::new();
    while seen.len() < pairs {
        let a = rng.below(n.into()) as u32;
        // One pair in fifty is a self-relative.
        let b = if rng.below(50) == 0 {
            a
        } else {
            rng.below(n.into()) as u32
        };
        if seen.insert((a.min(b), a.max(b))) {
            relatives[a as usize].push(b);
            if a != b {
                relatives[b as usize].push(a);
            }
        }
    }
    let citizens: Vec<Value> = ids
        .iter()
        .map(|&id| {
            let male = rng.below(2) == 0;
            let (first, ending, patronymic_ending) = if male {
                (*rng.pick(MALE), "", "ич")
            } else {
                (*rng.pick(FEMALE), "а", "на")
            };
            let name = format!(
                "{}{ending} {first} {}{patronymic_ending}",
                rng.pick(SURNAMES),
                rng.pick(PATRONYMICS)
            );
            let building = match rng.below(3) {
                0 => format!("{}", 1 + rng.below(200)),
                1 => format!("{}к{}", 1 + rng.below(200), 1 + rng.below(9)),
                _ => format!(
                    "{}к{}стр{}",
                    1 + rng.below(200),
                    1 + rng.below(9),
                    1 + rng.below(9)
                ),
            };
            let mut citizen = json!({
                "citizen_id": id,
                "town": rng.pick(TOWNS),
                "street": rng.pick(STREETS),
                "building": building,
                "apartment": 1 + rng.below(500),
                "name": name,
                "birth_date": format!(
                    "{:02}.{:02}.{}",
                    1 + rng.below(28),
                    1 + rng.below(12),
                    1940 + rng.below(80)
                ),
                "gender": if male { "male" } else { "female" },
                "relatives": relatives[id as usize],
            });
            if rng.below(3) == 0 {
                citizen["channel"] = json!(rng.pick(CHANNELS));
            }
            citizen
        })
        .collect();
    json!({ "citizens": citizens })
}
