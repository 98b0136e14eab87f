use super::*;
use chrono::TimeZone;

#[test]
fn timestamps_in_the_forms_phase_4_wrote() {
    let t = Utc.with_ymd_and_hms(2024, 3, 1, 12, 30, 5).unwrap();
    for text in [
        "2024-03-01T12:30:05Z",
        "2024-03-01T12:30:05+00:00",
        "2024-03-01T14:30:05+02:00",
        "2024-03-01 12:30:05",
        "2024-03-01T12:30:05",
        "2024-03-01 12:30:05+00:00",
    ] {
        assert_eq!(parse_timestamp(text), Some(t), "{text}");
    }
    assert_eq!(
        parse_timestamp("2024-03-01T12:30:05.250Z")
            .unwrap()
            .timestamp_subsec_millis(),
        250
    );
    assert_eq!(
        parse_timestamp("2024-03-01"),
        Some(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap())
    );
    for bad in ["", "yesterday", "2024-13-01", "1700000000"] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn ids_from_integers_and_text() {
    assert_eq!(id(ValueRef::Integer(42)).as_deref(), Some("42"));
    assert_eq!(id(ValueRef::Text(b"ws-1")).as_deref(), Some("ws-1"));
    assert_eq!(id(ValueRef::Real(7.0)).as_deref(), Some("7"));
    assert_eq!(id(ValueRef::Text(b"")), None);
    assert_eq!(id(ValueRef::Null), None);
}

#[test]
fn bad_metadata_becomes_an_empty_object_with_a_warning() {
    let mut warnings = Vec::new();
    let mut warn = |w: String| warnings.push(w);
    assert_eq!(
        metadata(ValueRef::Text(b"{not json"), &mut warn),
        serde_json::json!({})
    );
    assert_eq!(metadata(ValueRef::Null, &mut warn), serde_json::json!({}));
    assert_eq!(
        metadata(ValueRef::Text(br#"{"a":"x\u0000y"}"#), &mut warn),
        serde_json::json!({"a": "x\u{FFFD}y"})
    );
    assert_eq!(warnings.len(), 1);
}

#[test]
fn participants_become_text() {
    let mut warn = |_: String| {};
    assert_eq!(
        participants(ValueRef::Text(br#"["a", 7, null]"#), &mut warn),
        serde_json::json!(["a", "7"])
    );
}
