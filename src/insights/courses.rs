//! The course catalogue (migration V12): which courses the company offers.
//! A course asked for that is not offered is a *new course*.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::Origin;
use crate::db::{DbError, Pool};

/// Longest course name (as a statement's course) and title.
pub const MAX_COURSE: usize = 256;
pub const MAX_TITLE: usize = 1000;

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Course {
    /// The course as statements name it.
    pub course: String,
    /// A human title, if given.
    pub title: Option<String>,
    /// Whether the company offers it; a course asked for and not offered is new.
    pub offered: bool,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// The body of `PUT /courses/{course}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoursePut {
    /// At most 1,000 characters, no NUL; `null` or absent for none.
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\u0000]*$")]
    pub title: Option<String>,
    pub offered: bool,
}

/// Why a catalogue change was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CourseError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for CourseError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for CourseError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// A course name as statements may carry it: not blank, at most 256
/// bytes of UTF-8, no NUL.
pub fn check_name(course: &str) -> Result<(), Invalid> {
    let bad = |reason: &str| Invalid {
        field: "course",
        reason: reason.to_owned(),
    };
    if course.trim().is_empty() {
        return Err(bad("must not be blank"));
    }
    if course.len() > MAX_COURSE {
        return Err(bad("must be at most 256 bytes"));
    }
    if course.contains('\0') {
        return Err(bad("must not contain NUL"));
    }
    Ok(())
}

fn check(put: &CoursePut) -> Result<(), Invalid> {
    if let Some(title) = &put.title {
        if title.chars().count() > MAX_TITLE || title.contains('\0') {
            return Err(Invalid {
                field: "title",
                reason: "must be at most 1000 characters, none of them NUL".into(),
            });
        }
    }
    Ok(())
}

fn course(row: &tokio_postgres::Row) -> Result<Course, tokio_postgres::Error> {
    Ok(Course {
        course: row.try_get("course")?,
        title: row.try_get("title")?,
        offered: row.try_get("offered")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The catalogue, by course name.
pub async fn list(pool: &Pool) -> Result<Vec<Course>, CourseError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT course, title, offered, updated_at FROM courses ORDER BY course",
            &[],
        )
        .await?;
    Ok(rows.iter().map(course).collect::<Result<_, _>>()?)
}

/// Adds or replaces a course; whether it was new. Audited with the change.
pub async fn put(
    pool: &Pool,
    name: &str,
    put: &CoursePut,
    origin: &Origin,
) -> Result<(Course, bool), CourseError> {
    check_name(name)?;
    check(put)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO courses AS c (course, title, offered) VALUES ($1, $2, $3) \
             ON CONFLICT (course) DO UPDATE \
                SET title = EXCLUDED.title, offered = EXCLUDED.offered, updated_at = now() \
             RETURNING course, title, offered, updated_at, (xmax = 0) AS created",
            &[&name, &put.title, &put.offered],
        )
        .await?;
    let created: bool = row.try_get("created")?;
    // A course name is catalogue data, not a person's: it may be recorded.
    origin
        .entry(if created { "created" } else { "updated" })
        .detail(serde_json::json!({ "course": name, "offered": put.offered }))
        .record(&tx)
        .await?;
    tx.commit().await?;
    Ok((course(&row)?, created))
}

/// Removes a course; false when there was none (nothing is audited then).
pub async fn delete(pool: &Pool, name: &str, origin: &Origin) -> Result<bool, CourseError> {
    check_name(name)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = tx
        .execute("DELETE FROM courses WHERE course = $1", &[&name])
        .await?
        == 1;
    if deleted {
        origin
            .entry("deleted")
            .detail(serde_json::json!({ "course": name }))
            .record(&tx)
            .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_statements_rules() {
        assert!(check_name("rust").is_ok());
        assert!(check_name(" ").is_err());
        assert!(check_name("a\0b").is_err());
        assert!(check_name(&"x".repeat(257)).is_err());
        assert!(check_name(&"ü".repeat(128)).is_ok());
        let long = CoursePut {
            title: Some("t".repeat(1001)),
            offered: true,
        };
        assert_eq!(check(&long).unwrap_err().field, "title");
    }
}
