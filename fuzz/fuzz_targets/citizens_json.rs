//! The citizens import body over arbitrary bytes. Two parsers read it: the
//! fast typed one and the thorough one that names every problem. Neither may
//! panic, and whenever the fast one accepts a body the thorough one must
//! accept it too, with the same citizens (the handler trusts that).
#![no_main]

use chrono::NaiveDate;
use insikt::citizens::{check_import, fast, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let today = NaiveDate::from_ymd_opt(2026, 12, 2).expect("a valid date");
    let quick = fast::import(data, today);
    let thorough = serde_json::from_slice(data)
        .ok()
        .map(|value| parse::import(&value, today));
    if let Some(citizens) = &quick {
        match &thorough {
            Some(Ok(same)) => assert_eq!(citizens, same, "the two parsers disagree"),
            other => panic!("fast accepted what the thorough parser refused: {other:?}"),
        }
    }
    if let Some(Ok(citizens)) = thorough {
        let _ = check_import(&citizens);
    }
});
