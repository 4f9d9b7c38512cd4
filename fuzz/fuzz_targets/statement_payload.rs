//! A statement payload as read from a topic, over arbitrary bytes: no panic,
//! and the fast path gives exactly what parsing to a JSON value first gives.
#![no_main]

use insikt::statements::Statement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let direct = Statement::from_payload(data);
    let via_value = serde_json::from_slice(data)
        .map_err(|_| ())
        .and_then(|value| Statement::from_value(&value, None).map_err(|_| ()));
    match (&direct, &via_value) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the two paths disagree"),
        (Err(_), Err(_)) => {}
        _ => panic!("one path accepted, the other refused: {direct:?} vs {via_value:?}"),
    }
    if let Ok(statement) = direct {
        for text in [&statement.statement_id, &statement.course] {
            assert!(!text.contains('\0'), "a NUL passed the parser");
        }
    }
});
