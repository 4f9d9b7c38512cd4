//! The airports upload parser over arbitrary bytes: it must never panic, and
//! every row it yields must be storable (no NUL: PostgreSQL text cannot hold one).
#![no_main]

use insikt::airports::csv::Parser;
use insikt::airports::Storable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut parser) = Parser::new(data) else {
        return;
    };
    while let Some(row) = parser.next_row() {
        assert_eq!(row.airport.unstorable(), None, "line {}", row.line);
    }
    let failed = parser.failed();
    match parser.finish() {
        Ok(()) => assert!(!failed, "finish accepted a file the parser had failed"),
        Err(rejected) => {
            assert!(rejected.total >= rejected.errors.len());
            assert!(!rejected.errors.is_empty(), "refused without a reason");
        }
    }
});
