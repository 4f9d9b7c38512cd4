//! Citizens imports, black-box against the real app and PostgreSQL: the 2019
//! backend-school citizens API (its own examples included), insikt's
//! `channel`, and every validation rule.
// A test or a benchmark may panic on a row it reads: that is how it fails.
#![allow(clippy::disallowed_methods)]

#[path = "common/citizens_data.rs"]
mod citizens_data;
mod common;

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, Days, Months, NaiveDate, Utc};
use common::{error_code, json, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// The import from the original spec's example.
fn spec_example() -> Value {
    json!({"citizens": [
        {"citizen_id": 1, "town": "Москва", "street": "Льва Толстого", "building": "16к7стр5",
         "apartment": 7, "name": "Иванов Иван Иванович", "birth_date": "26.12.1986",
         "gender": "male", "relatives": [2]},
        {"citizen_id": 2, "town": "Москва", "street": "Льва Толстого", "building": "16к7стр5",
         "apartment": 7, "name": "Иванов Сергей Иванович", "birth_date": "01.04.1997",
         "gender": "male", "relatives": [1]},
        {"citizen_id": 3, "town": "Керчь", "street": "Иосифа Бродского", "building": "2",
         "apartment": 11, "name": "Романова Мария Леонидовна", "birth_date": "23.11.1986",
         "gender": "female", "relatives": []}
    ]})
}

fn citizen(id: u32, relatives: &[u32]) -> Value {
    json!({
        "citizen_id": id, "town": "Керчь", "street": "Иосифа Бродского", "building": "2",
        "apartment": 11, "name": "Романова Мария Леонидовна", "birth_date": "23.11.1986",
        "gender": "female", "relatives": relatives,
    })
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn ddmmyyyy(date: NaiveDate) -> String {
    format!("{:02}.{:02}.{:04}", date.day(), date.month(), date.year())
}

async fn post_import(app: &TestApp, body: &Value) -> i64 {
    let (status, reply) = json(app.send_json(Method::POST, "/imports", body).await).await;
    assert_eq!(status, 201, "{reply}");
    let data = reply["data"].as_object().expect("data object");
    assert_eq!(data.len(), 1, "{reply}");
    data["import_id"].as_i64().expect("numeric import_id")
}

async fn get_citizens(app: &TestApp, import_id: i64) -> Vec<Value> {
    let (status, body) = json(app.get(&format!("/imports/{import_id}/citizens")).await).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("data array").clone()
}

async fn patch(app: &TestApp, import_id: i64, citizen_id: u32, body: &Value) -> (u16, Value) {
    let path = format!("/imports/{import_id}/citizens/{citizen_id}");
    json(app.send_json(Method::PATCH, &path, body).await).await
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.db()
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

fn by_id(citizens: &[Value]) -> HashMap<u64, Value> {
    citizens
        .iter()
        .map(|c| (c["citizen_id"].as_u64().unwrap(), c.clone()))
        .collect()
}

fn assert_symmetric(citizens: &[Value]) {
    let ids = by_id(citizens);
    for (id, c) in &ids {
        for relative in c["relatives"].as_array().unwrap() {
            let relative = relative.as_u64().unwrap();
            let back = ids[&relative]["relatives"].as_array().unwrap();
            assert!(
                back.iter().any(|r| r.as_u64() == Some(*id)),
                "{id} lists {relative} but not the other way round"
            );
        }
    }
}

#[tokio::test]
async fn the_spec_example_round_trips_and_patches_as_documented() {
    let app = TestApp::spawn().await;
    let import_id = post_import(&app, &spec_example()).await;
    assert!(import_id > 0);
    assert_eq!(
        get_citizens(&app, import_id).await,
        spec_example()["citizens"].as_array().unwrap().clone()
    );

    // The spec's PATCH example, and its answer.
    let (status, body) = patch(
        &app,
        import_id,
        3,
        &json!({"name": "Иванова Мария Леонидовна", "town": "Москва",
                "street": "Льва Толстого", "building": "16к7стр5", "apartment": 7,
                "relatives": [1]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"data": {"citizen_id": 3, "town": "Москва", "street": "Льва Толстого",
            "building": "16к7стр5", "apartment": 7, "name": "Иванова Мария Леонидовна",
            "birth_date": "23.11.1986", "gender": "female", "relatives": [1]}})
    );
    let citizens = by_id(&get_citizens(&app, import_id).await);
    assert_eq!(citizens[&1]["relatives"], json!([2, 3]));
    assert_eq!(citizens[&2]["relatives"], json!([1]));

    // Birthdays: 1 buys for 2 (April) and 3 (November); 2 and 3 buy for 1 (December).
    let (status, body) = json(
        app.get(&format!("/imports/{import_id}/citizens/birthdays"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut expected = serde_json::Map::new();
    for month in 1..=12 {
        expected.insert(month.to_string(), json!([]));
    }
    expected.insert("4".into(), json!([{"citizen_id": 1, "presents": 1}]));
    expected.insert("11".into(), json!([{"citizen_id": 1, "presents": 1}]));
    expected.insert(
        "12".into(),
        json!([{"citizen_id": 2, "presents": 1}, {"citizen_id": 3, "presents": 1}]),
    );
    assert_eq!(body, json!({ "data": expected }));

    // Removing the relation removes it on both sides.
    let (status, body) = patch(&app, import_id, 3, &json!({"relatives": []})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["relatives"], json!([]));
    let citizens = by_id(&get_citizens(&app, import_id).await);
    assert_eq!(citizens[&1]["relatives"], json!([2]));
    assert_eq!(citizens[&3]["name"], "Иванова Мария Леонидовна");
}

#[tokio::test]
async fn imports_get_their_own_ids_and_stay_apart() {
    let app = TestApp::spawn().await;
    let first = post_import(&app, &spec_example()).await;
    let second = post_import(&app, &json!({"citizens": [citizen(1, &[])]})).await;
    assert_ne!(first, second);
    assert_eq!(get_citizens(&app, first).await.len(), 3);
    assert_eq!(get_citizens(&app, second).await.len(), 1);
    let (status, _) = patch(&app, second, 2, &json!({"name": "x"})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_empty_import_is_accepted() {
    let app = TestApp::spawn().await;
    let import_id = post_import(&app, &json!({"citizens": []})).await;
    assert!(get_citizens(&app, import_id).await.is_empty());
    let (_, body) = json(
        app.get(&format!("/imports/{import_id}/citizens/birthdays"))
            .await,
    )
    .await;
    let months = body["data"].as_object().unwrap();
    assert_eq!(months.len(), 12);
    assert!(months.values().all(|m| m == &json!([])));
    let (status, body) = json(
        app.get(&format!("/imports/{import_id}/towns/stat/percentile/age"))
            .await,
    )
    .await;
    assert_eq!((status, body), (200, json!({"data": []})));
}

/// Posts an invalid body and checks the 400 names `path` and writes nothing.
async fn assert_refused(app: &TestApp, body: &Value, path: &str) {
    let (status, reply) = json(app.send_json(Method::POST, "/imports", body).await).await;
    assert_eq!(status, 400, "{path}: {reply}");
    assert_eq!(error_code(&reply), "validation_failed", "{reply}");
    let fields = reply["error"]["fields"].as_object().expect("fields");
    assert!(fields.contains_key(path), "expected {path} in {reply}");
    assert_eq!(
        count(app, "imports").await,
        0,
        "{path}: an import was written"
    );
    assert_eq!(count(app, "citizens").await, 0);
}

/// `citizens[0]` with `field` replaced (or removed, for `None`).
fn with(field: &str, value: Option<Value>) -> Value {
    let mut c = citizen(1, &[]);
    match value {
        Some(value) => c[field] = value,
        None => {
            c.as_object_mut().unwrap().remove(field);
        }
    }
    json!({ "citizens": [c] })
}

#[tokio::test]
async fn every_field_is_required_non_null_and_typed() {
    let app = TestApp::spawn().await;
    for field in [
        "citizen_id",
        "town",
        "street",
        "building",
        "apartment",
        "name",
        "birth_date",
        "gender",
        "relatives",
    ] {
        let path = format!("citizens[0].{field}");
        assert_refused(&app, &with(field, None), &path).await;
        assert_refused(&app, &with(field, Some(Value::Null)), &path).await;
        assert_refused(&app, &with(field, Some(json!({}))), &path).await;
        assert_refused(&app, &with(field, Some(json!(true))), &path).await;
    }
    assert_refused(
        &app,
        &with("channel", Some(Value::Null)),
        "citizens[0].channel",
    )
    .await;
    assert_refused(
        &app,
        &with("channel", Some(json!(5))),
        "citizens[0].channel",
    )
    .await;
    assert_refused(
        &app,
        &with("channel", Some(json!(""))),
        "citizens[0].channel",
    )
    .await;
    assert_refused(
        &app,
        &with("nickname", Some(json!("x"))),
        "citizens[0].nickname",
    )
    .await;
}

#[tokio::test]
async fn integers_are_non_negative_and_32_bit() {
    let app = TestApp::spawn().await;
    for field in ["citizen_id", "apartment"] {
        let path = format!("citizens[0].{field}");
        for bad in [
            json!(-1),
            json!(2_147_483_648u64),
            json!(1.5),
            json!(1.0),
            json!("1"),
        ] {
            assert_refused(&app, &with(field, Some(bad)), &path).await;
        }
    }
    for bad in [
        json!([-1]),
        json!([2_147_483_648u64]),
        json!(["1"]),
        json!([null]),
    ] {
        assert_refused(
            &app,
            &with("relatives", Some(bad)),
            "citizens[0].relatives[0]",
        )
        .await;
    }
    // The largest values are fine.
    let mut c = citizen(2_147_483_647, &[2_147_483_647]);
    c["apartment"] = json!(2_147_483_647);
    let import_id = post_import(&app, &json!({"citizens": [c.clone()]})).await;
    assert_eq!(get_citizens(&app, import_id).await, vec![c]);
}

#[tokio::test]
async fn strings_are_non_empty_bounded_and_places_need_a_letter_or_digit() {
    let app = TestApp::spawn().await;
    for field in ["town", "street", "building", "name"] {
        let path = format!("citizens[0].{field}");
        assert_refused(&app, &with(field, Some(json!(""))), &path).await;
        assert_refused(&app, &with(field, Some(json!("я".repeat(257)))), &path).await;
        assert_refused(&app, &with(field, Some(json!("a\u{0}b"))), &path).await;
    }
    for field in ["town", "street", "building"] {
        let path = format!("citizens[0].{field}");
        assert_refused(&app, &with(field, Some(json!("-- / .,"))), &path).await;
    }
    // A name needs no letter; 256 characters are fine everywhere.
    let mut c = citizen(1, &[]);
    c["name"] = json!("-");
    c["town"] = json!("я".repeat(256));
    c["channel"] = json!("ю".repeat(256));
    let import_id = post_import(&app, &json!({"citizens": [c.clone()]})).await;
    assert_eq!(get_citizens(&app, import_id).await, vec![c]);
}

#[tokio::test]
async fn birth_dates_are_real_zero_padded_and_not_in_the_future() {
    let app = TestApp::spawn().await;
    let tomorrow = today().checked_add_days(Days::new(1)).unwrap();
    for bad in [
        "1.02.2000",
        "01.2.2000",
        "01.02.00",
        "2000-02-01",
        "30.02.2000",
        "29.02.2001",
        "31.04.2000",
        "00.01.2000",
        "01.13.2000",
        " 01.02.2000",
        "01.01.0000",
        &ddmmyyyy(tomorrow),
    ] {
        assert_refused(
            &app,
            &with("birth_date", Some(json!(bad))),
            "citizens[0].birth_date",
        )
        .await;
    }
    let mut c = citizen(1, &[]);
    c["birth_date"] = json!(ddmmyyyy(today()));
    let mut leap = citizen(2, &[]);
    leap["birth_date"] = json!("29.02.2000");
    let import_id = post_import(&app, &json!({"citizens": [c, leap]})).await;
    assert_eq!(get_citizens(&app, import_id).await.len(), 2);
}

#[tokio::test]
async fn gender_is_male_or_female_exactly() {
    let app = TestApp::spawn().await;
    for bad in ["Male", "FEMALE", "m", "", "other"] {
        assert_refused(
            &app,
            &with("gender", Some(json!(bad))),
            "citizens[0].gender",
        )
        .await;
    }
}

#[tokio::test]
async fn the_body_must_be_an_object_with_a_citizens_array() {
    let app = TestApp::spawn().await;
    assert_refused(&app, &json!([citizen(1, &[])]), "body").await;
    assert_refused(&app, &json!("citizens"), "body").await;
    assert_refused(&app, &json!({}), "citizens").await;
    assert_refused(&app, &json!({"citizens": null}), "citizens").await;
    assert_refused(
        &app,
        &json!({"citizens": {"0": citizen(1, &[])}}),
        "citizens",
    )
    .await;
    assert_refused(&app, &json!({"citizens": [], "extra": 1}), "extra").await;
    assert_refused(&app, &json!({"citizens": [5]}), "citizens[0]").await;

    let response = app
        .request(Method::POST, "/imports")
        .header("content-type", "application/json")
        .body("{\"citizens\": [")
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "bad_request");
    assert_eq!(count(&app, "imports").await, 0);
}

#[tokio::test]
async fn at_most_ten_thousand_citizens() {
    let app = TestApp::spawn().await;
    let citizens: Vec<Value> = (0..10_001).map(|id| citizen(id, &[])).collect();
    assert_refused(&app, &json!({ "citizens": citizens }), "citizens").await;
}

#[tokio::test]
async fn citizen_ids_are_unique_and_relatives_known_unique_and_mutual() {
    let app = TestApp::spawn().await;
    let body = json!({"citizens": [citizen(1, &[]), citizen(2, &[]), citizen(1, &[])]});
    assert_refused(&app, &body, "citizens[2].citizen_id").await;
    let body = json!({"citizens": [citizen(1, &[2, 2]), citizen(2, &[1])]});
    assert_refused(&app, &body, "citizens[0].relatives[1]").await;
    let body = json!({"citizens": [citizen(1, &[7])]});
    assert_refused(&app, &body, "citizens[0].relatives[0]").await;
    let body = json!({"citizens": [citizen(1, &[2]), citizen(2, &[])]});
    assert_refused(&app, &body, "citizens[0].relatives[0]").await;

    // The error names the citizen, not only the position.
    let (_, reply) = json(app.send_json(Method::POST, "/imports", &body).await).await;
    let reason = reply["error"]["fields"]["citizens[0].relatives[0]"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("citizen 1") && reason.contains('2'),
        "{reason}"
    );
}

#[tokio::test]
async fn a_self_relative_is_kept_and_counted_once() {
    let app = TestApp::spawn().await;
    let mut me = citizen(1, &[1, 2]);
    me["birth_date"] = json!("15.03.1990");
    let mut other = citizen(2, &[1]);
    other["birth_date"] = json!("20.03.1991");
    let import_id = post_import(&app, &json!({"citizens": [me.clone(), other]})).await;
    assert_eq!(get_citizens(&app, import_id).await[0], me);

    let (_, body) = json(
        app.get(&format!("/imports/{import_id}/citizens/birthdays"))
            .await,
    )
    .await;
    // 1 buys for themself and for 2, both in March; 2 buys for 1.
    assert_eq!(
        body["data"]["3"],
        json!([{"citizen_id": 1, "presents": 2}, {"citizen_id": 2, "presents": 1}])
    );

    // Dropping oneself touches nobody else; adding oneself back works too.
    let (status, body) = patch(&app, import_id, 1, &json!({"relatives": [2]})).await;
    assert_eq!((status, &body["data"]["relatives"]), (200, &json!([2])));
    let (status, body) = patch(&app, import_id, 2, &json!({"relatives": [1, 2]})).await;
    assert_eq!((status, &body["data"]["relatives"]), (200, &json!([1, 2])));
    let citizens = get_citizens(&app, import_id).await;
    assert_eq!(citizens[0]["relatives"], json!([2]));
    assert_symmetric(&citizens);
}

#[tokio::test]
async fn percentiles_match_numpy_linear_interpolation() {
    let app = TestApp::spawn().await;
    let today = today();
    // Born on 1 January `age` years ago: exactly `age` full years old today.
    let born = |age: i32| NaiveDate::from_ymd_opt(today.year() - age, 1, 1).unwrap();
    let mut citizens = Vec::new();
    let mut add = |town: &str, birth: NaiveDate| {
        let mut c = citizen(citizens.len() as u32, &[]);
        c["town"] = json!(town);
        c["birth_date"] = json!(ddmmyyyy(birth));
        citizens.push(c);
    };
    for age in [50, 10, 40, 20, 30] {
        add("Москва", born(age));
    }
    for age in [1, 4, 2] {
        add("Керчь", born(age));
    }
    add("Уфа", born(35));
    // Full years: 30 today, still 29 if the 30th birthday is tomorrow.
    let thirty = today.checked_sub_months(Months::new(12 * 30)).unwrap();
    add("Тверь", thirty);
    add("Тверь", thirty.checked_add_days(Days::new(1)).unwrap());
    add("Тверь", today); // 0 years old

    let import_id = post_import(&app, &json!({ "citizens": citizens })).await;
    let (status, body) = json(
        app.get(&format!("/imports/{import_id}/towns/stat/percentile/age"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // numpy.percentile(ages, [50, 75, 99]) by hand: rank = q * (n - 1),
    // interpolated between the neighbouring sorted ages.
    let expected = json!([
        // [1, 2, 4]: ranks 1, 1.5, 1.98 -> 2, 3, 2 + 0.98 * 2
        {"town": "Керчь", "p50": 2.0, "p75": 3.0, "p99": 3.96},
        // [10, 20, 30, 40, 50]: ranks 2, 3, 3.96 -> 30, 40, 40 + 0.96 * 10
        {"town": "Москва", "p50": 30.0, "p75": 40.0, "p99": 49.6},
        // [0, 29, 30]: ranks 1, 1.5, 1.98 -> 29, 29.5, 29.98
        {"town": "Тверь", "p50": 29.0, "p75": 29.5, "p99": 29.98},
        {"town": "Уфа", "p50": 35.0, "p75": 35.0, "p99": 35.0},
    ]);
    let mut towns = body["data"].as_array().unwrap().clone();
    towns.sort_by(|a, b| a["town"].as_str().cmp(&b["town"].as_str()));
    assert_eq!(Value::Array(towns), expected);
}

#[tokio::test]
async fn percentiles_round_to_two_decimals() {
    let app = TestApp::spawn().await;
    let today = today();
    let born = |age: i32| NaiveDate::from_ymd_opt(today.year() - age, 1, 1).unwrap();
    // 7 ages: p99 rank 5.94 -> 5 + 0.94 * 1 ... with ages 0..=5 and 100:
    // rank 5.94 between 5 and 100 -> 5 + 0.94 * 95 = 94.3; p75 rank 4.5 -> 4.5.
    // 3 ages [0, 1, 3]: p75 rank 1.5 -> 2; p99 rank 1.98 -> 1 + 0.98 * 2 = 2.96.
    let mut citizens = Vec::new();
    for (town, ages) in [("A", vec![0, 1, 2, 3, 4, 5, 100]), ("B", vec![0, 1, 3])] {
        for age in ages {
            let mut c = citizen(citizens.len() as u32, &[]);
            c["town"] = json!(town);
            c["birth_date"] = json!(ddmmyyyy(born(age)));
            citizens.push(c);
        }
    }
    let import_id = post_import(&app, &json!({ "citizens": citizens })).await;
    let (_, body) = json(
        app.get(&format!("/imports/{import_id}/towns/stat/percentile/age"))
            .await,
    )
    .await;
    assert_eq!(
        body["data"],
        json!([
            {"town": "A", "p50": 3.0, "p75": 4.5, "p99": 94.3},
            {"town": "B", "p50": 1.0, "p75": 2.0, "p99": 2.96},
        ])
    );
}

#[tokio::test]
async fn channels_are_optional_and_group_birthdays() {
    let app = TestApp::spawn().await;
    let mut a = citizen(1, &[2, 3]);
    a["channel"] = json!("instagram");
    let mut b = citizen(2, &[1]);
    b["channel"] = json!("instagram");
    let c = citizen(3, &[1]);
    let mut d = citizen(4, &[]);
    d["channel"] = json!("radio");
    let import_id = post_import(
        &app,
        &json!({"citizens": [a.clone(), b.clone(), c.clone(), d.clone()]}),
    )
    .await;
    let citizens = get_citizens(&app, import_id).await;
    assert_eq!(citizens, vec![a, b, c.clone(), d]);
    assert!(citizens[2].get("channel").is_none());

    let path = format!("/imports/{import_id}/citizens/birthdays?group_by=channel");
    let (status, body) = json(app.get(&path).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({
            "instagram": [{"citizen_id": 1, "presents": 2}, {"citizen_id": 2, "presents": 1}],
            "radio": [],
            "unknown": [{"citizen_id": 3, "presents": 1}],
        })
    );
    // `group_by=month` is the default spelled out.
    let month = format!("/imports/{import_id}/citizens/birthdays?group_by=month");
    let (_, by_month) = json(app.get(&month).await).await;
    let (_, default) = json(
        app.get(&format!("/imports/{import_id}/citizens/birthdays"))
            .await,
    )
    .await;
    assert_eq!(by_month, default);
    assert_eq!(
        default["data"]["11"],
        json!([{"citizen_id": 1, "presents": 2}, {"citizen_id": 2, "presents": 1},
               {"citizen_id": 3, "presents": 1}])
    );

    for bad in ["group_by=town", "group_by=", "other=1"] {
        let path = format!("/imports/{import_id}/citizens/birthdays?{bad}");
        let (status, body) = json(app.get(&path).await).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    let (status, body) = patch(&app, import_id, 3, &json!({"channel": "radio"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["channel"], "radio");
}

#[tokio::test]
async fn patch_validates_its_body_and_changes_nothing_when_invalid() {
    let app = TestApp::spawn().await;
    let import_id = post_import(&app, &spec_example()).await;
    let before = get_citizens(&app, import_id).await;
    for (body, path) in [
        (json!({}), "body"),
        (json!([]), "body"),
        (json!("name"), "body"),
        (json!({"citizen_id": 5}), "citizen_id"),
        (json!({"name": null}), "name"),
        (json!({"relatives": null}), "relatives"),
        (json!({"channel": null}), "channel"),
        (json!({"nickname": "x"}), "nickname"),
        (json!({"name": "x", "age": 1}), "age"),
        (json!({"name": ""}), "name"),
        (json!({"town": "..."}), "town"),
        (json!({"apartment": -1}), "apartment"),
        (json!({"apartment": 2_147_483_648u64}), "apartment"),
        (json!({"birth_date": "1986-12-26"}), "birth_date"),
        (json!({"gender": "Female"}), "gender"),
        (json!({"relatives": [2, 2]}), "relatives[1]"),
        (json!({"relatives": [2, 99]}), "relatives[1]"),
        (json!({"relatives": 2}), "relatives"),
    ] {
        let (status, reply) = patch(&app, import_id, 1, &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        let fields = reply["error"]["fields"].as_object().expect("fields");
        assert!(fields.contains_key(path), "{body}: {reply}");
    }
    assert_eq!(get_citizens(&app, import_id).await, before);
}

#[tokio::test]
async fn unknown_imports_and_citizens_are_404_and_bad_ids_400() {
    let app = TestApp::spawn().await;
    let import_id = post_import(&app, &spec_example()).await;
    let missing = import_id + 1000;
    for path in [
        format!("/imports/{missing}/citizens"),
        format!("/imports/{missing}/citizens/birthdays"),
        format!("/imports/{missing}/towns/stat/percentile/age"),
        "/imports/-1/citizens".to_owned(),
        "/imports/99999999999999999/citizens".to_owned(),
    ] {
        let (status, body) = json(app.get(&path).await).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
    for path in [
        "/imports/abc/citizens",
        "/imports/1.5/citizens/birthdays",
        "/imports/x/towns/stat/percentile/age",
        "/imports/99999999999999999999/citizens",
    ] {
        let (status, body) = json(app.get(path).await).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    let name = json!({"name": "x"});
    for (import, citizen, expected) in [
        (missing.to_string(), "1".to_owned(), 404),
        (import_id.to_string(), "4".to_owned(), 404),
        (import_id.to_string(), "-1".to_owned(), 404),
        (import_id.to_string(), "99999999999".to_owned(), 404),
        (import_id.to_string(), "one".to_owned(), 400),
        ("one".to_owned(), "1".to_owned(), 400),
    ] {
        let path = format!("/imports/{import}/citizens/{citizen}");
        let (status, body) = json(app.send_json(Method::PATCH, &path, &name).await).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    // Other methods on these paths: 405 with Allow.
    let response = app.request(Method::GET, "/imports").send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST, OPTIONS");
    let response = app
        .request(Method::PUT, &format!("/imports/{import_id}/citizens/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "PATCH, DELETE, OPTIONS");
}

#[tokio::test]
async fn concurrent_patches_keep_relatives_symmetric() {
    let app = TestApp::spawn().await;
    let n = 21;
    let citizens: Vec<Value> = (0..n).map(|id| citizen(id, &[])).collect();
    let import_id = post_import(&app, &json!({ "citizens": citizens })).await;
    for round in 1..=3u32 {
        // Each PATCH rewrites one citizen's relatives; the lists overlap, so
        // every PATCH edits rows that others are editing too.
        let patches = (1..n).map(|id| {
            let relatives: Vec<u32> = [0, (id + round) % n, (id * round + 3) % n]
                .into_iter()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let app = &app;
            async move { patch(app, import_id, id, &json!({ "relatives": relatives })).await }
        });
        for (status, body) in futures_util::future::join_all(patches).await {
            assert_eq!(status, 200, "{body}");
        }
        assert_symmetric(&get_citizens(&app, import_id).await);
    }
}

#[tokio::test]
async fn ten_thousand_citizens_round_trip_exactly() {
    let app = TestApp::spawn().await;
    let mut body = citizens_data::import(2019, 10_000, 3_000);
    // Some strings at the limits, with characters JSON must escape.
    let awkward: String = "\"\\/\u{1}ё🙂".chars().cycle().take(256).collect();
    for (i, citizen) in body["citizens"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| i % 97 == 0)
    {
        citizen["name"] = json!(awkward);
        citizen["street"] = json!(format!("{i}{}", "ъ".repeat(250)));
        citizen["apartment"] = json!(2_147_483_647);
    }
    let import_id = post_import(&app, &body).await;
    let mut posted = body["citizens"].as_array().unwrap().clone();
    // Citizens come back ordered by id; everything else exactly as posted,
    // relatives in their order.
    posted.sort_by_key(|c| c["citizen_id"].as_u64());
    let got = get_citizens(&app, import_id).await;
    assert_eq!(got.len(), 10_000);
    assert_eq!(got, posted);
    assert_symmetric(&got);
}

/// Statistics are kept per import version: a PATCH made through either of two
/// instances sharing the database shows in both instances' next answers,
/// including those they had already computed and kept.
#[tokio::test]
async fn statistics_follow_patches_made_through_any_instance() {
    let app = TestApp::spawn().await;
    let mut config = common::test_config(&app.database);
    config.instance_id = Some("test-second-instance".to_owned());
    let second = common::Served::start(config).await;
    let instances = [app.url(""), second.url("")];

    let mut a = citizen(1, &[2]);
    a["birth_date"] = json!("15.03.1990");
    let mut b = citizen(2, &[1]);
    b["birth_date"] = json!("20.04.1991");
    let import_id = post_import(&app, &json!({"citizens": [a, b]})).await;
    let birthdays = format!("/imports/{import_id}/citizens/birthdays");
    let by_channel = format!("{birthdays}?group_by=channel");
    let percentiles = format!("/imports/{import_id}/towns/stat/percentile/age");
    let get = |base: &str, path: &str| {
        let request = app.client.get(format!("{base}{path}"));
        async move {
            let (status, body) = json(request.send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            body["data"].clone()
        }
    };
    let towns = |answer: Value| -> Vec<Value> {
        answer
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["town"].clone())
            .collect()
    };

    // Both instances answer, twice (the second answer is a kept one).
    for base in &instances {
        for _ in 0..2 {
            let months = get(base, &birthdays).await;
            assert_eq!(months["3"], json!([{"citizen_id": 2, "presents": 1}]));
            assert_eq!(months["4"], json!([{"citizen_id": 1, "presents": 1}]));
            let channels = get(base, &by_channel).await;
            assert_eq!(
                channels,
                json!({"unknown": [{"citizen_id": 1, "presents": 1}, {"citizen_id": 2, "presents": 1}]})
            );
            assert_eq!(towns(get(base, &percentiles).await), [json!("Керчь")]);
        }
    }

    // Through the second instance: 2's birthday moves to May, 2 moves town
    // and gets a channel.
    let change = json!({"birth_date": "20.05.1991", "town": "Москва", "channel": "radio"});
    let response = app
        .client
        .patch(second.url(&format!("/imports/{import_id}/citizens/2")))
        .json(&change)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for base in &instances {
        let months = get(base, &birthdays).await;
        assert_eq!(months["4"], json!([]), "{base}");
        assert_eq!(months["5"], json!([{"citizen_id": 1, "presents": 1}]));
        let channels = get(base, &by_channel).await;
        assert_eq!(channels["radio"], json!([{"citizen_id": 2, "presents": 1}]));
        assert_eq!(
            towns(get(base, &percentiles).await),
            [json!("Керчь"), json!("Москва")]
        );
    }

    // Through the first: 1 and 2 are no longer relatives.
    let (status, _) = patch(&app, import_id, 1, &json!({"relatives": []})).await;
    assert_eq!(status, 200);
    for base in &instances {
        let months = get(base, &birthdays).await;
        assert!(months
            .as_object()
            .unwrap()
            .values()
            .all(|m| m == &json!([])));
    }

    // A PATCH that fails changes no answer either.
    let (status, _) = patch(&app, import_id, 1, &json!({"relatives": [9]})).await;
    assert_eq!(status, 400);
    assert_eq!(towns(get(&instances[1], &percentiles).await).len(), 2);
    second.stop().await;
}

/// The foreign key citizens -> imports became statement-level triggers (V7);
/// the guarantees it gave must hold the same way.
#[tokio::test]
async fn citizens_still_need_their_import_and_go_with_it() {
    let app = TestApp::spawn().await;
    let kept = post_import(&app, &spec_example()).await;
    let gone = post_import(
        &app,
        &json!({"citizens": [citizen(1, &[]), citizen(2, &[])]}),
    )
    .await;
    let db = app.db().await;

    let orphan = db
        .execute(
            "INSERT INTO citizens (import_id, citizen_id, town, street, building, apartment, \
             name, birth_date, gender) VALUES ($1, 1, 'T', 'S', '1', 1, 'N', '2000-01-01', 'male')",
            &[&(gone + kept + 100)],
        )
        .await
        .expect_err("a citizen of a missing import is refused");
    assert_eq!(
        orphan.code(),
        Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    );
    let moved = db
        .execute(
            "UPDATE citizens SET import_id = $2 WHERE import_id = $1",
            &[&kept, &(gone + kept + 100)],
        )
        .await;
    assert!(moved.is_err(), "citizens cannot move to a missing import");

    db.execute("DELETE FROM imports WHERE import_id = $1", &[&gone])
        .await
        .unwrap();
    let per_import = |id: i64| {
        let db = &db;
        async move {
            let row = db
                .query_one("SELECT count(*) FROM citizens WHERE import_id = $1", &[&id])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    assert_eq!(per_import(gone).await, 0);
    assert_eq!(per_import(kept).await, 3);
}

/// The instance that took an import answers its citizens and statistics
/// from what it worked out while writing it; another instance has never seen the import
/// and answers from the SQL. Both must say exactly the same, for a large
/// random import with channels, self-relatives and ages that interpolate.
#[tokio::test]
async fn statistics_kept_at_import_equal_those_computed_from_the_rows() {
    let app = TestApp::spawn().await;
    let mut config = common::test_config(&app.database);
    config.instance_id = Some("test-second-instance".to_owned());
    let second = common::Served::start(config).await;
    for (seed, n, pairs) in [(7, 3_000, 900), (8, 40, 30), (9, 1, 1)] {
        let import_id = post_import(&app, &citizens_data::import(seed, n, pairs)).await;
        for path in [
            format!("/imports/{import_id}/citizens"),
            format!("/imports/{import_id}/citizens/birthdays"),
            format!("/imports/{import_id}/citizens/birthdays?group_by=channel"),
            format!("/imports/{import_id}/towns/stat/percentile/age"),
        ] {
            let answer = |url: String| {
                let request = app.client.get(url);
                async move {
                    let (status, body) = json(request.send().await.unwrap()).await;
                    assert_eq!(status, 200, "{body}");
                    body
                }
            };
            let kept = answer(app.url(&path)).await;
            let computed = answer(second.url(&path)).await;
            assert_eq!(kept, computed, "{path} (seed {seed})");
            assert_ne!(kept["data"], json!([]), "{path}: something to compare");
        }
    }
    second.stop().await;
}
