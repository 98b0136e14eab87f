//! Keyset pages: the orders, the page request (`first`/`after`, `last`/`before`),
//! the page read back, and the macros that put a page's bounds and order on a
//! diesel query.

/// The key rows are ordered by: a timestamp, then the id as a tie-break.
pub type SortKey = (chrono::DateTime<chrono::Utc>, uuid::Uuid);

/// The orders a list of workspaces or conversations can be read in (messages are
/// always chronological).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TimeOrder {
    /// Newest first (the default).
    #[default]
    CreatedDesc,
    /// Oldest first.
    CreatedAsc,
    /// Most recently updated first.
    UpdatedDesc,
    /// Least recently updated first.
    UpdatedAsc,
}

impl TimeOrder {
    /// Whether rows are listed oldest (or least recently updated) first.
    pub fn ascending(self) -> bool {
        matches!(self, TimeOrder::CreatedAsc | TimeOrder::UpdatedAsc)
    }

    /// A row's key under this order: its creation or update time, then its id.
    pub fn key(
        self,
        created: chrono::DateTime<chrono::Utc>,
        updated: chrono::DateTime<chrono::Utc>,
        id: uuid::Uuid,
    ) -> SortKey {
        match self {
            TimeOrder::CreatedAsc | TimeOrder::CreatedDesc => (created, id),
            TimeOrder::UpdatedAsc | TimeOrder::UpdatedDesc => (updated, id),
        }
    }
}

/// A keyset page request, Relay style: `first` rows after a key, or `last` rows
/// before one. Keys are stable when rows are inserted between pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PageArgs {
    /// Only rows after this key.
    pub after: Option<SortKey>,
    /// Only rows before this key.
    pub before: Option<SortKey>,
    /// The first N rows.
    pub first: Option<i64>,
    /// The last N rows (used when `first` is absent).
    pub last: Option<i64>,
    /// The order (and so the meaning of the keys).
    pub order: TimeOrder,
}

impl PageArgs {
    /// The first `n` rows.
    pub fn first(n: i64) -> Self {
        Self {
            first: Some(n),
            ..Self::default()
        }
    }

    /// Whether the page is read from the end (`last` without `first`).
    pub fn from_end(&self) -> bool {
        self.first.is_none() && self.last.is_some()
    }

    /// Rows to return (one more is fetched to know whether another page exists).
    pub fn limit(&self) -> i64 {
        self.first.or(self.last).unwrap_or(DEFAULT_PAGE_SIZE)
    }
}

/// Page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: i64 = 20;

/// One page of rows, in the list's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// More rows follow the last one.
    pub has_next: bool,
    /// More rows precede the first one.
    pub has_previous: bool,
}

/// An empty page (a parent the caller may not read has no rows).
impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            rows: Vec::new(),
            has_next: false,
            has_previous: false,
        }
    }
}

impl<T> Page<T> {
    /// The same page with each row turned into something else.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            rows: self.rows.into_iter().map(f).collect(),
            has_next: self.has_next,
            has_previous: self.has_previous,
        }
    }

    /// Builds a page from up to `limit + 1` rows fetched in fetch order.
    pub fn from_fetched(mut rows: Vec<T>, args: &PageArgs) -> Self {
        let limit = args.limit().max(0) as usize;
        let more = rows.len() > limit;
        rows.truncate(limit);
        if args.from_end() {
            rows.reverse();
            Page {
                rows,
                has_next: args.before.is_some(),
                has_previous: more,
            }
        } else {
            Page {
                rows,
                has_next: more,
                has_previous: args.after.is_some(),
            }
        }
    }
}

/// Adds the keyset bounds and order of `$args` to a boxed query over `$ts, $id`,
/// listed newest first (`desc`) or oldest first (`asc`).
macro_rules! keyset_page {
    ($query:expr, $args:expr, $ts:expr, $id:expr, desc) => {{
        let args: &$crate::db::PageArgs = $args;
        let mut q = $query;
        if let Some((t, i)) = args.after {
            q = q.filter($ts.lt(t).or($ts.eq(t).and($id.lt(i))));
        }
        if let Some((t, i)) = args.before {
            q = q.filter($ts.gt(t).or($ts.eq(t).and($id.gt(i))));
        }
        let q = if args.from_end() {
            q.order(($ts.asc(), $id.asc()))
        } else {
            q.order(($ts.desc(), $id.desc()))
        };
        q.limit(args.limit() + 1)
    }};
    ($query:expr, $args:expr, $ts:expr, $id:expr, asc) => {{
        let args: &$crate::db::PageArgs = $args;
        let mut q = $query;
        if let Some((t, i)) = args.after {
            q = q.filter($ts.gt(t).or($ts.eq(t).and($id.gt(i))));
        }
        if let Some((t, i)) = args.before {
            q = q.filter($ts.lt(t).or($ts.eq(t).and($id.lt(i))));
        }
        let q = if args.from_end() {
            q.order(($ts.desc(), $id.desc()))
        } else {
            q.order(($ts.asc(), $id.asc()))
        };
        q.limit(args.limit() + 1)
    }};
}
pub(crate) use keyset_page;

/// Applies `$args` (its order, bounds and limit) to a boxed query on a table with
/// `created_at`, `updated_at` and `id` columns.
macro_rules! ordered_page {
    ($query:expr, $args:expr, $table:ident) => {{
        use $crate::db::schema::$table;
        let args: &$crate::db::PageArgs = $args;
        match args.order {
            $crate::db::TimeOrder::CreatedDesc => {
                $crate::db::keyset_page!($query, args, $table::created_at, $table::id, desc)
            }
            $crate::db::TimeOrder::CreatedAsc => {
                $crate::db::keyset_page!($query, args, $table::created_at, $table::id, asc)
            }
            $crate::db::TimeOrder::UpdatedDesc => {
                $crate::db::keyset_page!($query, args, $table::updated_at, $table::id, desc)
            }
            $crate::db::TimeOrder::UpdatedAsc => {
                $crate::db::keyset_page!($query, args, $table::updated_at, $table::id, asc)
            }
        }
    }};
}
pub(crate) use ordered_page;
