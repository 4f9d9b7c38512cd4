//! Demand analytics: how many statements (and distinct residents) ask for
//! courses, grouped by town, age group, advertising channel and course.
//! This is the question the product exists to answer; it is computed in
//! PostgreSQL from the stored statements and the imported citizens.

pub mod chart;
mod svg;

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::db::{DbError, Pool};

/// Default age bins: groups `0-17`, `18-24`, `25-34`, …, `65+`.
pub const DEFAULT_AGE_BINS: [i32; 6] = [18, 25, 35, 45, 55, 65];
pub const MAX_AGE_BINS: usize = 20;
/// The oldest age an age bin may start at.
pub const MAX_AGE: i32 = 150;
const MAX_FILTER_LEN: usize = 256;

/// A grouping key, in its fixed order (the order of the `by` parameter's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DemandKey {
    Town,
    AgeGroup,
    Channel,
    Course,
}

impl DemandKey {
    pub const ALL: [DemandKey; 4] = [Self::Town, Self::AgeGroup, Self::Channel, Self::Course];

    pub fn name(self) -> &'static str {
        match self {
            Self::Town => "town",
            Self::AgeGroup => "age_group",
            Self::Channel => "channel",
            Self::Course => "course",
        }
    }

    /// The SQL expression of this key over the `facts` CTE below; never user input.
    fn column(self) -> &'static str {
        match self {
            Self::Town => "town",
            Self::AgeGroup => "age_bucket",
            Self::Channel => "channel",
            Self::Course => "course",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for DemandKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a demand request's parameters do not parse; each names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemandParamError {
    #[error("by must name at least one of town, age_group, channel, course")]
    EmptyBy,
    #[error("unknown key {0:?} in by; allowed: town, age_group, channel, course")]
    UnknownKey(String),
    #[error("key {0} is given twice in by")]
    DuplicateKey(DemandKey),
    #[error("age_bins must be 1 to {MAX_AGE_BINS} strictly increasing ages between 1 and 150, e.g. 18,25,35,45,55,65")]
    AgeBins,
    #[error("{0} must be 1 to {MAX_FILTER_LEN} characters, none of them NUL")]
    Filter(&'static str),
    #[error("a chart shows one or two keys, not {0}")]
    ChartKeys(usize),
}

impl DemandParamError {
    /// The query parameter at fault.
    pub fn parameter(&self) -> &'static str {
        match self {
            Self::EmptyBy | Self::UnknownKey(_) | Self::DuplicateKey(_) | Self::ChartKeys(_) => {
                "by"
            }
            Self::AgeBins => "age_bins",
            Self::Filter(name) => name,
        }
    }
}

/// Age bin edges: strictly increasing, positive. Group `i` holds ages in
/// `[edge[i-1], edge[i])`; below the first edge is `0-{first-1}`, from the last `{last}+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeBins(Vec<i32>);

impl AgeBins {
    pub fn parse(raw: &str) -> Result<Self, DemandParamError> {
        let edges = raw
            .split(',')
            .map(|part| part.trim().parse::<i32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| DemandParamError::AgeBins)?;
        let increasing = edges.windows(2).all(|w| w[0] < w[1]);
        let in_range = edges.iter().all(|e| (1..=MAX_AGE).contains(e));
        if edges.is_empty() || edges.len() > MAX_AGE_BINS || !increasing || !in_range {
            return Err(DemandParamError::AgeBins);
        }
        Ok(Self(edges))
    }

    pub fn edges(&self) -> &[i32] {
        &self.0
    }

    /// The bucket of `age` (full years) as PostgreSQL's `width_bucket(age,
    /// edges)` numbers it: how many edges are at or below it.
    pub fn bucket(&self, age: i32) -> i32 {
        self.0.partition_point(|edge| *edge <= age) as i32
    }

    /// How many buckets the edges make (one more than the edges).
    pub fn buckets(&self) -> usize {
        self.0.len() + 1
    }

    /// The label of bucket `i` as PostgreSQL's `width_bucket(age, edges)` numbers it.
    pub fn label(&self, bucket: i32) -> String {
        let edges = &self.0;
        let i = usize::try_from(bucket).unwrap_or(0).min(edges.len());
        match i {
            0 => format!("0-{}", edges[0] - 1),
            i if i == edges.len() => format!("{}+", edges[i - 1]),
            i => format!("{}-{}", edges[i - 1], edges[i] - 1),
        }
    }
}

impl Default for AgeBins {
    fn default() -> Self {
        Self(DEFAULT_AGE_BINS.to_vec())
    }
}

/// A filter on a stored text value (a course, a channel) as a parameter
/// named `name` gives it: absent is no filter; otherwise 1 to 256
/// characters without NUL, which no stored value holds and PostgreSQL refuses.
pub fn text_filter(
    value: Option<&str>,
    name: &'static str,
) -> Result<Option<String>, DemandParamError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.chars().count() > MAX_FILTER_LEN || v.contains('\0') => {
            Err(DemandParamError::Filter(name))
        }
        Some(v) => Ok(Some(v.to_owned())),
    }
}

/// A parsed demand request: which keys, which bins, which filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandQuery {
    keys: Vec<DemandKey>,
    age_bins: AgeBins,
    course: Option<String>,
    channel: Option<String>,
}

impl DemandQuery {
    /// Parses the request's parameters. Keys come back in their fixed order
    /// (town, age_group, channel, course) whatever order `by` lists them in.
    pub fn parse(
        by: &str,
        age_bins: Option<&str>,
        course: Option<&str>,
        channel: Option<&str>,
    ) -> Result<Self, DemandParamError> {
        let mut keys = Vec::new();
        for name in by.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let key = DemandKey::parse(name)
                .ok_or_else(|| DemandParamError::UnknownKey(name.to_owned()))?;
            if keys.contains(&key) {
                return Err(DemandParamError::DuplicateKey(key));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(DemandParamError::EmptyBy);
        }
        keys.sort_unstable();
        Ok(Self {
            keys,
            age_bins: age_bins
                .map(AgeBins::parse)
                .transpose()?
                .unwrap_or_default(),
            course: text_filter(course, "course")?,
            channel: text_filter(channel, "channel")?,
        })
    }

    pub fn keys(&self) -> &[DemandKey] {
        &self.keys
    }

    /// The same query, refused when a chart could not show its keys.
    pub fn for_chart(self) -> Result<Self, DemandParamError> {
        match self.keys.len() {
            1 | 2 => Ok(self),
            n => Err(DemandParamError::ChartKeys(n)),
        }
    }

    /// The grouping statement. Only fixed column names from [`DemandKey`] are
    /// spliced in; every value is a parameter.
    ///
    /// It reads the statement counts a job keeps per citizen, statement
    /// channel and course (migration V8), a few rows per citizen, not the
    /// statements: without course as a key only the rows for all courses
    /// (course NULL), or those of the `course` filter. Those rows are unique
    /// per citizen and channel, so they join the citizens as they are.
    /// The age group compares the birth date with the date each bin starts
    /// (someone is `e` or older today when born before today − e years + 1
    /// day), computed once, instead of an `age()` per row. The distinct
    /// residents are counted as the groups of a second aggregation rather
    /// than a sort-based `count(DISTINCT …)`. See `scripts/bench.sh demand`.
    fn sql(&self) -> String {
        let columns: Vec<&str> = self.keys.iter().map(|k| k.column()).collect();
        let columns = columns.join(", ");
        let (course_fact, course_rows) = if self.keys.contains(&DemandKey::Course) {
            (
                "s.course, ",
                "s.course IS NOT NULL AND ($3::text IS NULL OR s.course = $3)",
            )
        } else {
            (
                "",
                "(s.course IS NULL AND $3::text IS NULL OR s.course = $3)",
            )
        };
        format!(
            "WITH bin_starts AS (
                 SELECT array_length($2::int[], 1) AS bins,
                        array_agg(((now() AT TIME ZONE 'UTC')::date - make_interval(years => e))::date + 1
                                  ORDER BY e DESC) AS born_before
                   FROM unnest($2::int[]) AS e
             ), facts AS (
                 SELECT c.town,
                        b.bins - width_bucket(c.birth_date, b.born_before) AS age_bucket,
                        COALESCE(s.channel, c.channel, 'unknown') AS channel,
                        {course_fact}s.citizen_id,
                        s.statements AS n
                   FROM statement_counts s
                   JOIN citizens c ON c.import_id = $1 AND c.citizen_id = s.citizen_id
                  CROSS JOIN bin_starts b
                  WHERE s.import_id = $1
                    AND {course_rows}
             ), per_resident AS (
                 SELECT {columns}, citizen_id, sum(n) AS n
                   FROM facts
                  WHERE ($4::text IS NULL OR channel = $4)
                  GROUP BY {columns}, citizen_id
             )
             SELECT {columns}, sum(n)::bigint AS statements, count(*) AS residents
               FROM per_resident
              GROUP BY {columns}
              ORDER BY statements DESC, residents DESC, {columns}"
        )
    }
}

/// One group: its key values (in the query's key order) and its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandRow {
    pub keys: Vec<(DemandKey, String)>,
    pub statements: i64,
    pub residents: i64,
}

impl DemandRow {
    pub fn value(&self, key: DemandKey) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Serialize for DemandRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.keys.len() + 2))?;
        for (key, value) in &self.keys {
            map.serialize_entry(key.name(), value)?;
        }
        map.serialize_entry("statements", &self.statements)?;
        map.serialize_entry("residents", &self.residents)?;
        map.end()
    }
}

/// Demand of one import, largest groups first; `None` when the import does
/// not exist. `work_mem` is PostgreSQL's for a query grouped by course.
pub async fn demand(
    pool: &Pool,
    import_id: i64,
    query: &DemandQuery,
    work_mem: &str,
) -> Result<Option<Vec<DemandRow>>, DbError> {
    let mut client = pool.get().await?;
    if !crate::citizens::import_exists(&client, import_id).await? {
        return Ok(None);
    }
    // Grouping by course keeps tens of thousands of groups per citizen and
    // course: with the default 4 MB they are sorted on disk (about twice as
    // slow). The other groupings fit, and skip the round trip.
    let tx = client.transaction().await?;
    if query.keys.contains(&DemandKey::Course) {
        tx.execute("SELECT set_config('work_mem', $1, true)", &[&work_mem])
            .await?;
    }
    let rows = tx
        .query(
            &query.sql(),
            &[
                &import_id,
                &query.age_bins.edges(),
                &query.course,
                &query.channel,
            ],
        )
        .await?;
    let demand = rows
        .iter()
        .map(|row| {
            let keys = query
                .keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let value = match key {
                        DemandKey::AgeGroup => query.age_bins.label(row.try_get::<_, i32>(i)?),
                        _ => row.try_get::<_, String>(i)?,
                    };
                    Ok((*key, value))
                })
                .collect::<Result<_, tokio_postgres::Error>>()?;
            Ok(DemandRow {
                keys,
                statements: row.try_get("statements")?,
                residents: row.try_get("residents")?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(Some(demand))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_come_back_in_their_fixed_order() {
        let query = DemandQuery::parse("course,town", None, None, None).unwrap();
        assert_eq!(query.keys(), [DemandKey::Town, DemandKey::Course]);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let err = |by, bins| DemandQuery::parse(by, bins, None, None).unwrap_err();
        assert_eq!(err("", None), DemandParamError::EmptyBy);
        assert_eq!(
            err("town,planet", None),
            DemandParamError::UnknownKey("planet".into())
        );
        assert_eq!(
            err("town,town", None),
            DemandParamError::DuplicateKey(DemandKey::Town)
        );
        assert_eq!(err("town", Some("30,20")).parameter(), "age_bins");
        assert_eq!(err("town", Some("x")).parameter(), "age_bins");
        assert_eq!(err("town", Some("0,10")).parameter(), "age_bins");
        let long = "x".repeat(257);
        assert_eq!(
            DemandQuery::parse("town", None, Some(&long), None)
                .unwrap_err()
                .parameter(),
            "course"
        );
    }

    #[test]
    fn age_groups_are_labelled_like_the_default_bins() {
        let bins = AgeBins::default();
        let labels: Vec<String> = (0..=6).map(|b| bins.label(b)).collect();
        assert_eq!(
            labels,
            ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
        );
        let buckets: Vec<i32> = [0, 17, 18, 24, 25, 64, 65, 150]
            .iter()
            .map(|age| bins.bucket(*age))
            .collect();
        assert_eq!(buckets, [0, 0, 1, 1, 2, 5, 6, 6]);
        let one = AgeBins::parse("30").unwrap();
        assert_eq!(
            (one.label(0), one.label(1)),
            ("0-29".to_owned(), "30+".to_owned())
        );
    }

    #[test]
    fn charts_take_one_or_two_keys() {
        let three = DemandQuery::parse("town,channel,course", None, None, None).unwrap();
        assert_eq!(
            three.for_chart().unwrap_err(),
            DemandParamError::ChartKeys(3)
        );
    }

    proptest! {
        #[test]
        fn any_subset_of_keys_parses_in_order(mask in 1u8..16, shuffle in any::<bool>()) {
            let mut names: Vec<&str> = DemandKey::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, k)| k.name())
                .collect();
            if shuffle { names.reverse(); }
            let query = DemandQuery::parse(&names.join(","), None, None, None).unwrap();
            prop_assert_eq!(query.keys().len(), names.len());
            prop_assert!(query.keys().windows(2).all(|w| w[0] < w[1]));
            let sql = query.sql();
            prop_assert!(!sql.contains(';'));
        }

        #[test]
        fn increasing_bins_parse_and_label_every_bucket(mut edges in proptest::collection::btree_set(1i32..=150, 1..=20)) {
            let edges: Vec<i32> = std::mem::take(&mut edges).into_iter().collect();
            let raw = edges.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
            let bins = AgeBins::parse(&raw).unwrap();
            for bucket in 0..=edges.len() as i32 {
                prop_assert!(!bins.label(bucket).is_empty());
            }
        }

        #[test]
        fn arbitrary_bins_never_panic(raw in ".{0,40}") {
            let _ = AgeBins::parse(&raw);
        }
    }
}
