//! Cursor decoding: any string is a valid cursor for its list or a
//! `BAD_USER_INPUT`, and a decoded cursor encodes back to the same key.
#![no_main]

use cortex::db::TimeOrder;
use cortex::graphql::connection::{
    decode_cursor, decode_search_cursor, encode_cursor, encode_search_cursor,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|cursor: &str| {
    for order in [
        TimeOrder::CreatedDesc,
        TimeOrder::CreatedAsc,
        TimeOrder::UpdatedDesc,
        TimeOrder::UpdatedAsc,
    ] {
        match decode_cursor("after", order, cursor) {
            Ok(key) => assert_eq!(
                decode_cursor("after", order, &encode_cursor(order, key)).unwrap(),
                key
            ),
            Err(e) => assert_eq!(e.code(), "BAD_USER_INPUT"),
        }
    }
    match decode_search_cursor(cursor) {
        Ok(key) => assert_eq!(
            decode_search_cursor(&encode_search_cursor(key)).unwrap(),
            key
        ),
        Err(e) => assert_eq!(e.code(), "BAD_USER_INPUT"),
    }
});
