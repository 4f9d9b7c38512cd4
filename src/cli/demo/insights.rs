//! The end of the demo: the catalogue it sets up (so the story's course is
//! the one not offered), and the opportunities it prints once the insights
//! count every stored statement.

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use super::api::{poll, Api, Poll};
use super::say;
use crate::cli::CliError;
use crate::demo::offered;

/// Opportunities printed.
pub(super) const TOP: usize = 5;

impl Api {
    /// Offers the sample's courses but the story's (`PUT /courses/{course}`).
    pub(super) async fn offer_courses<W: Write>(&self, out: &mut W) -> Result<(), CliError> {
        let courses = offered();
        for course in &courses {
            let body = json!({ "offered": true });
            self.send(
                reqwest::Method::PUT,
                &format!("/courses/{course}"),
                Some(&body),
            )
            .await?;
        }
        say(
            out,
            &format!(
                "catalogue: {} offered (PUT {}/courses/{{course}}); any other course asked \
                 for is new",
                courses.join(", "),
                self.base
            ),
        )
    }

    /// Waits until the insights count the `stored` statements (they trail
    /// the store by about a second), then the best opportunities.
    pub(super) async fn opportunities(
        &self,
        import: i64,
        stored: i64,
        timeout: Duration,
    ) -> Result<Vec<Value>, CliError> {
        let totals = format!("/imports/{import}/insights/rates?by=course&limit=1");
        poll(timeout, Duration::from_millis(200), || async {
            let answer = self.get(&totals).await?;
            let counted = answer["totals"]["statements"].as_i64().unwrap_or(0);
            Ok(if counted >= stored {
                Poll::Ready(())
            } else {
                Poll::Wait(format!(
                    "the insights of import {import} to count {stored} statements (they count {counted})"
                ))
            })
        })
        .await?;
        let path = format!("/imports/{import}/insights/opportunities?limit={TOP}");
        let answer = self.get(&path).await?;
        Ok(answer["rows"].as_array().cloned().unwrap_or_default())
    }
}

/// The opportunities as the demo prints them: rank, score and cell, then
/// the sentence on its own line.
pub(super) fn text(rows: &[Value]) -> String {
    let field = |row: &Value, key: &str| row[key].as_str().unwrap_or("").to_owned();
    rows.iter()
        .map(|row| {
            format!(
                "{:>2}. {} · {} · {} · {}  (score {:.2})\n    {}",
                row["rank"].as_u64().unwrap_or(0),
                field(row, "course"),
                field(row, "town"),
                field(row, "age_group"),
                field(row, "channel"),
                row["score"].as_f64().unwrap_or(0.0),
                field(row, "why"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_opportunity_is_a_line_and_its_sentence() {
        let rows = vec![
            json!({"rank": 1, "course": "data-analytics", "town": "Kazan",
            "age_group": "18-24", "channel": "tiktok", "score": 4.7123, "why": "because"}),
        ];
        assert_eq!(
            text(&rows),
            " 1. data-analytics · Kazan · 18-24 · tiktok  (score 4.71)\n    because"
        );
    }
}
