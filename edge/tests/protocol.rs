//! Every message and every error text of the protocol, against an edge started in-process and real
//! WebSocket clients. The checks themselves live in `checks/` and run against a cluster too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod common;

use common::TestEdge;

macro_rules! standalone {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let edge = TestEdge::start().await;
            checks::$name(&edge.edges()).await;
        }
    )*};
}

standalone!(
    info_and_ping,
    parse_errors_have_palavas_texts,
    join_room_validation,
    joining_tells_everyone_with_the_right_shapes,
    already_joined_another_room,
    status_rules_and_a_failed_join_adds_nobody,
    update_status,
    send_to_peer_checks_in_order_and_forwards,
    leaving_and_closing,
);

#[tokio::test]
async fn full_rooms_refuse_joins() {
    let edge = TestEdge::start_with(|c| c.max_room_size = 2).await;
    checks::full_rooms_refuse_joins(&edge.edges(), 2).await;
}
