//! Fragment bombs, for the denial-of-service tests and `bench/hostile.rs` (which
//! includes this file by path).

/// `<root> { ...F0 }` with `levels` fragments on `on`, each spreading the next
/// twice (`spread` writes one spread of fragment `n`), and `leaf` at the bottom:
/// it expands to 3 × 2^levels − 1 selections.
pub(crate) fn bomb(
    root: &str,
    on: &str,
    levels: usize,
    spread: fn(usize) -> String,
    leaf: &str,
) -> String {
    let mut query = format!("{root} {{ ...F0 }}");
    for i in 0..levels {
        let next = spread(i + 1);
        query.push_str(&format!(" fragment F{i} on {on} {{ {next} {next} }}"));
    }
    query.push_str(&format!(" fragment F{levels} on {on} {{ {leaf} }}"));
    query
}

/// A plain spread of fragment `n`.
pub(crate) fn plain(n: usize) -> String {
    format!("...F{n}")
}

/// The spread inside an inline fragment.
pub(crate) fn inline(n: usize) -> String {
    format!("... on Query {{ ...F{n} }}")
}

/// The spread with a directive on it.
pub(crate) fn with_directive(n: usize) -> String {
    format!("...F{n} @include(if: true)")
}

/// A chain of `length` fragments, each spreading the next once.
pub(crate) fn chain(length: usize) -> String {
    (0..length).fold(String::from("{ ...C0 }"), |q, i| {
        q + &format!(" fragment C{i} on Query {{ ...C{} }}", i + 1)
    }) + &format!(" fragment C{length} on Query {{ __typename }}")
}
