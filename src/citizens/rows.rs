//! A citizen's row: its columns in one order, and the one helper that reads
//! them back by position, for every query that selects or returns them.

/// A citizen's columns in the order [`from_row!`] reads them (a macro, so
/// that queries can be `concat!`-ed constants).
macro_rules! columns {
    () => {
        "citizen_id, town, street, building, apartment, name, birth_date, gender, relatives, channel"
    };
}

/// Builds `$ty` (a struct with the citizen's field names: [`super::Citizen`]
/// or a borrowing view of it) from a row of [`columns!`], by position; `?`s
/// a `tokio_postgres::Error` out of the enclosing function when a column
/// does not read as its field's type.
macro_rules! from_row {
    ($ty:ident, $row:expr) => {{
        let row: &tokio_postgres::Row = $row;
        $ty {
            citizen_id: row.try_get(0)?,
            town: row.try_get(1)?,
            street: row.try_get(2)?,
            building: row.try_get(3)?,
            apartment: row.try_get(4)?,
            name: row.try_get(5)?,
            birth_date: row.try_get(6)?,
            gender: row.try_get(7)?,
            relatives: row.try_get(8)?,
            channel: row.try_get(9)?,
        }
    }};
}

pub(super) use {columns, from_row};
