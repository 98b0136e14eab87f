use super::*;

fn depth_of(query: &str) -> usize {
    depth(&async_graphql::parser::parse_query(query).unwrap())
}

#[test]
fn counts_field_levels() {
    assert_eq!(depth_of("{ me { id } }"), 2);
    assert_eq!(depth_of("{ a { b { c } } d }"), 3);
}

#[test]
fn expands_fragments_and_inline_fragments() {
    assert_eq!(
        depth_of("{ me { ...F } } fragment F on User { x { ... on X { y } } }"),
        3
    );
}

#[test]
fn introspection_is_not_counted() {
    assert_eq!(
        depth_of("{ __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } me { id } }"),
        2
    );
}

#[test]
fn fragment_cycles_and_unknown_fragments_terminate() {
    assert_eq!(
        depth_of(
            "{ a { ...A } } fragment A on T { b { ...B } } fragment B on T { c { ...A ...Z } }"
        ),
        3
    );
}

#[test]
fn fragment_bombs_are_measured_once_per_fragment() {
    let mut query = String::from("{ a { ...F0 } }");
    for i in 0..30 {
        query.push_str(&format!(
            " fragment F{i} on T {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    query.push_str(" fragment F30 on T { leaf }");
    assert_eq!(depth_of(&query), 2);
}

fn measure_of(query: &str) -> Measure {
    measure(&async_graphql::parser::parse_query(query).unwrap())
}

fn refused_by(result: ServerResult<()>) -> Option<String> {
    result.err().map(|e| {
        e.extensions
            .and_then(|x| x.get("limit").cloned())
            .map(|v| v.to_string())
            .unwrap_or_default()
    })
}

#[test]
fn the_scan_refuses_deep_brackets_before_the_parser_sees_them() {
    let deep = format!("{{ f(x: {}1{}) }}", "[".repeat(2000), "]".repeat(2000));
    assert_eq!(
        refused_by(scan(&deep, 32, 10_000)),
        Some("\"nesting\"".into())
    );
    let objects = format!("{{ f(x: {}1{}) }}", "{a:".repeat(2000), "}".repeat(2000));
    assert_eq!(
        refused_by(scan(&objects, 32, 10_000)),
        Some("\"nesting\"".into())
    );
    assert_eq!(refused_by(scan("{ f(x: [[[1]]]) }", 32, 10_000)), None);
}

#[test]
fn brackets_inside_strings_block_strings_and_comments_do_not_count() {
    let q = format!(
        "{{ f(a: \"{0}\", b: \"\"\"{0}\\\"\"\"{0}\"\"\") # {0}\n }}",
        "[".repeat(100)
    );
    assert_eq!(refused_by(scan(&q, 32, 10_000)), None);
}

#[test]
fn the_scan_counts_tokens() {
    let q = format!("{{ {} }}", "a ".repeat(200));
    assert_eq!(refused_by(scan(&q, 32, 202)), None);
    assert_eq!(refused_by(scan(&q, 32, 201)), Some("\"tokens\"".into()));
    // Commas and whitespace are not tokens; `...` is one.
    assert_eq!(refused_by(scan("{ a, b, ...F }", 32, 6)), None);
}

#[test]
fn aliases_and_directives_are_counted_at_every_fragment_spread() {
    let m = measure_of(
        "{ a: me { id } ...F ...F } fragment F on Query { b: me { id @skip(if: false) } }",
    );
    assert_eq!((m.aliases, m.directives), (3, 2));
    assert!(!m.repeated_directive);
}

#[test]
fn a_repeated_directive_is_flagged_once() {
    let m = measure_of("{ __typename @aa @aa @aa }");
    assert!(m.repeated_directive);
    assert!(!measure_of("{ a @skip(if: true) @include(if: true) }").repeated_directive);
}

#[test]
fn circular_introspection_counts_list_fields_on_one_path() {
    assert_eq!(
        measure_of("{ __schema { types { fields { args { name } type { ofType { name } } } } } }")
            .introspection_lists,
        3
    );
    assert_eq!(
        measure_of(
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
        )
        .introspection_lists,
        4
    );
}

#[test]
fn duplicate_fields_count_per_selection_set_by_response_key() {
    assert_eq!(measure_of("{ a a b: a c { x x x } }").duplicate_fields, 3);
    assert_eq!(measure_of("{ a b: a }").duplicate_fields, 1);
}

/// `{ ...F0 }` where each of `levels` fragments spreads the next twice.
fn bomb(levels: usize, leaf: &str) -> String {
    let mut query = String::from("{ ...F0 }");
    for i in 0..levels {
        query.push_str(&format!(
            " fragment F{i} on Query {{ ...F{} ...F{} }}",
            i + 1,
            i + 1
        ));
    }
    query.push_str(&format!(" fragment F{levels} on Query {{ {leaf} }}"));
    query
}

#[test]
fn selections_count_every_spread_with_its_fragment() {
    assert_eq!(measure_of("{ me { id name } }").selections, 3);
    // 2 spreads of F (1 field each) + 1 inline fragment holding 1 field.
    assert_eq!(
        measure_of("{ ...F ...F ... on Query { x } } fragment F on Query { y }").selections,
        6
    );
    // Summed over operations: each is validated.
    assert_eq!(measure_of("query A { a } query B { b c }").selections, 3);
    // F_k = 2 (1 + F_{k+1}), F_leaf = 1, plus the operation's spread.
    let expected = (0..24).fold(1usize, |inner, _| 2 * (1 + inner)) + 1;
    assert_eq!(measure_of(&bomb(24, "__typename")).selections, expected);
}

#[test]
fn a_bomb_is_measured_without_expanding_it_and_a_deep_one_without_deep_recursion() {
    let started = std::time::Instant::now();
    let m = measure_of(&bomb(30, "__typename"));
    assert_eq!((m.selections, m.nesting), (3 * (1usize << 30) - 1, 31));
    // Deeper than any document may nest: the walk stops (no stack overflow
    // for a chain of thousands of fragments), and says so.
    assert_eq!(measure_of(&bomb(64, "__typename")).nesting, usize::MAX);
    assert_eq!(measure_of(&bomb(5000, "a")).nesting, usize::MAX);
    let mut unused = String::from("{ a }");
    for i in 0..5000 {
        unused.push_str(&format!(" fragment F{i} on Query {{ ...F{} }}", i + 1));
    }
    assert_eq!(measure_of(&unused).nesting, usize::MAX);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn nesting_counts_spreads_and_inline_fragments_as_levels() {
    assert_eq!(measure_of("{ a }").nesting, 0);
    assert_eq!(measure_of("{ a { b } }").nesting, 1);
    assert_eq!(
        measure_of("{ ...F } fragment F on Query { ... on Query { a { b } } }").nesting,
        3
    );
}

#[test]
fn a_bomb_is_refused_as_selections_before_any_other_limit() {
    let limits = QueryLimits::default();
    let aliased = bomb(30, "a: __typename @include(if: true)");
    for query in [bomb(24, "__typename"), bomb(30, "__typename"), aliased] {
        let document = async_graphql::parser::parse_query(&query).unwrap();
        assert_eq!(
            refused_by(limits.check_document(&document)),
            Some("\"selections\"".into())
        );
    }
    let deep = async_graphql::parser::parse_query(bomb(64, "__typename")).unwrap();
    assert_eq!(
        refused_by(limits.check_document(&deep)),
        Some("\"nesting\"".into())
    );
    let fits = async_graphql::parser::parse_query(bomb(10, "__typename")).unwrap();
    assert_eq!(refused_by(limits.check_document(&fits)), None);
}

#[test]
fn fragment_cycles_are_refused_as_invalid() {
    for query in [
        "{ ...A } fragment A on Query { ...A }",
        "{ ...A } fragment A on Query { x { ...B } } fragment B on X { ...A }",
        "{ ...A ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A }",
    ] {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let m = measure(&document);
        assert!(m.fragment_cycle.is_some(), "{query}");
        let error = QueryLimits::default()
            .check_document(&document)
            .unwrap_err();
        assert!(
            error.message.starts_with("Cannot spread fragment"),
            "{error:?}"
        );
        assert_eq!(refused_by(Err(error)), Some(String::new()));
    }
    assert_eq!(
        measure_of("{ ...A ...A } fragment A on Query { x }").fragment_cycle,
        None
    );
}
