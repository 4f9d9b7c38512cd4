//! Mirror of the domain's wire format for the OpenAPI document only: the
//! domain parses requests itself (typed when valid, else field by field from
//! `serde_json::Value` to report every bad field) and serialises its own
//! types, so these are never built.
#![allow(dead_code)]

use utoipa::ToSchema;

/// A citizen as imported and as returned.
#[derive(ToSchema)]
pub struct Citizen {
    /// Unique within the import, 0..=2^31-1.
    #[schema(minimum = 0, maximum = 2147483647, example = 1)]
    pub citizen_id: i32,
    /// 1 to 256 characters with at least one letter or digit.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$",
        example = "Москва"
    )]
    pub town: String,
    /// 1 to 256 characters with at least one letter or digit.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$",
        example = "Льва Толстого"
    )]
    pub street: String,
    /// 1 to 256 characters with at least one letter or digit.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$",
        example = "16к7стр5"
    )]
    pub building: String,
    #[schema(minimum = 0, maximum = 2147483647, example = 7)]
    pub apartment: i32,
    /// 1 to 256 characters.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*$",
        example = "Иванов Иван Иванович"
    )]
    pub name: String,
    /// `DD.MM.YYYY`, a real date not after today (UTC).
    #[schema(
        pattern = r"^(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.[0-9]{4}$",
        example = "26.12.1986"
    )]
    pub birth_date: String,
    #[schema(inline)]
    pub gender: Gender,
    /// Citizen ids of this import, each at most once; relations are
    /// mutual (if 1 lists 2, 2 lists 1).
    pub relatives: Vec<i32>,
    /// Advertising channel, 1 to 256 characters; absent when unknown.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*$",
        example = "telegram"
    )]
    pub channel: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
}

/// `POST /imports` body: at most 10,000 citizens, no other field.
#[derive(ToSchema)]
pub struct Import {
    #[schema(max_items = 10000)]
    pub citizens: Vec<Citizen>,
}

/// `PATCH` body: any non-empty subset of the citizen's fields except
/// `citizen_id`, none of them null; relations change on both sides.
#[derive(ToSchema)]
pub struct CitizenPatch {
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$"
    )]
    pub town: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$"
    )]
    pub street: Option<String>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$"
    )]
    pub building: Option<String>,
    #[schema(nullable = false, minimum = 0, maximum = 2147483647)]
    pub apartment: Option<i32>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*$"
    )]
    pub name: Option<String>,
    /// `DD.MM.YYYY`.
    #[schema(
        nullable = false,
        pattern = r"^(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.[0-9]{4}$"
    )]
    pub birth_date: Option<String>,
    #[schema(nullable = false, inline)]
    pub gender: Option<Gender>,
    #[schema(nullable = false)]
    pub relatives: Option<Vec<i32>>,
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*$"
    )]
    pub channel: Option<String>,
}

/// `POST /imports` answer.
#[derive(ToSchema)]
pub struct ImportCreated {
    #[schema(example = 1)]
    pub import_id: i64,
}

/// One buyer and how many presents they buy in the group's period.
#[derive(ToSchema)]
pub struct Presents {
    pub citizen_id: i32,
    pub presents: i32,
}

/// Buyers per group: keys `1`..`12` (month) or channel names (`unknown`
/// for citizens without one), each with the citizens buying presents.
#[derive(ToSchema)]
pub struct Birthdays(pub std::collections::BTreeMap<String, Vec<Presents>>);

/// Age percentiles (full years, linear interpolation, 2 decimals) of one town.
#[derive(ToSchema)]
pub struct AgePercentiles {
    pub town: String,
    pub p50: f64,
    pub p75: f64,
    pub p99: f64,
}
