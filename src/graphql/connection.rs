//! Relay connections: opaque keyset cursors, page arguments and `PageInfo`.

use async_graphql::Object;
use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Page, PageArgs, SortKey, TimeOrder};
use crate::error::{AppError, AppResult};

/// Largest `first`/`last` a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;

/// Where an edge sits in its list, encoded as an opaque cursor only when a client
/// asks for it: a nested page of 2,000 messages that selects only `nodes` then
/// encodes none (encoding every cursor was 3 % of the nested benchmark's CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// A keyset position under an order.
    Keyset(TimeOrder, SortKey),
    /// A position in ranked search results.
    Search(crate::db::messages::SearchKey),
}

impl Cursor {
    /// The opaque text clients send back in `after`/`before`.
    pub fn encode(&self) -> String {
        match *self {
            Cursor::Keyset(order, key) => encode_cursor(order, key),
            Cursor::Search(key) => encode_search_cursor(key),
        }
    }
}

/// A root list's `totalCount`, run only when a client asks for it.
pub type LazyTotal =
    Box<dyn Fn() -> futures_util::future::BoxFuture<'static, AppResult<i64>> + Send + Sync>;

/// Relay's page information.
#[derive(Debug, Clone)]
pub struct PageInfo {
    /// More items follow the last edge.
    pub has_next_page: bool,
    /// More items precede the first edge.
    pub has_previous_page: bool,
    /// Position of the first edge.
    pub start: Option<Cursor>,
    /// Position of the last edge.
    pub end: Option<Cursor>,
}

/// Relay's page information.
#[Object]
impl PageInfo {
    /// More items follow the last edge.
    async fn has_next_page(&self) -> bool {
        self.has_next_page
    }
    /// More items precede the first edge.
    async fn has_previous_page(&self) -> bool {
        self.has_previous_page
    }
    /// Cursor of the first edge.
    async fn start_cursor(&self) -> Option<String> {
        self.start.as_ref().map(Cursor::encode)
    }
    /// Cursor of the last edge.
    async fn end_cursor(&self) -> Option<String> {
        self.end.as_ref().map(Cursor::encode)
    }
}

/// Encodes a row's position under `order` as an opaque cursor.
pub fn encode_cursor(order: TimeOrder, key: SortKey) -> String {
    let text = format!(
        "{}:{}:{}",
        order_tag(order),
        key.0.timestamp_micros(),
        key.1
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Decodes a cursor made by [`encode_cursor`] for the same order.
pub fn decode_cursor(field: &str, order: TimeOrder, cursor: &str) -> AppResult<SortKey> {
    let bad = || {
        AppError::bad_input(
            field,
            format!("`{field}` is not a valid cursor for this list"),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (tag, micros, id) = (parts.next(), parts.next(), parts.next());
    if tag != Some(order_tag(order)) {
        return Err(bad());
    }
    let micros: i64 = micros.and_then(|m| m.parse().ok()).ok_or_else(bad)?;
    let at: DateTime<Utc> = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id: Uuid = id.and_then(|i| Uuid::parse_str(i).ok()).ok_or_else(bad)?;
    Ok((at, id))
}

fn order_tag(order: TimeOrder) -> &'static str {
    match order {
        TimeOrder::CreatedDesc => "cd",
        TimeOrder::CreatedAsc => "ca",
        TimeOrder::UpdatedDesc => "ud",
        TimeOrder::UpdatedAsc => "ua",
    }
}

/// Validates Relay arguments into keyset page arguments.
pub fn page_args(
    first: Option<i32>,
    after: Option<&str>,
    last: Option<i32>,
    before: Option<&str>,
    order: TimeOrder,
) -> AppResult<PageArgs> {
    for (name, value) in [("first", first), ("last", last)] {
        if let Some(n) = value {
            if !(0..=MAX_PAGE_SIZE).contains(&n) {
                return Err(AppError::bad_input(
                    name,
                    format!("`{name}` must be between 0 and {MAX_PAGE_SIZE}"),
                ));
            }
        }
    }
    if first.is_some() && last.is_some() {
        return Err(AppError::bad_input(
            "last",
            "pass either `first` or `last`, not both",
        ));
    }
    Ok(PageArgs {
        after: after
            .map(|c| decode_cursor("after", order, c))
            .transpose()?,
        before: before
            .map(|c| decode_cursor("before", order, c))
            .transpose()?,
        first: first.map(i64::from),
        last: last.map(i64::from),
        order,
    })
}

/// `PageInfo` and each row's position for a page, given each row's key.
pub fn page_info<T>(
    page: &Page<T>,
    order: TimeOrder,
    key: impl Fn(&T) -> SortKey,
) -> (PageInfo, Vec<Cursor>) {
    let cursors: Vec<Cursor> = page
        .rows
        .iter()
        .map(|r| Cursor::Keyset(order, key(r)))
        .collect();
    let info = PageInfo {
        has_next_page: page.has_next,
        has_previous_page: page.has_previous,
        start: cursors.first().copied(),
        end: cursors.last().copied(),
    };
    (info, cursors)
}

/// The cursor of a search hit: its place in the ranking, (rank, timestamp, id).
pub fn encode_search_cursor(key: crate::db::messages::SearchKey) -> String {
    let text = format!(
        "search:{:08x}:{}:{}",
        key.rank.to_bits(),
        key.timestamp.timestamp_micros(),
        key.id
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Reads a search cursor; anything but one made by [`encode_search_cursor`] is refused.
pub fn decode_search_cursor(cursor: &str) -> AppResult<crate::db::messages::SearchKey> {
    let parse = |text: &str| {
        let mut parts = text.strip_prefix("search:")?.splitn(3, ':');
        let bits = parts.next().filter(|b| b.len() == 8)?;
        let rank = f32::from_bits(u32::from_str_radix(bits, 16).ok()?);
        let micros = parts.next()?.parse::<i64>().ok()?;
        let id = Uuid::parse_str(parts.next()?).ok()?;
        (rank.is_finite() && rank >= 0.0).then_some(())?;
        Some(crate::db::messages::SearchKey {
            rank,
            timestamp: DateTime::<Utc>::from_timestamp_micros(micros)?,
            id,
        })
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| parse(&s))
        .ok_or_else(|| AppError::bad_input("after", "`after` is not a valid cursor for this list"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_order() {
        let key = (
            DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            Uuid::new_v4(),
        );
        let cursor = encode_cursor(TimeOrder::CreatedDesc, key);
        assert_eq!(
            decode_cursor("after", TimeOrder::CreatedDesc, &cursor).unwrap(),
            key
        );
        assert_eq!(
            decode_cursor("after", TimeOrder::UpdatedAsc, &cursor)
                .unwrap_err()
                .code(),
            "BAD_USER_INPUT"
        );
        for junk in ["", "!!!", "Y2Q6eDp5", "Y2Q6MTox"] {
            assert_eq!(
                decode_cursor("after", TimeOrder::CreatedDesc, junk)
                    .unwrap_err()
                    .code(),
                "BAD_USER_INPUT"
            );
        }
    }

    #[test]
    fn page_sizes_are_capped() {
        assert!(page_args(Some(100), None, None, None, TimeOrder::default()).is_ok());
        let e = page_args(Some(101), None, None, None, TimeOrder::default()).unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
        assert!(page_args(None, None, Some(-1), None, TimeOrder::default()).is_err());
    }
}
