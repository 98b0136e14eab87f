//! How long a list may be, what it costs, and the check of a client's page
//! arguments: every page-size rule of the API in one place.
//!
//! A list's size bounds both what one field returns and, through the fields'
//! `complexity` attributes (`*_cost(…) * child_complexity`), what a whole query
//! may ask for before it runs ([`crate::graphql::limits`]).

use crate::db::{PageArgs, TimeOrder};
use crate::error::{AppError, AppResult};
use crate::graphql::connection::decode_cursor;

/// Largest `first`/`last` of a connection, and largest `first` of a search.
pub const MAX_PAGE_SIZE: i32 = 100;

/// A connection's page when neither `first` nor `last` is given (the repositories'
/// default too).
pub const DEFAULT_PAGE_SIZE: i32 = crate::db::DEFAULT_PAGE_SIZE as i32;

/// Most `latestMessages` a client may ask for.
pub const MAX_LATEST: i32 = 100;

/// `latestMessages` when `limit` is not given.
pub const DEFAULT_LATEST: i32 = 50;

/// Most participants a conversation holds (checked on every write), and the
/// largest `participants(first:)`.
pub const MAX_PARTICIPANTS: usize = 1000;

/// `participants` when `first` is not given.
pub const DEFAULT_PARTICIPANTS: i32 = 100;

/// `n`, when it is within `0..=max`; else `BAD_USER_INPUT` naming the argument.
pub fn within(name: &str, n: i32, max: i32) -> AppResult<i32> {
    if (0..=max).contains(&n) {
        Ok(n)
    } else {
        Err(AppError::bad_input(
            name,
            format!("`{name}` must be between 0 and {max}"),
        ))
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
            within(name, n, MAX_PAGE_SIZE)?;
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

/// The cost factor of a connection field: its page size (`first` or `last`, the
/// default page when neither is given), at least 1.
pub fn page_cost(first: Option<i32>, last: Option<i32>) -> usize {
    let size = first
        .into_iter()
        .chain(last)
        .max()
        .unwrap_or(DEFAULT_PAGE_SIZE);
    size.clamp(1, MAX_PAGE_SIZE) as usize
}

/// The cost factor of `latestMessages(limit:)`: its `limit`, within bounds (an
/// out-of-range one is refused when it runs).
pub fn latest_cost(limit: i32) -> usize {
    limit.clamp(1, MAX_LATEST) as usize
}

/// The cost factor of `participants(first:)`: its `first`, within bounds (the
/// list's length is not known before the query runs, so complexity takes the
/// most it may return).
pub fn participants_cost(first: i32) -> usize {
    usize::try_from(first)
        .unwrap_or(0)
        .clamp(1, MAX_PARTICIPANTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_capped() {
        assert!(page_args(Some(100), None, None, None, TimeOrder::default()).is_ok());
        let e = page_args(Some(101), None, None, None, TimeOrder::default()).unwrap_err();
        assert_eq!(e.code(), "BAD_USER_INPUT");
        assert!(page_args(None, None, Some(-1), None, TimeOrder::default()).is_err());
        assert!(page_args(Some(1), None, Some(1), None, TimeOrder::default()).is_err());
        assert_eq!(
            within("limit", 101, MAX_LATEST).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
    }

    #[test]
    fn costs_are_the_list_size_within_bounds() {
        assert_eq!(page_cost(Some(10), None), 10);
        assert_eq!(page_cost(None, Some(20)), 20);
        assert_eq!(page_cost(None, None), 20);
        assert_eq!(page_cost(Some(-5), None), 1);
        assert_eq!(page_cost(Some(100_000), None), 100);
        assert_eq!(latest_cost(0), 1);
        assert_eq!(latest_cost(1_000), 100);
        assert_eq!(participants_cost(-1), 1);
        assert_eq!(participants_cost(5_000), 1000);
    }
}
