use super::*;

fn event(n: i64, kind: EventKind, workspace: Uuid, conversation: Option<Uuid>) -> Arc<Event> {
    Arc::new(Event {
        cursor: EventCursor { txid: 100, id: n },
        kind,
        workspace_id: Some(workspace),
        conversation_id: conversation,
        message_id: Some(Uuid::new_v4()),
        user_id: Some("sender".into()),
    })
}

fn limits(buffer: usize, max_subscriptions: usize) -> HubLimits {
    HubLimits {
        buffer,
        max_subscriptions,
    }
}

async fn received(sub: &mut Subscription) -> Vec<i64> {
    let mut out = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(std::time::Duration::from_millis(20), sub.receiver.recv()).await
    {
        out.push(event.cursor.id);
    }
    out
}

#[tokio::test]
async fn events_reach_the_subscriptions_of_their_conversation_or_workspace_in_order() {
    let hub = Hub::new(limits(16, 10));
    let (ws, other_ws) = (Uuid::new_v4(), Uuid::new_v4());
    let (conv, other_conv) = (Uuid::new_v4(), Uuid::new_v4());
    let mut of_conversation = hub
        .subscribe(
            Topic::Conversation {
                workspace_id: ws,
                conversation_id: conv,
            },
            "alice",
        )
        .unwrap();
    let mut of_workspace = hub.subscribe(Topic::Workspace(ws), "alice").unwrap();
    let mut elsewhere = hub.subscribe(Topic::Workspace(other_ws), "alice").unwrap();
    hub.publish(&[
        event(1, EventKind::MessageAdded, ws, Some(conv)),
        event(2, EventKind::MessageAdded, ws, Some(other_conv)),
        event(3, EventKind::ConversationUpdated, ws, Some(conv)),
        event(4, EventKind::WorkspaceDeleted, ws, None),
    ]);
    // A conversation's own subscription learns of the workspace's deletion from
    // the deletion of its conversation (a cascade, with its own event).
    assert_eq!(received(&mut of_conversation).await, [1, 3]);
    assert_eq!(received(&mut of_workspace).await, [1, 2, 3, 4]);
    assert_eq!(received(&mut elsewhere).await, Vec::<i64>::new());
    assert_eq!(hub.position(), EventCursor { txid: 100, id: 4 });
}

#[tokio::test]
async fn a_deactivation_reaches_only_that_users_subscriptions() {
    let hub = Hub::new(limits(16, 10));
    let ws = Uuid::new_v4();
    let mut alices = hub.subscribe(Topic::Workspace(ws), "alice").unwrap();
    let mut bobs = hub.subscribe(Topic::Workspace(ws), "bob").unwrap();
    hub.publish(&[Arc::new(Event {
        cursor: EventCursor { txid: 1, id: 1 },
        kind: EventKind::UserDeactivated,
        workspace_id: None,
        conversation_id: None,
        message_id: None,
        user_id: Some("bob".into()),
    })]);
    assert_eq!(received(&mut alices).await, Vec::<i64>::new());
    assert_eq!(received(&mut bobs).await, [1]);
}

#[tokio::test]
async fn a_subscription_that_falls_behind_is_ended_after_its_buffer_and_others_go_on() {
    let hub = Hub::new(limits(2, 10));
    let ws = Uuid::new_v4();
    let mut slow = hub.subscribe(Topic::Workspace(ws), "alice").unwrap();
    let mut fast = hub.subscribe(Topic::Workspace(ws), "bob").unwrap();
    for n in 1..=2 {
        hub.publish(&[event(n, EventKind::MessageAdded, ws, None)]);
        assert!(matches!(fast.next().await, Next::Event(_)));
    }
    hub.publish(&[event(3, EventKind::MessageAdded, ws, None)]);
    assert!(matches!(fast.next().await, Next::Event(_)));
    // The slow one gets what it had buffered, then the end.
    assert!(matches!(slow.next().await, Next::Event(e) if e.cursor.id == 1));
    assert!(matches!(slow.next().await, Next::Event(e) if e.cursor.id == 2));
    assert!(matches!(slow.next().await, Next::Lagged));
    hub.publish(&[event(4, EventKind::MessageAdded, ws, None)]);
    assert!(matches!(fast.next().await, Next::Event(e) if e.cursor.id == 4));
}

#[tokio::test]
async fn subscriptions_are_bounded_per_instance_and_freed_when_dropped() {
    let hub = Hub::new(limits(4, 2));
    let ws = Uuid::new_v4();
    let first = hub.subscribe(Topic::Workspace(ws), "a").unwrap();
    let _second = hub.subscribe(Topic::Workspace(ws), "a").unwrap();
    assert_eq!(
        hub.subscribe(Topic::Workspace(ws), "a").err(),
        Some(SubscribeError::Full(2))
    );
    drop(first);
    assert_eq!(hub.open(), 1);
    assert!(hub.subscribe(Topic::Workspace(ws), "a").is_ok());
}

#[tokio::test]
async fn a_subscription_starts_after_the_last_event_handed_out_and_repeats_are_skipped() {
    let hub = Hub::new(limits(16, 10));
    let ws = Uuid::new_v4();
    hub.start_at(EventCursor { txid: 100, id: 2 });
    let mut sub = hub.subscribe(Topic::Workspace(ws), "a").unwrap();
    assert_eq!(sub.from, EventCursor { txid: 100, id: 2 });
    hub.publish(&[
        event(2, EventKind::MessageAdded, ws, None),
        event(3, EventKind::MessageAdded, ws, None),
        event(3, EventKind::MessageAdded, ws, None),
    ]);
    assert_eq!(received(&mut sub).await, [3]);
}

#[test]
fn resume_cursors_round_trip_and_foreign_text_is_refused() {
    let cursor = EventCursor {
        txid: 9_000_000_000,
        id: 42,
    };
    assert_eq!(decode_cursor(&encode_cursor(cursor)), Some(cursor));
    for bad in ["", "abc", "ev:1:2", "ZXY6MToyOjM", "ZXY6eDox"] {
        assert_eq!(decode_cursor(bad), None, "{bad}");
    }
}
